"""Policy: key names, rights and rule scope (S10, S13, S14), the rights a request needs, anonymous senders.

Specifications for :mod:`gateway_authz.sas.policy`, exercised through ``DecisionService.decide`` with SDK-minted tokens
against the shared ``contoso`` configuration (see ``tests/_factories.py``): RootManageSharedAccessKey and SendOnly
on the namespace; ``orders-send`` (Send) and ``orders-listen`` (Listen) on ``orders``; ``priority-send`` on
``orders/priority``; ``public`` open to anonymous senders; management routes ``/$admin`` (PUT, DELETE) and ``/$ops``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from gateway_authz.core.credentials import parse_query
from gateway_authz.core.errors import AuthzError, NotPermitted
from gateway_authz.core.model import Decision, Right
from gateway_authz.core.settings import AuthorizationRule
from gateway_authz.sas.policy import CompiledPolicy
from gateway_authz.sas.token import RuleKeys, parse_sas
from tests._factories import (
    ALL_RIGHTS,
    FABRIKAM_ROOT_PRIMARY,
    HOST,
    NOW,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    ORDERS_SEND,
    ORDERS_SEND_KEY,
    OTHER_HOST,
    PRIORITY_SEND,
    PRIORITY_SEND_KEY,
    ROOT,
    ROOT_PRIMARY,
    SEND_ONLY,
    SEND_ONLY_KEY,
    assert_decision,
    contoso,
    forge,
    hand_token,
    harness,
    make_request,
    make_settings,
    mint,
    uri,
)

ORDERS_URI = uri("/orders")


async def decide(
    path: str = "/orders",
    *,
    token: str | None = None,
    method: str = "POST",
    action: str | None = None,
    context: dict[str, str] | None = None,
    settings_namespaces: tuple[Any, ...] = (),
) -> Decision:
    settings = make_settings(namespaces=settings_namespaces) if settings_namespaces else None
    request = make_request(path, method=method, sba=token, action=action, context=context)
    return await harness(settings).decide(request)


# --------------------------------------------------------------------------------------------------------------
# S10: key names
# --------------------------------------------------------------------------------------------------------------

S10_REFUSED = {
    "unknown-name": (hand_token(quote(ORDERS_URI, safe=""), "NoSuchRule"), "unknown_key_name"),
    "node-encoded-name": (hand_token(quote(ORDERS_URI, safe=""), raw_skn="encode%28%27Me%27%29"), "unknown_key_name"),
    "name-with-slash": (hand_token(quote(ORDERS_URI, safe=""), "orders/orders-send"), "unknown_key_name"),
    "name-with-encoded-slash": (
        hand_token(quote(ORDERS_URI, safe=""), raw_skn="orders%2Forders-send"),
        "unknown_key_name",
    ),
    "empty-name": (hand_token(quote(ORDERS_URI, safe=""), raw_skn=""), "malformed_token"),
    "300-char-name": (hand_token(quote(ORDERS_URI, safe=""), "R" * 300), "malformed_token"),
    "10-KB-name": (hand_token(quote(ORDERS_URI, safe=""), "R" * 10_240), "token_too_large"),
    "non-utf8-name": (hand_token(quote(ORDERS_URI, safe=""), raw_skn="Root%FF"), "malformed_token"),
}


@pytest.mark.parametrize(("token", "reason"), S10_REFUSED.values(), ids=S10_REFUSED.keys())
async def test_S10_unknown_or_odd_key_names_are_401(token: str, reason: str) -> None:
    """An unknown, empty, over-long, URL-encoded-unknown or slash-bearing skn is a 401, even over a root-key HMAC."""
    assert_decision(await decide(token=token), 401, reason)


@pytest.mark.parametrize(
    "name", ["rootmanagesharedaccesskey", "ROOTMANAGESHAREDACCESSKEY", "RootManageSharedAccessKey "]
)
async def test_S10_design_key_names_match_exactly_and_case_sensitively(name: str) -> None:
    """Design: skn matches the rule's keyName exactly; a case variant signed with the right key is a 401."""
    token = hand_token(quote(ORDERS_URI, safe=""), raw_skn=quote(name, safe=""))
    assert_decision(await decide(token=token), 401, "unknown_key_name")


