"""The validated configuration as frozen values; :mod:`gateway_authz.config.loader` builds it from YAML.

Property names in the YAML follow Azure's ARM resources (``authorizationRules``, ``keyName``,
``requiresClientAuthorization``…); here they are Python names. Nothing in this module validates: a
:class:`Settings` only ever comes out of the loader, which has already checked every bound.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .model import Right

__all__ = [
    "DEFAULT_SUBSCRIPTION_SCOPE",
    "AuthorizationRule",
    "CacheSettings",
    "Entity",
    "EntityKind",
    "Identity",
    "Issuer",
    "ManagementRoute",
    "Namespace",
    "RoleAssignment",
    "RoleDefinition",
    "SasSettings",
    "Settings",
    "unavailable_in_order",
]

# Scope of a namespace that has no resourceId: the contract's placeholder subscription and resource group.
DEFAULT_SUBSCRIPTION_SCOPE = "/subscriptions/-/resourceGroups/-"


class EntityKind(enum.Enum):
    """The Relay entity types; the value is the ARM path segment."""

    HYBRID_CONNECTION = "hybridConnections"
    WCF_RELAY = "wcfRelays"


@dataclass(frozen=True, slots=True)
class AuthorizationRule:
    """A shared access authorization rule. The HMAC key is the UTF-8 bytes of the key *string*."""

    key_name: str
    primary_key: str
    secondary_key: str | None
    rights: frozenset[Right]
    # Key references that could not be had yet (a secret file absent or empty, an empty variable), e.g.
    # "namespaces[0].authorizationRules[0].primaryKey: secret file /run/k/root-primary is missing". Their key is
    # "" here: no HMAC is made under it, and a token no present key verifies is a 503, not a 401 (see RuleKeys).
    unavailable: tuple[str, ...] = ()

    def grants(self, right: Right) -> bool:
        """Whether this rule confers ``right``; Manage implies Listen and Send."""
        return right in self.rights or Right.MANAGE in self.rights

    def __repr__(self) -> str:  # never show keys, even in a traceback
        rights = ",".join(sorted(r.value for r in self.rights))
        return f"AuthorizationRule(key_name={self.key_name!r}, rights={rights})"


@dataclass(frozen=True, slots=True)
class Entity:
    """A hybrid connection or WCF relay inside a namespace; ``name`` may contain ``/``."""

    kind: EntityKind
    name: str
    requires_client_authorization: bool
    rules: tuple[AuthorizationRule, ...]

    @property
    def segments(self) -> tuple[str, ...]:
        """The entity name as lower-case path segments, the form request paths are matched against."""
        return tuple(self.name.lower().split("/"))


@dataclass(frozen=True, slots=True)
class ManagementRoute:
    """Requests under ``path`` (whole segments) with one of ``methods`` (all methods when empty) need Manage."""

    path: str
    methods: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Namespace:
    """A Relay namespace: its hosts, its own rules (covering every entity) and its entities."""

    name: str
    hosts: tuple[str, ...]
    rules: tuple[AuthorizationRule, ...]
    entities: tuple[Entity, ...]
    resource_id: str | None = None
    management_routes: tuple[ManagementRoute, ...] = ()
    dry_run: bool = False

    @property
    def scope(self) -> str:
        """The ARM id used as this namespace's RBAC scope."""
        if self.resource_id:
            return self.resource_id
        return f"{DEFAULT_SUBSCRIPTION_SCOPE}/providers/Microsoft.Relay/namespaces/{self.name}"

    def unavailable_keys(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The key references that could not be had: of this namespace's own rules, and of its entities' rules."""
        own = tuple(reference for rule in self.rules for reference in rule.unavailable)
        entities = tuple(r for entity in self.entities for rule in entity.rules for r in rule.unavailable)
        return own, entities

    def entity_scope(self, entity: Entity) -> str:
        """The ARM id of ``entity``: the namespace scope plus ``/hybridConnections/<name>`` or ``/wcfRelays/<name>``."""
        return f"{self.scope}/{entity.kind.value}/{entity.name}"


@dataclass(frozen=True, slots=True)
class Issuer:
    """A trusted token issuer. ``issuer`` may hold ``{tenantid}``, filled from the token's ``tid``."""

    issuer: str
    tenants: tuple[str, ...]
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    discovery_url: str | None = None
    jwks_uri: str | None = None
    jwks: Mapping[str, Any] | None = None
    allow_insecure_http: bool = False


@dataclass(frozen=True, slots=True)
class Identity:
    """Bearer-JWT settings."""

    leeway_seconds: int = 60
    issuers: tuple[Issuer, ...] = ()


@dataclass(frozen=True, slots=True)
class RoleDefinition:
    """An Azure role definition: built-in or custom. Permission strings are case-insensitive with ``*``."""

    role_name: str
    id: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()


PrincipalType = Literal["User", "Group", "ServicePrincipal"]


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    """A role assigned to a principal (user, group or service principal) at an ARM scope."""

    principal_id: str
    principal_type: PrincipalType
    role_definition_id: str
    scope: str


@dataclass(frozen=True, slots=True)
class SasSettings:
    clock_skew_seconds: int = 300
    max_token_lifetime_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class CacheSettings:
    config_ttl_seconds: float = 30
    decision_ttl_seconds: float = 60
    decision_max_entries: int = 100_000
    jwks_ttl_seconds: float = 3600
    jwks_refresh_cooldown_seconds: float = 30


@dataclass(frozen=True, slots=True)
class Settings:
    """A whole, valid configuration. ``role_definitions`` holds the built-in roles plus the custom ones."""

    namespaces: tuple[Namespace, ...]
    identity: Identity = field(default_factory=Identity)
    role_definitions: tuple[RoleDefinition, ...] = ()
    role_assignments: tuple[RoleAssignment, ...] = ()
    sas: SasSettings = field(default_factory=SasSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    dry_run: bool = False
    source: str = ""
    fingerprint: str = ""
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def unavailable_keys(self) -> tuple[str, ...]:
        """Every key reference that could not be had (see ``AuthorizationRule.unavailable``): readiness names them.

        Those of every namespace's own rules first, then those of the entities' rules."""
        return unavailable_in_order([namespace.unavailable_keys() for namespace in self.namespaces])


def unavailable_in_order(found: Sequence[tuple[tuple[str, ...], tuple[str, ...]]]) -> tuple[str, ...]:
    """:meth:`Namespace.unavailable_keys` of each namespace as one list: every namespace's own first, then entities'."""
    return tuple(r for own, _ in found for r in own) + tuple(r for _, entities in found for r in entities)
