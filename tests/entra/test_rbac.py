"""gateway_authz.entra.rbac: Azure role evaluation for Relay rights (issue 3 §4, security-cases J20)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway_authz.core.errors import NotPermitted
from gateway_authz.core.model import Right
from gateway_authz.core.settings import EntityKind, RoleAssignment, RoleDefinition
from gateway_authz.entra.rbac import Permission, Plane, RbacGrant, RbacPolicy, authorize, permission_for
from gateway_authz.entra.roles import AZURE_RELAY_LISTENER, AZURE_RELAY_OWNER, AZURE_RELAY_SENDER, BUILTIN_ROLES
from gateway_authz.entra.scopes import scope_covers

SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"
RG = f"{SUB}/resourceGroups/rg"
NS = f"{RG}/providers/Microsoft.Relay/namespaces/contoso"
ORDERS = f"{NS}/hybridConnections/orders"
BILLING = f"{NS}/hybridConnections/billing"
LEGACY = f"{NS}/wcfRelays/legacy/echo"
USER = "0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d"
GROUP = "5e1b7f1a-8c3e-4d7a-9b2c-7d6e5f4a3b2c"
OTHER = "ffffffff-0000-0000-0000-000000000000"

LISTEN_HC = permission_for(Right.LISTEN, EntityKind.HYBRID_CONNECTION)
SEND_HC = permission_for(Right.SEND, EntityKind.HYBRID_CONNECTION)
MANAGE_HC = permission_for(Right.MANAGE, EntityKind.HYBRID_CONNECTION)
SEND_WCF = permission_for(Right.SEND, EntityKind.WCF_RELAY)


def assign(role: RoleDefinition, scope: str, principal: str = USER, kind: Any = "User") -> RoleAssignment:
    return RoleAssignment(principal_id=principal, principal_type=kind, role_definition_id=role.id, scope=scope)


def policy(*assignments: RoleAssignment, roles: tuple[RoleDefinition, ...] = ()) -> RbacPolicy:
    return RbacPolicy(BUILTIN_ROLES + roles, assignments)


def denied(p: RbacPolicy, scope: str, permission: Permission, **kw: Any) -> NotPermitted:
    with pytest.raises(NotPermitted) as info:
        p.authorize(kw.pop("oid", USER), kw.pop("groups", ()), scope, permission, **kw)
    return info.value


@pytest.mark.parametrize(
    ("right", "kind", "plane", "action"),
    [
        (
            Right.LISTEN,
            EntityKind.HYBRID_CONNECTION,
            Plane.DATA,
            "Microsoft.Relay/namespaces/hybridConnections/listen/action",
        ),
        (
            Right.SEND,
            EntityKind.HYBRID_CONNECTION,
            Plane.DATA,
            "Microsoft.Relay/namespaces/hybridConnections/send/action",
        ),
        (
            Right.MANAGE,
            EntityKind.HYBRID_CONNECTION,
            Plane.CONTROL,
            "Microsoft.Relay/namespaces/hybridConnections/write",
        ),
        (Right.LISTEN, EntityKind.WCF_RELAY, Plane.DATA, "Microsoft.Relay/namespaces/wcfRelays/listen/action"),
        (Right.SEND, EntityKind.WCF_RELAY, Plane.DATA, "Microsoft.Relay/namespaces/wcfRelays/send/action"),
        (Right.MANAGE, EntityKind.WCF_RELAY, Plane.CONTROL, "Microsoft.Relay/namespaces/wcfRelays/write"),
        (Right.LISTEN, None, Plane.DATA, "Microsoft.Relay/namespaces/listen/action"),
        (Right.SEND, None, Plane.DATA, "Microsoft.Relay/namespaces/send/action"),
        (Right.MANAGE, None, Plane.CONTROL, "Microsoft.Relay/namespaces/write"),
    ],
)
def test_permission_for_each_right(right: Right, kind: EntityKind | None, plane: Plane, action: str) -> None:
    """Listen/Send are data actions and Manage the control ``write`` action, per entity type or the namespace."""
    assert permission_for(right, kind) == Permission(plane, action)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (AZURE_RELAY_OWNER, {Right.LISTEN, Right.SEND, Right.MANAGE}),
        (AZURE_RELAY_LISTENER, {Right.LISTEN}),
        (AZURE_RELAY_SENDER, {Right.SEND}),
    ],
    ids=["owner", "listener", "sender"],
)
@pytest.mark.parametrize("kind", [EntityKind.HYBRID_CONNECTION, EntityKind.WCF_RELAY, None], ids=["hc", "wcf", "ns"])
def test_builtin_roles(role: RoleDefinition, allowed: set[Right], kind: EntityKind | None) -> None:
    """Owner may do everything, Listener only listen, Sender only send: on every entity type and the namespace."""
    p = policy(assign(role, NS))
    resource = {EntityKind.HYBRID_CONNECTION: ORDERS, EntityKind.WCF_RELAY: LEGACY, None: NS}[kind]
    for right in Right:
        permission = permission_for(right, kind)
        if right in allowed:
            assert p.authorize(USER, (), resource, permission).role_name == role.role_name
        else:
            assert denied(p, resource, permission).reason == "no_role_assignment"


def test_listener_and_sender_read_entities_but_cannot_write() -> None:
    """The built-in Listener and Sender hold the entity ``read`` actions, which never amount to Manage."""
    p = policy(assign(AZURE_RELAY_LISTENER, NS), assign(AZURE_RELAY_SENDER, NS))
    read = Permission(Plane.CONTROL, "Microsoft.Relay/namespaces/hybridConnections/read")
    assert p.authorize(USER, (), ORDERS, read).role_name in {"Azure Relay Listener", "Azure Relay Sender"}
    assert denied(p, ORDERS, MANAGE_HC).reason == "no_role_assignment"


# -- scopes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope", ["/", SUB, RG, NS, ORDERS], ids=["root", "subscription", "resource_group", "namespace", "entity"]
)
def test_assignment_scope_inherits_downwards(scope: str) -> None:
    """An assignment at root, subscription, resource group, namespace or the entity applies to the entity."""
    assert policy(assign(AZURE_RELAY_SENDER, scope)).authorize(USER, (), ORDERS, SEND_HC).scope == scope


@pytest.mark.parametrize(
    ("scope", "resource"),
    [
        (ORDERS, BILLING),
        (ORDERS, NS),
        (ORDERS, f"{NS}/hybridConnections/orders2"),
        (f"{NS}/hybridConnections/eu", f"{NS}/hybridConnections/eu/orders"),
        (f"{RG}/providers/Microsoft.Relay/namespaces/contos", NS),
        (f"{SUB}/resourceGroups/rg2", NS),
        (f"{NS}/wcfRelays/orders", ORDERS),
    ],
    ids=["sibling", "parent", "name_prefix", "slash_entity_sibling", "namespace_prefix", "other_rg", "other_type"],
)
def test_assignment_scope_never_reaches_siblings_or_parents(scope: str, resource: str) -> None:
    """Scopes match by whole segments, never upwards or sideways; an entity scope is that entity only."""
    assert not scope_covers(scope, resource)
    kind = EntityKind.WCF_RELAY if "/wcfRelays/" in resource else EntityKind.HYBRID_CONNECTION
    assert denied(policy(assign(AZURE_RELAY_OWNER, scope)), resource, permission_for(Right.SEND, kind))


def test_scopes_compare_case_insensitively_and_ignore_a_trailing_slash() -> None:
    """ARM ids are case-insensitive: ``RESOURCEGROUPS``/``HybridConnections`` spellings still match."""
    upper = ORDERS.upper().replace("HYBRIDCONNECTIONS", "HybridConnections") + "/"
    assert scope_covers(upper, ORDERS) and scope_covers(NS.lower(), ORDERS)
    assert policy(assign(AZURE_RELAY_SENDER, upper)).authorize(USER, (), ORDERS, SEND_HC).scope == upper


def test_collection_scope_covers_every_entity_of_that_type() -> None:
    """An assignment on ``…/hybridConnections`` (no name) covers every hybrid connection, no WCF relay."""
    collection = f"{NS}/hybridConnections"
    assert scope_covers(collection, ORDERS) and scope_covers(collection, f"{NS}/hybridConnections/eu/orders")
    assert not scope_covers(collection, LEGACY)


# -- principals -----------------------------------------------------------------------------------------------------


def test_principal_matches_by_oid_case_insensitively() -> None:
    """The token's ``oid`` matches ``principalId`` whatever the GUID's case."""
    grant = policy(assign(AZURE_RELAY_SENDER, NS, USER.upper())).authorize(USER, (), ORDERS, SEND_HC)
    assert (grant.principal_id, grant.via) == (USER.upper(), "oid")


def test_principal_matches_through_a_group() -> None:
    """A group assignment applies to a token whose ``groups`` claim holds that group id."""
    p = policy(assign(AZURE_RELAY_LISTENER, NS, GROUP, "Group"))
    grant = p.authorize(USER, (OTHER, GROUP.upper()), ORDERS, LISTEN_HC)
    assert grant == RbacGrant("Azure Relay Listener", AZURE_RELAY_LISTENER.id, NS, GROUP, "Group", "group")
    assert denied(p, ORDERS, LISTEN_HC, groups=(OTHER,)).reason == "no_role_assignment"


def test_groups_overage_ignores_group_assignments_and_says_so() -> None:
    """With a groups overage no group assignment applies, and the deny detail says why."""
    p = policy(assign(AZURE_RELAY_LISTENER, NS, GROUP, "Group"))
    error = denied(p, ORDERS, LISTEN_HC, groups=(GROUP,), groups_overage=True)
    assert "overage" in error.detail


def test_other_principals_get_nothing() -> None:
    """Deny by default: someone else's assignment, or none at all, grants nothing."""
    assert denied(policy(assign(AZURE_RELAY_OWNER, SUB, OTHER)), ORDERS, SEND_HC).reason == "no_role_assignment"
    error = denied(policy(), ORDERS, SEND_HC)
    assert USER in error.detail and SEND_HC.action in error.detail


