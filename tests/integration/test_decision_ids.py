"""Decision ids end to end: a deny seen by a client through a real Envoy carries an id that finds its audit line,
and ``POST /explain`` on the admin listener says, for the same request, which rule failed and why.

gRPC mode needs no gateway configuration for the id (a ``denied_response`` header reaches the client, an
``ok_response`` header is added to the upstream request). In HTTP mode the deny body reaches the client as the
service wrote it, so its ``decision_id`` is checked there; passing the ``x-authz-decision-id`` header itself
through Envoy's HTTP mode and NGINX is the shipped gateway configurations' part.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from ._procs import AuditLog, AuthzProcess
from .conftest import Gateway, SasConfig

pytestmark = pytest.mark.integration

_BOUND = 5.0


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


def _line(audit: AuditLog, request_id: str) -> dict[str, Any]:
    (event,) = audit.for_request(request_id)
    return event


def _explain(service: AuthzProcess, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.admin_port}/explain",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=_BOUND) as answer:  # noqa: S310 (loopback, our own service)
        result: dict[str, Any] = json.loads(answer.read())
    return result


def test_a_deny_through_envoy_grpc_carries_an_id_that_finds_its_audit_line_and_explain_says_why(
    envoy_grpc_gateway: Gateway, sas_config: SasConfig, audit: AuditLog, authz_service: AuthzProcess
) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    headers = [("ServiceBusAuthorization", token.token), ("traceparent", f"00-{'1' * 32}-{'2' * 16}-01")]
    response, request_id = envoy_grpc_gateway.request("GET", "/orders?sb-hc-action=listen", headers)
    assert response.status == 403, str(response)
    decision_id = response.header("x-authz-decision-id")
    assert decision_id and response.json()["decision_id"] == decision_id
    line = _line(audit, request_id)
    assert (line["decision_id"], line["reason"]) == (decision_id, "insufficient_rights")
    assert (line["trace_id"], line["span_id"]) == ("1" * 32, "2" * 16)
    explained = _explain(
        authz_service,
        {
            "method": "GET",
            "url": "https://contoso.servicebus.windows.net/orders?sb-hc-action=listen",
            "headers": {"ServiceBusAuthorization": token.token},
        },
    )
    assert (explained["status"], explained["reason"]) == (403, "insufficient_rights")
    assert {"step": "rights", "result": "fail", "detail": "rule grants Send; missing Listen"} in explained["trace"]
    assert len(audit.for_request(request_id)) == 1  # explaining wrote no audit line


def test_two_allows_of_one_cached_request_reach_the_upstream_with_different_ids(
    envoy_grpc_gateway: Gateway, sas_config: SasConfig, audit: AuditLog
) -> None:
    token = sas_config.mint("OrdersSend", "/orders")
    ids = []
    for _ in range(2):
        response, request_id = envoy_grpc_gateway.request("POST", "/orders", [("ServiceBusAuthorization", token.token)])
        assert response.status == 200 and response.upstream is not None, str(response)
        (decision_id,) = response.upstream.header_all("x-authz-decision-id")
        assert _line(audit, request_id)["decision_id"] == decision_id
        ids.append(decision_id)
    assert ids[0] != ids[1]


def test_a_deny_body_through_envoy_http_carries_the_id_of_its_audit_line(
    envoy_http_gateway: Gateway, audit: AuditLog
) -> None:
    response, request_id = envoy_http_gateway.request("POST", "/orders")
    assert response.status == 401, str(response)
    decision_id = response.json()["decision_id"]
    assert _line(audit, request_id)["decision_id"] == decision_id
