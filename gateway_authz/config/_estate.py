"""Files into one configuration: the merge rules of contract §5, and every conflict named with both places.

``namespaces``, ``roleDefinitions``, ``roleAssignments`` and ``identity.issuers`` are concatenated in file order;
``sas``, ``cache``, ``identity.leewaySeconds`` and ``dryRun`` may be set in one file only. A namespace name, a host,
a custom role's id or name, or an issuer defined twice is a problem located in the second file that names the
first. Role assignments are resolved against every file's role definitions and counted once when repeated.

The merge is whole or nothing: any problem in any file raises :class:`ConfigError` with all of them. Resolving
role assignments is the costly part at scale (hundreds of thousands of them): the merger's
:class:`~._assignments.AssignmentResolver` keeps the last resolution, all of it while no file that holds assignments
or roles changed, and each unchanged file's own when one did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from ..core.errors import ConfigError, ConfigProblem
from ..core.settings import (
    CacheSettings,
    Identity,
    Issuer,
    Namespace,
    RoleAssignment,
    RoleDefinition,
    SasSettings,
    Settings,
)
from ..entra.roles import BUILTIN_ROLES
from ._assignments import AssignmentResolver
from ._fragment import FileRead, Fragment

__all__ = ["EstateMerger", "place"]


def place(name: str | None, location: str) -> str:
    """Where a problem is: ``FILE: location`` in a directory, the bare location for a single file."""
    if name is None:
        return location
    return f"{name}: {location}" if location else name


class EstateMerger:
    """Merges the files of one configuration source; keeps the last assignment resolution to reuse."""

    def __init__(self) -> None:
        self._resolver = AssignmentResolver()  # resolves again the assignments of changed files only
        self._roles: tuple[RoleDefinition, ...] = ()  # the last merge's, reused while equal (the RBAC index too)
        self._last: _Merged | None = None  # the last good merge of a directory, to patch

    def merge(self, files: Sequence[tuple[str, FileRead]], *, directory: bool, source: str) -> Settings:
        """The configuration of ``files`` (in order); raises :class:`ConfigError` naming every problem.

        ``directory``: the files are a §5 directory (problems are prefixed with the file name and an estate
        with no namespace and no issuer is refused); otherwise ``files`` is the one file of the §2 form.
        """
        if directory and self._last is not None:
            patched = self._last.patched(files, source)
            if patched is not None:
                self._last = patched
                return patched.settings
        settings = self._merge(files, directory=directory, source=source)
        if directory:
            self._last = _Merged.of(files, settings)
        return settings

    def _merge(self, files: Sequence[tuple[str, FileRead]], *, directory: bool, source: str) -> Settings:
        problems: list[ConfigProblem] = []
        valid: list[tuple[str | None, Fragment]] = []
        for name, read in files:
            label = name if directory else None
            problems.extend(ConfigProblem(place(label, p.location), p.message) for p in read.problems)
            if read.fragment is not None and not read.problems:
                valid.append((label, read.fragment))
        conflicts = _Conflicts(problems)
        namespaces = conflicts.namespaces(valid)
        issuers = conflicts.issuers(valid)
        roles = conflicts.roles(valid)
        if _same(roles, self._roles):
            roles = self._roles
        self._roles = roles
        singles = conflicts.singles(valid)
        assignments = self._assignments(files, directory, roles, problems)
        if not problems and directory and not namespaces and not issuers:
            problems.append(ConfigProblem("", "the directory defines no namespace and no issuer"))
        if problems:
            raise ConfigError(problems)
        leeway, sas, cache = singles.get("identity.leewaySeconds"), singles.get("sas"), singles.get("cache")
        return Settings(
            namespaces=namespaces,
            identity=Identity(
                leeway_seconds=leeway if isinstance(leeway, int) else Identity().leeway_seconds,
                issuers=issuers,
            ),
            role_definitions=roles,
            role_assignments=assignments,
            sas=sas if isinstance(sas, SasSettings) else SasSettings(),
            cache=cache if isinstance(cache, CacheSettings) else CacheSettings(),
            dry_run=singles.get("dryRun") is True,
            source=source,
            fingerprint=_fingerprint(files, directory),
        )

    def _assignments(
        self,
        files: Sequence[tuple[str, FileRead]],
        directory: bool,
        roles: tuple[RoleDefinition, ...],
        problems: list[ConfigProblem],
    ) -> tuple[RoleAssignment, ...]:
        fragments = [(name, read.fragment) for name, read in files if read.fragment is not None]
        declared = frozenset().union(*(fragment.declared_roles for _, fragment in fragments))
        raw = [
            (place(name if directory else None, "x")[:-1], fragment.assignments)  # problems prefixed "FILE: "
            for name, fragment in fragments
            if fragment.assignments
        ]
        result, found = self._resolver(raw, roles, declared)
        problems.extend(found)
        return result


@dataclass(frozen=True, slots=True)
class _Merged:
    """A good merge of a directory, kept so that a change to namespace files only can be patched in.

    Every file that changed (or went) must hold namespaces only, before and after, without problems; the new
    namespaces' names and hosts must not be taken. Anything else (roles, issuers, assignments, one-file sections, a
    conflict to report) goes through the full merge, which also words its problems.
    """

    reads: dict[str, FileRead]
    names: dict[str, str]  # folded namespace name -> file
    hosts: dict[str, str]  # host -> file
    settings: Settings

    @classmethod
    def of(cls, files: Sequence[tuple[str, FileRead]], settings: Settings) -> _Merged:
        names: dict[str, str] = {}
        hosts: dict[str, str] = {}
        for name, read in files:
            for namespace in read.fragment.namespaces if read.fragment is not None else ():
                names[namespace.name.lower()] = name
                hosts.update(dict.fromkeys(namespace.hosts, name))
        return cls(dict(files), names, hosts, settings)

    def patched(self, files: Sequence[tuple[str, FileRead]], source: str) -> _Merged | None:
        if source != self.settings.source:
            return None
        current = dict(files)
        changed = [name for name, read in files if self.reads.get(name) is not read]
        gone = [name for name in self.reads if name not in current]
        if len(changed) + len(gone) > max(8, len(files) // 8):
            return None  # a large change: the full merge is as cheap, and checks everything
        names, hosts = dict(self.names), dict(self.hosts)
        for name in (*changed, *gone):
            before = self.reads.get(name)
            if before is not None:
                if not _namespaces_only(before):
                    return None
                for namespace in before.fragment.namespaces if before.fragment is not None else ():
                    names.pop(namespace.name.lower(), None)
                    for host in namespace.hosts:
                        hosts.pop(host, None)
        for name in changed:
            read = current[name]
            if read.problems or not _namespaces_only(read):
                return None
            for namespace in read.fragment.namespaces if read.fragment is not None else ():
                if names.setdefault(namespace.name.lower(), name) != name:
                    return None
                for host in namespace.hosts:
                    if hosts.setdefault(host, name) != name:
                        return None
        namespaces = tuple(ns for _, read in files if read.fragment is not None for ns in read.fragment.namespaces)
        if not namespaces and not self.settings.identity.issuers:
            return None
        settings = replace(self.settings, namespaces=namespaces, fingerprint=_fingerprint(files, True))
        return _Merged(current, names, hosts, settings)


def _namespaces_only(read: FileRead) -> bool:
    fragment = read.fragment
    return fragment is not None and fragment == Fragment(namespaces=fragment.namespaces)


class _Conflicts:
    """The checks across files; each problem names the second place and the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self._problems = problems

    def _unique(self, seen: dict[str, str], key: str, where: str, what: str) -> bool:
        first = seen.get(key)
        if first is not None:
            self._problems.append(ConfigProblem(where, f"duplicate {what}; it is already defined at {first}"))
            return False
        seen[key] = where
        return True

    def namespaces(self, valid: Iterable[tuple[str | None, Fragment]]) -> tuple[Namespace, ...]:
        """Names and hosts once across files. Runs on every reload over every namespace, so places are kept as
        (file, index, host index) and spelt out only for a conflict."""
        names: dict[str, tuple[str | None, int]] = {}
        hosts: dict[str, tuple[str | None, int, int]] = {}
        result: list[Namespace] = []
        for label, fragment in valid:
            for i, namespace in enumerate(fragment.namespaces):
                folded = namespace.name.lower()
                first = names.setdefault(folded, (label, i))
                if first != (label, i):
                    self._conflict(place(label, f"namespaces[{i}].name"), first, "name", "namespace name")
                for j, host in enumerate(namespace.hosts):
                    seen = hosts.setdefault(host, (label, i, j))
                    if seen != (label, i, j):
                        where = place(label, f"namespaces[{i}].hosts[{j}]")
                        self._conflict(where, seen[:2], f"hosts[{seen[2]}]", "host")
            result.extend(fragment.namespaces)
        return tuple(result)

    def _conflict(self, where: str, first: tuple[str | None, int], field: str, what: str) -> None:
        there = place(first[0], f"namespaces[{first[1]}].{field}")
        self._problems.append(ConfigProblem(where, f"duplicate {what}; it is already defined at {there}"))

    def issuers(self, valid: Iterable[tuple[str | None, Fragment]]) -> tuple[Issuer, ...]:
        """An issuer string once: the verifier cannot tell two entries for one ``iss`` apart, tenants or not."""
        seen: dict[str, str] = {}
        result: list[Issuer] = []
        for label, fragment in valid:
            for i, issuer in enumerate(fragment.issuers):
                self._unique(seen, issuer.issuer, place(label, f"identity.issuers[{i}].issuer"), "issuer")
            result.extend(fragment.issuers)
        return tuple(result)

    def roles(self, valid: Iterable[tuple[str | None, Fragment]]) -> tuple[RoleDefinition, ...]:
        names = {role.role_name.casefold(): "the built-in roles" for role in BUILTIN_ROLES}
        ids = {role.id: "the built-in roles" for role in BUILTIN_ROLES}
        result = list(BUILTIN_ROLES)
        for label, fragment in valid:
            for i, role in enumerate(fragment.role_definitions):
                where = f"roleDefinitions[{i}]"
                self._unique(names, role.role_name.casefold(), place(label, f"{where}.roleName"), "roleName")
                self._unique(ids, role.id, place(label, f"{where}.id"), "role id")
            result.extend(fragment.role_definitions)
        return tuple(result)

    def singles(self, valid: Iterable[tuple[str | None, Fragment]]) -> dict[str, object]:
        seen: dict[str, str] = {}
        values: dict[str, object] = {}
        for label, fragment in valid:
            for section in fragment.singles():
                where = place(label, section)
                first = seen.setdefault(section, where)
                if first is not where:
                    self._problems.append(
                        ConfigProblem(where, f"is already set at {first}; it may be set in one file only")
                    )
                    continue
                values[section] = {
                    "sas": fragment.sas,
                    "cache": fragment.cache,
                    "identity.leewaySeconds": fragment.leeway_seconds,
                    "dryRun": fragment.dry_run,
                }[section]
        return values


def _same(left: tuple[object, ...], right: tuple[object, ...]) -> bool:
    return len(left) == len(right) and all(a is b for a, b in zip(left, right, strict=True))


def _fingerprint(files: Sequence[tuple[str, FileRead]], directory: bool) -> str:
    """A single file's own digest (bytes and keys); for a directory, one over every name and digest."""
    if not directory:
        return files[0][1].digest if files else ""
    # each part length-prefixed, so no two listings give the same text
    text = "".join([f"{len(name)}:{name}{len(read.digest)}:{read.digest}" for name, read in files])
    digest = hashlib.sha256(b"gateway-authz config directory v2\x00")
    digest.update(text.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
