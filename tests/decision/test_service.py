"""The decision core: ``DecisionService.decide`` never raises, never allows from an error path, fills a deny's
context, applies dry-run as designed, and follows a configuration swap (key rotation) without a restart.

Specifications for :mod:`gateway_authz.decision.service`, driven through ``create_app(settings, audit_sink=list.append,
watch_config=False)`` and ``app[SERVICE]`` with a fake clock, or through ``DecisionService`` directly where a fake
seam (a broken configuration source, a fake JWT authorizer) is the point.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway_authz.core.errors import InvalidCredential
from gateway_authz.core.metrics import Metrics
from gateway_authz.core.model import AuthzRequest, Decision, Right, headers_from_pairs
from gateway_authz.core.resources import ResolvedResource
from gateway_authz.core.settings import AuthorizationRule
from gateway_authz.decision.audit import AuditLog
from gateway_authz.decision.runtime import Runtime
from gateway_authz.decision.service import DecisionService
from gateway_authz.entra.rbac import RbacPolicy
from tests._factories import (
    HOST,
    NOW,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    ROOT,
    ROOT_PRIMARY,
    ROOT_RULE,
    ROOT_SECONDARY,
    FakeClock,
    assert_decision,
    contoso,
    forge,
    harness,
    make_request,
    make_settings,
    mint,
)

TOKEN = mint("/orders")
FORGED = forge(TOKEN)


class BrokenSource:
    """A configuration source whose ``runtime`` raises (a bug, a torn reload): the service must still deny."""

    @property
    def runtime(self) -> Runtime:
        raise RuntimeError("configuration source exploded")


class BrokenPolicyRuntime:
    """A source serving a runtime whose policy raises an unexpected exception mid-decision."""

    def __init__(self) -> None:
        good = Runtime.build(make_settings())

        class _Policy:
            def resolve(self, host: str, path: str) -> ResolvedResource:
                raise KeyError("bug in the policy")

        self.runtime = replace(good, policy=_Policy())  # type: ignore[arg-type]


def direct_service(source: Any, *, jwt: Any = None) -> tuple[DecisionService, list[bytes], list[bytes]]:
    audit: list[bytes] = []
    ops: list[bytes] = []
    from gateway_authz.decision.audit import make_ops_logger

    service = DecisionService(
        source, audit=AuditLog(audit.append), metrics=Metrics(), jwt=jwt, ops_log=make_ops_logger(ops.append)
    )
    return service, audit, ops


# --------------------------------------------------------------------------------------------------------------
# Never raises, never allows from an error path
# --------------------------------------------------------------------------------------------------------------


async def test_decide_never_raises_when_the_configuration_source_fails() -> None:
    """A configuration source that raises ends in a 503 deny with one audit line, not an exception."""
    service, audit, _ops = direct_service(BrokenSource())
    decision = await service.decide(make_request("/orders", sba=TOKEN))
    assert_decision(decision, 503, "internal_error")
    assert len(audit) == 1


async def test_an_unexpected_exception_inside_the_policy_is_a_503_deny() -> None:
    """A bug inside the decision path is a 503 ``internal_error`` deny, audited, and logged on the ops log."""
    service, audit, ops = direct_service(BrokenPolicyRuntime())
    decision = await service.decide(make_request("/orders", sba=TOKEN))
    assert_decision(decision, 503, "internal_error")
    assert len(audit) == 1 and b'"decision":"deny"' in audit[0]
    assert any(b"authz.internal_error" in line for line in ops)
    assert all(TOKEN.encode() not in line for line in audit + ops)


class _FakeJwt:
    """A JWT authorizer seam: allows every token, or raises what it is given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.seen: list[str] = []

    async def authorize(
        self, token: str, rbac: RbacPolicy, resolved: ResolvedResource, rights: tuple[Right, ...], now: float
    ) -> tuple[Decision, float]:
        self.seen.append(token)
        if self.error is not None:
            raise self.error
        allow = Decision.allow(
            auth="jwt", principal="oid-1", right=rights[0], namespace=resolved.namespace.name, entity="orders"
        )
        return allow, NOW + 60


class _Holder:
    def __init__(self, clock: FakeClock | None = None) -> None:
        self.runtime = Runtime.build(make_settings(), clock=clock or FakeClock())


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


