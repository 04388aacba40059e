"""Issue 18 point 7: under RBAC an entity the configuration does not list never gets what an exclusion refuses.

A request to ``/billing`` (not in the config) is decided with the namespace-level permission
(``Microsoft.Relay/namespaces/send/action``), for want of an entity scope. A custom role granting
``Microsoft.Relay/*`` but excluding ``…/hybridConnections/send/action`` used to allow it, though the upstream may
well be a hybrid connection: it is now refused whichever kind (hybrid connection or WCF relay) the entity could be.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway_authz.core.errors import NotPermitted
from gateway_authz.core.metrics import Metrics
from gateway_authz.core.model import Right
from gateway_authz.core.resources import ResourceIndex
from gateway_authz.core.settings import EntityKind, RoleAssignment, RoleDefinition
from gateway_authz.entra.authorizer import EntraAuthorizer
from gateway_authz.entra.jwt import VerifiedJwt
from gateway_authz.entra.rbac import RbacPolicy, permission_for, unlisted_entity_permissions
from gateway_authz.entra.roles import BUILTIN_ROLES
from tests._factories import HOST, contoso, make_settings

USER = "0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d"
NAMESPACE = contoso()
NS_SCOPE = NAMESPACE.scope


def role(**exclusions: tuple[str, ...]) -> RoleDefinition:
    return RoleDefinition(
        role_name="relay-but-not",
        id="11111111-2222-3333-4444-555555555555",
        actions=("Microsoft.Relay/*",),
        data_actions=("Microsoft.Relay/*",),
        **exclusions,
    )


EXCLUSIONS = {
    "hc-send": ({"not_data_actions": ("Microsoft.Relay/namespaces/hybridConnections/send/action",)}, Right.SEND),
    "wcf-send": ({"not_data_actions": ("Microsoft.Relay/namespaces/wcfRelays/send/action",)}, Right.SEND),
    "hc-listen": ({"not_data_actions": ("Microsoft.Relay/namespaces/hybridConnections/listen/action",)}, Right.LISTEN),
    "any-send-wildcard": ({"not_data_actions": ("Microsoft.Relay/namespaces/*/send/action",)}, Right.SEND),
    "hc-write": ({"not_actions": ("Microsoft.Relay/namespaces/hybridConnections/write",)}, Right.MANAGE),
}


def rbac_for(definition: RoleDefinition) -> RbacPolicy:
    assignment = RoleAssignment(
        principal_id=USER, principal_type="User", role_definition_id=definition.id, scope=NS_SCOPE
    )
    return RbacPolicy((*BUILTIN_ROLES, definition), (assignment,))


@pytest.mark.parametrize(("exclusion", "right"), EXCLUSIONS.values(), ids=EXCLUSIONS.keys())
def test_policy_refuses_the_namespace_permission_when_an_entity_kind_is_excluded(
    exclusion: dict[str, tuple[str, ...]], right: Right
) -> None:
    rbac = rbac_for(role(**exclusion))
    namespace_permission = permission_for(right, None)
    rbac.authorize(USER, (), NS_SCOPE, namespace_permission)  # the namespace itself: granted, as before
    with pytest.raises(NotPermitted):
        rbac.authorize(USER, (), NS_SCOPE, namespace_permission, unless_excluding=unlisted_entity_permissions(right))


def test_unlisted_entity_permissions_name_both_kinds() -> None:
    assert unlisted_entity_permissions(Right.SEND) == tuple(
        permission_for(Right.SEND, kind) for kind in (EntityKind.HYBRID_CONNECTION, EntityKind.WCF_RELAY)
    )


@dataclass
class _FixedKeys:
    """The authorizer's key seam: every token verifies as ``USER``."""

    async def verify(self, _token: str, *, now: float) -> VerifiedJwt:
        return VerifiedJwt(
            issuer="https://issuer.example/",
            tenant="t",
            oid=USER,
            groups=(),
            groups_overage=False,
            expires_at=now + 600,
            version="2.0",
            audience="https://relay.azure.net",
        )


def authorizer() -> EntraAuthorizer:
    entra = EntraAuthorizer(make_settings(), metrics=Metrics())
    entra.keys = _FixedKeys()  # type: ignore[assignment]
    return entra


RESOLVE = ResourceIndex([NAMESPACE]).resolve


@pytest.mark.parametrize(("exclusion", "right"), EXCLUSIONS.values(), ids=EXCLUSIONS.keys())
async def test_an_unlisted_entity_is_denied_what_an_exclusion_refuses_for_any_kind(
    exclusion: dict[str, tuple[str, ...]], right: Right
) -> None:
    decision, _ = await authorizer().authorize(
        "jwt", rbac_for(role(**exclusion)), RESOLVE(HOST, "/billing"), (right,), 0
    )
    assert (decision.allowed, decision.status, decision.reason) == (False, 403, "no_role_assignment")


async def test_an_unlisted_entity_is_allowed_by_a_role_without_exclusions() -> None:
    decision, _ = await authorizer().authorize("jwt", rbac_for(role()), RESOLVE(HOST, "/billing"), (Right.SEND,), 0)
    assert decision.allowed and decision.status == 200


async def test_the_namespace_itself_keeps_the_namespace_permission() -> None:
    """``/`` names no entity at all: the exclusion of a hybrid-connection right does not reach it."""
    rbac = rbac_for(role(not_data_actions=("Microsoft.Relay/namespaces/hybridConnections/send/action",)))
    decision, _ = await authorizer().authorize("jwt", rbac, RESOLVE(HOST, "/"), (Right.SEND,), 0)
    assert decision.allowed and decision.status == 200


async def test_a_listed_entity_is_decided_by_its_own_kind_as_before() -> None:
    """``orders`` is a hybrid connection: excluding WCF send leaves it allowed, excluding HC send denies it."""
    wcf_excluded = rbac_for(role(not_data_actions=("Microsoft.Relay/namespaces/wcfRelays/send/action",)))
    allowed, _ = await authorizer().authorize("jwt", wcf_excluded, RESOLVE(HOST, "/orders"), (Right.SEND,), 0)
    assert allowed.allowed
    hc_excluded = rbac_for(role(not_data_actions=("Microsoft.Relay/namespaces/hybridConnections/send/action",)))
    denied, _ = await authorizer().authorize("jwt", hc_excluded, RESOLVE(HOST, "/orders"), (Right.SEND,), 0)
    assert not denied.allowed and denied.status == 403
