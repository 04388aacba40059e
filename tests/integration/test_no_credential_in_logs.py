"""Issue 18.2: no token, signature or key in any gateway log, at the shipped log levels, under any failure.

Each shipped gateway (Envoy HTTP mode, Envoy gRPC mode, NGINX) runs at its shipped levels (Envoy ``--log-level
info`` as the sidecar manifest starts it, its access log on stdout; NGINX's ``error_log`` and ``access_log`` as
shipped) in front of an upstream that fails on request (``_chaos.py``) and of the real service; a second set
runs in front of an authorizer that is not there. Only the upstream and read timeouts are shortened (1 s) so a
timeout happens within the test. Every case sends the token in each carrier (``sb-hc-token``,
``ServiceBusAuthorization``, ``Authorization``) and then searches every log of the gateway and of the service
for the token, its signature and every key of the config: raw, percent-encoded once and twice, in any case.
"""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import _procs
from ._chaos import ChaosUpstream
from ._hardening import raw_request, request_head
from ._leaks import find_leaks, secret_forms
from ._procs import AuthzProcess, ManagedProcess, Response
from .conftest import SasConfig, new_key

pytestmark = pytest.mark.integration

HOST = "contoso.servicebus.windows.net"
KINDS = ("envoy-http", "envoy-grpc", "nginx")
CARRIERS = ("query", "servicebusauthorization", "authorization")


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


@pytest.fixture(scope="module")
def chaos() -> Iterator[ChaosUpstream]:
    upstream = ChaosUpstream(hang_seconds=10)
    try:
        yield upstream
    finally:
        upstream.stop()


@dataclass
class LoggedGateway:
    kind: str
    port: int
    proc: ManagedProcess

    def logs(self) -> list[Path]:
        return [self.proc.stdout_path, self.proc.stderr_path, *self.proc.extra_logs]

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs() if p.exists())


def _short_envoy_timeouts(config: dict[str, Any]) -> None:
    listener = config["static_resources"]["listeners"][0]
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            for host in network_filter["typed_config"]["route_config"]["virtual_hosts"]:
                for route in host["routes"]:
                    route["route"]["timeout"] = "1s"


def _short_nginx_timeouts(conf: str) -> str:
    conf, count = re.subn(r"proxy_read_timeout 3600s;", "proxy_read_timeout 1s;", conf)
    assert count == 1, "the shipped nginx.conf changed: update the test's timeout rewrite"
    return conf


def _start(kind: str, workdir: Path, app: int, authz: int, label: str) -> LoggedGateway:
    if kind == "nginx":
        proc, port = _procs.start_nginx(
            workdir, upstreams={"app": app, "gateway_authz": authz}, name=label, mutate=_short_nginx_timeouts
        )
    else:
        cluster = "gateway_authz_grpc" if kind == "envoy-grpc" else "gateway_authz"
        proc, port, _ = _procs.start_envoy(
            f"{kind}.yaml",
            workdir,
            clusters={"app": app, cluster: authz},
            name=label,
            mutate=_short_envoy_timeouts,
            log_level="info",  # as k8s/sidecar/app.yaml starts it
            extra_args=["--file-flush-interval-msec", "50"],  # when logs reach the file, not what they hold
        )
    return LoggedGateway(kind, port, proc)


@pytest.fixture(scope="module", params=KINDS)
def gw(
    request: pytest.FixtureRequest, authz_service: AuthzProcess, chaos: ChaosUpstream, integration_dir: Path
) -> Iterator[LoggedGateway]:
    kind = request.param
    authz = authz_service.grpc_port if kind == "envoy-grpc" else authz_service.port
    assert authz is not None
    gateway = _start(kind, integration_dir, chaos.port, authz, f"logs-{kind}")
    with _procs.stopping(gateway.proc):
        yield gateway


@pytest.fixture(scope="module", params=KINDS)
def gw_no_authz(request: pytest.FixtureRequest, chaos: ChaosUpstream, integration_dir: Path) -> Iterator[LoggedGateway]:
    """The gateway with its authorizer's address pointing at a port nothing listens on."""
    gateway = _start(request.param, integration_dir, chaos.port, _procs.free_port(), f"logs-noauthz-{request.param}")
    with _procs.stopping(gateway.proc):
        yield gateway


# --------------------------------------------------------------------------------------------------- sending


