"""Issue 18: deny floods stay cheap. A credential refused for good (rights, scope, expiry, a bad signature) is
cached as a deny under the same key as an allow, to the token's own expiry and the decision TTL; a refusal that can
heal by itself (the issuer's keys unreachable or missing a kid, a token not valid yet) never is. Every answer from
the cache still writes its audit line and counts in the metrics.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway_authz.core.appkeys import HOLDER
from gateway_authz.core.errors import AuthzError, CannotVerify, InvalidCredential, NotPermitted
from gateway_authz.core.metrics import Metrics
from gateway_authz.core.model import Decision, Right
from gateway_authz.core.resources import ResolvedResource
from gateway_authz.decision.audit import AuditLog
from gateway_authz.decision.service import DecisionService
from gateway_authz.entra.rbac import RbacPolicy
from tests._factories import (
    NOW,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    FakeClock,
    Harness,
    assert_decision,
    forge,
    harness,
    make_request,
    make_settings,
    mint,
)

TOKEN = mint("/orders")


def lookups(h: Harness) -> tuple[float, float]:
    return h.cache_lookups("hit"), h.cache_lookups("miss")


def deny_count(h: Harness, reason: str) -> float:
    value = h.metrics.registry.get_sample_value(
        "gateway_authz_decisions_total",
        {"decision": "deny", "reason": reason, "gateway": "envoy-http", "auth": "sas", "dry_run": "false"},
    )
    return value or 0.0


SETTLED = {
    "bad-signature": (forge(TOKEN), None, 401, "bad_signature"),
    "insufficient-rights": (mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY), None, 403, "insufficient_rights"),
    "token-scope": (mint("/orders2"), None, 403, "token_scope"),
    "expired": (mint("/orders", expiry=NOW - 3600), None, 401, "expired"),
}


@pytest.mark.parametrize(("token", "_x", "status", "reason"), SETTLED.values(), ids=SETTLED.keys())
async def test_a_repeated_settled_deny_is_answered_from_the_cache_with_its_audit_line_and_metrics(
    token: str, _x: Any, status: int, reason: str
) -> None:
    h = harness()
    decisions = [await h.decide(make_request("/orders", sba=token, request_id=f"r{i}")) for i in range(3)]
    for decision in decisions:
        assert_decision(decision, status, reason)
        assert not decision.allowed
    assert decisions[1] is decisions[0] and decisions[2] is decisions[0]  # the very same cached deny
    assert lookups(h) == (2, 1)
    events = h.events()
    assert [e["request_id"] for e in events] == ["r0", "r1", "r2"]
    assert all(e["decision"] == "deny" and e["reason"] == reason for e in events)
    assert deny_count(h, reason) == 3


async def test_a_cached_deny_lasts_no_longer_than_the_tokens_expiry() -> None:
    clock = FakeClock()
    h = harness(make_settings(clock_skew=0, decision_ttl=60), clock=clock)
    listen_only = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY, expiry=NOW + 30)
    await h.decide(make_request("/orders", sba=listen_only))
    clock.advance(29)
    assert_decision(await h.decide(make_request("/orders", sba=listen_only)), 403, "insufficient_rights")
    assert lookups(h) == (1, 1)
    clock.advance(1)
    assert_decision(await h.decide(make_request("/orders", sba=listen_only)), 401, "expired")
    assert lookups(h) == (1, 2)


async def test_a_cached_deny_lasts_no_longer_than_the_decision_ttl() -> None:
    clock = FakeClock()
    h = harness(make_settings(decision_ttl=60), clock=clock)
    forged = forge(TOKEN)
    for step in (0, 59, 1):
        clock.advance(step)
        assert_decision(await h.decide(make_request("/orders", sba=forged)), 401, "bad_signature")
    assert lookups(h) == (1, 2)


async def test_a_deny_is_not_cached_with_the_cache_switched_off() -> None:
    h = harness(make_settings(decision_ttl=0))
    for _ in range(2):
        await h.decide(make_request("/orders", sba=forge(TOKEN)))
    assert lookups(h) == (0, 2)


async def test_a_cached_deny_never_answers_another_token_or_path() -> None:
    h = harness()
    await h.decide(make_request("/orders", sba=forge(TOKEN)))
    assert_decision(await h.decide(make_request("/orders", sba=TOKEN)), 200, "allowed")
    assert_decision(await h.decide(make_request("/orders/x", sba=forge(TOKEN))), 401, "bad_signature")
    assert lookups(h) == (0, 3)


async def test_a_config_change_drops_cached_denies() -> None:
    """``unknown_key_name`` heals when the rule is added: the cache belongs to the configuration and goes with it."""
    h = harness()
    stranger = mint("/orders", "NotYetAdded", ORDERS_LISTEN_KEY)
    assert_decision(await h.decide(make_request("/orders", sba=stranger)), 401, "unknown_key_name")
    assert h.swap_settings(make_settings(fingerprint="fixture-2"))
    await h.decide(make_request("/orders", sba=stranger))
    assert lookups(h) == (0, 2)


async def test_dry_run_pass_from_a_cached_deny_still_strips_the_credential() -> None:
    h = harness(make_settings(dry_run=True))
    forged = forge(TOKEN)
    first = await h.decide(make_request("/orders", sba=forged))
    second = await h.decide(make_request("/orders", sba=forged))
    for decision in (first, second):
        assert decision.allowed and decision.dry_run and decision.auth == "anonymous"
        assert decision.strip_headers == ("servicebusauthorization",)
    assert second.strip_headers == first.strip_headers
    assert lookups(h) == (1, 1)


class _FailingJwt:
    """A JWT authorizer seam that refuses every token with ``error``."""

    def __init__(self, error: AuthzError) -> None:
        self.error = error
        self.calls = 0

    async def authorize(
        self, token: str, rbac: RbacPolicy, resolved: ResolvedResource, rights: tuple[Right, ...], now: float
    ) -> tuple[Decision, float]:
        self.calls += 1
        raise self.error


JWT = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiJ4In0.c2ln"


def jwt_service(error: AuthzError) -> tuple[DecisionService, _FailingJwt]:
    h = harness()
    jwt = _FailingJwt(error)
    service = DecisionService(h.app[HOLDER], audit=AuditLog(lambda _line: None), metrics=Metrics(), jwt=jwt)
    return service, jwt


HEALING = {
    "keys-unreachable": CannotVerify("keys_unavailable"),
    "unknown-kid": InvalidCredential("unknown_kid"),
    "not-yet-valid": InvalidCredential("not_yet_valid"),
    "internal": CannotVerify("internal_error"),
}


@pytest.mark.parametrize("error", HEALING.values(), ids=HEALING.keys())
async def test_a_refusal_that_can_heal_by_itself_is_never_cached(error: AuthzError) -> None:
    service, jwt = jwt_service(error)
    for _ in range(3):
        decision = await service.decide(make_request("/orders", authorization=JWT))
        assert (decision.allowed, decision.status, decision.reason) == (False, error.status, error.reason)
    assert jwt.calls == 3


@pytest.mark.parametrize(
    "error",
    [InvalidCredential("bad_signature"), InvalidCredential("expired"), NotPermitted("no_role_assignment")],
    ids=["bad-signature", "expired", "no-role"],
)
async def test_a_settled_jwt_refusal_is_cached(error: AuthzError) -> None:
    service, jwt = jwt_service(error)
    for _ in range(3):
        decision = await service.decide(make_request("/orders", authorization=JWT))
        assert (decision.allowed, decision.reason) == (False, error.reason)
    assert jwt.calls == 1


PRE_CREDENTIAL = {
    "missing-credential": (make_request("/orders"), 401, "missing_credential"),
    "unknown-host": (make_request("/orders", host="elsewhere.example", sba=TOKEN), 403, "unknown_namespace"),
    "ambiguous-path": (make_request("/orders;x", sba=TOKEN), 400, "ambiguous_path"),
    "invalid-method": (make_request("/orders", method="G,T", sba=TOKEN), 400, "invalid_method"),
}


@pytest.mark.parametrize(("request_", "status", "reason"), PRE_CREDENTIAL.values(), ids=PRE_CREDENTIAL.keys())
async def test_a_request_refused_before_its_credential_is_answered_from_the_request_memo(
    request_: Any, status: int, reason: str
) -> None:
    """No credential, an unknown host, an ambiguous path: a function of the request as received and the config."""
    h = harness()
    decisions = [await h.decide(request_) for _ in range(3)]
    for decision in decisions:
        assert_decision(decision, status, reason)
    assert decisions[2] is decisions[1] is decisions[0]
    assert lookups(h) == (2, 1)
    assert [e["reason"] for e in h.events()] == [reason] * 3


async def test_a_remembered_refusal_never_answers_the_same_path_with_a_credential() -> None:
    h = harness()
    assert_decision(await h.decide(make_request("/orders")), 401, "missing_credential")
    assert_decision(await h.decide(make_request("/orders", sba=TOKEN)), 200, "allowed")
    assert_decision(await h.decide(make_request("/orders")), 401, "missing_credential")
