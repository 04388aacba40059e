"""Role assignments: read per file with their role still a name or an id, then resolved against every file's roles.

In a configuration directory (contract §5) a role may be defined in one file and assigned in another, so a file's
assignments are read into :class:`RawAssignment` values first and resolved when the files are merged. Hundreds of
thousands of assignments are the bulk of an estate: a plain one takes a fast path that accepts only what the full
checks accept, with the same result (``tests/config/test_fast_paths.py`` holds them to it).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..core.errors import ConfigProblem
from ..core.settings import PrincipalType, RoleAssignment, RoleDefinition
from ._reader import GUID_PATTERN, Reader, at, index, plain

__all__ = [
    "AssignmentResolver",
    "RawAssignment",
    "checked_assignment",
    "read_raw_assignments",
    "resolve_assignments",
]

_PRINCIPAL_TYPES: dict[str, PrincipalType] = {
    "User": "User",
    "Group": "Group",
    "ServicePrincipal": "ServicePrincipal",
}
_SCOPE = re.compile(r"/|/subscriptions(?:/[^/\s]+)+", re.IGNORECASE)
_ROLE_ID_PATH = re.compile(r"(?:/[^/\s]+)*/providers/Microsoft\.Authorization/roleDefinitions/([^/\s]+)", re.I)


class RawAssignment(NamedTuple):
    """A role assignment as written, its role not yet resolved: in a directory the role may be in another file.

    ``principal_id``, ``principal_type`` or ``scope`` is ``None`` when it was invalid (a problem is recorded then,
    so the file is refused); the role is still resolved, so one round reports an unknown role too. A named tuple,
    not a dataclass: the directory reader sends a changed file's thousands of them over a pipe, and a tuple
    unpickles at C speed (a slotted dataclass through Python, 5 µs each).
    """

    principal_id: str | None
    principal_type: PrincipalType | None
    role_name: str | None
    role_id: str | None  # the bare GUID, lower-case
    scope: str | None
    position: int  # at roleAssignments[position]

    @property
    def location(self) -> str:
        return index("roleAssignments", self.position)


def read_raw_assignments(reader: Reader, value: object, location: str) -> tuple[RawAssignment, ...]:
    """Every well-formed assignment, naming its role by exactly one of ``roleDefinitionName`` or ``…Id``."""
    result = []
    for position, (item_location, item) in enumerate(reader.items(value, location)):
        checked = _plain_assignment(item, position) or checked_assignment(reader, item, item_location, position)
        if checked is not None:
            result.append(checked)
    return tuple(result)


def checked_assignment(reader: Reader, item: object, item_location: str, position: int) -> RawAssignment | None:
    """One assignment through every check, each problem recorded (what :func:`_plain_assignment` must agree with)."""
    raw = reader.mapping(
        item,
        item_location,
        required=("principalId", "principalType", "scope"),
        optional=("roleDefinitionName", "roleDefinitionId"),
    )
    if raw is None:
        return None
    principal = reader.guid(raw.get("principalId"), at(item_location, "principalId"))
    kind = None
    if raw.get("principalType") is not None:
        kind = reader.choice(
            raw["principalType"],
            at(item_location, "principalType"),
            _PRINCIPAL_TYPES,
            what="principalType",
        )
    scope = _scope(reader, raw.get("scope"), at(item_location, "scope"))
    reference = _raw_role_reference(reader, raw, item_location)
    if reference is None:
        return None
    role_name, role_id = reference
    principal_type = _PRINCIPAL_TYPES[kind] if kind is not None else None
    scope = sys.intern(scope) if scope is not None else None  # many assignments share a scope
    return RawAssignment(principal, principal_type, role_name, role_id, scope, position)


def _plain_assignment(item: object, position: int) -> RawAssignment | None:
    """The assignment when it is written the plain way, else ``None`` (the full checks then run and report).

    Hundreds of thousands of assignments are the bulk of an estate; this accepts only what the full checks accept,
    with the same result.
    """
    if type(item) is not dict or len(item) != 4:
        return None
    principal, kind, scope = item.get("principalId"), item.get("principalType"), item.get("scope")
    role_name, role_id = item.get("roleDefinitionName"), item.get("roleDefinitionId")
    if type(principal) is not str or len(principal) > 36 or not GUID_PATTERN.fullmatch(principal):
        return None
    if type(kind) is not str or kind not in _PRINCIPAL_TYPES or type(scope) is not str:
        return None
    if not plain(scope, 2048) or not _SCOPE.fullmatch(scope):
        return None
    guid = None
    if role_id is None:
        if not plain(role_name, 512):
            return None
    else:
        match = _ROLE_ID_PATH.fullmatch(role_id) if plain(role_id, 1024) else None
        guid = match.group(1) if match else role_id
        if role_name is not None or not isinstance(guid, str) or not GUID_PATTERN.fullmatch(guid):
            return None
        guid = sys.intern(guid.lower())
    return RawAssignment(
        sys.intern(principal.lower()),
        _PRINCIPAL_TYPES[kind],
        role_name if role_id is None else None,
        guid,
        sys.intern(scope),
        position,
    )


def resolve_assignments(
    reader: Reader,
    raw: tuple[RawAssignment, ...],
    roles: tuple[RoleDefinition, ...],
    declared: frozenset[str],
    *,
    prefix: str = "",
    reuse: Iterable[RoleAssignment] = (),
) -> tuple[RoleAssignment, ...]:
    """``raw`` with each role resolved; an unknown role is a problem at ``prefix`` + the assignment's location.

    The same assignment (principal, role, scope) twice counts once: merged Azure exports repeat them. An
    assignment equal to one of ``reuse`` (the file's last resolution) is that very object.
    """
    by_name = {role.role_name.casefold(): role.id for role in roles}
    by_id = {role.id for role in roles}
    known = {(a.principal_id, a.principal_type, a.role_definition_id, a.scope): a for a in reuse}
    result: dict[tuple[str, str, str], RoleAssignment] = {}
    for item in raw:
        if item.role_name is not None:
            found = by_name.get(item.role_name.casefold())
            if found is None and item.role_name.casefold() not in declared:
                reader.add(prefix + at(item.location, "roleDefinitionName"), f"unknown role {item.role_name!r}")
        else:
            found = item.role_id if item.role_id in by_id else None
            if found is None and item.role_id not in declared:
                reader.add(prefix + at(item.location, "roleDefinitionId"), f"unknown role definition {item.role_id}")
        if found is None or item.principal_id is None or item.principal_type is None or item.scope is None:
            continue
        assignment = known.get((item.principal_id, item.principal_type, found, item.scope)) or RoleAssignment(
            principal_id=item.principal_id,
            principal_type=item.principal_type,
            role_definition_id=found,
            scope=item.scope,
        )
        result.setdefault((item.principal_id, found, item.scope.lower()), assignment)
    return tuple(result.values())


_Key = tuple[str, str, str]  # principal, role id, scope folded: what makes two assignments the same one


@dataclass(frozen=True, slots=True)
class _Resolved:
    raw: tuple[RawAssignment, ...]  # what the file read, compared by identity: the loader keeps an unchanged read
    assignments: tuple[RoleAssignment, ...]


class AssignmentResolver:
    """:func:`resolve_assignments` over the files of a directory, resolving again only the files that changed.

    A file's assignments resolve the same while the roles (the very same tuple) and the role names declared
    anywhere stay the same. Re-resolving all 100,000 assignments of an estate took a third of a second per changed
    assignment file; now the file's own are resolved. Every other file keeps its very ``RoleAssignment`` objects,
    and so does every assignment of the changed file that is still there, equal: the RBAC index
    (``RbacPolicy.from_settings(…, previous)``) then indexes only what really came or went.
    """

    def __init__(self) -> None:
        self._basis: tuple[tuple[RoleDefinition, ...], frozenset[str]] | None = None
        self._files: dict[str, _Resolved] = {}  # by file (its problem prefix)
        self._last: tuple[list[tuple[str, tuple[RawAssignment, ...]]], tuple[RoleAssignment, ...]] | None = None

    def __call__(
        self,
        files: Sequence[tuple[str, tuple[RawAssignment, ...]]],
        roles: tuple[RoleDefinition, ...],
        declared: frozenset[str],
    ) -> tuple[tuple[RoleAssignment, ...], list[ConfigProblem]]:
        """Every file's (``(problem prefix, raw)``) assignments resolved, each counted once, and the problems."""
        same_basis = self._basis is not None and self._basis[0] is roles and self._basis[1] == declared
        if same_basis and self._last is not None and _same_files(self._last[0], files):
            return self._last[1], []  # nothing changed: not even the cross-file merge is made again
        self._basis = (roles, declared)
        known, self._files = self._files, {}
        merged: dict[_Key, RoleAssignment] = {}
        problems: list[ConfigProblem] = []
        for prefix, raw in files:
            resolved = known.get(prefix)
            if resolved is None or resolved.raw is not raw or not same_basis:
                reader = Reader()
                # an equal assignment is the same one: keep the object the RBAC index knows
                reuse = resolved.assignments if resolved is not None else ()
                assignments = resolve_assignments(reader, raw, roles, declared, prefix=prefix, reuse=reuse)
                if reader.problems:  # the merge is refused: nothing of this file is worth keeping
                    problems.extend(reader.problems)
                    continue
                resolved = _Resolved(raw, assignments)
            self._files[prefix] = resolved
            # Keys made again each merge, not kept: 200,000 of them are 13 MB held for a 50 ms saving. Inline: a
            # function call per assignment would double it.
            for a in resolved.assignments:
                merged.setdefault((a.principal_id, a.role_definition_id, a.scope.lower()), a)
        result = tuple(merged.values())
        self._last = (list(files), result) if not problems else None
        return result, problems


def _same_files(
    left: Sequence[tuple[str, tuple[RawAssignment, ...]]], right: Sequence[tuple[str, tuple[RawAssignment, ...]]]
) -> bool:
    """The same files, in the same order, each with the very same read."""
    return len(left) == len(right) and all(a == c and b is d for (a, b), (c, d) in zip(left, right, strict=True))


def _raw_role_reference(reader: Reader, raw: dict[str, object], location: str) -> tuple[str | None, str | None] | None:
    """``(roleDefinitionName, None)`` or ``(None, guid)``; ``None`` after recording what is wrong."""
    name_value, id_value = raw.get("roleDefinitionName"), raw.get("roleDefinitionId")
    if (name_value is None) == (id_value is None):
        reader.add(location, "must have exactly one of roleDefinitionName or roleDefinitionId")
        return None
    if name_value is not None:
        name = reader.string(name_value, at(location, "roleDefinitionName"), max_length=512)
        return None if name is None else (name, None)
    id_location = at(location, "roleDefinitionId")
    text = reader.string(id_value, id_location, max_length=1024)
    if text is None:
        return None
    match = _ROLE_ID_PATH.fullmatch(text)
    guid = match.group(1) if match else text
    if not GUID_PATTERN.fullmatch(guid):
        reader.add(id_location, "must be a GUID or a .../providers/Microsoft.Authorization/roleDefinitions/<GUID> id")
        return None
    return None, guid.lower()


def _scope(reader: Reader, value: object, location: str) -> str | None:
    """An ARM scope: ``/`` or ``/subscriptions/...`` with non-empty segments and no trailing ``/``."""
    text = reader.string(value, location, max_length=2048)
    if text is not None and not _SCOPE.fullmatch(text):
        reader.add(location, "must be '/' or an ARM scope like /subscriptions/<id>/resourceGroups/<name>/...")
        return None
    return text