async def test_jwt_allow_carries_the_carrier_to_strip() -> None:
    """A JWT allow gets the credential carrier to strip from the service, whatever the authorizer returned."""
    jwt = _FakeJwt()
    service, _audit, _ops = direct_service(_Holder(), jwt=jwt)
    decision = await service.decide(make_request("/orders", authorization=f"Bearer {JWT}"))
    assert_decision(decision, 200, "allowed")
    assert jwt.seen == [JWT]
    assert decision.strip_headers == ("authorization",)


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [(InvalidCredential("expired"), 401, "expired"), (ValueError("boom"), 503, "internal_error")],
)
async def test_jwt_authorizer_failures_are_denies(error: Exception, status: int, reason: str) -> None:
    """Whatever the JWT authorizer raises, expected or not, ends in a deny with its status."""
    service, audit, _ops = direct_service(_Holder(), jwt=_FakeJwt(error))
    assert_decision(await service.decide(make_request("/orders", sba=JWT)), status, reason)
    assert len(audit) == 1


async def test_a_cached_jwt_decision_ends_at_the_expiry_the_authorizer_gave() -> None:
    """The authorizer's expiry (the token's ``exp``) bounds the cached decision: at it, the token is verified again."""
    clock = FakeClock()
    jwt = _FakeJwt()  # its decisions hold until NOW + 60
    service, _audit, _ops = direct_service(_Holder(clock), jwt=jwt)
    request = make_request("/orders", authorization=f"Bearer {JWT}")
    await service.decide(request)
    clock.advance(59.9)
    await service.decide(request)
    assert jwt.seen == [JWT]
    clock.advance(0.1)
    await service.decide(request)
    assert jwt.seen == [JWT, JWT]


# --------------------------------------------------------------------------------------------------------------
# decide_now: the same decision when no waiting is needed, nothing at all when it is
# --------------------------------------------------------------------------------------------------------------


def _counts(service: DecisionService) -> list[bytes]:
    """The service's metrics but the configuration's age, which moves with the wall clock."""
    lines = service._metrics.render().splitlines()
    return [line for line in lines if not line.startswith(b"gateway_authz_config_age_seconds ")]


async def test_decide_now_leaves_an_unverified_jwt_to_decide_and_records_nothing() -> None:
    """An uncached bearer token needs its issuer's keys: ``decide_now`` says None, with no audit line, no count."""
    jwt = _FakeJwt()
    service, audit, _ops = direct_service(_Holder(), jwt=jwt)
    request = make_request("/orders", authorization=f"Bearer {JWT}")
    before = _counts(service)
    assert service.decide_now(request) is None
    assert (audit, jwt.seen, _counts(service)) == ([], [], before)
    assert_decision(await service.decide(request), 200, "allowed")
    assert len(audit) == 1 and jwt.seen == [JWT]


async def test_decide_now_answers_a_verified_jwt_from_the_cache() -> None:
    """Once verified, the same token is decided without waiting, with the same decision and one audit line."""
    jwt = _FakeJwt()
    service, audit, _ops = direct_service(_Holder(), jwt=jwt)
    request = make_request("/orders", authorization=f"Bearer {JWT}")
    first = await service.decide(request)
    assert service.decide_now(request) is first
    assert len(audit) == 2 and jwt.seen == [JWT]


@pytest.mark.parametrize(
    ("sba", "status", "reason"),
    [(TOKEN, 200, "allowed"), (FORGED, 401, "bad_signature"), (None, 401, "missing_credential")],
    ids=["sas-allow", "sas-forged", "no-credential"],
)
async def test_decide_now_decides_sas_and_anonymous_as_decide_does(sba: str | None, status: int, reason: str) -> None:
    """SAS verification never waits: ``decide_now`` gives what ``decide`` gives, and logs it once."""
    now, later = harness(), harness()
    request = make_request("/orders", sba=sba)
    decided_now = now.service.decide_now(request)
    assert decided_now is not None
    assert_decision(decided_now, status, reason)
    assert decided_now == await later.decide(request)
    assert len(now.audit) == len(later.audit) == 1


async def test_decide_now_never_raises_when_the_configuration_source_fails() -> None:
    """The synchronous path fails closed like ``decide``: a 503 deny, audited."""
    service, audit, _ops = direct_service(BrokenSource())
    decision = service.decide_now(make_request("/orders", sba=TOKEN))
    assert decision is not None
    assert_decision(decision, 503, "internal_error")
    assert len(audit) == 1