async def test_S10_percent_encoded_skn_is_decoded_before_matching() -> None:
    """skn is percent-decoded once and then matched: ``Root%4DanageSharedAccessKey`` is RootManageSharedAccessKey."""
    token = hand_token(quote(ORDERS_URI, safe=""), raw_skn="Root%4DanageSharedAccessKey")
    decision = await decide(token=token)
    assert_decision(decision, 200, "allowed")
    assert decision.principal == ROOT


async def test_S10_key_name_of_another_namespace_does_not_leak_across() -> None:
    """fabrikam's RootManageSharedAccessKey (same name, other key) does not verify on contoso: 401 bad_signature."""
    token = mint(ORDERS_URI, ROOT, FABRIKAM_ROOT_PRIMARY)
    assert_decision(await decide(token=token), 401, "bad_signature")


# --------------------------------------------------------------------------------------------------------------
# S13: rights
# --------------------------------------------------------------------------------------------------------------

SEND_ONLY_TOKENS = {
    "namespace-send-only": mint("/orders", SEND_ONLY, SEND_ONLY_KEY),
    "entity-send-only": mint("/orders", ORDERS_SEND, ORDERS_SEND_KEY),
}


@pytest.mark.parametrize("action", ["listen", "accept", "request"])
@pytest.mark.parametrize("token", SEND_ONLY_TOKENS.values(), ids=SEND_ONLY_TOKENS.keys())
async def test_S13_send_only_token_cannot_listen_accept_or_request(token: str, action: str) -> None:
    """A Send-only rule on sb-hc-action=listen/accept/request is a 403 ``insufficient_rights``."""
    decision = await decide("/$hc/orders", token=token, action=action)
    assert_decision(decision, 403, "insufficient_rights")
    assert decision.right is Right.LISTEN


@pytest.mark.parametrize("action", ["connect", None], ids=["connect", "plain-request"])
async def test_S13_listen_only_token_cannot_connect_or_send(action: str | None) -> None:
    """A Listen-only rule on sb-hc-action=connect or a plain HTTP request (Send) is a 403 ``insufficient_rights``."""
    token = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
    decision = await decide("/orders", token=token, action=action)
    assert_decision(decision, 403, "insufficient_rights")
    assert decision.right is Right.SEND


@pytest.mark.parametrize(
    ("action", "right"), [("listen", Right.LISTEN), ("accept", Right.LISTEN), ("connect", Right.SEND)]
)
async def test_S13_matching_rights_are_allowed(action: str, right: Right) -> None:
    """Listen rules listen and accept; Send rules connect; the decision names the right it granted."""
    rule = (ORDERS_LISTEN, ORDERS_LISTEN_KEY) if right is Right.LISTEN else (ORDERS_SEND, ORDERS_SEND_KEY)
    decision = await decide("/$hc/orders", token=mint("/orders", *rule), action=action)
    assert_decision(decision, 200, "allowed")
    assert decision.right is right


@pytest.mark.parametrize("action", ["listen", "connect", None])
async def test_S13_design_manage_implies_listen_and_send(action: str | None) -> None:
    """Design: a Manage-only rule (the loader refuses one; Settings can hold it) grants Listen and Send too."""
    manage_only = AuthorizationRule("ManageOnly", "m" * 44, None, frozenset({Right.MANAGE}))
    namespace = contoso(rules=(manage_only,))
    token = mint("/orders", "ManageOnly", "m" * 44)
    decision = await decide("/orders", token=token, action=action, settings_namespaces=(namespace,))
    assert_decision(decision, 200, "allowed")


