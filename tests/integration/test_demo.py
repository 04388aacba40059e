"""``gateway-authz demo`` (contract §7), run as a user runs it: the real command, every printed ``curl`` line run
by a shell and its status compared with its ``# expect NNN``, then Ctrl-C (SIGINT), exit 0 and no process left.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway_authz.cli.demo import demo

from . import _procs

pytestmark = pytest.mark.integration

_EXPECT = re.compile(r"#\s*expect\s+(\d{3})\s*$")


def _descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (children of children included), read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _read_until(proc: subprocess.Popen[bytes], last: str, timeout: float) -> list[str]:
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
            lines = buffer.decode().splitlines()
            if last in lines:
                return lines
        elif proc.poll() is not None:
            break
    raise AssertionError(f"demo did not print {last!r} (exit {proc.poll()}); it printed:\n{buffer.decode()}")


@pytest.mark.parametrize(("flags", "gateways"), [((), ["Envoy", "NGINX"]), (("--no-nginx",), ["Envoy"])])
def test_demo_prints_ready_and_every_curl_line_answers_as_its_comment_says(
    tmp_path: Path, flags: tuple[str, ...], gateways: list[str]
) -> None:
    _procs.find_envoy()
    _procs.find_nginx()  # in CI both must be there: the demo then runs through NGINX too
    err = (tmp_path / "demo.stderr").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway_authz", "demo", *flags],
        cwd=tmp_path,
        env=_procs.service_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        start_new_session=True,
    )
    children: set[int] = set()
    try:
        lines = _read_until(proc, "# Ctrl-C stops everything", timeout=90)
        assert lines[0] == "ready", lines
        commands = [line for line in lines if line.startswith("curl ")]
        through = [line for line in lines if line.startswith("# through ")]
        assert [t.split()[2] for t in through] == gateways
        expected = sorted([200, 200, 401, 403] * len(gateways))
        assert sorted(int(_EXPECT.search(c)[1]) for c in commands) == expected  # type: ignore[index]
        children = _descendants(proc.pid)
        assert len(children) >= 2 + len(gateways)  # echo, gateway-authz, Envoy, NGINX (and its workers)
        for command in commands:
            status = _EXPECT.search(command)
            assert status is not None, command
            result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False)
            assert result.returncode == 0 and result.stdout == f"{status[1]}\n", (command, result)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        err.close()
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "the demo left processes behind"
    assert (tmp_path / "demo.stderr").read_text().rstrip().endswith("stopped")


def test_demo_without_envoy_says_how_to_install_it_and_exits_2() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert demo(argparse.Namespace(no_nginx=False), out, err, envoy_finder=lambda: None) == 2
    assert "pip install 'gateway-authz[demo]'" in err.getvalue() and out.getvalue() == ""
