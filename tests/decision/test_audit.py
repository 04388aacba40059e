"""The audit log: exactly one JSON line per decision with the contract's fields, and no secret in any line.

Specifications for :mod:`gateway_authz.decision.audit` through ``DecisionService.decide`` (every allow and deny path the
SAS decision has), with the audit sink a list. "No secret" means: no configured key, no whole token, no signature
in any spelling (as sent, decoded, re-encoded, or its longest alphanumeric run), wherever the token travelled.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from urllib.parse import quote, quote_plus

import pytest

from gateway_authz.core.model import AuthzRequest, Decision
from gateway_authz.decision.audit import AuditLog, redact_target
from tests._factories import (
    ALL_KEYS,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    ORDERS_SEND,
    ORDERS_SEND_KEY,
    ROOT,
    ROOT_SECONDARY,
    SEND_ONLY,
    SEND_ONLY_KEY,
    Harness,
    harness,
    make_request,
    mint,
    replace_field,
    secret_forms,
)

CONTRACT_FIELDS = {
    "timestamp",
    "event",
    "decision",
    "status",
    "reason",
    "auth",
    "principal",
    "right",
    "namespace",
    "entity",
    "method",
    "host",
    "path",
    "gateway",
    "request_id",
    "latency_ms",
}

TOKEN = mint("/orders")
FORGED = mint("/orders", ROOT, "f" * 44)
EXPIRED = mint("/orders", ttl=-1000)
LISTEN_TOKEN = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
SEND_ONLY_TOKEN = mint("/orders", SEND_ONLY, SEND_ONLY_KEY)
SIBLING = mint("/orders2", ORDERS_SEND, ORDERS_SEND_KEY)
OTHER_SCOPE = mint("/orders2")


def q(token: str) -> str:
    return quote(token, safe="")


# Every SAS decision path, with the token(s) whose secrets must not leak.
SCENARIOS: dict[str, tuple[AuthzRequest, tuple[str, ...], str]] = {
    "allow-sba": (make_request("/orders", sba=TOKEN), (TOKEN,), "allowed"),
    "allow-authorization": (make_request("/orders", authorization=TOKEN), (TOKEN,), "allowed"),
    "allow-query": (make_request("/orders", query_token=TOKEN), (TOKEN,), "allowed"),
    "allow-query-form-encoded": (make_request(f"/orders?sb-hc-token={quote_plus(TOKEN)}"), (TOKEN,), "allowed"),
    "allow-secondary": (make_request("/orders", sba=mint("/orders", key=ROOT_SECONDARY)), (), "allowed"),
    "deny-bad-signature": (make_request("/orders", sba=FORGED), (FORGED,), "bad_signature"),
    "deny-bad-signature-query": (make_request("/orders", query_token=FORGED), (FORGED,), "bad_signature"),
    "deny-expired": (make_request("/orders", sba=EXPIRED), (EXPIRED,), "expired"),
    "deny-token-scope": (make_request("/orders", sba=OTHER_SCOPE), (OTHER_SCOPE,), "token_scope"),
    "deny-rule-scope": (make_request("/orders2", sba=SIBLING), (SIBLING,), "rule_scope"),
    "deny-rights": (make_request("/orders", sba=LISTEN_TOKEN), (LISTEN_TOKEN,), "insufficient_rights"),
    "deny-rights-query": (
        make_request("/orders", query_token=LISTEN_TOKEN, action="connect"),
        (LISTEN_TOKEN,),
        "insufficient_rights",
    ),
    "deny-malformed": (
        make_request("/orders", sba=TOKEN + "&foo=bar"),
        (TOKEN,),
        "malformed_token",
    ),
    "deny-unknown-key": (
        make_request("/orders", sba=replace_field(TOKEN, "skn", "Nobody")),
        (TOKEN,),
        "unknown_key_name",
    ),
    "deny-duplicate-query": (
        make_request(f"/orders?sb-hc-token={q(TOKEN)}&sb-hc-token={q(TOKEN)}"),
        (TOKEN,),
        "duplicate_credential",
    ),
    "deny-duplicate-header": (
        make_request("/orders", headers=[("Authorization", TOKEN), ("Authorization", FORGED)]),
        (TOKEN, FORGED),
        "duplicate_credential",
    ),
    "deny-conflicting": (
        make_request("/orders", query_token=TOKEN, sba=SEND_ONLY_TOKEN),
        (TOKEN, SEND_ONLY_TOKEN),
        "conflicting_credentials",
    ),
    "deny-query-name-uppercase": (
        make_request(f"/orders?SB-HC-TOKEN={q(TOKEN)}"),
        (TOKEN,),
        "ambiguous_credential",
    ),
    "deny-query-name-percent-encoded": (
        make_request(f"/orders?sb%2Dhc%2Dtoken={q(TOKEN)}"),
        (TOKEN,),
        "ambiguous_credential",
    ),
    "deny-token-in-look-alike-param": (
        make_request(f"/orders?sb_hc_token={q(TOKEN)}"),
        (TOKEN,),
        "missing_credential",
    ),
    "deny-token-in-other-param-form-encoded": (
        make_request(f"/orders?next=1&token={quote_plus(TOKEN)}"),
        (TOKEN,),
        "missing_credential",
    ),
    "deny-token-in-param-without-value": (
        make_request(f"/orders?{q(TOKEN)}"),
        (TOKEN,),
        "missing_credential",
    ),
    "deny-malformed-request-with-query-token": (
        make_request(f"/orders/../x?sb-hc-token={q(TOKEN)}"),
        (TOKEN,),
        "malformed_request",
    ),
    "deny-unknown-namespace-with-query-token": (
        make_request("/orders", host="other.example", query_token=TOKEN),
        (TOKEN,),
        "unknown_namespace",
    ),
    "deny-rights-send-only-listen": (
        make_request("/$hc/orders", query_token=SEND_ONLY_TOKEN, action="listen"),
        (SEND_ONLY_TOKEN,),
        "insufficient_rights",
    ),
}


async def _run(name: str) -> tuple[Harness, Decision]:
    request, _tokens, _reason = SCENARIOS[name]
    h = harness()
    return h, await h.decide(request)


@pytest.mark.parametrize("name", SCENARIOS)
async def test_exactly_one_audit_line_per_decision_with_the_contract_fields(name: str) -> None:
    """Each decision writes exactly one JSON line holding every field of the contract (§4)."""
    h, decision = await _run(name)
    assert decision.reason == SCENARIOS[name][2]
    (event,) = h.events()
    assert event.keys() >= CONTRACT_FIELDS, CONTRACT_FIELDS - event.keys()
    assert event["event"] == "authz.decision"
    assert event["decision"] == ("allow" if decision.allowed else "deny")
    assert (event["status"], event["reason"]) == (decision.status, decision.reason)
    assert event["gateway"] == "envoy-http" and event["method"] == "POST"
    assert isinstance(event["latency_ms"], float) and event["latency_ms"] >= 0
    assert datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).utcoffset() is not None
    if decision.allowed:
        assert (event["auth"], event["principal"], event["right"]) == ("sas", ROOT, "Send")
        assert (event["namespace"], event["entity"]) == ("contoso", "orders")
        assert event["key_name"] == ROOT and event["key_slot"] in ("primary", "secondary")


@pytest.mark.parametrize("name", SCENARIOS)
async def test_no_key_signature_or_token_in_any_audit_line(name: str) -> None:
    """No configured key, whole token or signature (any spelling) appears in the audit or ops log, allow or deny."""
    h, _decision = await _run(name)
    _request, tokens, _reason = SCENARIOS[name]
    text = b"".join(h.audit + h.ops).decode()
    for secret in ALL_KEYS:
        assert secret not in text
    for token in tokens:
        for form in secret_forms(token):
            assert form not in text, f"{form[:24]}… leaked into {text}"


async def test_sas_deny_names_the_key_but_no_slot() -> None:
    """A SAS deny after parsing names key_name (skn as sent, decoded) but never claims a key slot."""
    h, _ = await _run("deny-bad-signature")
    (event,) = h.events()
    assert event["key_name"] == ROOT and "key_slot" not in event
    assert (event["auth"], event["principal"]) == ("sas", ROOT)


async def test_deny_line_keeps_namespace_entity_and_right() -> None:
    """A 403 line still says namespace, entity and the right that was missing."""
    h, _ = await _run("deny-rights-send-only-listen")
    (event,) = h.events()
    assert (event["namespace"], event["entity"], event["right"]) == ("contoso", "orders", "Listen")


async def test_request_id_and_path_are_logged_with_the_token_removed() -> None:
    """The request id is logged as received; the path keeps everything but the sb-hc-token value."""
    h = harness()
    await h.decide(make_request("/orders/x?a=1", query_token=TOKEN, action="connect", request_id="req-42"))
    (event,) = h.events()
    assert event["request_id"] == "req-42"
    assert event["path"] == "/orders/x?a=1&sb-hc-action=connect&sb-hc-token=[removed]"


async def test_anonymous_allow_line() -> None:
    """An anonymous allow is logged with auth anonymous, an empty principal and no key fields."""
    h = harness()
    await h.decide(make_request("/public"))
    (event,) = h.events()
    assert (event["decision"], event["auth"], event["principal"], event["entity"]) == (
        "allow",
        "anonymous",
        "",
        "public",
    )
    assert "key_name" not in event and "key_slot" not in event


async def test_one_line_per_decision_over_a_sequence_including_cache_hits() -> None:
    """N decisions, cache hits included, write exactly N lines."""
    h = harness()
    requests = [make_request("/orders", sba=TOKEN)] * 3 + [make_request("/orders", sba=FORGED)] * 2
    for request in requests:
        await h.decide(request)
    assert len(h.events()) == len(requests)
    assert h.cache_lookups("hit") == 2  # the repeated allow; 401s are never cached


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/orders", "/orders"),
        ("/orders?a=1&b", "/orders?a=1&b"),
        ("/orders?sb-hc-token=abc&x=1", "/orders?sb-hc-token=[removed]&x=1"),
        ("/orders?x=1&SB-HC-Token=abc", "/orders?x=1&SB-HC-Token=[removed]"),
        ("/orders?sb%2Dhc%2Dtoken=abc", "/orders?sb%2Dhc%2Dtoken=[removed]"),
        (f"/orders?next={q(TOKEN)}", "/orders?next=[removed]"),
        ("/orders?design=1&signal=2", "/orders?design=1&signal=2"),
    ],
)
def test_redact_target(target: str, logged: str) -> None:
    """redact_target removes sb-hc-token's value (any spelling) and any query value that carries a credential."""
    assert redact_target(target) == logged


