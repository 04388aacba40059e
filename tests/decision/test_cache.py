"""The decision cache: hits for repeated decisions, never past the token's ``se``, keyed by everything a decision
depends on (so one caller never gets another's allow), bounded, and dropped when the configuration changes.

Specifications for :mod:`gateway_authz.decision.cache` and its use in the service. Time is a fake clock passed to
``create_app(clock=...)``; hits and misses are read from the app's metrics (``gateway_authz_decision_cache``).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import quote

import pytest

from gateway_authz.core.appkeys import HOLDER
from gateway_authz.core.errors import NotPermitted
from gateway_authz.core.model import AuthzRequest, Decision, Right
from gateway_authz.core.settings import AuthorizationRule
from gateway_authz.decision.cache import DecisionCache
from tests._factories import (
    HOST,
    NOW,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    OTHER_HOST,
    ROOT,
    ROOT_PRIMARY,
    ROOT_RULE,
    SEND_ONLY,
    SEND_ONLY_KEY,
    FakeClock,
    Harness,
    assert_decision,
    contoso,
    fabrikam,
    fields,
    forge,
    harness,
    make_request,
    make_settings,
    mint,
    replace_field,
    uri,
)

TOKEN = mint("/orders")


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def lookups(h: Harness) -> tuple[float, float]:
    return h.cache_lookups("hit"), h.cache_lookups("miss")


async def twice(h: Harness, first: AuthzRequest, second: AuthzRequest) -> tuple[Decision, Decision]:
    return await h.decide(first), await h.decide(second)


# --------------------------------------------------------------------------------------------------------------
# Hits and expiry
# --------------------------------------------------------------------------------------------------------------


async def test_second_identical_request_is_a_cache_hit() -> None:
    """A repeated request with the same token is answered from the cache, with the same allow."""
    h = harness()
    first, second = await twice(h, make_request("/orders", sba=TOKEN), make_request("/orders", sba=TOKEN))
    assert_decision(first, 200, "allowed")
    assert second == first
    assert lookups(h) == (1, 1)
    assert len(h.app[HOLDER].runtime.cache) == 1


async def test_cached_allow_never_outlives_the_tokens_se() -> None:
    """An allow cached for a token expiring in 30 s (decision TTL 60 s) is gone at se; re-verification refuses."""
    clock = FakeClock()
    h = harness(make_settings(clock_skew=0, decision_ttl=60), clock=clock)
    token = mint("/orders", expiry=NOW + 30)
    assert_decision(await h.decide(make_request("/orders", sba=token)), 200, "allowed")
    clock.advance(29)
    assert_decision(await h.decide(make_request("/orders", sba=token)), 200, "allowed")
    assert lookups(h) == (1, 1)
    clock.advance(1)  # now == se
    assert_decision(await h.decide(make_request("/orders", sba=token)), 401, "expired")
    assert lookups(h) == (1, 2)


async def test_cache_entry_expiry_is_capped_at_se_even_within_clock_skew() -> None:
    """With clock skew the token is still valid after se, but the cached copy is not reused: it is re-verified."""
    clock = FakeClock()
    h = harness(make_settings(clock_skew=300, decision_ttl=60), clock=clock)
    token = mint("/orders", expiry=NOW + 30)
    await h.decide(make_request("/orders", sba=token))
    clock.advance(31)
    assert_decision(await h.decide(make_request("/orders", sba=token)), 200, "allowed")
    assert lookups(h) == (0, 2)


async def test_cache_entry_lives_at_most_decision_ttl() -> None:
    """A long-lived token's cached allow is re-verified after ``decisionTtlSeconds``."""
    clock = FakeClock()
    h = harness(make_settings(decision_ttl=60), clock=clock)
    for step in (0, 59, 1):
        clock.advance(step)
        await h.decide(make_request("/orders", sba=TOKEN))
    assert lookups(h) == (1, 2)


async def test_zero_decision_ttl_disables_the_cache() -> None:
    """``decisionTtlSeconds: 0`` turns the cache off: every request is verified."""
    h = harness(make_settings(decision_ttl=0))
    for _ in range(3):
        assert_decision(await h.decide(make_request("/orders", sba=TOKEN)), 200, "allowed")
    assert lookups(h) == (0, 3)


