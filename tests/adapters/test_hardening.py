"""Issue 18 point 7 through every adapter: the findings that depend on how a gateway describes the request.

- ``/a/b;x`` (and the other spellings an upstream normalises) is a 400 ``ambiguous_path`` whether it comes from
  Envoy (HTTP or gRPC), NGINX or a forward-auth proxy: they all share :mod:`gateway_authz.core.resources`.
- A repeated ``X-Original-Host`` is a deny (NGINX used to fall back to ``Host``); so is a repeated
  ``X-Forwarded-Host``.
- A method that is not an RFC 9110 token in ``X-Original-Method`` / ``X-Forwarded-Method`` is a 400
  ``invalid_method``; the gRPC adapter refuses it with the same check (as the 403 ``malformed_request`` it was).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from envoy.service.auth.v3 import external_auth_pb2
from multidict import CIMultiDict
from yarl import URL

from gateway_authz.adapters.envoy_grpc import AuthorizationServicer
from gateway_authz.core.appkeys import SERVICE
from tests._factories import HOST, OTHER_HOST, Harness, contoso, harness, hc, make_settings, mint

AMBIGUOUS = ["/a/b;x", "/a/b;", "/a/b%3bx", "/a/b.", "/a/b%20"]
BAD_METHODS = ["G\xffT", "GET /x", "G" * 5000, "GE,T"]
BAD_IDS = ["0xff", "space-path", "5kB", "comma"]


@pytest.fixture
def h() -> Harness:
    return harness(make_settings(namespaces=[contoso(entities=[hc("a", requires_auth=False), hc("a/b")])]))


@pytest.fixture
async def client(aiohttp_client: Any, h: Harness) -> TestClient[Any, Any]:
    made: TestClient[Any, Any] = await aiohttp_client(h.app)
    return made


async def reason_of(response: Any) -> tuple[int, str]:
    body = json.loads(await response.text()) if response.status != 200 else {"reason": "allowed"}
    return response.status, body["reason"]


@pytest.mark.parametrize("path", AMBIGUOUS)
async def test_envoy_http_ambiguous_path_is_400(client: TestClient[Any, Any], path: str) -> None:
    response = await client.get(URL("/ext_authz" + path, encoded=True), headers={"Host": HOST})
    assert await reason_of(response) == (400, "ambiguous_path")


@pytest.mark.parametrize("path", AMBIGUOUS)
async def test_nginx_ambiguous_path_is_refused_as_403_with_its_reason(
    client: TestClient[Any, Any], h: Harness, path: str
) -> None:
    """NGINX makes any auth answer but 2xx/401/403 a 500 logged with the request line: it is answered 403, with the
    reason; the audit line keeps the 400 that was decided."""
    headers = {"X-Original-Host": HOST, "X-Original-URI": path, "X-Original-Method": "GET"}
    assert await reason_of(await client.get("/auth", headers=headers)) == (403, "ambiguous_path")
    (event,) = h.events()
    assert (event["status"], event["reason"], event["gateway"]) == (400, "ambiguous_path", "nginx")


@pytest.mark.parametrize("path", AMBIGUOUS)
async def test_forward_auth_ambiguous_path_is_400(client: TestClient[Any, Any], path: str) -> None:
    headers = {"X-Forwarded-Host": HOST, "X-Forwarded-Uri": path, "X-Forwarded-Method": "GET"}
    assert await reason_of(await client.get("/forward-auth", headers=headers)) == (400, "ambiguous_path")


def check_request(path: str, method: str = "GET") -> Any:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.host, http.scheme = method, path, HOST, "https"
    return request


@pytest.mark.parametrize("path", AMBIGUOUS)
async def test_envoy_grpc_ambiguous_path_is_400(h: Harness, path: str) -> None:
    decision = await AuthorizationServicer(h.app[SERVICE]).decide(check_request(path))
    assert (decision.allowed, decision.status, decision.reason) == (False, 400, "ambiguous_path")


async def test_envoy_grpc_plain_anonymous_path_is_still_allowed(h: Harness) -> None:
    decision = await AuthorizationServicer(h.app[SERVICE]).decide(check_request("/a/c"))
    assert (decision.allowed, decision.status) == (True, 200)


async def test_nginx_repeated_original_host_is_a_deny_not_a_fall_back_to_host(client: TestClient[Any, Any]) -> None:
    """Two X-Original-Host lines used to be ignored in favour of Host, which then decided the namespace."""
    headers = CIMultiDict(
        [
            ("Host", HOST),
            ("X-Original-Host", OTHER_HOST),
            ("X-Original-Host", HOST),
            ("X-Original-URI", "/a/c"),
            ("X-Original-Method", "GET"),
        ]
    )
    response = await client.get("/auth", headers=headers)
    assert response.status == 403
    assert (await reason_of(response)) == (403, "malformed_request")


async def test_nginx_single_original_host_and_absent_one_still_decide(client: TestClient[Any, Any]) -> None:
    described = {"X-Original-URI": "/a/c", "X-Original-Method": "GET"}
    assert (await client.get("/auth", headers={"X-Original-Host": HOST, **described})).status == 200
    assert (await client.get("/auth", headers={"Host": HOST, **described})).status == 200


async def test_forward_auth_repeated_forwarded_host_is_a_deny(client: TestClient[Any, Any]) -> None:
    headers = CIMultiDict(
        [
            ("X-Forwarded-Host", HOST),
            ("X-Forwarded-Host", HOST),
            ("X-Forwarded-Uri", "/a/c"),
            ("X-Forwarded-Method", "GET"),
        ]
    )
    response = await client.get("/forward-auth", headers=headers)
    assert response.status == 403


@pytest.mark.parametrize("method", BAD_METHODS, ids=BAD_IDS)
async def test_nginx_method_that_is_not_a_token_is_refused(client: TestClient[Any, Any], method: str) -> None:
    """A 400 ``invalid_method``, answered to NGINX as 403 (see the ambiguous path above)."""
    headers = {"X-Original-Host": HOST, "X-Original-URI": "/a/c", "X-Original-Method": method}
    assert await reason_of(await client.get("/auth", headers=headers)) == (403, "invalid_method")


@pytest.mark.parametrize("method", BAD_METHODS, ids=BAD_IDS)
async def test_forward_auth_method_that_is_not_a_token_is_400(client: TestClient[Any, Any], method: str) -> None:
    headers = {"X-Forwarded-Host": HOST, "X-Forwarded-Uri": "/a/c", "X-Forwarded-Method": method}
    assert await reason_of(await client.get("/forward-auth", headers=headers)) == (400, "invalid_method")


@pytest.mark.parametrize("method", ["GET", "get", "PROPFIND", "M-SEARCH"])
async def test_nginx_token_methods_are_decided(client: TestClient[Any, Any], method: str) -> None:
    headers = {"X-Original-Host": HOST, "X-Original-URI": "/a/c", "X-Original-Method": method}
    assert (await client.get("/auth", headers=headers)).status == 200


@pytest.mark.parametrize("method", ["G\xffT", "GET /x", "G" * 5000], ids=["0xff", "space-path", "5kB"])
async def test_envoy_grpc_method_that_is_not_a_token_is_refused_by_the_shared_check(h: Harness, method: str) -> None:
    decision = await AuthorizationServicer(h.app[SERVICE]).decide(check_request("/a/c", method))
    assert (decision.allowed, decision.status, decision.reason) == (False, 403, "malformed_request")


async def test_a_valid_token_does_not_rescue_an_ambiguous_path(client: TestClient[Any, Any]) -> None:
    token = mint("/")
    headers = {"X-Original-Host": HOST, "X-Original-URI": "/a/b;x", "X-Original-Method": "GET"}
    response = await client.get("/auth", headers={**headers, "ServiceBusAuthorization": token})
    assert await reason_of(response) == (403, "ambiguous_path")  # a 400, answered to NGINX as 403
