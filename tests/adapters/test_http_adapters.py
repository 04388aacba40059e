"""The HTTP gateway adapters through aiohttp's test client: Envoy ext_authz (``/ext_authz/…``), NGINX
``auth_request`` (``/auth`` with ``X-Original-*``) and forward auth (``/forward-auth`` with ``X-Forwarded-*``).

Specifications for :mod:`gateway_authz.adapters`: allow is exactly 200 with the ``x-authz-*`` headers and, for
Envoy, ``x-envoy-auth-headers-to-remove`` naming the credential header that was used; 401 carries
``WWW-Authenticate``; every deny has a ``{"error", "reason"}`` JSON body that never echoes the token; missing
request descriptions and internal faults are denies, never 200.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway_authz.adapters._answer import WWW_AUTHENTICATE
from gateway_authz.core.appkeys import METRICS, SERVICE
from gateway_authz.decision.audit import AuditLog
from gateway_authz.decision.runtime import Runtime
from gateway_authz.decision.service import DecisionService
from tests._factories import (
    HOST,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    ROOT,
    SEND_ONLY,
    SEND_ONLY_KEY,
    Harness,
    forge,
    harness,
    make_settings,
    mint,
    secret_forms,
)

TOKEN = mint("/orders")
FORGED = forge(TOKEN)
LISTEN_TOKEN = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]


@pytest.fixture
def h() -> Harness:
    return harness()


@pytest.fixture
async def client(aiohttp_client: Any, h: Harness) -> TestClient[Any, Any]:
    made: TestClient[Any, Any] = await aiohttp_client(h.app)
    return made


def raw(path: str) -> URL:
    """A URL sent exactly as written (no re-quoting by the client)."""
    return URL(path, encoded=True)


async def envoy(client: TestClient[Any, Any], path: str, method: str = "POST", **headers: str) -> Any:
    return await client.request(method, raw("/ext_authz" + path), headers={"Host": HOST, **headers})


async def nginx(client: TestClient[Any, Any], uri: str | None, method: str | None = "POST", **headers: str) -> Any:
    described = {"X-Original-Host": HOST}
    if uri is not None:
        described["X-Original-URI"] = uri
    if method is not None:
        described["X-Original-Method"] = method
    return await client.get("/auth", headers={**described, **headers})


async def forward(client: TestClient[Any, Any], uri: str | None, *, host: str | None = HOST, **headers: str) -> Any:
    described = {"X-Forwarded-Method": "POST"}
    if uri is not None:
        described["X-Forwarded-Uri"] = uri
    if host is not None:
        described["X-Forwarded-Host"] = host
    return await client.get("/forward-auth", headers={**described, **headers})


async def assert_allow(response: Any, *, auth: str = "sas", principal: str = ROOT, right: str = "Send") -> None:
    assert response.status == 200
    assert response.headers.getall("x-authz-auth") == [auth]
    assert response.headers.getall("x-authz-principal") == [principal]
    assert response.headers.getall("x-authz-right") == [right]


async def assert_deny(response: Any, status: int, reason: str, *secrets: str) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["content-type"].startswith("application/json")
    text = await response.text()
    body: dict[str, Any] = json.loads(text)
    assert set(body) == {"error", "reason", "decision_id"} and body["reason"] == reason
    assert body["decision_id"] == response.headers["x-authz-decision-id"]
    assert ("WWW-Authenticate" in response.headers) is (status == 401)
    if status == 401:
        assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    everything = text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    for token in secrets:
        for form in secret_forms(token):
            assert form not in everything
    return body


# --------------------------------------------------------------------------------------------------------------
# Envoy ext_authz (HTTP)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
async def test_envoy_allow_is_exactly_200_with_authz_headers_and_the_used_header_to_remove(
    client: TestClient[Any, Any], method: str
) -> None:
    """Any method under /ext_authz: allow is 200 with x-authz-* and x-envoy-auth-headers-to-remove naming the header."""
    response = await envoy(client, "/orders/x?a=1", method, ServiceBusAuthorization=TOKEN)
    await assert_allow(response)
    assert response.headers["x-envoy-auth-headers-to-remove"] == "servicebusauthorization"


async def test_envoy_authorization_carrier_is_the_header_to_remove(client: TestClient[Any, Any]) -> None:
    """When Authorization carried the credential, it is the header Envoy removes."""
    response = await envoy(client, "/orders", Authorization=TOKEN)
    await assert_allow(response)
    assert response.headers["x-envoy-auth-headers-to-remove"] == "authorization"


async def test_envoy_app_authorization_is_not_removed_when_sba_is_used(client: TestClient[Any, Any]) -> None:
    """With ServiceBusAuthorization used, the application's Authorization is not named for removal."""
    response = await envoy(client, "/orders", ServiceBusAuthorization=TOKEN, Authorization="Basic dXNlcjpwYXNz")
    await assert_allow(response)
    assert response.headers["x-envoy-auth-headers-to-remove"] == "servicebusauthorization"