# -- custom roles ---------------------------------------------------------------------------------------------------

CUSTOM_SEND_NOT_LISTEN = RoleDefinition(
    role_name="Relay data, no listening",
    id="aaaaaaaa-0000-0000-0000-000000000001",
    data_actions=("microsoft.relay/*",),
    not_data_actions=("Microsoft.Relay/*/LISTEN/action",),
)
CUSTOM_WRITE_ONLY = RoleDefinition(
    role_name="Relay entity writer",
    id="aaaaaaaa-0000-0000-0000-000000000002",
    actions=("Microsoft.Relay/namespaces/*/write",),
    not_actions=("Microsoft.Relay/namespaces/wcfRelays/*",),
)


def test_not_data_actions_subtract_within_the_role() -> None:
    """``dataActions - notDataActions``: send allowed, listen removed; patterns compare case-insensitively."""
    p = policy(assign(CUSTOM_SEND_NOT_LISTEN, NS), roles=(CUSTOM_SEND_NOT_LISTEN,))
    assert p.authorize(USER, (), ORDERS, SEND_HC).role_name == "Relay data, no listening"
    assert denied(p, ORDERS, LISTEN_HC).reason == "no_role_assignment"


def test_not_actions_only_affect_their_own_role() -> None:
    """Effective permissions add up across roles: another role's grant is not removed by this role's notActions."""
    p = policy(
        assign(CUSTOM_SEND_NOT_LISTEN, NS),
        assign(AZURE_RELAY_LISTENER, ORDERS),
        roles=(CUSTOM_SEND_NOT_LISTEN,),
    )
    assert p.authorize(USER, (), ORDERS, LISTEN_HC).role_name == "Azure Relay Listener"