@pytest.mark.parametrize(
    "request_",
    [
        AuthzRequest("nginx", "", HOST, "/$admin", headers_from_pairs([("ServiceBusAuthorization", mint("/"))])),
        AuthzRequest("nginx", "POST", HOST, "", headers_from_pairs([("ServiceBusAuthorization", mint("/"))])),
        AuthzRequest("nginx", "POST", "", "/orders", headers_from_pairs([("ServiceBusAuthorization", mint("/"))])),
    ],
    ids=["no-method", "no-target", "no-host"],
)
async def test_a_request_missing_method_target_or_host_is_403_malformed(request_: AuthzRequest) -> None:
    """An adapter that could not read the method, target or host must get a deny, never a decision on a guess."""
    assert_decision(await harness().decide(request_), 403, "malformed_request")


# --------------------------------------------------------------------------------------------------------------
# What a decision says
# --------------------------------------------------------------------------------------------------------------


async def test_allow_names_principal_right_namespace_and_entity() -> None:
    """A SAS allow names the key, the right, the namespace and entity (its expiry is the cache's: test_cache)."""
    decision = await harness().decide(make_request("/orders/x", sba=TOKEN))
    assert_decision(decision, 200, "allowed")
    assert (decision.auth, decision.principal, decision.right) == ("sas", ROOT, Right.SEND)
    assert (decision.namespace, decision.entity) == ("contoso", "orders")
    assert dict(decision.audit) == {"key_name": ROOT, "key_slot": "primary"}


async def test_fresh_tokens_of_one_rule_share_one_allow_and_each_is_audited_and_counted() -> None:
    """Tokens that differ only in ``se`` are allowed by one decision object; each still has its line and count."""
    h = harness()
    first = await h.decide(make_request("/orders/x", sba=mint("/orders", ttl=600), request_id="a"))
    second = await h.decide(make_request("/orders/x", sba=mint("/orders", ttl=900), request_id="b"))
    assert_decision(first, 200, "allowed")
    assert second is first
    assert [event["request_id"] for event in h.events()] == ["a", "b"]
    slot_uses = h.metrics.registry.get_sample_value(
        "gateway_authz_sas_key_slot_total", {"namespace": "contoso", "key_name": ROOT, "slot": "primary"}
    )
    assert slot_uses == 2


# Requests each allowed by a token of its own, and what its allow must say: principal, right, entity, headers and
# query parameters to strip, key slot. No two may share a decision: each differs from the first in one of those.
_SBA, _QUERY = ("servicebusauthorization",), ("sb-hc-token",)
_ALLOWED_DIFFERENTLY = {
    "primary key": (make_request("/orders/x", sba=TOKEN), (ROOT, Right.SEND, "orders", _SBA, (), "primary")),
    "secondary key": (
        make_request("/orders/x", sba=mint("/orders", key=ROOT_SECONDARY)),
        (ROOT, Right.SEND, "orders", _SBA, (), "secondary"),
    ),
    "another rule": (
        make_request("/orders/x", sba=mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY), action="listen"),
        (ORDERS_LISTEN, Right.LISTEN, "orders", _SBA, (), "primary"),
    ),
    "another right": (
        make_request("/orders/x", sba=TOKEN, action="listen"),
        (ROOT, Right.LISTEN, "orders", _SBA, (), "primary"),
    ),
    "another entity": (make_request("/orders2", sba=mint("/")), (ROOT, Right.SEND, "orders2", _SBA, (), "primary")),
    "Authorization": (
        make_request("/orders/x", authorization=TOKEN),
        (ROOT, Right.SEND, "orders", ("authorization",), (), "primary"),
    ),
    "query": (make_request("/orders/x", query_token=TOKEN), (ROOT, Right.SEND, "orders", (), _QUERY, "primary")),
    "query and header": (
        make_request("/orders/x", sba=TOKEN, query_token=TOKEN),
        (ROOT, Right.SEND, "orders", _SBA, _QUERY, "primary"),
    ),
}


async def test_an_allow_is_shared_only_by_tokens_allowed_alike() -> None:
    """A shared allow never carries another token's key name, key slot, right, entity or carriers to strip."""
    h = harness()
    seen: dict[int, str] = {}
    for name, (request, (principal, right, entity, headers, query, slot)) in _ALLOWED_DIFFERENTLY.items():
        decision = await h.decide(request)
        assert_decision(decision, 200, "allowed")
        assert (decision.principal, decision.right, decision.entity) == (principal, right, entity), name
        assert (decision.strip_headers, decision.strip_query) == (headers, query), name
        assert dict(decision.audit) == {"key_name": principal, "key_slot": slot}, name
        assert seen.setdefault(id(decision), name) == name, f"{name} shares the allow of {seen[id(decision)]}"


