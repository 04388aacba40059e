"""Issue 20 (gateway parts): what a client and the application get from each shipped gateway config.

- A deny through NGINX reaches the client exactly as through Envoy: status, the service's JSON body byte for
  byte, ``content-type``, ``WWW-Authenticate`` (401) and ``x-authz-reason``.
- Envoy makes an ``x-request-id`` when the client sent none and passes it, and ``traceparent``, to the
  authorizer; NGINX passes both as well.
- ``x-authz-decision-id`` from the authorizer reaches the application on allow and the client on deny; a
  client-sent copy never reaches the application.

The plumbing tests run the gateways against ``stub_authz.py`` (an authorizer that always sets
``x-authz-decision-id``), since they test the configs, not the service's decisions.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _procs
from ._procs import ManagedProcess, Response
from .conftest import Echo, Gateway, SasConfig

pytestmark = pytest.mark.integration

STUB_SCRIPT = Path(__file__).resolve().parent / "stub_authz.py"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


# --------------------------------------------------------------------------------------------------- deny parity


def _deny_401(gateway: Gateway, sas_config: SasConfig) -> Response:
    return gateway.request("GET", "/orders?x=1")[0]


def _deny_403(gateway: Gateway, sas_config: SasConfig) -> Response:
    token = sas_config.mint("InvoicesSend", "/invoices")
    return gateway.request("GET", "/orders?x=1", [("ServiceBusAuthorization", token.token)])[0]


@pytest.mark.parametrize(("status", "send"), [(401, _deny_401), (403, _deny_403)], ids=["401", "403"])
def test_nginx_client_gets_the_deny_envoy_clients_get(
    envoy_http_gateway: Gateway,
    envoy_grpc_gateway: Gateway,
    nginx_gateway: Gateway,
    sas_config: SasConfig,
    status: int,
    send: Any,
) -> None:
    """Status, JSON body, content-type, WWW-Authenticate and x-authz-reason: one deny, three ways. The bodies are
    the same but for each answer's own decision id, which is also its ``x-authz-decision-id`` header."""
    answers = {gw.name: send(gw, sas_config) for gw in (envoy_http_gateway, envoy_grpc_gateway, nginx_gateway)}
    envoy = answers["envoy-http"]
    assert envoy.status == status and envoy.upstream is None, str(envoy)
    assert json.loads(envoy.body)["reason"], str(envoy)
    expected = json.loads(envoy.body)
    for name, response in answers.items():
        assert response.status == status, f"{name}: {response}"
        body = json.loads(response.body)
        assert body.pop("decision_id") == response.header("x-authz-decision-id"), f"{name}: {response}"
        assert body == {k: v for k, v in expected.items() if k != "decision_id"}, f"{name}: {response}"
        assert response.body.startswith(b'{"error":'), f"{name}: {response}"  # the service's bytes, not a rewrite
        assert response.header("content-type") == "application/json", f"{name}: {response}"
        assert response.header_all("x-authz-reason") == envoy.header_all("x-authz-reason"), f"{name}: {response}"
        challenge = response.header_all("www-authenticate")
        assert challenge == (envoy.header_all("www-authenticate") if status == 401 else []), f"{name}: {response}"
        assert challenge or status == 403


def test_client_sent_decision_id_never_reaches_the_application(gateway: Gateway, sas_config: SasConfig) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    headers = [("ServiceBusAuthorization", token.token), ("x-authz-decision-id", "spoofed-by-client")]
    response, _ = gateway.request("GET", "/orders", headers)
    assert response.status == 200 and response.upstream is not None, str(response)
    assert "spoofed-by-client" not in response.upstream.header_all("x-authz-decision-id")


# --------------------------------------------------------------------------------------------------- plumbing


class Stub:
    def __init__(self, proc: ManagedProcess, port: int) -> None:
        self.proc, self.port = proc, port

    def checks(self) -> list[dict[str, Any]]:
        lines = self.proc.stdout_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def check_for(self, marker: str) -> dict[str, Any]:
        found = [c for c in self.checks() if marker in json.dumps(c)]
        assert len(found) == 1, f"expected one check holding {marker!r}, got {found}"
        return found[0]


@pytest.fixture(scope="module")
def stub(integration_dir: Path) -> Iterator[Stub]:
    def attempt(n: int) -> tuple[ManagedProcess, int]:
        port = _procs.free_port()
        argv = [sys.executable, str(STUB_SCRIPT), "--port", str(port)]
        proc = ManagedProcess(f"stub-authz-{n}", argv, integration_dir, env=_procs.service_env()).start()
        try:
            _procs.wait_until(lambda: _procs.port_open(port), timeout=15, what="stub authorizer", procs=[proc])
        except BaseException:
            proc.stop()
            raise
        return proc, port

    proc, port = _procs.start_with_retries(attempt)
    with _procs.stopping(proc):
        yield Stub(proc, port)


@pytest.fixture(scope="module", params=["envoy-http", "nginx"])
def stubbed(request: pytest.FixtureRequest, stub: Stub, echo_upstream: Echo, integration_dir: Path) -> Iterator[int]:
    """The shipped HTTP-mode gateway in front of the stub authorizer; yields its port."""
    if request.param == "nginx":
        proc, port = _procs.start_nginx(
            integration_dir, upstreams={"app": echo_upstream.port, "gateway_authz": stub.port}, name="nginx-stub"
        )
    else:
        proc, port, _ = _procs.start_envoy(
            "envoy-http.yaml",
            integration_dir,
            clusters={"app": echo_upstream.port, "gateway_authz": stub.port},
            name="envoy-http-stub",
        )
    with _procs.stopping(proc):
        yield port


def test_decision_id_reaches_the_application_on_allow(stubbed: int, stub: Stub) -> None:
    marker = f"/allow/{id(stub)}-app"
    response = _procs.request(stubbed, "GET", marker, [("Host", "h"), ("x-authz-decision-id", "spoofed")])
    assert response.status == 200 and response.upstream is not None, str(response)
    ids = response.upstream.header_all("x-authz-decision-id")
    assert len(ids) == 1 and re.fullmatch(r"stub-\d+", ids[0]), response.upstream


def test_decision_id_reaches_the_client_on_deny(stubbed: int, stub: Stub) -> None:
    response = _procs.request(stubbed, "GET", "/denied", [("Host", "h")])
    assert response.status == 401 and response.upstream is None, str(response)
    ids = response.header_all("x-authz-decision-id")
    assert len(ids) == 1 and re.fullmatch(r"stub-\d+", ids[0]), str(response)
    assert response.header_all("x-authz-reason") == ["stub_denied"]


def test_request_id_and_traceparent_reach_the_authorizer(stubbed: int, stub: Stub) -> None:
    marker = f"/allow/{stubbed}-trace"
    headers = [("Host", "h"), ("traceparent", TRACEPARENT), ("x-request-id", "rid-from-client")]
    assert _procs.request(stubbed, "GET", marker, headers).status == 200
    seen = {k.lower(): v for k, v in stub.check_for(marker)["headers"]}
    assert seen.get("traceparent") == TRACEPARENT
    assert seen.get("x-request-id") == "rid-from-client"


def test_a_request_id_is_made_when_the_client_sent_none(stubbed: int, stub: Stub) -> None:
    marker = f"/allow/{stubbed}-no-rid"
    assert _procs.request(stubbed, "GET", marker, [("Host", "h")]).status == 200
    seen = {k.lower(): v for k, v in stub.check_for(marker)["headers"]}
    assert re.fullmatch(r"[0-9a-f-]{32,36}", seen.get("x-request-id", "")), seen