@pytest.mark.parametrize(
    ("method", "path", "needs_manage"),
    [
        ("PUT", "/$admin", True),
        ("DELETE", "/$admin/orders", True),
        ("delete", "/$admin", True),
        ("GET", "/$admin", False),
        ("POST", "/$admin", False),
        ("GET", "/$ops/x", True),
        ("POST", "/$ops", True),
        ("PUT", "/$adminx", False),
        ("PUT", "/orders/$admin", False),
    ],
)
@pytest.mark.parametrize("key", ["send-only", "root"])
async def test_S13_management_routes_need_manage(method: str, path: str, needs_manage: bool, key: str) -> None:
    """Requests under a management route (whole segments, listed methods) need Manage; Send-only is a 403 there."""
    token = mint("/", SEND_ONLY, SEND_ONLY_KEY) if key == "send-only" else mint("/")
    decision = await decide(path, token=token, method=method)
    if needs_manage and key == "send-only":
        assert_decision(decision, 403, "insufficient_rights")
    else:
        assert_decision(decision, 200, "allowed")
    assert decision.right is (Right.MANAGE if needs_manage else Right.SEND)


@pytest.mark.parametrize(
    ("signed_with", "skn"),
    [(ROOT_PRIMARY, SEND_ONLY), (SEND_ONLY_KEY, ROOT), (ORDERS_LISTEN_KEY, ORDERS_SEND), (ORDERS_SEND_KEY, ROOT)],
)
async def test_S13_token_signed_with_another_rules_key_is_401(signed_with: str, skn: str) -> None:
    """A token naming one rule but signed with another rule's key is a 401 ``bad_signature``."""
    assert_decision(await decide(token=mint("/orders", skn, signed_with)), 401, "bad_signature")


@pytest.mark.parametrize(
    ("route_right", "action", "token", "status", "reason"),
    [
        ("Manage", None, mint("/"), 200, "allowed"),
        ("Manage", None, mint("/", SEND_ONLY, SEND_ONLY_KEY), 403, "insufficient_rights"),
        ("listen", "connect", mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY), 403, "insufficient_rights"),
        ("Send", "listen", mint("/orders", ORDERS_SEND, ORDERS_SEND_KEY), 403, "insufficient_rights"),
        ("Owner", None, mint("/"), 403, "malformed_request"),
    ],
    ids=["manage-root", "manage-send-only", "route-listen-action-connect", "route-send-action-listen", "bogus"],
)
async def test_S13_route_right_from_context_and_action_must_both_be_granted(
    route_right: str, action: str | None, token: str, status: int, reason: str
) -> None:
    """A route's ``right`` (context_extensions) and sb-hc-action both count: the token must grant each of them."""
    decision = await decide("/orders", token=token, action=action, context={"right": route_right})
    assert_decision(decision, status, reason)


# --------------------------------------------------------------------------------------------------------------
# S14: rule scope vs sr scope
# --------------------------------------------------------------------------------------------------------------

S14_CASES = {
    "entity-rule-namespace-sr-sibling-request": ("/", ORDERS_SEND, ORDERS_SEND_KEY, "/orders2"),
    "entity-rule-namespace-sr-own-request": ("/", ORDERS_SEND, ORDERS_SEND_KEY, "/orders"),
    "entity-rule-sibling-sr": ("/orders2", ORDERS_SEND, ORDERS_SEND_KEY, "/orders2"),
    "entity-rule-hc1-evil-sr": ("/orders-evil", ORDERS_SEND, ORDERS_SEND_KEY, "/orders-evil"),
    "entity-rule-nested-entity-sr": ("/orders/priority", ORDERS_SEND, ORDERS_SEND_KEY, "/orders/priority"),
    "entity-rule-own-sr-nested-request": ("/orders", ORDERS_SEND, ORDERS_SEND_KEY, "/orders/priority/x"),
    "nested-rule-parent-sr": ("/orders", PRIORITY_SEND, PRIORITY_SEND_KEY, "/orders"),
    "entity-rule-other-entity-same-suffix": ("/eu/orders", ORDERS_SEND, ORDERS_SEND_KEY, "/eu/orders"),
}