async def test_deny_keeps_what_was_known_namespace_entity_right_principal() -> None:
    """A 403 still says which namespace, entity, right and key name it was about (for the audit)."""
    token = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
    decision = await harness().decide(make_request("/orders", sba=token, action="connect"))
    assert_decision(decision, 403, "insufficient_rights")
    assert (decision.namespace, decision.entity, decision.right) == ("contoso", "orders", Right.SEND)
    assert (decision.auth, decision.principal) == ("sas", ORDERS_LISTEN)


async def test_unknown_namespace_host_is_403() -> None:
    """A Host that no namespace serves is a 403 ``unknown_namespace``, whatever the credential."""
    decision = await harness().decide(make_request("/orders", host="other.example", sba=TOKEN))
    assert_decision(decision, 403, "unknown_namespace")


# --------------------------------------------------------------------------------------------------------------
# Dry-run
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "context"),
    [
        (make_settings(dry_run=True), {}),
        (make_settings(namespaces=(contoso(dry_run=True),)), {}),
        (make_settings(), {"dry_run": "true"}),
    ],
    ids=["global", "namespace", "route"],
)
async def test_dry_run_answers_a_deny_with_200_vouching_for_nobody(settings: Any, context: dict[str, str]) -> None:
    """Dry-run: a would-be deny is answered 200 as anonymous (no principal), audited as a deny with its status."""
    h = harness(settings)
    forged = mint("/orders", ROOT, "x" * 44)
    decision = await h.decide(make_request("/orders", sba=forged, context=context))
    assert decision.allowed and decision.status == 200 and decision.dry_run
    assert (decision.auth, decision.principal) == ("anonymous", "")
    assert decision.reason == "bad_signature"
    assert decision.strip_headers == ("servicebusauthorization",)
    (event,) = h.events()
    assert (event["decision"], event["status"], event["reason"], event["dry_run"]) == (
        "deny",
        401,
        "bad_signature",
        True,
    )


async def test_dry_run_does_not_touch_an_allow() -> None:
    """Dry-run changes nothing about an allow."""
    decision = await harness(make_settings(dry_run=True)).decide(make_request("/orders", sba=TOKEN))
    assert_decision(decision, 200, "allowed")
    assert not decision.dry_run and decision.principal == ROOT


async def test_dry_run_of_another_namespace_does_not_apply() -> None:
    """A namespace's dry-run flag applies to its own requests only."""
    quiet = contoso(dry_run=False)
    loud = replace(contoso(dry_run=True), name="other", hosts=("other.servicebus.windows.net",))
    h = harness(make_settings(namespaces=(quiet, loud)))
    assert_decision(await h.decide(make_request("/orders")), 401, "missing_credential")


# --------------------------------------------------------------------------------------------------------------
# Configuration swaps: key rotation without a restart
# --------------------------------------------------------------------------------------------------------------


def _with_root(rule: AuthorizationRule, fingerprint: str) -> Any:
    return make_settings(namespaces=(contoso(rules=(rule,)),), fingerprint=fingerprint)


async def test_key_rotation_takes_effect_on_reload_without_restart() -> None:
    """After the config swaps keys (old secondary promoted, old primary retired), old-primary tokens fail at once."""
    h = harness(_with_root(ROOT_RULE, "v1"))
    old_primary = mint("/orders", key=ROOT_PRIMARY)
    old_secondary = mint("/orders", key=ROOT_SECONDARY)
    assert_decision(await h.decide(make_request("/orders", sba=old_primary)), 200, "allowed")
    assert_decision(await h.decide(make_request("/orders", sba=old_secondary)), 200, "allowed")

    rotated = AuthorizationRule(ROOT, ROOT_SECONDARY, "n" * 44, ROOT_RULE.rights)
    assert h.swap_settings(_with_root(rotated, "v2")) is True
    assert_decision(await h.decide(make_request("/orders", sba=old_primary)), 401, "bad_signature")
    decision = await h.decide(make_request("/orders", sba=old_secondary))
    assert_decision(decision, 200, "allowed")
    assert decision.audit["key_slot"] == "primary"


async def test_a_reload_with_the_same_fingerprint_keeps_the_runtime() -> None:
    """An unchanged configuration (same fingerprint) is not rebuilt, so its cache survives."""
    h = harness()
    assert h.swap_settings(make_settings()) is False
