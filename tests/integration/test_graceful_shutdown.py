"""SIGTERM drains: under steady traffic through Envoy in HTTP and gRPC mode, stopping the service loses no answer.

The contract: on SIGTERM both listeners stop taking new work, what is in flight finishes, the process exits 0.
Seen from a client behind Envoy (``failure_mode_allow: false``, ``status_on_error: 503``), every request gets
either its correct decision or, once the service no longer takes calls, Envoy's 503. Never an allow for a
request that must be denied, never a connection error, and never a 503 for a request the service had already
decided (that would be an answer lost mid-flight).
"""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import _procs
from ._procs import AuditLog
from .conftest import Echo, SasConfig, new_key

pytestmark = pytest.mark.integration

GRACE_SECONDS = 10.0  # `serve`'s shutdown timeout: the longest SIGTERM may take
CLIENTS_PER_GATEWAY = 6
BEFORE_SIGTERM = 1.0  # seconds of traffic before the signal
AFTER_EXIT = 0.5  # and after the process has gone (every request then gets Envoy's 503)
HOST = ("Host", "contoso.servicebus.windows.net")


@dataclass(frozen=True)
class Kind:
    name: str
    expected: int
    headers: Callable[[], list[tuple[str, str]]]
    target: str = "/orders"


@dataclass(frozen=True)
class Outcome:
    gateway: str
    kind: Kind
    request_id: str
    started: float
    ended: float
    status: int | None  # None: the client got no HTTP answer at all
    reached_upstream: bool
    error: str = ""


def _kinds(sas_config: SasConfig) -> list[Kind]:
    good = sas_config.mint("OrdersSend", "/orders", ttl=600).token
    forged = sas_config.mint("OrdersSend", "/orders", key=new_key(), ttl=600).token
    listen_only = sas_config.mint("OrdersListen", "/orders", ttl=600).token
    return [
        Kind("allow", 200, lambda: [("ServiceBusAuthorization", good)]),
        Kind("bad_signature", 401, lambda: [("ServiceBusAuthorization", forged)]),
        Kind("missing", 401, lambda: []),
        Kind("wrong_right", 403, lambda: [("ServiceBusAuthorization", listen_only)]),
        Kind("anonymous_send", 200, lambda: [], "/public/inbox"),
    ]


def _client(gateway: str, port: int, kinds: list[Kind], offset: int, stop: threading.Event, out: list[Outcome]) -> None:
    for kind in itertools.islice(itertools.cycle(kinds), offset, None):
        if stop.is_set():
            return
        request_id = f"drain-{gateway}-{uuid.uuid4()}"
        headers = [HOST, *kind.headers(), ("x-request-id", request_id)]
        started = time.monotonic()
        try:
            response = _procs.request(port, "GET", kind.target, headers, timeout=5.0)
        except Exception as exc:  # recorded, and fails the test below
            out.append(Outcome(gateway, kind, request_id, started, time.monotonic(), None, False, repr(exc)))
            continue
        out.append(
            Outcome(
                gateway, kind, request_id, started, time.monotonic(), response.status, response.upstream is not None
            )
        )


def test_sigterm_under_load_drains_http_and_grpc(
    sas_config: SasConfig, echo_upstream: Echo, integration_dir: Path
) -> None:
    """SIGTERM under concurrent load via Envoy HTTP and gRPC: right answer or 503, nothing lost, exit 0 in grace."""
    service = _procs.start_authz(sas_config.path, integration_dir, name="drain-authz", grpc=True)
    try:
        assert service.grpc_port is not None
        http_envoy, http_port, _ = _procs.start_envoy(
            "envoy-http.yaml",
            integration_dir,
            name="drain-envoy-http",
            clusters={"app": echo_upstream.port, "gateway_authz": service.port},
        )
        with _procs.stopping(http_envoy):
            grpc_envoy, grpc_port, _ = _procs.start_envoy(
                "envoy-grpc.yaml",
                integration_dir,
                name="drain-envoy-grpc",
                clusters={"app": echo_upstream.port, "gateway_authz_grpc": service.grpc_port},
            )
            with _procs.stopping(grpc_envoy):
                ports = {"envoy-http": http_port, "envoy-grpc": grpc_port}
                outcomes, sigterm_at, exited_at = _run_load(service, ports, _kinds(sas_config))
    finally:
        service.proc.stop()

    code = service.proc.popen.returncode if service.proc.popen else None
    assert code == 0, f"exit status {code} on SIGTERM\n{service.proc.describe()}"
    drain = exited_at - sigterm_at
    assert drain < GRACE_SECONDS, f"took {drain:.2f}s to exit after SIGTERM"
    _check_outcomes(outcomes, AuditLog(service.stdout_path), sigterm_at, exited_at)


