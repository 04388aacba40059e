"""Envoy ext_authz in gRPC mode, end to end: client -> real Envoy (``envoy-grpc.yaml``) -> gateway-authz -> echo.

The SAS scenario table already runs through this gateway (the ``envoy-grpc`` column of ``test_sas_gateways``).
This module checks what only gRPC mode does or must show on its own: the used credential is removed from the
upstream request (headers *and* the ``sb-hc-token`` query parameter, the rest of the query kept), client-sent
``x-authz-*`` headers never get through, per-route ``context_extensions`` from the shipped config are enforced,
the standard ``grpc.health.v1`` service answers on the gRPC port, and every decision is audited as
``gateway: envoy-grpc``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._procs import AuditLog, AuthzProcess, EchoSeen, Response
from .conftest import Gateway, SasConfig, new_key

pytestmark = pytest.mark.integration

SPOOFED = (("x-authz-auth", "spoofed"), ("x-authz-principal", "spoofed-principal"), ("x-authz-right", "Manage"))


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


@pytest.fixture(scope="module")
def gw(envoy_grpc_gateway: Gateway) -> Gateway:
    return envoy_grpc_gateway


def _allowed(response: Response) -> EchoSeen:
    assert response.status == 200, str(response)
    seen = response.upstream
    assert seen is not None, f"allowed but not answered by the upstream: {response}"
    return seen


def _secret_forms(token: Any) -> tuple[str, ...]:
    return (token.token, token.query_value, *token.signature_forms)


def _assert_nothing_of(token: Any, seen: EchoSeen) -> None:
    """No spelling of the token or its signature anywhere in what the upstream received."""
    everything = json.dumps([seen.path_qs, seen.headers, seen.body])
    for form in _secret_forms(token):
        assert form not in everything, "the credential reached the upstream"


def _one_event(audit: AuditLog, request_id: str) -> dict[str, Any]:
    events = audit.for_request(request_id)
    assert len(events) == 1, f"expected one audit line for {request_id}, got {events}"
    return events[0]


# --------------------------------------------------------------------------------------------------- credentials


def test_servicebusauthorization_removed_other_headers_kept(gw: Gateway, sas_config: SasConfig) -> None:
    """ServiceBusAuthorization as the credential: removed upstream; the app's Authorization and others pass."""
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gw.request(
        "GET",
        "/orders?a=1",
        [("ServiceBusAuthorization", token.token), ("Authorization", "Basic YXBwOnNlY3JldA=="), ("x-app", "kept")],
    )
    seen = _allowed(response)
    assert seen.header_all("servicebusauthorization") == []
    assert seen.header_all("authorization") == ["Basic YXBwOnNlY3JldA=="]
    assert seen.header_all("x-app") == ["kept"]
    assert seen.path_qs == "/orders?a=1"
    _assert_nothing_of(token, seen)


def test_authorization_removed_when_it_was_the_credential(gw: Gateway, sas_config: SasConfig) -> None:
    """Authorization carrying the SAS token is removed upstream (headers_to_remove names the used carrier)."""
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gw.request("POST", "/orders/sub?x=1", [("Authorization", token.token)], b"payload")
    seen = _allowed(response)
    assert seen.header_all("authorization") == []
    assert seen.header_all("servicebusauthorization") == []
    assert (seen.path_qs, seen.body) == ("/orders/sub?x=1", "payload")
    assert seen.header_all("x-authz-principal") == ["OrdersSend"]
    _assert_nothing_of(token, seen)


@pytest.mark.parametrize(
    ("template", "upstream"),
    [
        ("/orders?sb-hc-token={t}", "/orders"),
        ("/orders?sb-hc-token={t}&sb-hc-action=connect", "/orders?sb-hc-action=connect"),
        ("/orders?a=1&sb-hc-token={t}&b=two%20words&c=%2F&sb-hc-action=connect", None),
        ("/orders/sub/path?sb-hc-action=connect&sb-hc-id=42&sb-hc-token={t}", None),
    ],
    ids=["only_param", "first_param", "middle_param", "last_param"],
)
def test_sb_hc_token_removed_other_query_parameters_kept(
    gw: Gateway, sas_config: SasConfig, audit: AuditLog, template: str, upstream: str | None
) -> None:
    """sb-hc-token is removed from the upstream query wherever it stands; every other parameter arrives as sent."""
    token = sas_config.mint("OrdersSend", "/orders")
    response, request_id = gw.request("GET", template.format(t=token.query_value))
    seen = _allowed(response)
    expected = upstream or template.replace("&sb-hc-token={t}", "").replace("sb-hc-token={t}&", "")
    assert seen.path_qs == expected
    assert "sb-hc-token" not in seen.path_qs.lower()
    _assert_nothing_of(token, seen)
    event = _one_event(audit, request_id)
    assert (event["gateway"], event["auth"], event["principal"]) == ("envoy-grpc", "sas", "OrdersSend")


