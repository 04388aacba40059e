"""``fast_decision_handler``: the router-less handler ``serve`` installs answers exactly as the routed application.

Two aiohttp test servers over two harnesses with the same settings and clock: one plain ``create_app`` (the routes),
one whose server runs the fast handler in front of the application's own handler, as ``server.serve`` sets it up.
Every request must get the same status, ``x-authz-*`` / deny headers and body from both, and the same audit line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway_authz.http.app import fast_decision_handler
from tests._factories import (
    DECISION_ID,
    HOST,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    audit_without_timing,
    forge,
    harness,
    mint,
)

TOKEN = mint("/orders")
FORGED = forge(TOKEN)
LISTEN_TOKEN = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
ANSWER_HEADERS = (
    "x-authz-auth",
    "x-authz-principal",
    "x-authz-right",
    "x-envoy-auth-headers-to-remove",
    "www-authenticate",
    "x-authz-reason",
    "content-type",
)

# (method, raw path, headers)
REQUESTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "envoy-allow": ("GET", "/ext_authz/orders", {"Host": HOST, "ServiceBusAuthorization": TOKEN}),
    "envoy-allow-query-token": ("GET", f"/ext_authz/orders?sb-hc-token={quote(TOKEN, safe='')}", {"Host": HOST}),
    "envoy-401-forged": ("POST", "/ext_authz/orders", {"Host": HOST, "ServiceBusAuthorization": FORGED}),
    "envoy-401-missing": ("GET", "/ext_authz/orders", {"Host": HOST}),
    "envoy-403-listen-token": ("GET", "/ext_authz/orders", {"Host": HOST, "Authorization": LISTEN_TOKEN}),
    "envoy-bare-prefix": ("GET", "/ext_authz", {"Host": HOST, "ServiceBusAuthorization": TOKEN}),
    "envoy-encoded-prefix": ("GET", "/ext%5Fauthz/orders", {"Host": HOST, "ServiceBusAuthorization": TOKEN}),
    "envoy-encoded-slash": ("GET", "/ext_authz%2Forders", {"Host": HOST, "ServiceBusAuthorization": TOKEN}),
    "envoy-newline-in-path": ("GET", "/ext_authz/a%0Ab", {"Host": HOST, "ServiceBusAuthorization": TOKEN}),
    "not-a-route-prefix": ("GET", "/ext_authzorders", {"Host": HOST, "ServiceBusAuthorization": TOKEN}),
    "nginx-allow": (
        "GET",
        "/auth",
        {"Host": HOST, "X-Original-Method": "GET", "X-Original-URI": "/orders", "ServiceBusAuthorization": TOKEN},
    ),
    "nginx-trailing-slash": (
        "GET",
        "/auth/",
        {"Host": HOST, "X-Original-Method": "GET", "X-Original-URI": "/orders", "ServiceBusAuthorization": TOKEN},
    ),
    "nginx-with-query": (
        "GET",
        "/auth?x=1",
        {"Host": HOST, "X-Original-Method": "GET", "X-Original-URI": "/orders", "ServiceBusAuthorization": TOKEN},
    ),
    "nginx-missing-method": ("GET", "/auth", {"Host": HOST, "X-Original-URI": "/orders"}),
    "forward-auth-allow": (
        "GET",
        "/forward-auth",
        {
            "X-Forwarded-Method": "POST",
            "X-Forwarded-Host": HOST,
            "X-Forwarded-Uri": "/orders",
            "ServiceBusAuthorization": TOKEN,
        },
    ),
    "unknown-path": ("GET", "/healthz", {"Host": HOST}),
    "expect-100-continue": (
        "POST",
        "/ext_authz/orders",
        {"Host": HOST, "ServiceBusAuthorization": TOKEN, "Expect": "100-continue", "Content-Length": "0"},
    ),
}


async def _client(aiohttp_client: Any, *, fast: bool) -> tuple[TestClient[Any, Any], list[bytes]]:
    h = harness()
    client: TestClient[Any, Any] = await aiohttp_client(h.app)
    if fast:
        runner = client.server.runner
        assert runner is not None and runner.server is not None
        server = runner.server
        server.request_handler = fast_decision_handler(h.app, server.request_handler)
    return client, h.audit


async def _ask(client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str]) -> tuple[Any, ...]:
    async with client.request(method, URL(path, encoded=True), headers=headers, skip_auto_headers=["Host"]) as r:
        body = await r.read()
        decision_id = r.headers.get("x-authz-decision-id")
        if decision_id is not None:  # every decision's answer (a 404 is aiohttp's, not a decision)
            assert DECISION_ID.fullmatch(decision_id)
            body = body.replace(decision_id.encode(), b"<id>")
        return r.status, tuple((name, r.headers.getall(name, [])) for name in ANSWER_HEADERS), body


@pytest.mark.parametrize(("method", "path", "headers"), REQUESTS.values(), ids=REQUESTS.keys())
async def test_fast_handler_answers_as_the_routed_application(
    aiohttp_client: Any, method: str, path: str, headers: dict[str, str]
) -> None:
    """Same status, answer headers, body and audit line through the fast handler as through the routes."""
    routed, routed_audit = await _client(aiohttp_client, fast=False)
    fast, fast_audit = await _client(aiohttp_client, fast=True)
    expected = await _ask(routed, method, path, headers)
    assert await _ask(fast, method, path, headers) == expected
    assert audit_without_timing(fast_audit) == audit_without_timing(routed_audit)


async def test_fast_handler_decides_adapter_paths_itself(aiohttp_client: Any) -> None:
    """Decision paths never reach the fallback; anything else does."""
    h = harness()
    calls: list[str] = []
    client: TestClient[Any, Any] = await aiohttp_client(h.app)
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    server = runner.server
    original = server.request_handler

    async def recording(request: Any) -> Any:
        calls.append(request.path)
        return await original(request)

    server.request_handler = fast_decision_handler(h.app, recording)
    for name in ("envoy-allow", "nginx-allow", "forward-auth-allow", "envoy-bare-prefix"):
        method, path, headers = REQUESTS[name]
        await _ask(client, method, path, headers)
    assert calls == []
    method, path, headers = REQUESTS["unknown-path"]
    status, _headers, _body = await _ask(client, method, path, headers)
    assert (status, calls) == (404, ["/healthz"])
