"""Config traps: a configuration that loads but probably does not do what its author meant.

Warnings, not errors (``config validate --strict`` makes them fail): a role assignment whose scope names no
configured namespace or entity and lies above none (it can never match; for the first 20, a did-you-mean names
the nearest configured scope), a host claimed by two namespaces, a key that is not 32 random bytes in base64 as
Azure issues them (users may choose other keys), and an entity rule with the keyName of a namespace rule (the
entity's is tried first; an identical one is a duplicate). Unknown role names are errors already (the loader
refuses them).

Locations follow the configuration's own order (``namespaces[0].hybridConnections[1].authorizationRules[0]``).
A warning never holds a key: only names, locations and lengths.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from ..core.settings import AuthorizationRule, Entity, Namespace, RoleAssignment, Settings
from ..entra.scopes import ScopeIndex

__all__ = ["ConfigLint", "ConfigWarning", "config_warnings", "log_warnings"]

_AZURE_KEY_BYTES = 32
_HINTED_SCOPES = 20


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


def config_warnings(settings: Settings) -> list[ConfigWarning]:
    """Every trap found in ``settings``, in the order of the configuration."""
    return ConfigLint()(settings)


class ConfigLint:
    """:func:`config_warnings` for a configuration that changes a little at a time, as the service's does.

    Checking a 1,000-namespace estate with 100,000 role assignments takes about half a second, on the event loop
    at every reload. What did not change since the last call (the very same namespace objects at the same place,
    as the loader keeps them) is not checked again, and under the same configured scopes an assignment's scope is
    looked up once (:class:`_ScopeCheck`).
    """

    def __init__(self) -> None:
        self._namespaces: dict[tuple[int, str], _Checked] = {}
        self._scopes: _ScopeCheck | None = None

    def __call__(self, settings: Settings) -> list[ConfigWarning]:
        found = _hosts(settings.namespaces)
        namespaces: dict[tuple[int, str], _Checked] = {}
        for i, namespace in enumerate(settings.namespaces):
            key = (id(namespace), f"namespaces[{i}]")
            known = self._namespaces.get(key)
            if known is None or known.namespace is not namespace:  # held, so its id is not reused meanwhile
                scopes = (namespace.scope, *(namespace.entity_scope(entity) for entity in namespace.entities))
                known = _Checked(namespace, _namespace(key[1], namespace), scopes)
            namespaces[key] = known
            found += known.warnings
        self._namespaces = namespaces
        configured = [checked.scopes for checked in namespaces.values()]
        # Comparing the lists is cheap when little changed: an unchanged namespace's tuple is the very same object.
        if self._scopes is None or self._scopes.configured != configured:
            self._scopes = _ScopeCheck(configured)
        return found + self._scopes(settings.role_assignments)


class _ScopeCheck:
    """The scope warnings of role assignments against one set of configured scopes, remembered per scope.

    An estate's 100,000 assignments name some 10,000 scopes; a changed assignment file asks about its own new
    scopes only, and when none of the assignments' scopes is a stray (the usual case) that is all it costs.
    """

    def __init__(self, configured: list[tuple[str, ...]]) -> None:
        self.configured = configured
        self._index = ScopeIndex(scope for scopes in configured for scope in scopes)
        self._covered: dict[str, bool] = {}
        self._last: tuple[tuple[RoleAssignment, ...], list[ConfigWarning]] | None = None

    def __call__(self, assignments: tuple[RoleAssignment, ...]) -> list[ConfigWarning]:
        if self._last is not None and self._last[0] is assignments:
            return self._last[1]
        named = set(map(_scope_of, assignments))
        if len(self._covered) > 2 * len(named) + 1024:  # scopes no assignment names any more
            self._covered = {scope: self._covered[scope] for scope in named if scope in self._covered}
        for scope in named.difference(self._covered):
            self._covered[scope] = self._index.any_covered_by(scope)
        strays = {scope for scope in named if not self._covered[scope]}
        found = _scopes(self._index, strays, assignments) if strays else []
        self._last = (assignments, found)
        return found


_scope_of = attrgetter("scope")


@dataclass(frozen=True, slots=True)
class _Checked:
    namespace: Namespace
    warnings: list[ConfigWarning]
    scopes: tuple[str, ...]  # the namespace's and its entities' ARM ids, for the role assignment check


def log_warnings(ops_log: Any, warnings: Iterable[ConfigWarning]) -> None:
    """Each warning as one ``config.warning`` event on the operations log (at start and on each reload)."""
    if ops_log is None:
        return
    for warning in warnings:
        ops_log.warning("config.warning", location=warning.location, message=warning.message)


def _hosts(namespaces: Iterable[Namespace]) -> list[ConfigWarning]:
    owner: dict[str, str] = {}
    found = []
    for i, namespace in enumerate(namespaces):
        for j, host in enumerate(namespace.hosts):
            first = owner.setdefault(host.lower(), namespace.name)
            if first != namespace.name:
                found.append(
                    ConfigWarning(f"namespaces[{i}].hosts[{j}]", f"host {host} is also claimed by namespace {first}")
                )
    return found


def _entity_locations(location: str, namespace: Namespace) -> list[tuple[str, Entity]]:
    counts: dict[str, int] = {}
    located = []
    for entity in namespace.entities:
        index = counts.get(entity.kind.value, 0)
        counts[entity.kind.value] = index + 1
        located.append((f"{location}.{entity.kind.value}[{index}]", entity))
    return located


def _namespace(location: str, namespace: Namespace) -> list[ConfigWarning]:
    found = _keys(location, namespace.rules)
    by_name = {rule.key_name: rule for rule in namespace.rules}
    for entity_location, entity in _entity_locations(location, namespace):
        found += _keys(entity_location, entity.rules)
        for k, rule in enumerate(entity.rules):
            twin = by_name.get(rule.key_name)
            if twin is None:
                continue
            same = (twin.primary_key, twin.secondary_key, twin.rights) == (
                rule.primary_key,
                rule.secondary_key,
                rule.rights,
            )
            message = (
                f"duplicates the namespace rule {rule.key_name} (same keys and rights); remove one"
                if same
                else f"has the keyName of a namespace rule; tokens for {entity.name} named {rule.key_name} are "
                "checked against this entity rule's keys first"
            )
            found.append(ConfigWarning(f"{entity_location}.authorizationRules[{k}]", message))
    return found


def _keys(location: str, rules: Iterable[AuthorizationRule]) -> list[ConfigWarning]:
    found = []
    for k, rule in enumerate(rules):
        for slot, key in (("primaryKey", rule.primary_key), ("secondaryKey", rule.secondary_key)):
            if key and not _azure_shaped(key):
                found.append(
                    ConfigWarning(
                        f"{location}.authorizationRules[{k}].{slot}",
                        f"is not a 32-byte base64 key like the keys Azure issues ({len(key)} characters); "
                        "'gateway-authz keys generate' makes one",
                    )
                )
    return found


def _azure_shaped(key: str) -> bool:
    try:
        return len(key) == 44 and len(base64.b64decode(key, validate=True)) == _AZURE_KEY_BYTES
    except (binascii.Error, ValueError):
        return False


def _scopes(index: ScopeIndex, strays: set[str], assignments: Iterable[RoleAssignment]) -> list[ConfigWarning]:
    """A warning for each assignment whose scope is one of ``strays`` (covering nothing the index knows)."""
    found: list[ConfigWarning] = []
    for i, assignment in enumerate(assignments):
        scope = assignment.scope
        if scope not in strays:
            continue
        # A hint compares names at each level (2,000 namespaces in a resource group: some 25 ms); past the first
        # few, hints would cost an estate's start-up seconds, and the location still names each assignment.
        near = index.nearest(scope) if len(found) < _HINTED_SCOPES else None
        hint = f"; did you mean {near}?" if near else ""
        found.append(
            ConfigWarning(
                f"roleAssignments[{i}].scope",
                f"{scope} names no configured namespace or entity and lies above none, so it never matches{hint}",
            )
        )
    return found
