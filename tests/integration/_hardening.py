"""Helpers shared by the hardening suites (gateway layer, faults, soak): raw HTTP, verdicts, /proc, metrics.

Synchronous and stdlib-only, like ``_procs``; everything that starts a process goes through ``_procs`` so that the
failure report shows its logs and ``stop()`` always ends it.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import _procs
from ._procs import AuditLog, AuthzProcess, EchoSeen, ManagedProcess, Response

HOST = "contoso.servicebus.windows.net"


# --------------------------------------------------------------------------------------------------- raw HTTP


class _Canned:
    """Just enough of a socket for ``http.client.HTTPResponse`` to parse bytes already received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *_args: Any, **_kwargs: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


def raw_request(port: int, data: bytes, *, timeout: float = 10.0) -> Response:
    """Send ``data`` verbatim (it should say ``Connection: close``) and parse whatever comes back.

    A connection closed without an answer is ``Response(0, (), b"")``: never an allow.
    """
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        return Response(0, (), b"")
    response = http.client.HTTPResponse(_Canned(raw))  # type: ignore[arg-type]
    response.begin()
    return Response(response.status, tuple(response.getheaders()), response.read())


def request_head(
    method: str, target: bytes | str, headers: Sequence[tuple[bytes | str, bytes | str]], *, host: bytes | str = HOST
) -> bytes:
    """An HTTP/1.1 request head from raw pieces (bytes pass through untouched), with ``Connection: close``."""

    def b(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode("latin-1")

    lines = [b(method) + b" " + b(target) + b" HTTP/1.1", b"Host: " + b(host)]
    lines += [b(name) + b": " + b(value) for name, value in headers]
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


# --------------------------------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """What one request came to: the client's status, what the upstream saw (None: not reached), the audit lines."""

    gateway: str
    status: int
    upstream: EchoSeen | None
    decisions: tuple[dict[str, Any], ...]
    response: Response

    @property
    def allowed(self) -> bool:
        return self.upstream is not None

    @property
    def service_status(self) -> int | None:
        """The status the service decided (None when the gateway refused the request before asking)."""
        return int(self.decisions[0]["status"]) if self.decisions else None

    def __str__(self) -> str:
        seen = f"upstream saw {self.upstream.path_qs!r}" if self.upstream else "upstream not reached"
        return f"{self.gateway}: HTTP {self.status}, {seen}, service said {list(self.decisions)}"


def verdict(
    gateway: str,
    audit: AuditLog,
    response: Response,
    request_id: str,
    *,
    sentinel: Callable[[], str] | None = None,
) -> Verdict:
    """The verdict of a request whose ``x-request-id`` is ``request_id``.

    The service writes audit lines in order, at the latest one event-loop iteration after it answered. When the
    service visibly answered (a deny with ``x-authz-reason``, or the upstream was reached) its line is awaited.
    Otherwise the request may never have reached the service (a gateway refusal): ``sentinel`` then sends one
    request known to be audited and returns its id; once that line is written, any line of ours is too.
    """
    answered = response.upstream is not None or bool(response.header("x-authz-reason"))
    events = audit.for_request(request_id, timeout=5.0 if answered else 0.0)
    if not events and not answered and sentinel is not None:
        marker = sentinel()
        assert audit.for_request(marker, timeout=5.0), f"the sentinel request {marker} was never audited"
        events = audit.for_request(request_id, timeout=0.0)
    return Verdict(gateway, response.status, response.upstream, tuple(events), response)


def assert_denied(v: Verdict, *, statuses: frozenset[int] | None = None) -> None:
    """Never reached the upstream, never a 200, and when the service decided: one deny line with a 401 or 403
    (or a 400 ``ambiguous_path`` / ``invalid_method``)."""
    assert v.upstream is None, f"reached the upstream: {v}"
    assert v.status != 200, f"200 without the upstream: {v}"
    assert len(v.decisions) <= 1, f"more than one audit line: {v}"
    if v.decisions:
        (event,) = v.decisions
        assert event["decision"] == "deny" and event["status"] in (400, 401, 403), f"service did not deny: {v}"
        # 400 only for what nobody could decide alike (issue 18): a path an upstream normalises, a non-token method
        assert event["status"] != 400 or event["reason"] in ("ambiguous_path", "invalid_method"), str(v)
    if statuses is not None:
        assert v.status in statuses, f"unexpected status: {v}"


def assert_service_healthy(service: AuthzProcess) -> None:
    """Alive, /healthz 200, and no internal error (a bug turned into a deny) in its operations log."""
    assert service.proc.running(), f"the service died\n{service.proc.describe()}"
    assert _procs.http_get_status(service.admin_port, "/healthz", timeout=5.0) == 200
    ops = service.stderr_path.read_text(errors="replace")
    assert "authz.internal_error" not in ops, "the service hit an internal error (see its stderr)"


# --------------------------------------------------------------------------------------------------- metrics, /proc

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(admin_port: int) -> Samples:
    """``/metrics`` parsed with the Prometheus text parser."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        assert response.status == 200, text
    finally:
        conn.close()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def readyz(admin_port: int) -> tuple[int, dict[str, Any]]:
    import json

    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` from ``/proc/<pid>/status`` (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------------------------------- the service


serve_argv = _procs.serve_argv  # the one argv builder, shared with start_authz


def start_authz_on(
    config_path: Path,
    workdir: Path,
    *,
    name: str,
    port: int,
    admin_port: int,
    grpc_port: int | None = None,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> AuthzProcess:
    """The service on the given ports (a restart on the ports a gateway already points at); waits for /readyz."""
    argv = serve_argv(config_path, port, admin_port, grpc_port=grpc_port, extra=extra)
    proc = ManagedProcess(name, argv, workdir, env=_procs.service_env(env)).start()
    try:
        _procs.wait_until(
            lambda: (
                _procs.http_get_status(admin_port, "/readyz") == 200
                and _procs.port_open(port)
                and (grpc_port is None or _procs.port_open(grpc_port))
            ),
            timeout=timeout,
            what=f"{name} /readyz on :{admin_port}",
            procs=[proc],
        )
    except BaseException:
        proc.stop()
        raise
    return AuthzProcess(proc, port, admin_port, grpc_port, config_path)


def wait_for(check: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}", pytrace=False)
        time.sleep(interval)
