"""Issue 18.1: no credential past the authorizer, through every shipped gateway (Envoy HTTP, Envoy gRPC, NGINX).

On an allow the upstream (the echo application) receives neither ``sb-hc-token`` (every other query parameter
arrives byte for byte and in order) nor the credential header that was used: ``ServiceBusAuthorization``, or
``Authorization`` when it carried the credential. An application's own ``Authorization`` passes untouched where
Relay's precedence says it is not the credential (a ``ServiceBusAuthorization`` header or an ``sb-hc-token``
came with it).
"""

from __future__ import annotations

from typing import Any

import pytest

from ._leaks import secret_forms
from ._procs import EchoSeen, Response
from .conftest import Gateway, SasConfig

pytestmark = pytest.mark.integration

APP_AUTHORIZATION = "Bearer the-applications-own-token"


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


def _allowed(response: Response) -> EchoSeen:
    assert response.status == 200, str(response)
    seen = response.upstream
    assert seen is not None, f"allowed but not answered by the upstream: {response}"
    return seen


def _assert_no_token(seen: EchoSeen, *secrets: str) -> None:
    everything = "\n".join([seen.path_qs, seen.body, *(f"{k}: {v}" for k, v in seen.headers)]).lower()
    for form in secret_forms(*secrets):
        assert form not in everything, f"the credential reached the upstream: {seen}"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/orders?sb-hc-token={t}", "/orders"),
        ("/orders?sb-hc-token={t}&sb-hc-action=connect&z=9&a=1", "/orders?sb-hc-action=connect&z=9&a=1"),
        ("/orders?z=9&sb-hc-token={t}&a=%2F+b&flag&&e=", "/orders?z=9&a=%2F+b&flag&&e="),
        ("/orders/sub?sb-hc-id=42&x=%3D%26;y&b=%252F&sb-hc-token={t}", "/orders/sub?sb-hc-id=42&x=%3D%26;y&b=%252F"),
        (
            "/orders/sb-hc-token?q=sb-hc-token&xsb-hc-token=1&sb-hc-token={t}",
            "/orders/sb-hc-token?q=sb-hc-token&xsb-hc-token=1",
        ),
    ],
    ids=["only", "first_unsorted_rest", "middle_flag_empty_encoded", "last_encoded_semicolon", "name_elsewhere"],
)
def test_sb_hc_token_never_reaches_upstream_rest_of_query_byte_for_byte(
    gateway: Gateway, sas_config: SasConfig, template: str, expected: str
) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gateway.request("GET", template.format(t=token.query_value))
    seen = _allowed(response)
    assert seen.path_qs == expected
    _assert_no_token(seen, token.token)


def test_query_token_and_same_servicebusauthorization_both_removed(gateway: Gateway, sas_config: SasConfig) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    headers = [("ServiceBusAuthorization", token.token), ("Authorization", APP_AUTHORIZATION)]
    response, _ = gateway.request("GET", f"/orders?b=2&sb-hc-token={token.query_value}&a=1", headers)
    seen = _allowed(response)
    assert seen.path_qs == "/orders?b=2&a=1"
    assert seen.header_all("servicebusauthorization") == []
    assert seen.header_all("authorization") == [APP_AUTHORIZATION]
    _assert_no_token(seen, token.token)


def test_query_token_leaves_the_applications_authorization_untouched(gateway: Gateway, sas_config: SasConfig) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    headers = [("Authorization", APP_AUTHORIZATION)]
    response, _ = gateway.request("POST", f"/orders?sb-hc-token={token.query_value}", headers, b"payload")
    seen = _allowed(response)
    assert (seen.path_qs, seen.body) == ("/orders", "payload")
    assert seen.header_all("authorization") == [APP_AUTHORIZATION]
    _assert_no_token(seen, token.token)


@pytest.mark.parametrize("spelling", ["ServiceBusAuthorization", "SERVICEBUSAUTHORIZATION", "servicebusauthorization"])
def test_servicebusauthorization_removed_applications_authorization_untouched(
    gateway: Gateway, sas_config: SasConfig, spelling: str
) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    headers = [(spelling, token.token), ("Authorization", APP_AUTHORIZATION)]
    response, _ = gateway.request("GET", "/orders?x=1", headers)
    seen = _allowed(response)
    assert seen.path_qs == "/orders?x=1"
    assert seen.header_all("servicebusauthorization") == []
    assert seen.header_all("authorization") == [APP_AUTHORIZATION]
    _assert_no_token(seen, token.token)


def test_authorization_removed_when_it_carried_the_credential(gateway: Gateway, sas_config: SasConfig) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gateway.request("GET", "/orders?x=1", [("Authorization", token.token)])
    seen = _allowed(response)
    assert seen.header_all("authorization") == []
    assert seen.header_all("servicebusauthorization") == []
    _assert_no_token(seen, token.token)


def test_anonymous_entity_with_a_query_token_still_loses_it(gateway: Gateway, sas_config: SasConfig) -> None:
    """An entity open to anonymous senders: whatever the service decides, the token is not forwarded."""
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gateway.request("POST", f"/public?a=1&sb-hc-token={token.query_value}", (), b"x")
    if response.status == 200:
        seen = _allowed(response)
        assert seen.path_qs == "/public?a=1"
        _assert_no_token(seen, token.token)
    else:
        assert response.upstream is None