async def test_a_forged_tokens_401_is_cached_as_a_deny() -> None:
    """Issue 18: a forged token's 401 is settled for this configuration: the retry is answered from the cache (see
    ``tests/decision/test_negative_cache.py``)."""
    forged = forge(TOKEN)
    h = harness()
    for _ in range(2):
        assert_decision(await h.decide(make_request("/orders", sba=forged)), 401, "bad_signature")
    assert lookups(h) == (1, 1)


async def test_403_of_a_verified_token_is_cached_until_its_se() -> None:
    """A verified token's 403 is as stable as an allow: cached, and never past se."""
    clock = FakeClock()
    h = harness(make_settings(clock_skew=0), clock=clock)
    token = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY, expiry=NOW + 10)
    assert_decision(await h.decide(make_request("/orders", sba=token)), 403, "insufficient_rights")
    assert_decision(await h.decide(make_request("/orders", sba=token)), 403, "insufficient_rights")
    assert lookups(h) == (1, 1)
    clock.advance(10)
    assert_decision(await h.decide(make_request("/orders", sba=token)), 401, "expired")


# --------------------------------------------------------------------------------------------------------------
# Keys: everything the decision depends on
# --------------------------------------------------------------------------------------------------------------

DIFFERENT = {
    "carrier-sba-vs-authorization": (make_request("/orders", sba=TOKEN), make_request("/orders", authorization=TOKEN)),
    "carrier-sba-vs-query": (make_request("/orders", sba=TOKEN), make_request("/orders", query_token=TOKEN)),
    "carrier-query-vs-query-and-sba": (
        make_request("/orders", query_token=TOKEN),
        make_request("/orders", query_token=TOKEN, sba=TOKEN),
    ),
    "path": (make_request("/orders/a", sba=TOKEN), make_request("/orders/b", sba=TOKEN)),
    "right-listen-vs-send": (
        make_request("/$hc/orders", sba=TOKEN, action="listen"),
        make_request("/$hc/orders", sba=TOKEN, action="connect"),
    ),
    "right-manage-vs-send": (
        make_request("/$admin", method="PUT", sba=mint("/")),
        make_request("/$admin", method="GET", sba=mint("/")),
    ),
    "route-right": (
        make_request("/orders", sba=TOKEN, context={"right": "Manage"}),
        make_request("/orders", sba=TOKEN),
    ),
    "token-sig-escape-case": (
        make_request("/orders", sba=TOKEN),
        make_request("/orders", sba=replace_field(TOKEN, "sig", _lower_escapes(dict(fields(TOKEN))["sig"]))),
    ),
}


@pytest.mark.parametrize(("first", "second"), DIFFERENT.values(), ids=DIFFERENT.keys())
async def test_different_carriers_paths_and_rights_are_different_keys(
    first: AuthzRequest, second: AuthzRequest
) -> None:
    """A request differing in carrier, canonical path or required right is never answered from another's entry."""
    h = harness()
    a, b = await twice(h, first, second)
    assert a.allowed and b.allowed, (a, b)
    assert lookups(h) == (0, 2)


async def test_same_canonical_request_shares_an_entry() -> None:
    """``/$hc/orders/`` and ``/orders`` are one canonical resource needing one right: one entry."""
    h = harness()
    await twice(h, make_request("/$hc/orders/", sba=TOKEN, action="connect"), make_request("/orders", sba=TOKEN))
    assert lookups(h) == (1, 1)


USER_B = {
    "forged-signature": (replace_field(TOKEN, "sig", quote(base64.b64encode(b"\x01" * 32))), 401, "bad_signature"),
    "other-rule-same-scope": (mint("/orders", SEND_ONLY, SEND_ONLY_KEY), 200, "allowed"),
    "listen-only-rule": (mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY), 403, "insufficient_rights"),
    "same-fields-other-key": (mint("/orders", ROOT, "z" * 44, expiry=NOW + 3600), 401, "bad_signature"),
    "expired-copy": (mint("/orders", expiry=NOW - 301), 401, "expired"),
}


