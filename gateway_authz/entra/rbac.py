"""Azure RBAC, evaluated the way Azure does for Relay: pure, indexed once per configuration, deny by default.

- A request's right becomes one permission on one ARM resource (:func:`permission_for`): Listen and Send are
  data actions (``Microsoft.Relay/namespaces/hybridConnections/listen/action`` …), Manage is the control action
  ``…/write``; on the namespace itself they lose the entity type segment.
- A role grants a permission when one of its patterns for that plane matches and none of its "not" patterns
  does (``actions - notActions``, ``dataActions - notDataActions``), per role definition. Permission strings are
  compared ASCII-case-insensitively and ``*`` matches any run of characters, ``/`` included.
- An assignment at scope S applies to S and everything under it by whole segments; an entity scope to that
  entity only (:mod:`.scopes`).
- A principal is matched by its ``oid`` or any group id from the token; a token with a groups overage brings no
  groups, and the caller passes ``groups_overage`` so that a deny can say so.
- Among several grants the answer is deterministic, whatever the configuration order: the narrowest scope,
  then role name, role id and principal id.
"""

from __future__ import annotations

import enum
import operator
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, count
from types import MappingProxyType
from typing import Final, TypeVar

from ..core.errors import NotPermitted
from ..core.model import Right
from ..core.settings import EntityKind, RoleAssignment, RoleDefinition, Settings
from .scopes import covers, fold, scope_segments

__all__ = [
    "Permission",
    "Plane",
    "RbacGrant",
    "RbacPolicy",
    "authorize",
    "permission_for",
    "unlisted_entity_permissions",
]

_RELAY_PREFIX: Final = "Microsoft.Relay/namespaces"
_T = TypeVar("_T")


class Plane(enum.Enum):
    """Control-plane ``actions`` or data-plane ``dataActions``."""

    CONTROL = "control"
    DATA = "data"


@dataclass(frozen=True, slots=True)
class Permission:
    """One permission, such as ``(DATA, Microsoft.Relay/namespaces/hybridConnections/send/action)``."""

    plane: Plane
    action: str

    def __str__(self) -> str:
        return self.action


def permission_for(right: Right, entity_kind: EntityKind | None) -> Permission:
    """The Azure permission a Relay right needs on an entity of ``entity_kind`` (None: the namespace)."""
    base = f"{_RELAY_PREFIX}/{entity_kind.value}" if entity_kind is not None else _RELAY_PREFIX
    if right is Right.LISTEN:
        return Permission(Plane.DATA, f"{base}/listen/action")
    if right is Right.SEND:
        return Permission(Plane.DATA, f"{base}/send/action")
    return Permission(Plane.CONTROL, f"{base}/write")


def unlisted_entity_permissions(right: Right) -> tuple[Permission, ...]:
    """What ``right`` would need on an entity the configuration does not list, for each kind it could be.

    Such a request is decided with the namespace-level permission (there is no entity scope to name), but the
    upstream may well be a hybrid connection or a WCF relay: a role that excludes the right on either kind
    (``notDataActions: [Microsoft.Relay/namespaces/hybridConnections/send/action]``) must not grant it there.
    """
    return tuple(permission_for(right, kind) for kind in EntityKind)


def _pattern(permission: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in fold(permission).split("*")))


@dataclass(frozen=True, slots=True)
class _Role:
    definition: RoleDefinition
    allow: tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]
    deny: tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]

    @classmethod
    def compile(cls, role: RoleDefinition) -> _Role:
        def patterns(values: Iterable[str]) -> tuple[re.Pattern[str], ...]:
            return tuple(_pattern(value) for value in values)

        return cls(
            role,
            (patterns(role.actions), patterns(role.data_actions)),
            (patterns(role.not_actions), patterns(role.not_data_actions)),
        )

    def grants(self, permission: Permission) -> bool:
        plane = 0 if permission.plane is Plane.CONTROL else 1
        action = fold(permission.action)
        return any(p.fullmatch(action) for p in self.allow[plane]) and not self.excludes(permission)

    def excludes(self, permission: Permission) -> bool:
        """Whether one of the role's ``notActions`` / ``notDataActions`` matches ``permission``."""
        plane = 0 if permission.plane is Plane.CONTROL else 1
        action = fold(permission.action)
        return any(p.fullmatch(action) for p in self.deny[plane])