@pytest.mark.parametrize(("sr", "skn", "key", "path"), S14_CASES.values(), ids=S14_CASES.keys())
async def test_S14_entity_rule_never_signs_for_the_namespace_or_another_entity(
    sr: str, skn: str, key: str, path: str
) -> None:
    """rule-scope ⊑ sr ⊑ request: an entity rule's genuine signature elsewhere is a 403 ``rule_scope``."""
    assert_decision(await decide(path, token=mint(sr, skn, key)), 403, "rule_scope")


@pytest.mark.parametrize(
    ("expiry_offset", "max_lifetime", "reason"),
    [(-301, None, "expired"), (7200, 3600, "lifetime_too_long")],
    ids=["expired", "lifetime-too-long"],
)
async def test_S14_invalid_token_of_another_entitys_rule_is_401_not_403(
    expiry_offset: int, max_lifetime: int | None, reason: str
) -> None:
    """Another entity's rule signed it, but it is expired or over-long: a 401, not a rule_scope 403."""
    token = mint("/orders2", ORDERS_SEND, ORDERS_SEND_KEY, expiry=NOW + expiry_offset)
    h = harness(make_settings(max_lifetime=max_lifetime))
    assert_decision(await h.decide(make_request("/orders2", sba=token)), 401, reason)


@pytest.mark.parametrize(
    ("sr", "skn", "key", "path"),
    [
        ("/orders", ORDERS_SEND, ORDERS_SEND_KEY, "/orders/x/y"),
        ("/orders/x", ORDERS_SEND, ORDERS_SEND_KEY, "/orders/x/y"),
        ("/orders/priority", PRIORITY_SEND, PRIORITY_SEND_KEY, "/orders/priority/x"),
        ("/orders", ROOT, ROOT_PRIMARY, "/orders/priority"),
        ("/", SEND_ONLY, SEND_ONLY_KEY, "/eu/orders"),
    ],
)
async def test_S14_rule_on_the_sr_entity_or_a_parent_is_allowed(sr: str, skn: str, key: str, path: str) -> None:
    """A rule on the sr's own entity (or the namespace) allows requests that sr covers within that entity."""
    assert_decision(await decide(path, token=mint(sr, skn, key)), 200, "allowed")


async def test_S14_token_for_another_namespace_host_is_403_token_scope() -> None:
    """A contoso root-key token whose sr names fabrikam's host does not cover a contoso request: 403."""
    token = mint(uri("/orders", host=OTHER_HOST))
    assert_decision(await decide("/orders", token=token), 403, "token_scope")


async def test_S14_sr_on_a_host_no_namespace_serves_is_403_token_scope() -> None:
    """A namespace-rule token whose sr host is unknown is a valid signature with no scope here: 403."""
    token = mint("sb://unknown.example/orders")
    assert_decision(await decide("/orders", token=token), 403, "token_scope")


async def test_S14_fabrikam_token_on_fabrikam_is_allowed_and_on_contoso_refused() -> None:
    """Each namespace verifies with its own keys: fabrikam's token works on fabrikam only."""
    token = mint(uri("/orders", host=OTHER_HOST), ROOT, FABRIKAM_ROOT_PRIMARY)
    h = harness()
    on_fabrikam = await h.decide(make_request("/orders", host=OTHER_HOST, sba=token))
    assert_decision(on_fabrikam, 200, "allowed")
    assert on_fabrikam.namespace == "fabrikam"
    assert_decision(await h.decide(make_request("/orders", sba=token)), 401, "bad_signature")