@pytest.mark.parametrize(("token_b", "status", "reason"), USER_B.values(), ids=USER_B.keys())
async def test_user_b_never_gets_user_as_allow(token_b: str, status: int, reason: str) -> None:
    """After A's token is allowed and cached, B's different token on the same request is decided on its own."""
    h = harness()
    assert_decision(await h.decide(make_request("/orders", sba=TOKEN)), 200, "allowed")
    decision_b = await h.decide(make_request("/orders", sba=token_b))
    assert_decision(decision_b, status, reason)
    assert h.cache_lookups("hit") == 0
    if decision_b.allowed:
        assert decision_b.principal == SEND_ONLY


async def test_a_cached_allow_does_not_cross_namespaces() -> None:
    """The canonical resource in the key includes the host: a contoso allow is not reused on fabrikam."""
    h = harness()
    namespace_token = mint(uri("/orders", host=OTHER_HOST))  # signed with contoso's root key
    assert_decision(await h.decide(make_request("/orders", sba=namespace_token)), 403, "token_scope")
    decision = await h.decide(make_request("/orders", host=OTHER_HOST, sba=namespace_token))
    assert_decision(decision, 401, "bad_signature")
    assert h.cache_lookups("hit") == 0


# --------------------------------------------------------------------------------------------------------------
# Bounds and configuration changes
# --------------------------------------------------------------------------------------------------------------


async def test_cache_is_bounded_by_decision_max_entries() -> None:
    """The cache never holds more than ``decisionMaxEntries`` decisions."""
    h = harness(make_settings(decision_max_entries=3))
    for i in range(10):
        await h.decide(make_request(f"/orders/{i}", sba=TOKEN))
    assert len(h.app[HOLDER].runtime.cache) == 3


async def test_config_change_drops_the_cache_and_a_retired_key_fails_at_once() -> None:
    """A new configuration starts with an empty cache: a cached allow for a now-retired key is not reused."""
    h = harness(make_settings(namespaces=(contoso(rules=(ROOT_RULE,)),), fingerprint="v1"))
    for _ in range(2):
        assert_decision(await h.decide(make_request("/orders", sba=TOKEN)), 200, "allowed")
    assert lookups(h) == (1, 1)
    regenerated = AuthorizationRule(ROOT, "r" * 44, None, ROOT_RULE.rights)
    assert h.swap_settings(make_settings(namespaces=(contoso(rules=(regenerated,)),), fingerprint="v2"))
    assert len(h.app[HOLDER].runtime.cache) == 0
    assert_decision(await h.decide(make_request("/orders", sba=TOKEN)), 401, "bad_signature")
    assert lookups(h) == (1, 2)


# --------------------------------------------------------------------------------------------------------------
# DecisionCache directly
# --------------------------------------------------------------------------------------------------------------


ALLOW = Decision.allow(auth="sas", principal=ROOT, right=Right.SEND, namespace="contoso", entity="")


def test_key_is_a_digest_never_the_token() -> None:
    """Keys are 32-byte SHA-256 digests of the parts: the cache never holds a token."""
    key = DecisionCache.key(TOKEN, "servicebusauthorization", f"{HOST}/orders", "Send")
    assert isinstance(key, bytes) and len(key) == 32
    assert TOKEN.encode() not in key and ROOT_PRIMARY.encode() not in key
    assert key == DecisionCache.key(TOKEN, "servicebusauthorization", f"{HOST}/orders", "Send")
    assert key != DecisionCache.key(TOKEN, "servicebusauthorization", f"{HOST}/orders", "Listen")
    assert DecisionCache.key("a", "bc") != DecisionCache.key("ab", "c")  # parts are separated


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a", "b"), ("a\0b",)),  # a NUL inside a part is not a separator
        (("a\0", "b"), ("a", "\0b")),
        (("a", ""), ("a",)),  # the number of parts counts
        (("",), ()),
        (("a", "b", "c"), ("a", "b\0c")),
        (("\0",), ("", "")),
    ],
)
def test_key_never_confuses_different_tuples(left: tuple[str, ...], right: tuple[str, ...]) -> None:
    """The NUL-joined encoding and the length-prefixed one (for parts holding NUL) never collide."""
    assert DecisionCache.key(*left) != DecisionCache.key(*right)