def _carry(carrier: str, token: str, target: str) -> tuple[str, list[tuple[str, str]]]:
    from urllib.parse import quote

    if carrier == "query":
        sep = "&" if "?" in target else "?"
        return f"{target}{sep}sb-hc-token={quote(token, safe='')}", []
    name = "ServiceBusAuthorization" if carrier == "servicebusauthorization" else "Authorization"
    return target, [(name, token)]


def _send(gw: LoggedGateway, carrier: str, token: str, target: str, timeout: float = 10.0) -> Response:
    """One request; returns once the gateway's access log holds its line, so every search sees what it caused."""
    target, headers = _carry(carrier, token, target)
    request_id = f"logs-{uuid.uuid4()}"
    headers.append(("x-request-id", request_id))
    response = _procs.request(gw.port, "GET", target, [("Host", HOST), *headers], timeout=timeout)
    _procs.wait_until(lambda: request_id in gw.log_text(), timeout=10, what=f"{gw.kind} access log line")
    return response


def _assert_no_secret(
    gw: LoggedGateway, service: AuthzProcess | None, sas_config: SasConfig, *tokens: str, service_fix: str = ""
) -> None:
    """No secret in the gateway's logs; none in the service's either (``service_fix``: a known service-side leak
    another branch removes, reported as xfail until then; the gateway's own logs are asserted regardless)."""
    forms = secret_forms(*tokens, *sas_config.all_keys())
    leaks = find_leaks(gw.logs(), forms)
    assert not leaks, "secret in a gateway log:\n" + "\n".join(map(str, leaks[:10]))
    leaks = find_leaks([service.stdout_path, service.stderr_path] if service else [], forms)
    if leaks and service_fix:
        pytest.xfail(f"{service_fix}: {leaks[0]}")
    assert not leaks, "secret in a service log:\n" + "\n".join(map(str, leaks[:10]))


def _mint(sas_config: SasConfig, rule: str = "OrdersSend", sr: str = "/orders", **kw: Any) -> str:
    return sas_config.mint(rule, sr, **kw).token


# Every failure, by the status each gateway answers with (NGINX: 500 for an authorizer failure, 502/504 upstream).
UPSTREAM_FAILURES: dict[str, tuple[str, dict[str, tuple[int, ...]]]] = {
    "upstream_5xx": ("/orders/500", {"*": (500,)}),
    "upstream_reset": ("/orders/reset", {"*": (502, 503)}),
    "upstream_closed_without_answer": ("/orders/close", {"*": (502, 503)}),
    "upstream_timeout": ("/orders/hang", {"*": (504,)}),
}


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("failure", list(UPSTREAM_FAILURES))
def test_no_secret_in_logs_when_the_upstream_fails(
    gw: LoggedGateway, authz_service: AuthzProcess, sas_config: SasConfig, failure: str, carrier: str
) -> None:
    target, statuses = UPSTREAM_FAILURES[failure]
    token = _mint(sas_config)
    response = _send(gw, carrier, token, target)
    assert response.status in statuses["*"], f"{gw.kind} {failure}: {response}"
    _assert_no_secret(gw, authz_service, sas_config, token)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_no_secret_in_logs_when_the_upstream_is_down(
    gw: LoggedGateway, authz_service: AuthzProcess, chaos: ChaosUpstream, sas_config: SasConfig, carrier: str
) -> None:
    token = _mint(sas_config)
    with chaos.down():
        response = _send(gw, carrier, token, "/orders/ok")
    assert response.status in (502, 503), f"{gw.kind}: {response}"
    _assert_no_secret(gw, authz_service, sas_config, token)


DENIES: dict[str, Callable[[SasConfig], str]] = {
    "bad_signature_401": lambda c: _mint(c, key=new_key()),
    "expired_401": lambda c: _mint(c, ttl=-600),
    "scope_403": lambda c: _mint(c, "InvoicesSend", "/invoices"),
}


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("deny", list(DENIES))
def test_no_secret_in_logs_on_a_deny(
    gw: LoggedGateway, authz_service: AuthzProcess, sas_config: SasConfig, deny: str, carrier: str
) -> None:
    token = DENIES[deny](sas_config)
    response = _send(gw, carrier, token, "/orders/ok")
    assert response.status == int(deny[-3:]), f"{gw.kind} {deny}: {response}"
    _assert_no_secret(gw, authz_service, sas_config, token)