async def test_envoy_query_token_allow(client: TestClient[Any, Any]) -> None:
    """A token in sb-hc-token (sent raw, percent-encoded) allows; no header is named for removal."""
    response = await envoy(client, f"/orders?sb-hc-token={quote(TOKEN, safe='')}")
    await assert_allow(response)
    assert "x-envoy-auth-headers-to-remove" not in response.headers


async def test_envoy_anonymous_allow_sets_every_authz_header(client: TestClient[Any, Any]) -> None:
    """An anonymous allow still sets all three x-authz-* headers (empty principal), overriding client values."""
    response = await envoy(client, "/public", **{"x-authz-principal": "admin", "x-authz-auth": "sas"})
    await assert_allow(response, auth="anonymous", principal="")
    assert "x-envoy-auth-headers-to-remove" not in response.headers


async def test_envoy_client_sent_authz_headers_never_survive(client: TestClient[Any, Any]) -> None:
    """A client's own x-authz-principal is replaced by the decision's on allow."""
    response = await envoy(
        client,
        "/orders",
        ServiceBusAuthorization=mint("/orders", SEND_ONLY, SEND_ONLY_KEY),
        **{"x-authz-principal": ROOT},
    )
    await assert_allow(response, principal=SEND_ONLY)


@pytest.mark.parametrize(
    ("headers", "path", "status", "reason", "secrets"),
    [
        ({}, "/orders", 401, "missing_credential", ()),
        ({"ServiceBusAuthorization": FORGED}, "/orders", 401, "bad_signature", (FORGED,)),
        ({"ServiceBusAuthorization": mint("/orders", ttl=-1000)}, "/orders", 401, "expired", ()),
        ({"ServiceBusAuthorization": LISTEN_TOKEN}, "/orders", 403, "insufficient_rights", (LISTEN_TOKEN,)),
        ({"ServiceBusAuthorization": TOKEN}, "/orders2", 403, "token_scope", (TOKEN,)),
        ({"ServiceBusAuthorization": TOKEN}, "/orders/%2e%2e/orders2", 403, "malformed_request", (TOKEN,)),
        ({}, f"/orders?sb-hc-token={quote(FORGED, safe='')}", 401, "bad_signature", (FORGED,)),
        ({}, f"/orders?sb%2Dhc%2Dtoken={quote(TOKEN, safe='')}", 401, "ambiguous_credential", (TOKEN,)),
        ({"ServiceBusAuthorization": "SharedAccessSignature junk"}, "/orders", 401, "malformed_token", ()),
    ],
    ids=[
        "missing",
        "forged",
        "expired",
        "wrong-right",
        "sibling",
        "dot-segments",
        "query-forged",
        "query-name-variant",
        "junk",
    ],
)
async def test_envoy_denies_with_json_body_and_never_echoes_the_token(
    client: TestClient[Any, Any], headers: dict[str, str], path: str, status: int, reason: str, secrets: tuple[str, ...]
) -> None:
    """401 (with WWW-Authenticate) and 403 carry ``{"error", "reason"}`` and nothing of the token."""
    await assert_deny(await envoy(client, path, **headers), status, reason, *secrets)


@pytest.mark.parametrize(
    ("pairs", "reason"),
    [
        ([("ServiceBusAuthorization", TOKEN), ("ServiceBusAuthorization", TOKEN)], "duplicate_credential"),
        ([("Authorization", TOKEN), ("Authorization", "Bearer a.b.c")], "duplicate_credential"),
        ([("Authorization", f"{TOKEN},Bearer a.b.c")], "malformed_token"),
    ],
    ids=["sba-twice", "authorization-sas-and-bearer", "envoy-merged"],
)
async def test_T4_envoy_repeated_credential_headers_are_401(
    client: TestClient[Any, Any], pairs: list[tuple[str, str]], reason: str
) -> None:
    """Two credential header lines (or Envoy's comma-joined merge of them) reach the service and are a 401."""
    response = await client.post(raw("/ext_authz/orders"), headers=[("Host", HOST), *pairs])
    await assert_deny(response, 401, reason, TOKEN)


@pytest.mark.parametrize("path", ["", "/"])
async def test_envoy_bare_prefix(client: TestClient[Any, Any], path: str) -> None:
    """``/ext_authz`` with no original path is a deny; ``/ext_authz/`` is the namespace root."""
    response = await envoy(client, path, ServiceBusAuthorization=mint("/"))
    if path:
        await assert_allow(response)
    else:
        await assert_deny(response, 403, "malformed_request")