# --------------------------------------------------------------------------------------------------------------
# Anonymous senders
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "action"), [("/public", None), ("/public/sub/path", None), ("/$hc/public", "connect"), ("/PUBLIC", None)]
)
async def test_anonymous_send_to_an_entity_without_client_authorization_is_allowed(
    path: str, action: str | None
) -> None:
    """With requiresClientAuthorization false, a request without a credential may Send: 200, auth anonymous."""
    decision = await decide(path, action=action)
    assert_decision(decision, 200, "allowed")
    assert (decision.auth, decision.principal, decision.right, decision.entity) == (
        "anonymous",
        "",
        Right.SEND,
        "public",
    )
    assert decision.strip_headers == () and decision.strip_query == ()


@pytest.mark.parametrize("action", ["listen", "accept", "request"])
async def test_anonymous_listen_is_never_allowed(action: str) -> None:
    """Listen is never anonymous, even on an entity open to anonymous senders: 401 ``missing_credential``."""
    assert_decision(await decide("/$hc/public", action=action), 401, "missing_credential")


async def test_anonymous_manage_is_never_allowed() -> None:
    """A route needing Manage on an anonymous entity still needs a credential."""
    decision = await decide("/public", context={"right": "Manage"})
    assert_decision(decision, 401, "missing_credential")


@pytest.mark.parametrize("path", ["/orders", "/orders2", "/", "/not-an-entity", "/legacy/echo", "/public-x"])
async def test_no_credential_where_client_authorization_is_required_is_401(path: str) -> None:
    """Without a credential, every entity that requires client authorization (and the namespace) is a 401."""
    assert_decision(await decide(path), 401, "missing_credential")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (forge(mint("/public")), "bad_signature"),
        (mint("/public", ttl=-1000), "expired"),
        ("SharedAccessSignature garbage", "malformed_token"),
    ],
    ids=["forged", "expired", "malformed"],
)
async def test_a_bad_credential_on_an_anonymous_entity_is_not_downgraded_to_anonymous(token: str, reason: str) -> None:
    """A present but invalid credential is judged as such (401), never ignored in favour of anonymous access."""
    assert_decision(await decide("/public", token=token), 401, reason)


async def test_valid_credential_on_anonymous_entity_is_reported_as_sas() -> None:
    """A valid token on an anonymous entity is a SAS allow with its principal, not an anonymous one."""
    decision = await decide("/public", token=mint("/public"))
    assert_decision(decision, 200, "allowed")
    assert (decision.auth, decision.principal) == ("sas", ROOT)


# --------------------------------------------------------------------------------------------------------------
# required_rights directly
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "context", "rights"),
    [
        ("POST", "/orders", "", {}, (Right.SEND,)),
        ("GET", "/orders", "sb-hc-action=listen", {}, (Right.LISTEN,)),
        ("PUT", "/$admin", "", {}, (Right.MANAGE,)),
        ("PUT", "/$admin", "sb-hc-action=listen", {}, (Right.MANAGE, Right.LISTEN)),
        ("GET", "/orders", "sb-hc-action=connect", {"right": "Listen"}, (Right.LISTEN, Right.SEND)),
        ("GET", "/orders", "", {"right": "manage"}, (Right.MANAGE,)),
        ("GET", "/orders", "sb-hc-action=listen", {"right": "Listen"}, (Right.LISTEN,)),  # each right once
        ("PUT", "/$admin", "", {"right": "Manage"}, (Right.MANAGE,)),
    ],
)
def test_required_rights(method: str, path: str, query: str, context: dict[str, str], rights: tuple[Any, ...]) -> None:
    """Route right, management route and sb-hc-action each add a right; with none of them, Send."""
    policy = CompiledPolicy(make_settings())
    request = make_request(path, method=method, context=context)
    resolved = policy.resolve(HOST, path)
    assert policy.required_rights(request, resolved, parse_query(query)) == rights


def test_required_rights_refuses_an_unknown_route_right() -> None:
    """A context_extensions right that is not Listen, Send or Manage is a 403 ``malformed_request``."""
    policy = CompiledPolicy(make_settings())
    with pytest.raises(NotPermitted) as info:
        policy.required_rights(
            make_request("/orders", context={"right": "Read"}), policy.resolve(HOST, "/orders"), parse_query("")
        )
    assert info.value.reason == "malformed_request"