def test_control_plane_wildcards_and_not_actions() -> None:
    """A mid-string ``*`` matches any run of characters; ``notActions`` carve out the WCF relays."""
    p = policy(assign(CUSTOM_WRITE_ONLY, NS), roles=(CUSTOM_WRITE_ONLY,))
    assert p.authorize(USER, (), ORDERS, MANAGE_HC).role_name == "Relay entity writer"
    assert denied(p, LEGACY, permission_for(Right.MANAGE, EntityKind.WCF_RELAY))
    assert denied(p, ORDERS, SEND_HC), "control actions never grant data actions"


def test_data_actions_never_grant_control_actions() -> None:
    """The planes are separate: ``dataActions: Microsoft.Relay/*`` does not make anyone a manager."""
    p = policy(assign(CUSTOM_SEND_NOT_LISTEN, NS), roles=(CUSTOM_SEND_NOT_LISTEN,))
    assert denied(p, ORDERS, MANAGE_HC).reason == "no_role_assignment"


def test_wildcard_is_not_a_regex() -> None:
    """Regex metacharacters in a permission are literal: only ``*`` is special."""
    odd = RoleDefinition(
        role_name="odd", id="aaaaaaaa-0000-0000-0000-000000000003", data_actions=("Microsoft.Relay/.+",)
    )
    assert denied(policy(assign(odd, NS), roles=(odd,)), ORDERS, SEND_HC)


def test_role_referenced_by_full_arm_id() -> None:
    """``/providers/Microsoft.Authorization/roleDefinitions/<guid>`` names the same role as the bare GUID."""
    full = f"/providers/Microsoft.Authorization/roleDefinitions/{AZURE_RELAY_SENDER.id.upper()}"
    p = RbacPolicy(BUILTIN_ROLES, [RoleAssignment(USER, "User", full, NS)])
    assert p.authorize(USER, (), ORDERS, SEND_HC).role_id == AZURE_RELAY_SENDER.id


def test_unknown_role_grants_nothing() -> None:
    """An assignment of an undefined role grants nothing and is listed for the operator."""
    p = RbacPolicy(BUILTIN_ROLES, [RoleAssignment(USER, "User", "bbbbbbbb-0000-0000-0000-000000000000", SUB)])
    assert denied(p, ORDERS, SEND_HC) and len(p.unresolved) == 1


