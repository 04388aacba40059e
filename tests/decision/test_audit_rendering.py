"""The audit line of a recurring decision, rendered from parts, is byte for byte the line the processors write.

``AuditLog`` renders the fields that come from a decision once per distinct content and afterwards only the
request's; it may do so only where redaction and escaping would change nothing. Each case writes the same
decision several times (rendering, reuse) and compares every line with the plain processor path, at a frozen clock.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from types import MappingProxyType

import pytest

from gateway_authz.core.errors import InvalidCredential, NotPermitted
from gateway_authz.core.model import AuthzRequest, Decision, Right
from gateway_authz.decision import audit as audit_module
from gateway_authz.decision.audit import AuditLog

DECISIONS = {
    "sas-allow": Decision.allow(
        auth="sas",
        principal="orders-send",
        right=Right.SEND,
        namespace="contoso",
        entity="orders",
        strip_headers=("servicebusauthorization",),
        audit={"key_name": "orders-send", "key_slot": "primary"},
    ),
    "jwt-allow": Decision.allow(
        auth="jwt",
        principal="22222222-2222-2222-2222-222222222222",
        right=Right.LISTEN,
        namespace="contoso",
        entity="",
        audit={"issuer": "https://login.microsoftonline.com/t/v2.0", "tenant": "t", "role": "Azure Relay Owner"},
    ),
    "sas-403": Decision.deny(
        NotPermitted("insufficient_rights"), auth="sas", principal="k", right=Right.MANAGE, audit={"key_name": "k"}
    ),
    "401-no-audit": Decision.deny(InvalidCredential("bad_signature"), auth="sas"),
    "principal-looks-like-jwt": Decision.deny(
        NotPermitted("x"), auth="jwt", principal="eyJhbGciOi.eyJzdWIiOi.c2ln", audit={"issuer": "i"}
    ),
    "key-name-with-sig": Decision.deny(NotPermitted("x"), auth="sas", principal="a&SIG=abc", audit={"key_name": "a"}),
    "non-ascii-principal": Decision.deny(NotPermitted("x"), auth="sas", principal="\u017fig=long-s"),
    "audit-field-shadows-a-request-field": Decision.deny(NotPermitted("x"), audit={"method": "shadow"}),
    "audit-field-shadows-timestamp": Decision.deny(NotPermitted("x"), audit={"timestamp": "shadow"}),
}

REQUESTS = {
    "plain": AuthzRequest("envoy-http", "GET", "contoso.servicebus.windows.net", "/orders", {}, request_id="r-1"),
    "query-token": AuthzRequest(
        "envoy-grpc", "POST", "contoso.servicebus.windows.net", "/orders?sb-hc-token=SharedAccessSignature%20sr", {}
    ),
    "sig-in-request-id": AuthzRequest("nginx", "GET", "h", "/x", {}, request_id="sr=1&sig=abc"),
    "jwt-in-path": AuthzRequest("nginx", "GET", "h", "/x/eyJhbGciOi.eyJzdWIiOi.c2ln", {}),
    "non-utf8-host": AuthzRequest("nginx", "GET", "contoso\udcff", "/x", {}),
    "non-ascii-path": AuthzRequest("forward-auth", "GET", "h", "/caf\u00e9", {}),
    "quote-in-request-id": AuthzRequest("envoy-http", "GET", "h", "/x", {}, request_id='r"1'),
    "backslash-in-path": AuthzRequest("envoy-http", "GET", "h", "/x\\y", {}),
    "tab-in-request-id": AuthzRequest("envoy-http", "GET", "h", "/x", {}, request_id="r\t1"),
    "del-in-host": AuthzRequest("nginx", "GET", "h\x7f", "/x", {}),
    "space-in-method": AuthzRequest("nginx", "GET X", "h", "/x y", {}),
    "traceparent": AuthzRequest(
        "envoy-http", "GET", "h", "/x", {"traceparent": ("00-" + "a" * 32 + "-" + "b" * 16 + "-01",)}, request_id="r"
    ),
    "bad-traceparent": AuthzRequest("envoy-http", "GET", "h", "/x", {"traceparent": ("00-xyz-01",)}),
}
DECISION_ID = "01a23af1-a4df-7000-997b-8f521cf221bb"


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_800_000_000_123_456_789)


def _plain_line(request: AuthzRequest, decision: Decision, latency_ms: float) -> bytes:
    lines: list[bytes] = []
    log = AuditLog(lines.append)
    path = audit_module.redact_target(request.target)
    log._line(request, decision, path, latency_ms, DECISION_ID, audit_module._trace(request))
    return lines[0]


@pytest.mark.parametrize("decision_name", DECISIONS)
def test_recurring_decision_lines_equal_the_processor_lines(decision_name: str) -> None:
    """First, second and later lines of one decision object, over varied requests, equal the plain rendering."""
    decision = DECISIONS[decision_name]
    lines: list[bytes] = []
    log = AuditLog(lines.append)
    calls = list(itertools.product(REQUESTS.values(), (0.0, 0.1234, 12.5)))
    for request, latency in calls * 2:
        log.decision(request, decision, latency, DECISION_ID)
    assert lines == [_plain_line(request, decision, latency) for request, latency in calls * 2]
    renderable = decision_name in ("sas-allow", "jwt-allow", "sas-403", "401-no-audit")
    assert (log._parts(decision)[0] is not None) is renderable  # the shortcut was (or was not) taken


def test_decisions_that_differ_in_what_the_line_shows_never_share_parts() -> None:
    """Decisions differing in any one field the line shows, written interleaved, each get their own exact line."""
    base = DECISIONS["sas-allow"]
    variants = [
        base,
        dataclasses.replace(base, dry_run=True),
        dataclasses.replace(base, allowed=False, status=403, reason="insufficient_rights"),
        dataclasses.replace(base, status=401),
        dataclasses.replace(base, reason="other"),
        dataclasses.replace(base, auth="jwt"),
        dataclasses.replace(base, principal="other"),
        dataclasses.replace(base, right=Right.LISTEN),
        dataclasses.replace(base, right=None),
        dataclasses.replace(base, namespace="fabrikam"),
        dataclasses.replace(base, entity="invoices"),
        dataclasses.replace(base, audit=MappingProxyType({"key_name": "orders-send", "key_slot": "secondary"})),
        dataclasses.replace(base, audit=MappingProxyType({"key_slot": "primary", "key_name": "orders-send"})),
        dataclasses.replace(base, audit=MappingProxyType({})),
    ]
    lines: list[bytes] = []
    log = AuditLog(lines.append)
    request = REQUESTS["plain"]
    for decision in variants * 3:
        log.decision(request, decision, 1.0, DECISION_ID)
    assert lines == [_plain_line(request, decision, 1.0) for decision in variants * 3]
    assert len(set(lines[: len(variants)])) == len(variants)
