"""``gateway-authz serve`` as a daemon (contract §7): ``--version``, flags from ``GATEWAY_AUTHZ_*`` (a flag wins),
one ``service.start`` and one ``service.stop`` event, a taken port as one line and exit 2, and the default config
inside the package. The process tests start the real command on free loopback ports and stop what they start.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from gateway_authz.cli.main import _parser, main
from gateway_authz.cli.serve import StartFailure, serve_options
from gateway_authz.config.default import default_config
from gateway_authz.config.loader import load_settings
from gateway_authz.http.server import ServeOptions
from tests.integration._procs import free_port, http_get_status, service_env

REPO = Path(__file__).resolve().parents[2]
_SERVE = [sys.executable, "-m", "gateway_authz", "serve"]


def test_version_prints_the_installed_distribution_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"gateway-authz {metadata.version('gateway-authz')}\n"


def _options(argv: list[str], environ: dict[str, str]) -> ServeOptions:
    return serve_options(_parser().parse_args(["serve", *argv]), environ, lambda: "/shipped.yaml")


def test_every_serve_flag_comes_from_the_environment() -> None:
    environ = {
        "GATEWAY_AUTHZ_CONFIG": "/etc/c.yaml",
        "GATEWAY_AUTHZ_HOST": "192.0.2.1",
        "GATEWAY_AUTHZ_PORT": "9080",
        "GATEWAY_AUTHZ_ADMIN_HOST": "10.0.0.1",
        "GATEWAY_AUTHZ_ADMIN_PORT": "9081",
        "GATEWAY_AUTHZ_GRPC_PORT": "9091",
        "GATEWAY_AUTHZ_WORKERS": "3",
    }
    options = _options([], environ)
    assert (options.config_path, options.host, options.port) == ("/etc/c.yaml", "192.0.2.1", 9080)
    assert (options.admin_host, options.admin_port) == ("10.0.0.1", 9081)
    assert (options.grpc_port, options.workers) == (9091, 3)


def test_a_flag_wins_over_its_variable_and_defaults_hold_without_either() -> None:
    options = _options(
        ["--port", "7000", "--config", "/x.yaml"], {"GATEWAY_AUTHZ_PORT": "9080", "GATEWAY_AUTHZ_CONFIG": "/y"}
    )
    assert (options.port, options.config_path) == (7000, "/x.yaml")
    defaults = _options([], {"GATEWAY_AUTHZ_GRPC_PORT": ""})
    assert (defaults.config_path, defaults.host, defaults.port) == ("/shipped.yaml", "127.0.0.1", 8080)
    assert (defaults.admin_host, defaults.admin_port, defaults.grpc_port, defaults.workers) == (
        "127.0.0.1",
        8081,
        None,
        1,
    )


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        ([], {"GATEWAY_AUTHZ_PORT": "http"}, "GATEWAY_AUTHZ_PORT='http'"),
        ([], {"GATEWAY_AUTHZ_WORKERS": "0"}, "GATEWAY_AUTHZ_WORKERS='0'"),
        (["--admin-port", "70000"], {}, "--admin-port='70000'"),
    ],
)
def test_a_bad_value_names_its_source(argv: list[str], environ: dict[str, str], named: str) -> None:
    with pytest.raises(StartFailure, match=named):
        _options(argv, environ)


def test_bad_variable_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_AUTHZ_PORT", "eighty")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GATEWAY_AUTHZ_PORT='eighty'" in err


def test_default_config_is_package_data_and_loads() -> None:
    path = Path(default_config())
    assert path.is_file() and path.parent == REPO / "gateway_authz" / "config"
    assert load_settings(path).namespaces
    assert (REPO / "config" / "gateway-authz.yaml").resolve() == path.resolve()  # the README's path is the same file


def test_built_wheel_carries_the_default_config(tmp_path: Path) -> None:
    """A non-editable install gets the default config: the wheel pip builds holds it, byte for byte."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("gateway_authz-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("gateway_authz/config/gateway-authz.yaml")
    assert shipped == Path(default_config()).read_bytes()


# --------------------------------------------------------------------------------------------------- processes


def _events(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _wait(check: object, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service exited early"
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_serve_from_the_environment_alone_logs_start_and_stop(tmp_path: Path) -> None:
    """No flag, no --config, another working directory: the shipped config, ports from the environment."""
    port, admin = free_port(), free_port()
    env = service_env({"GATEWAY_AUTHZ_PORT": str(port), "GATEWAY_AUTHZ_ADMIN_PORT": str(admin)})
    err = tmp_path / "stderr"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway_authz", "serve"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        _wait(lambda: http_get_status(admin, "/readyz") == 200, proc)
        starts = [e for e in _events(err.read_text()) if e.get("event") == "service.start"]
        assert len(starts) == 1
        (start,) = starts
        assert start["version"] == metadata.version("gateway-authz")
        assert start["listeners"] == {"decision": f"127.0.0.1:{port}", "admin": f"127.0.0.1:{admin}"}
        assert start["config_source"] == default_config() and start["namespaces"] == 1
        assert start["event_loop"] in ("uvloop", "asyncio")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    events = [e.get("event") for e in _events(err.read_text())]
    assert events.count("service.stop") == 1 and events.index("service.stop") > events.index("service.start")


@pytest.mark.parametrize(("which", "workers"), [("decision", "1"), ("admin", "1"), ("decision", "2")])
def test_port_in_use_is_one_line_and_exit_2(tmp_path: Path, which: str, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        other = free_port()
        port, admin = (busy, other) if which == "decision" else (other, busy)
        result = subprocess.run(
            [*_SERVE, "--port", str(port), "--admin-port", str(admin), "--workers", workers],
            cwd=tmp_path,
            env=service_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr == f"cannot listen on 127.0.0.1:{busy}: address in use\n"