def test_entry_expires_at_the_earlier_of_ttl_and_its_expiry() -> None:
    """An entry lives until min(now + ttl, expires_at); timer() >= expiry means gone."""
    clock = FakeClock()
    cache = DecisionCache(maxsize=10, ttl=60, clock=clock)
    cache.put(b"short", ALLOW, NOW + 10)
    cache.put(b"long", ALLOW)
    clock.advance(9.999)
    assert cache.get(b"short") is not None
    clock.advance(0.001)
    assert cache.get(b"short") is None and cache.get(b"long") is not None
    clock.advance(50)
    assert cache.get(b"long") is None


def test_the_least_recently_used_entry_goes_first_and_a_lookup_makes_it_recent() -> None:
    """A full cache evicts the entry used longest ago; a hit counts as a use."""
    cache = DecisionCache(maxsize=2, ttl=60, clock=FakeClock())
    cache.put(b"a", ALLOW)
    cache.put(b"b", ALLOW)
    assert cache.get(b"a") is ALLOW
    cache.put(b"c", ALLOW)
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c")) == (ALLOW, None, ALLOW)
    assert len(cache) == 2


def test_storing_a_key_again_replaces_its_entry_and_makes_it_recent() -> None:
    """A second put of one key takes its new decision and expiry, and moves it to the recent end."""
    clock = FakeClock()
    cache = DecisionCache(maxsize=2, ttl=60, clock=clock)
    deny = Decision.deny(NotPermitted("insufficient_rights"))
    cache.put(b"a", ALLOW, NOW + 5)
    cache.put(b"b", ALLOW)
    cache.put(b"a", ALLOW, NOW + 10)
    cache.put(b"c", ALLOW)  # evicts b, used longer ago than a
    assert (cache.get(b"a"), cache.get(b"b"), len(cache)) == (ALLOW, None, 2)
    cache.put(b"a", deny, NOW + 10)  # the same key as a deny: one entry, now the deny
    assert (cache.get(b"a"), len(cache)) == (deny, 2)
    clock.advance(9)
    assert cache.get(b"a") is deny
    clock.advance(1)
    assert cache.get(b"a") is None
    cache.put(b"b", ALLOW)  # room again: the evicted and the expired entries left nothing behind
    assert (cache.get(b"b"), cache.get(b"c"), len(cache)) == (ALLOW, ALLOW, 2)


def test_a_flood_of_denies_never_evicts_the_allows() -> None:
    """Issue 18: anyone can make a deny; denies have a map of their own, so a flood of them leaves allows alone."""
    cache = DecisionCache(maxsize=4, ttl=60, clock=FakeClock())
    deny = Decision.deny(NotPermitted("insufficient_rights"))
    cache.put(b"allow", ALLOW)
    for i in range(100):
        cache.put(f"deny-{i}".encode(), deny)
    assert cache.get(b"allow") is ALLOW
    assert len(cache) == 1 + 4  # the denies bounded by min(maxsize, 16,384)


def test_a_decision_already_expired_is_not_stored() -> None:
    """A decision whose expiry has passed is never served from the cache."""
    cache = DecisionCache(maxsize=10, ttl=60, clock=FakeClock())
    cache.put(b"k", ALLOW, NOW - 1)
    assert cache.get(b"k") is None


def test_deny_decisions_can_be_cached_with_their_expiry() -> None:
    """The cache stores whatever decision it is given, with its expiry cap (the service decides what to cache)."""
    clock = FakeClock()
    cache = DecisionCache(maxsize=1, ttl=60, clock=clock)
    deny = Decision.deny(NotPermitted("insufficient_rights"))
    cache.put(b"k", deny, NOW + 5)
    assert cache.get(b"k") == deny
    clock.advance(5)
    assert cache.get(b"k") is None


def test_fabrikam_fixture_has_its_own_root_rule() -> None:
    """Sanity: the second namespace reuses the rule name with its own key (used by the cross-namespace test)."""
    rule = fabrikam().rules[0]
    assert rule.key_name == ROOT and rule.primary_key != ROOT_PRIMARY