@pytest.mark.parametrize("carrier", CARRIERS)
def test_no_secret_in_logs_when_the_authorizer_is_unreachable(
    gw_no_authz: LoggedGateway, sas_config: SasConfig, carrier: str
) -> None:
    token = _mint(sas_config)
    response = _send(gw_no_authz, carrier, token, "/orders/ok")
    assert response.status in (500, 503), f"{gw_no_authz.kind}: {response}"
    assert response.upstream is None
    _assert_no_secret(gw_no_authz, None, sas_config, token)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param((b"X-Bad\x01Name", b"1"), id="control_byte_in_header_name"),
        pytest.param((b"Bad Name", b"1"), id="space_in_header_name"),
        pytest.param((b"X-Big", b"x" * 70_000), id="oversized_header"),
        pytest.param((b"Authorization", b"{token}\x01"), id="control_byte_after_token_in_header"),
    ],
)
def test_no_secret_in_logs_on_a_bad_request(
    gw: LoggedGateway, authz_service: AuthzProcess, sas_config: SasConfig, bad: tuple[bytes, bytes]
) -> None:
    """A request the gateway refuses itself (400/431), with the token in the query and in a header."""
    token = _mint(sas_config)
    target, _ = _carry("query", token, "/orders/ok")
    name, value = bad
    head = request_head(
        "GET", target, [("ServiceBusAuthorization", token), (name, value.replace(b"{token}", token.encode()))]
    )
    response = raw_request(gw.port, head)
    time.sleep(0.3)  # no request id to wait for: six flush intervals
    assert response.status in (0, 400, 431, 494, 500), f"{gw.kind}: {response}"  # 500: NGINX, service said 400
    assert response.upstream is None
    fix = "issue 18.7, service side (branch h18s): aiohttp's 400 traceback holds the credential header line"
    _assert_no_secret(gw, authz_service, sas_config, token, service_fix=fix if b"\x01" in bad[1] else "")


def test_the_failures_are_still_visible_in_the_access_log(gw: LoggedGateway, sas_config: SasConfig) -> None:
    """Quiet is not blind: an upstream timeout and refusal show in the access log, with status, not the query."""
    token = _mint(sas_config)
    assert _send(gw, "query", token, "/orders/visible-check/hang").status == 504
    lines = [line for line in gw.log_text().splitlines() if "/orders/visible-check/hang" in line]
    assert lines and all(" 504 " in line for line in lines), lines
    assert all("sb-hc-token" not in line for line in lines), lines


@pytest.fixture(scope="module")
def nginx_without_temp_dirs(
    authz_service: AuthzProcess, echo_upstream: Any, integration_dir: Path
) -> Iterator[LoggedGateway]:
    """NGINX as shipped whose temp directories are replaced by plain files once it runs: any temp file fails."""
    proc, port = _procs.start_nginx(
        integration_dir,
        upstreams={"app": echo_upstream.port, "gateway_authz": authz_service.port},
        name="nginx-no-temp",
    )
    with _procs.stopping(proc):
        rundir = proc.extra_logs[0].parent
        for kind in ("client_body_temp", "proxy_temp"):
            shutil.rmtree(rundir / kind)
            (rundir / kind).write_text("not a directory: a temp file here fails")
        yield LoggedGateway("nginx", port, proc)


@pytest.mark.parametrize("size", [100_000, 900_000])
def test_nginx_large_bodies_never_reach_a_temp_file_or_the_log(
    nginx_without_temp_dirs: LoggedGateway, authz_service: AuthzProcess, sas_config: SasConfig, size: int
) -> None:
    """A temp-file failure is logged at crit with the request line: the shipped config never writes one."""
    gw = nginx_without_temp_dirs
    token = _mint(sas_config)
    target, _ = _carry("query", token, "/orders/big")
    request_id = f"logs-{uuid.uuid4()}"
    headers = [("Host", HOST), ("x-request-id", request_id)]
    response = _procs.request(gw.port, "POST", target, headers, body=b"x" * size)
    _procs.wait_until(lambda: request_id in gw.log_text(), timeout=10, what="nginx access log line")
    assert response.status == 200 and response.upstream is not None, str(response)[:500]
    assert len(response.upstream.body) == size  # the whole body went through, and came back (a large answer)
    _assert_no_secret(gw, authz_service, sas_config, token)