@dataclass(frozen=True, slots=True)
class RbacGrant:
    """The assignment that allowed a request: what the audit log records as ``role`` and ``scope``."""

    role_name: str
    role_id: str
    scope: str
    principal_id: str
    principal_type: str
    via: str  # "oid" or "group"


@dataclass(frozen=True, slots=True)
class _Bound:
    assignment: RoleAssignment
    role: _Role
    scope: tuple[str, ...]


def _role_key(role_id: str) -> str:
    """Role ids compare as the bare GUID, also when given as ``/providers/…/roleDefinitions/<guid>``."""
    return fold(role_id.rstrip("/").rsplit("/", 1)[-1])


class RbacPolicy:
    """Role definitions and assignments indexed by principal id, built once per loaded configuration."""

    def __init__(self, role_definitions: Iterable[RoleDefinition], role_assignments: Iterable[RoleAssignment]) -> None:
        self._definitions = tuple(role_definitions)
        self._assignments = tuple(role_assignments)
        self._roles = {_role_key(role.id): _Role.compile(role) for role in self._definitions}
        index, unresolved = self._bind(self._assignments)
        self._index = MappingProxyType({k: tuple(v) for k, v in index.items()})
        self.unresolved: tuple[RoleAssignment, ...] = tuple(unresolved)

    @classmethod
    def from_settings(cls, settings: Settings, previous: RbacPolicy | None = None) -> RbacPolicy:
        """The policy of a loaded configuration (its role definitions already include the built-in roles).

        With ``previous`` and the very same role definitions, only the assignments that came or went since
        ``previous`` are indexed: a changed assignment file in an estate of 100,000 assignments costs its own.
        """
        if previous is None or previous._definitions is not settings.role_definitions:
            return cls(settings.role_definitions, settings.role_assignments)
        if previous._assignments is settings.role_assignments:
            return previous
        return previous._updated(settings.role_assignments)

    def _bind(self, assignments: Iterable[RoleAssignment]) -> tuple[dict[str, list[_Bound]], list[RoleAssignment]]:
        index: dict[str, list[_Bound]] = {}
        unresolved: list[RoleAssignment] = []
        scopes: dict[str, tuple[str, ...]] = {}  # one segment tuple per distinct scope: estates repeat scopes a lot
        for assignment in assignments:
            role = self._roles.get(_role_key(assignment.role_definition_id))
            if role is None:
                unresolved.append(assignment)  # the loader should refuse these; here they grant nothing
                continue
            segments = scopes.get(assignment.scope)
            if segments is None:
                segments = scopes[assignment.scope] = tuple(sys.intern(s) for s in scope_segments(assignment.scope))
            index.setdefault(fold(assignment.principal_id), []).append(_Bound(assignment, role, segments))
        return index, unresolved

    def _updated(self, assignments: tuple[RoleAssignment, ...]) -> RbacPolicy:
        """This policy with ``assignments`` instead of its own, indexing only the run of them that differs.

        A loader keeps an unchanged file's very objects in the same order, so a changed file is one run between a
        common head and a common tail, found by identity at C speed (comparing 100,000 frozen dataclasses by value,
        or hashing their ids, costs more than the index it saves). Several changes make one longer run.
        """
        head = _same_run(self._assignments, assignments)
        tail = _same_run(self._assignments[head:][::-1], assignments[head:][::-1])
        removed = self._assignments[head : len(self._assignments) - tail]
        added = assignments[head : len(assignments) - tail]
        if len(removed) + len(added) > len(assignments) // 2:
            return RbacPolicy(self._definitions, assignments)
        index = dict(self._index)
        gone: dict[str, dict[int, int]] = {}
        for assignment in removed:
            counts = gone.setdefault(fold(assignment.principal_id), {})
            counts[id(assignment)] = counts.get(id(assignment), 0) + 1
        for principal, counts in gone.items():
            kept = tuple(_without(index.get(principal, ()), counts, lambda bound: bound.assignment))
            if kept:
                index[principal] = kept
            else:
                index.pop(principal, None)
        bound, unresolved = self._bind(added)
        for principal, fresh in bound.items():
            index[principal] = (*index.get(principal, ()), *fresh)
        policy = RbacPolicy.__new__(RbacPolicy)
        policy._definitions, policy._assignments, policy._roles = self._definitions, assignments, self._roles
        policy._index = MappingProxyType(index)
        removed_ids = dict(Counter(map(id, removed)))
        policy.unresolved = (*_without(self.unresolved, removed_ids, lambda assignment: assignment), *unresolved)
        return policy

    def _candidates(self, principal_oid: str, groups: Iterable[str]) -> list[tuple[_Bound, str]]:
        found = [(bound, "oid") for bound in self._index.get(fold(principal_oid), ())]
        for group in dict.fromkeys(fold(g) for g in groups):
            found.extend((bound, "group") for bound in self._index.get(group, ()))
        return found

    def authorize(
        self,
        principal_oid: str,
        groups: Iterable[str],
        resource_scope: str,
        permission: Permission,
        *,
        groups_overage: bool = False,
        unless_excluding: tuple[Permission, ...] = (),
    ) -> RbacGrant:
        """The deciding grant for ``permission`` on ``resource_scope``, or :class:`NotPermitted`.

        Pass ``groups=()`` and ``groups_overage=True`` for a token whose groups did not fit in it. A role whose
        exclusions match one of ``unless_excluding`` does not grant (see :func:`unlisted_entity_permissions`).
        """
        resource = scope_segments(resource_scope)
        grants = [
            (bound, via)
            for bound, via in self._candidates(principal_oid, () if groups_overage else groups)
            if covers(bound.scope, resource)
            and bound.role.grants(permission)
            and not any(bound.role.excludes(other) for other in unless_excluding)
        ]
        if not grants:
            overage = "; groups overage: group assignments not evaluated" if groups_overage else ""
            raise NotPermitted(
                "no_role_assignment",
                f"no role assignment grants {permission.action} on {resource_scope} to {principal_oid}{overage}",
            )
        bound, via = min(
            grants,
            key=lambda g: (
                -len(g[0].scope),
                fold(g[0].role.definition.role_name),
                _role_key(g[0].role.definition.id),
                fold(g[0].assignment.principal_id),
                g[1],
                # Last, the spellings the fold ignores and the principal type: assignments that differ only there
                # must not let configuration order pick the scope string the audit shows.
                g[0].assignment.scope,
                g[0].assignment.principal_id,
                g[0].assignment.principal_type,
            ),
        )
        return RbacGrant(
            role_name=bound.role.definition.role_name,
            role_id=bound.role.definition.id,
            scope=bound.assignment.scope,
            principal_id=bound.assignment.principal_id,
            principal_type=bound.assignment.principal_type,
            via=via,
        )

    def explain(
        self, principal_oid: str, groups: Iterable[str], resource_scope: str, permission: Permission
    ) -> tuple[str, ...]:
        """One line per assignment of this principal, saying whether and why it applies (for ``check``)."""
        resource = scope_segments(resource_scope)
        lines = []
        for bound, via in self._candidates(principal_oid, groups):
            a = bound.assignment
            if not covers(bound.scope, resource):
                verdict = "scope does not cover the resource"
            elif not bound.role.grants(permission):
                verdict = f"role does not grant {permission.action}"
            else:
                verdict = "grants"
            lines.append(f"{bound.role.definition.role_name} at {a.scope} for {a.principal_id} (via {via}): {verdict}")
        return tuple(sorted(lines))


def authorize(
    assignments: Iterable[RoleAssignment],
    role_definitions: Iterable[RoleDefinition],
    principal_oid: str,
    groups: Iterable[str],
    resource_scope: str,
    permission: Permission,
) -> RbacGrant:
    """One-shot form of :meth:`RbacPolicy.authorize`; per request, build the policy once and reuse it."""
    return RbacPolicy(role_definitions, assignments).authorize(principal_oid, groups, resource_scope, permission)


def _same_run(left: Sequence[object], right: Sequence[object]) -> int:
    """How many leading items ``left`` and ``right`` share, the very same objects."""
    differing = compress(count(), map(operator.is_not, left, right))
    return next(differing, min(len(left), len(right)))


def _without(items: Iterable[_T], counts: dict[int, int], assignment: Callable[[_T], RoleAssignment]) -> Iterator[_T]:
    """``items`` less those whose assignment is counted in ``counts`` (by id), each as many times as counted."""
    for item in items:
        key = id(assignment(item))
        if counts.get(key, 0) > 0:
            counts[key] -= 1
        else:
            yield item