def test_rule_grants() -> None:
    """AuthorizationRule.grants: its own rights, and every right when it has Manage."""
    send = AuthorizationRule("s", "k", None, frozenset({Right.SEND}))
    assert send.grants(Right.SEND) and not send.grants(Right.LISTEN) and not send.grants(Right.MANAGE)
    everything = AuthorizationRule("m", "k", None, frozenset({Right.MANAGE}))
    assert all(everything.grants(r) for r in Right)
    assert frozenset(Right) == ALL_RIGHTS


def test_rule_repr_never_shows_keys() -> None:
    """A rule's repr (tracebacks, logs) names the rule and rights, never a key."""
    rule = AuthorizationRule(ROOT, ROOT_PRIMARY, "secondary-secret", ALL_RIGHTS)
    assert ROOT_PRIMARY not in repr(rule) and "secondary-secret" not in repr(rule)


# --------------------------------------------------------------------------------------------------------------
# What CompiledPolicy remembers per (namespace, sr, key name) changes no outcome
# --------------------------------------------------------------------------------------------------------------

_SIGNERS = (
    (ROOT, ROOT_PRIMARY),
    (SEND_ONLY, SEND_ONLY_KEY),
    (ORDERS_SEND, ORDERS_SEND_KEY),
    (ORDERS_LISTEN, ORDERS_LISTEN_KEY),
    (PRIORITY_SEND, PRIORITY_SEND_KEY),
    (ORDERS_SEND, ROOT_PRIMARY),  # the right name under the wrong key
)
_SRS = ("/", "/orders", "/orders/priority", "/orders2", "/eu/orders", uri("/orders", host=OTHER_HOST))
_PATHS = ("/orders", "/orders/priority/x", "/orders2", "/eu/orders")


def _authorize_outcome(policy: CompiledPolicy, token: str, path: str, rights: tuple[Right, ...]) -> str:
    try:
        verified = policy.authorize_sas(parse_sas(token), policy.resolve(HOST, path), rights, now=NOW)
    except AuthzError as error:
        return f"{error.status} {error.reason}"
    return f"200 {verified.rule.key_name} {verified.key_slot}"


def test_remembered_sas_plans_give_the_same_outcome_as_a_fresh_policy() -> None:
    """Every (sr, signer, path, rights) outcome on a policy that has seen all the others, with fresh tokens each time
    (same sr and key name, new expiry and signature), equals the outcome on a policy that has seen nothing."""
    shared = CompiledPolicy(make_settings())
    cases = [
        (sr, skn, key, path, rights)
        for sr in _SRS
        for skn, key in _SIGNERS
        for path in _PATHS
        for rights in ((Right.SEND,), (Right.LISTEN,), (Right.SEND, Right.LISTEN), (Right.MANAGE,))
    ]
    outcomes = set()
    for round_ in range(2):
        for sr, skn, key, path, rights in cases:
            token = mint(sr, skn, key, ttl=3600 + round_)
            fresh = _authorize_outcome(CompiledPolicy(make_settings()), token, path, rights)
            assert _authorize_outcome(shared, token, path, rights) == fresh, (sr, skn, path, rights)
            outcomes.add(fresh.split()[1])
    assert outcomes >= {"bad_signature", "token_scope", "rule_scope", "insufficient_rights", ROOT, ORDERS_SEND}


def test_rule_keys_grant_exactly_what_the_rule_grants() -> None:
    for rights in (frozenset({Right.SEND}), frozenset({Right.LISTEN, Right.SEND}), frozenset({Right.MANAGE})):
        keys = RuleKeys(AuthorizationRule("k", ROOT_PRIMARY, None, rights))
        assert {right for right in Right if right in keys.granted} == {
            right for right in Right if keys.rule.grants(right)
        }