# -- determinism ----------------------------------------------------------------------------------------------------


def test_result_does_not_depend_on_assignment_order() -> None:
    """Every order of the same assignments yields the same grant: the narrowest scope, then the role name."""
    assignments = [
        assign(AZURE_RELAY_OWNER, SUB),
        assign(AZURE_RELAY_SENDER, NS, GROUP, "Group"),
        assign(AZURE_RELAY_OWNER, ORDERS, GROUP, "Group"),
        assign(AZURE_RELAY_SENDER, ORDERS),
        assign(AZURE_RELAY_OWNER, RG),
    ]
    grants = {
        RbacPolicy(BUILTIN_ROLES, order).authorize(USER, (GROUP,), ORDERS, SEND_HC)
        for order in itertools.permutations(assignments)
    }
    assert grants == {RbacGrant("Azure Relay Owner", AZURE_RELAY_OWNER.id, ORDERS, GROUP, "Group", "group")}
    roles = {
        RbacPolicy(reversed(BUILTIN_ROLES), order).authorize(USER, (), NS, SEND_HC)
        for order in itertools.permutations(assignments[::2])
    }
    assert {g.scope for g in roles} == {RG}


def test_one_shot_authorize() -> None:
    """The module-level ``authorize`` gives the same answer as a built policy."""
    grant = authorize([assign(AZURE_RELAY_SENDER, NS)], BUILTIN_ROLES, USER, (), ORDERS, SEND_HC)
    assert grant.role_name == "Azure Relay Sender"
    with pytest.raises(NotPermitted):
        authorize(
            [assign(AZURE_RELAY_SENDER, NS)],
            BUILTIN_ROLES,
            USER,
            (),
            LEGACY,
            permission_for(Right.LISTEN, EntityKind.WCF_RELAY),
        )


def test_explain_lists_every_assignment_with_its_verdict() -> None:
    """``explain`` says, per assignment of the principal, whether it grants or why not (for ``check``)."""
    p = policy(
        assign(AZURE_RELAY_LISTENER, NS), assign(AZURE_RELAY_SENDER, BILLING), assign(AZURE_RELAY_SENDER, ORDERS)
    )
    lines = p.explain(USER, (), ORDERS, SEND_HC)
    assert len(lines) == 3
    assert any("Azure Relay Sender at " + ORDERS in line and line.endswith(": grants") for line in lines)
    assert any("does not grant" in line for line in lines) and any("does not cover" in line for line in lines)


# -- J20: claims to RBAC ------------------------------------------------------------------------------------------


def test_j20_only_oid_and_groups_reach_rbac() -> None:
    """J20: RBAC is keyed on ``oid`` and group ids only; a role *name* given as principal or group grants nothing."""
    p = policy(assign(AZURE_RELAY_OWNER, SUB))
    assert denied(p, ORDERS, SEND_HC, oid="Azure Relay Owner", groups=("Azure Relay Owner", "Owner", "*"))
    assert denied(p, ORDERS, SEND_HC, oid="", groups=())


def test_j20_role_names_with_spaces_commas_and_case() -> None:
    """J20: role names are labels, never parsed: spaces, commas and case do not change what a role grants."""
    odd = RoleDefinition(
        role_name="Sender, Listener  (legacy)",
        id="aaaaaaaa-0000-0000-0000-000000000004",
        data_actions=("MICROSOFT.RELAY/*/SEND/ACTION",),
    )
    p = policy(assign(odd, NS), roles=(odd,))
    assert p.authorize(USER, (), ORDERS, SEND_HC).role_name == "Sender, Listener  (legacy)"
    assert denied(p, ORDERS, LISTEN_HC)


def test_j20_empty_role_grants_nothing() -> None:
    """J20: a role with no actions at all is total and denies."""
    empty = RoleDefinition(role_name="empty", id="aaaaaaaa-0000-0000-0000-000000000005")
    assert denied(policy(assign(empty, SUB), roles=(empty,)), ORDERS, SEND_HC)


def test_send_on_wcf_relay_uses_the_wcf_action() -> None:
    """A custom role limited to hybrid connections does not reach WCF relays."""
    hc_only = RoleDefinition(
        role_name="hc only",
        id="aaaaaaaa-0000-0000-0000-000000000006",
        data_actions=("Microsoft.Relay/namespaces/hybridConnections/*",),
    )
    p = policy(assign(hc_only, NS), roles=(hc_only,))
    assert p.authorize(USER, (), ORDERS, SEND_HC).role_name == "hc only"
    assert denied(p, LEGACY, SEND_WCF)