def _run_load(
    service: _procs.AuthzProcess, ports: dict[str, int], kinds: list[Kind]
) -> tuple[list[Outcome], float, float]:
    """Clients on every gateway; SIGTERM after BEFORE_SIGTERM; wait for the exit; AFTER_EXIT more; stop."""
    stop = threading.Event()
    outcomes: list[Outcome] = []
    threads = [
        threading.Thread(target=_client, args=(gateway, port, kinds, i, stop, outcomes), daemon=True)
        for gateway, port in ports.items()
        for i in range(CLIENTS_PER_GATEWAY)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE_SIGTERM)
        sigterm_at = time.monotonic()
        service.proc.signal(signal.SIGTERM)
        assert service.proc.popen is not None
        service.proc.popen.wait(timeout=GRACE_SECONDS + 2)
        exited_at = time.monotonic()
        time.sleep(AFTER_EXIT)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    return list(outcomes), sigterm_at, exited_at


def _check_outcomes(outcomes: list[Outcome], audit: AuditLog, sigterm_at: float, exited_at: float) -> None:
    decided = {str(e.get("request_id")): e for e in audit.events() if e.get("event") == "authz.decision"}
    errors = [o for o in outcomes if o.status is None]
    wrong = [o for o in outcomes if o.status is not None and o.status not in (o.kind.expected, 503)]
    lost = [o for o in outcomes if o.status == 503 and o.request_id in decided]
    misrouted = [o for o in outcomes if o.reached_upstream != (o.status == 200)]
    audit_mismatch = [
        o for o in outcomes if o.request_id in decided and decided[o.request_id]["status"] != o.kind.expected
    ]
    early_503 = [o for o in outcomes if o.status == 503 and o.ended < sigterm_at]
    answered_during_drain = [o for o in outcomes if o.started < sigterm_at < o.ended and o.status != 503]
    after_exit = [o for o in outcomes if o.started > exited_at]

    def show(items: list[Outcome]) -> str:
        return "; ".join(f"{o.gateway} {o.kind.name} -> {o.status} {o.error}" for o in items[:5])

    summary = {
        gateway: {
            "requests": sum(o.gateway == gateway for o in outcomes),
            "correct": sum(o.gateway == gateway and o.status == o.kind.expected for o in outcomes),
            "503": sum(o.gateway == gateway and o.status == 503 for o in outcomes),
        }
        for gateway in ("envoy-http", "envoy-grpc")
    }
    print(
        f"drain summary: {summary}; {len(answered_during_drain)} answered across the SIGTERM; "
        f"exit {exited_at - sigterm_at:.3f}s after it"
    )
    assert not errors, f"{len(errors)} requests got no HTTP answer: {show(errors)}"
    assert not wrong, f"{len(wrong)} wrong answers: {show(wrong)}"
    assert not lost, f"{len(lost)} requests decided by the service but answered 503: {show(lost)}"
    assert not misrouted, f"{len(misrouted)} requests reached (or missed) the upstream wrongly: {show(misrouted)}"
    assert not audit_mismatch, f"audited decisions differ from the expected: {show(audit_mismatch)}"
    assert not early_503, f"503 before SIGTERM: {show(early_503)}"
    for gateway, counts in summary.items():
        assert counts["correct"] >= 20, f"too little traffic through {gateway} to mean anything: {counts}"
        assert counts["503"] >= 1, f"{gateway}: no request after the exit, the test saw no shutdown: {counts}"
    assert answered_during_drain, "no request was in flight across the SIGTERM"
    assert after_exit and all(o.status == 503 for o in after_exit)