async def test_envoy_prefix_look_alike_is_not_an_allow(client: TestClient[Any, Any]) -> None:
    """``/ext_authzx/orders`` is not the Envoy endpoint: never a 200."""
    response = await client.post(raw("/ext_authzx/orders"), headers={"Host": HOST, "ServiceBusAuthorization": TOKEN})
    assert response.status != 200


async def test_envoy_request_id_reaches_the_audit_line(client: TestClient[Any, Any], h: Harness) -> None:
    """The x-request-id header is the audit line's request_id; the gateway is envoy-http."""
    await envoy(client, "/orders", ServiceBusAuthorization=TOKEN, **{"x-request-id": "rid-1"})
    (event,) = h.events()
    assert (event["request_id"], event["gateway"], event["path"]) == ("rid-1", "envoy-http", "/orders")


# --------------------------------------------------------------------------------------------------------------
# NGINX auth_request
# --------------------------------------------------------------------------------------------------------------


async def test_nginx_allow(client: TestClient[Any, Any], h: Harness) -> None:
    """GET /auth described by X-Original-Method/URI/Host: allow is 200 with the x-authz-* headers."""
    response = await nginx(client, "/orders/x?a=1", ServiceBusAuthorization=TOKEN)
    await assert_allow(response)
    (event,) = h.events()
    assert (event["gateway"], event["method"], event["path"]) == ("nginx", "POST", "/orders/x?a=1")


async def test_nginx_host_falls_back_to_host_header(client: TestClient[Any, Any]) -> None:
    """Without X-Original-Host, the Host header names the namespace."""
    response = await client.get(
        "/auth",
        headers={
            "Host": HOST,
            "X-Original-URI": "/orders",
            "X-Original-Method": "POST",
            "ServiceBusAuthorization": TOKEN,
        },
    )
    await assert_allow(response)


async def test_nginx_missing_original_uri_is_403_never_200(client: TestClient[Any, Any]) -> None:
    """Without X-Original-URI the service cannot know the resource: 403 deny, even with a valid namespace token."""
    await assert_deny(await nginx(client, None, ServiceBusAuthorization=mint("/")), 403, "malformed_request")


async def test_nginx_repeated_original_uri_is_a_deny(client: TestClient[Any, Any]) -> None:
    """Two X-Original-URI headers are ambiguous: a deny, never a pick."""
    response = await client.get(
        "/auth",
        headers=[
            ("X-Original-Host", HOST),
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/public"),
            ("X-Original-URI", "/orders"),
        ],
    )
    await assert_deny(response, 403, "malformed_request")


async def test_nginx_missing_original_method_is_a_deny(client: TestClient[Any, Any]) -> None:
    """Without X-Original-Method a management route cannot be told apart: 403, even for a Send-only token."""
    token = mint("/", SEND_ONLY, SEND_ONLY_KEY)
    await assert_deny(await nginx(client, "/$admin", None, ServiceBusAuthorization=token), 403, "malformed_request")


async def test_nginx_management_route_needs_manage(client: TestClient[Any, Any]) -> None:
    """X-Original-Method DELETE on /$admin needs Manage: Send-only is 403, the root rule is allowed."""
    send_only = mint("/", SEND_ONLY, SEND_ONLY_KEY)
    denied = await nginx(client, "/$admin/x", "DELETE", ServiceBusAuthorization=send_only)
    await assert_deny(denied, 403, "insufficient_rights", send_only)
    await assert_allow(await nginx(client, "/$admin/x", "DELETE", ServiceBusAuthorization=mint("/")), right="Manage")


@pytest.mark.parametrize(
    ("uri", "status", "reason"),
    [
        (f"/orders?sb-hc-token={quote(TOKEN, safe='')}", 200, "allowed"),
        (f"/orders?SB-HC-TOKEN={quote(TOKEN, safe='')}", 401, "ambiguous_credential"),
        (f"/$hc/orders?sb-hc-action=listen&sb-hc-token={quote(TOKEN, safe='')}", 200, "allowed"),
        (f"/$hc/orders?sb-hc-action=listen&sb-hc-token={quote(LISTEN_TOKEN, safe='')}", 200, "allowed"),
        (f"/orders?sb-hc-token={quote(LISTEN_TOKEN, safe='')}", 403, "insufficient_rights"),
        ("/orders%2F..%2Forders2", 403, "malformed_request"),
    ],
)
async def test_nginx_raw_request_uri_is_decided_as_sent(
    client: TestClient[Any, Any], h: Harness, uri: str, status: int, reason: str
) -> None:
    """X-Original-URI is the raw $request_uri: its query token and escapes are read exactly as the client sent them."""
    response = await nginx(client, uri)
    if status == 200:
        assert response.status == 200
    else:
        await assert_deny(response, status, reason, TOKEN, LISTEN_TOKEN)
    (event,) = h.events()
    for token in (TOKEN, LISTEN_TOKEN):
        assert quote(token, safe="") not in event["path"]