def test_audit_line_is_one_json_object_per_line() -> None:
    """The renderer writes compact JSON terminated by exactly one newline, even for values holding newlines."""
    lines: list[bytes] = []
    request = make_request("/orders", request_id="a\nb")
    AuditLog(lines.append).decision(request, Decision(False, 401, "missing_credential"), 1.5)
    (line,) = lines
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["request_id"] == "a\nb"


class _FakeStdout:
    """``sys.stdout`` with a ``buffer`` that records each write (one entry per system call the sink would make)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffer = self

    def write(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)

    def flush(self) -> None:
        pass


async def test_stdout_lines_are_batched_and_written_within_the_flush_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines made close together go out in one write, no later than the flush delay after the first."""
    import asyncio

    from gateway_authz.decision import audit as audit_module

    out = _FakeStdout()
    monkeypatch.setattr(sys, "stdout", out)
    sink = audit_module._StdoutSink()
    for n in range(5):
        sink(b"line %d\n" % n)
    assert out.writes == []  # not yet: waiting for more
    await asyncio.sleep(audit_module._FLUSH_DELAY * 3)
    assert out.writes == [b"line 0\nline 1\nline 2\nline 3\nline 4\n"]
    sink(b"x" * audit_module._FLUSH_BYTES)  # a full buffer goes out at once
    assert out.writes[-1] == b"x" * audit_module._FLUSH_BYTES


def test_stdout_sink_writes_at_once_without_a_loop_and_keeps_working_on_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Outside a loop a line is written immediately; a timer left on a closed loop does not stall later lines."""
    import asyncio

    from gateway_authz.decision import audit as audit_module

    out = _FakeStdout()
    monkeypatch.setattr(sys, "stdout", out)
    sink = audit_module._StdoutSink()
    sink(b"no loop\n")
    assert out.writes == [b"no loop\n"]

    async def line_then_leave(text: bytes) -> None:
        sink(text)  # the loop ends before the timer fires

    asyncio.run(line_then_leave(b"first loop\n"))

    async def line_and_wait(text: bytes) -> None:
        sink(text)
        await asyncio.sleep(audit_module._FLUSH_DELAY * 3)

    asyncio.run(line_and_wait(b"second loop\n"))
    assert b"".join(out.writes) == b"no loop\nfirst loop\nsecond loop\n"