@pytest.mark.parametrize("name", ["SB-HC-TOKEN", "Sb-Hc-Token", "sb-hc-%74oken"])
def test_sb_hc_token_spelled_otherwise_is_refused(gw: Gateway, sas_config: SasConfig, name: str) -> None:
    """A token under a parameter name Envoy would not remove (case, percent-encoding) is refused, not forwarded."""
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gw.request("GET", f"/orders?x=1&{name}={token.query_value}")
    assert response.status == 401, str(response)
    assert response.upstream is None
    for form in _secret_forms(token):
        assert form not in response.body.decode(errors="replace")


# --------------------------------------------------------------------------------------------------- identity headers


def test_spoofed_identity_headers_overwritten_on_allow(gw: Gateway, sas_config: SasConfig) -> None:
    """Client-sent x-authz-* (twice, any case) are replaced by the service's values, never added to."""
    token = sas_config.mint("OrdersListen", "/orders")
    spoofed = [*SPOOFED, ("X-Authz-Principal", "second-spoof"), ("X-AUTHZ-RIGHT", "Send")]
    response, _ = gw.request("GET", "/orders?sb-hc-action=listen", [*spoofed, ("ServiceBusAuthorization", token.token)])
    seen = _allowed(response)
    assert seen.header_all("x-authz-principal") == ["OrdersListen"]
    assert seen.header_all("x-authz-auth") == ["sas"]
    assert seen.header_all("x-authz-right") == ["Listen"]


def test_spoofed_principal_dropped_for_anonymous(gw: Gateway, audit: AuditLog) -> None:
    """Anonymous Send: the client's own x-authz-principal does not reach the upstream (empty, not spoofed)."""
    response, request_id = gw.request("POST", "/public/inbox", list(SPOOFED), b"anon")
    seen = _allowed(response)
    assert seen.header_all("x-authz-principal") in ([], [""])
    assert seen.header_all("x-authz-auth") == ["anonymous"]
    assert seen.header_all("x-authz-right") == ["Send"]
    event = _one_event(audit, request_id)
    assert (event["gateway"], event["auth"], event["principal"]) == ("envoy-grpc", "anonymous", "")


# --------------------------------------------------------------------------------------------------- per-route settings


@pytest.mark.parametrize("target", ["/$admin", "/$admin/queues/new?api-version=2021-11-01"])
def test_route_right_manage_refuses_send_token(
    gw: Gateway, sas_config: SasConfig, audit: AuditLog, target: str
) -> None:
    """The shipped /$admin route sends context_extensions right=Manage: a Send-only namespace token gets 403."""
    token = sas_config.mint("NamespaceSend", "/")
    response, request_id = gw.request("PUT", target, [("ServiceBusAuthorization", token.token)], b"{}")
    assert response.status == 403, str(response)
    assert response.upstream is None
    assert response.json()["reason"] == "insufficient_rights"
    event = _one_event(audit, request_id)
    assert (event["decision"], event["status"], event["right"]) == ("deny", 403, "Manage")
    assert (event["gateway"], event["principal"]) == ("envoy-grpc", "NamespaceSend")


@pytest.mark.parametrize("target", ["/$admin", "/$admin/queues/new?api-version=2021-11-01"])
def test_route_right_manage_allows_manage_token(
    gw: Gateway, sas_config: SasConfig, audit: AuditLog, target: str
) -> None:
    """The same route with a Manage token (RootManageSharedAccessKey): 200, x-authz-right Manage upstream."""
    token = sas_config.mint("RootManageSharedAccessKey", "/")
    response, request_id = gw.request("PUT", target, [("ServiceBusAuthorization", token.token)], b"{}")
    seen = _allowed(response)
    assert seen.path_qs == target
    assert seen.header_all("x-authz-right") == ["Manage"]
    assert seen.header_all("x-authz-principal") == ["RootManageSharedAccessKey"]
    event = _one_event(audit, request_id)
    assert (event["decision"], event["right"], event["gateway"]) == ("allow", "Manage", "envoy-grpc")


def test_route_right_only_on_its_route(gw: Gateway, sas_config: SasConfig) -> None:
    """Outside /$admin the same Send-only token still sends: the route setting adds a right only where set."""
    token = sas_config.mint("NamespaceSend", "/")
    response, _ = gw.request("POST", "/orders", [("ServiceBusAuthorization", token.token)], b"x")
    seen = _allowed(response)
    assert seen.header_all("x-authz-right") == ["Send"]