# --------------------------------------------------------------------------------------------------------------
# Forward auth
# --------------------------------------------------------------------------------------------------------------


async def test_forward_auth_allow(client: TestClient[Any, Any], h: Harness) -> None:
    """GET /forward-auth described by X-Forwarded-*: allow is 200 with the x-authz-* headers."""
    await assert_allow(await forward(client, "/orders", ServiceBusAuthorization=TOKEN))
    (event,) = h.events()
    assert event["gateway"] == "forward-auth"


@pytest.mark.parametrize(
    ("uri", "host", "extra"),
    [(None, HOST, {}), ("/orders", None, {}), ("/orders", HOST, {"X-Forwarded-Method": ""})],
    ids=["no-uri", "no-host", "empty-method"],
)
async def test_forward_auth_missing_description_is_a_deny(
    client: TestClient[Any, Any], uri: str | None, host: str | None, extra: dict[str, str]
) -> None:
    """A missing X-Forwarded-Uri or -Host, or an empty method, is a 403 deny, never 200."""
    response = await forward(client, uri, host=host, ServiceBusAuthorization=mint("/"), **extra)
    await assert_deny(response, 403, "malformed_request")


async def test_forward_auth_deny(client: TestClient[Any, Any]) -> None:
    """A forged token through forward auth is a 401 with the challenge and a clean body."""
    await assert_deny(await forward(client, "/orders", ServiceBusAuthorization=FORGED), 401, "bad_signature", FORGED)


# --------------------------------------------------------------------------------------------------------------
# Faults: never 200
# --------------------------------------------------------------------------------------------------------------


class BrokenSource:
    """A RuntimeSource whose runtime cannot be had."""

    @property
    def runtime(self) -> Runtime:
        raise RuntimeError("source exploded")


class _RaisingPolicy:
    def resolve(self, host: str, path: str) -> Any:
        raise ZeroDivisionError("bug")


class BrokenPolicySource:
    def __init__(self) -> None:
        from dataclasses import replace

        self.runtime = replace(Runtime.build(make_settings()), policy=_RaisingPolicy())  # type: ignore[arg-type]


@pytest.mark.parametrize("source", [BrokenSource, BrokenPolicySource], ids=["source-raises", "policy-raises"])
@pytest.mark.parametrize("endpoint", ["envoy", "nginx", "forward"])
async def test_a_service_that_raises_internally_is_a_deny_never_200(
    aiohttp_client: Any, source: type, endpoint: str
) -> None:
    """A fault inside the decision path ends in a 503 JSON deny on every endpoint, never a 200."""
    h = harness()
    audit: list[bytes] = []
    h.app[SERVICE] = DecisionService(source(), audit=AuditLog(audit.append), metrics=h.app[METRICS])
    client = await aiohttp_client(h.app)
    if endpoint == "envoy":
        response = await envoy(client, "/orders", ServiceBusAuthorization=TOKEN)
    elif endpoint == "nginx":
        response = await nginx(client, "/orders", ServiceBusAuthorization=TOKEN)
    else:
        response = await forward(client, "/orders", ServiceBusAuthorization=TOKEN)
    await assert_deny(response, 503, "internal_error", TOKEN)
    assert len(audit) == 1


async def test_decision_counter_matches_requests(client: TestClient[Any, Any], h: Harness) -> None:
    """Each HTTP request is one decision in the metrics, labelled by result, reason and gateway."""
    await envoy(client, "/orders", ServiceBusAuthorization=TOKEN)
    await nginx(client, "/orders", ServiceBusAuthorization=FORGED)
    registry = h.metrics.registry
    allow = {"decision": "allow", "reason": "allowed", "gateway": "envoy-http", "auth": "sas", "dry_run": "false"}
    deny = {"decision": "deny", "reason": "bad_signature", "gateway": "nginx", "auth": "sas", "dry_run": "false"}
    assert registry.get_sample_value("gateway_authz_decisions_total", allow) == 1
    assert registry.get_sample_value("gateway_authz_decisions_total", deny) == 1


@pytest.mark.parametrize("size", [9 * 1024, 64 * 1024])
async def test_P17_oversized_credential_header_is_never_200(client: TestClient[Any, Any], size: int) -> None:
    """A credential header past aiohttp's field limit (8190 bytes) is refused by the HTTP layer: 4xx, never 200."""
    huge = "SharedAccessSignature sr=" + "a" * size
    response = await envoy(client, "/orders", ServiceBusAuthorization=huge)
    assert 400 <= response.status < 500
    assert huge not in await response.text()