# Envoy matches routes on the raw path, case-sensitively; the service canonicalises (percent-decoding, lower
# case, a leading $hc dropped). These spellings name /$admin to the service and to most upstreams, so the shipped
# config's route (normalize_path, merge_slashes and a case-insensitive regex accepting %24 and a $hc/ prefix) must
# catch them all.
@pytest.mark.parametrize("target", ["/%24admin/x", "/$ADMIN/x", "/$hc/$admin/x", "/%24%61dmin"])
def test_route_right_holds_for_other_spellings_of_the_route(gw: Gateway, sas_config: SasConfig, target: str) -> None:
    """Every spelling of /$admin the service treats as /$admin needs Manage too, not only the literal one."""
    token = sas_config.mint("NamespaceSend", "/")
    response, _ = gw.request("PUT", target, [("ServiceBusAuthorization", token.token)], b"{}")
    assert response.status == 403, str(response)


def test_route_right_is_grpc_only(envoy_http_gateway: Gateway, sas_config: SasConfig) -> None:
    """Contrast: HTTP mode carries no context_extensions, so /$admin is a plain Send there (use managementRoutes)."""
    token = sas_config.mint("NamespaceSend", "/")
    response, _ = envoy_http_gateway.request("PUT", "/$admin", [("ServiceBusAuthorization", token.token)], b"{}")
    seen = _allowed(response)
    assert seen.header_all("x-authz-right") == ["Send"]


# --------------------------------------------------------------------------------------------------- deny answers


def test_denials_carry_status_body_and_www_authenticate(gw: Gateway, sas_config: SasConfig, audit: AuditLog) -> None:
    """401 with WWW-Authenticate and the JSON body; 403 without it; both audited as envoy-grpc, token not echoed."""
    bad = sas_config.mint("OrdersSend", "/orders", key=new_key())
    response, request_id = gw.request("GET", "/orders", [("ServiceBusAuthorization", bad.token)])
    assert response.status == 401, str(response)
    assert response.header("www-authenticate")
    assert response.header("content-type") == "application/json"
    assert response.json()["reason"] == "bad_signature" == response.header("x-authz-reason")
    assert all(form not in response.body.decode() for form in _secret_forms(bad))
    assert _one_event(audit, request_id)["gateway"] == "envoy-grpc"

    sibling = sas_config.mint("OrdersSend", "/orders")
    response, request_id = gw.request("GET", "/invoices", [("ServiceBusAuthorization", sibling.token)])
    assert response.status == 403, str(response)
    assert response.header("www-authenticate") is None
    assert response.json()["reason"]
    event = _one_event(audit, request_id)
    assert (event["gateway"], event["decision"], event["status"]) == ("envoy-grpc", "deny", 403)


# --------------------------------------------------------------------------------------------------- health


@pytest.fixture(scope="module")
def health_stub(authz_service: AuthzProcess) -> Iterator[Any]:
    assert authz_service.grpc_port is not None
    channel = grpc.insecure_channel(f"127.0.0.1:{authz_service.grpc_port}")
    try:
        yield health_pb2_grpc.HealthStub(channel)
    finally:
        channel.close()


@pytest.mark.parametrize("service", ["", "envoy.service.auth.v3.Authorization"])
def test_grpc_health_serving(health_stub: Any, service: str) -> None:
    """grpc.health.v1 on the gRPC port: SERVING overall and for the Authorization service."""
    reply = health_stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_health_unknown_service(health_stub: Any) -> None:
    """An unknown service name is NOT_FOUND, as the health protocol says (a probe typo does not pass)."""
    with pytest.raises(grpc.RpcError) as raised:
        health_stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------------------------------- whole module


@pytest.fixture(scope="module", autouse=True)
def _every_request_audited_once_as_envoy_grpc(
    sent_request_ids: list[str], authz_service: AuthzProcess
) -> Iterator[None]:
    """After the module: each request sent through Envoy gRPC was audited exactly once with gateway envoy-grpc."""
    yield
    time.sleep(0.2)
    counts: dict[str, list[str]] = {}
    for event in AuditLog(authz_service.stdout_path).events():
        if event.get("event") == "authz.decision":
            counts.setdefault(str(event.get("request_id")), []).append(str(event.get("gateway")))
    wrong = {
        rid: counts.get(rid, [])
        for rid in sent_request_ids
        if rid.startswith("it-envoy-grpc-") and counts.get(rid, []) != ["envoy-grpc"]
    }
    if wrong:
        pytest.fail(f"requests not audited exactly once as envoy-grpc: {dict(list(wrong.items())[:10])}", pytrace=False)
