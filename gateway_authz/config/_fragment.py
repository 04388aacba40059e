"""One configuration file, read and checked on its own: the unit that a reload parses again when it changes.

A :class:`Fragment` is everything one file contributes (contract §5): its namespaces, issuers, custom role
definitions and role assignments (their roles still unresolved, since a role may be defined in another file), and
the sections that may be set in one file only (``sas``, ``cache``, ``identity.leewaySeconds``, ``dryRun``). All
that can be checked inside the file is checked here, with locations relative to the file; what needs every file
(duplicates across files, role names) is left to :mod:`._estate`. A fragment is a frozen value: a reload keeps the
one of every unchanged file, so the namespaces it holds are the very objects already compiled for serving.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigProblem
from ..core.settings import CacheSettings, Issuer, Namespace, RoleDefinition, SasSettings
from ..entra.roles import BUILTIN_ROLES
from ._assignments import RawAssignment, read_raw_assignments
from ._identity import read_identity, read_role_definitions
from ._namespaces import read_namespaces
from ._reader import Reader, at
from ._secrets import Secrets
from ._yaml import parse_tree

__all__ = ["SINGLE_SECTIONS", "FileIdentity", "FileRead", "Fragment", "digest_of", "read_fragment"]

FileIdentity = tuple[int, int, int, int]  # device, inode, size, mtime in ns: a changed file has a new one

_SECTIONS = ("namespaces", "identity", "roleDefinitions", "roleAssignments", "sas", "cache", "dryRun")
# Sections that one file of a directory may set; the location each is reported at.
SINGLE_SECTIONS = ("sas", "cache", "identity.leewaySeconds", "dryRun")
MAX_CLOCK_SKEW_SECONDS = 900
MAX_DECISION_ENTRIES = 10_000_000
# YAML name -> (CacheSettings field, must be > 0 rather than >= 0)
_CACHE_SECONDS = {
    "configTtlSeconds": ("config_ttl_seconds", True),
    "decisionTtlSeconds": ("decision_ttl_seconds", False),
    "jwksTtlSeconds": ("jwks_ttl_seconds", True),
    "jwksRefreshCooldownSeconds": ("jwks_refresh_cooldown_seconds", True),
}


@dataclass(frozen=True, slots=True)
class Fragment:
    """What one valid file contributes. ``namespaces[i]`` was at ``namespaces[i]``, and so on for the lists."""

    namespaces: tuple[Namespace, ...] = ()
    issuers: tuple[Issuer, ...] = ()
    role_definitions: tuple[RoleDefinition, ...] = ()  # custom ones only
    declared_roles: frozenset[str] = frozenset()  # every custom role name (folded) and id written, even broken ones
    assignments: tuple[RawAssignment, ...] = ()
    sas: SasSettings | None = None
    cache: CacheSettings | None = None
    leeway_seconds: int | None = None
    dry_run: bool | None = None

    def singles(self) -> tuple[str, ...]:
        """The one-file-only sections this file sets, named as in :data:`SINGLE_SECTIONS`."""
        values = (self.sas, self.cache, self.leeway_seconds, self.dry_run)
        return tuple(name for name, value in zip(SINGLE_SECTIONS, values, strict=True) if value is not None)


@dataclass(frozen=True, slots=True)
class FileRead:
    """The outcome of reading one file's bytes: the file is valid when ``problems`` is empty.

    With problems, ``fragment`` still holds the parts that were valid (or ``None`` when the file did not parse),
    so that checks across files can go on and a broken file is reported in full in one round.

    ``digest`` covers the bytes *and* every resolved key, so that rotating a key in a secret file changes it;
    ``secret_files`` are the ``{file:}`` paths the file referred to (found or not), which a reload watches too.
    """

    fragment: Fragment | None
    problems: tuple[ConfigProblem, ...]
    digest: str
    secret_files: tuple[tuple[str, FileIdentity | None], ...] = ()


def read_fragment(
    data: bytes,
    *,
    base_dir: Path,
    environ: Mapping[str, str],
    max_bytes: int,
    single: bool,
    allow_missing: bool = False,
) -> FileRead:
    """Check one file. ``single``: it is the whole configuration (§2: ``namespaces`` required, no empty file).
    ``allow_missing``: key material not there yet loads as unavailable (see :mod:`._secrets`)."""
    if len(data) > max_bytes:
        return _failed([ConfigProblem("", f"the file is larger than {max_bytes} bytes")], data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return _failed([ConfigProblem("", "the file is not UTF-8 text")], data)
    tree, problems = parse_tree(text, allow_empty=not single)
    if problems:
        return _failed(problems, data)
    reader = Reader()
    secrets = Secrets(reader, environ, base_dir, allow_missing=allow_missing)
    fragment = _fragment(reader, secrets, tree, single=single)
    files = tuple((str(path), identity) for path, identity in secrets.files)
    digest = digest_of(data, secrets.resolved)
    if fragment is None:
        return FileRead(None, tuple(reader.problems or [ConfigProblem("", "invalid configuration")]), digest, files)
    return FileRead(fragment, tuple(reader.problems), digest, files)


def digest_of(data: bytes, resolved: list[tuple[str, str]]) -> str:
    """SHA-256 over the file and each resolved key, every part length-prefixed so no two inputs collide."""
    digest = hashlib.sha256(b"gateway-authz config v1\x00")
    for part in (data, *(piece.encode() for pair in resolved for piece in pair)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _failed(problems: list[ConfigProblem], data: bytes) -> FileRead:
    return FileRead(None, tuple(problems), digest_of(data, []))


def _fragment(reader: Reader, secrets: Secrets, tree: object, *, single: bool) -> Fragment | None:
    required = ("namespaces",) if single else ()
    raw = reader.mapping(tree, "", required=required, optional=[s for s in _SECTIONS if s not in required])
    if raw is None:
        return None
    namespaces = read_namespaces(reader, secrets, raw.get("namespaces"), "namespaces", required=single)
    identity = read_identity(reader, raw.get("identity"), "identity")
    roles, declared = read_role_definitions(reader, raw.get("roleDefinitions"), "roleDefinitions")
    assignments = read_raw_assignments(reader, raw.get("roleAssignments"), "roleAssignments")
    identity_raw = raw.get("identity")
    leeway_set = isinstance(identity_raw, dict) and identity_raw.get("leewaySeconds") is not None
    return Fragment(
        namespaces=namespaces,
        issuers=identity.issuers,
        role_definitions=roles[len(BUILTIN_ROLES) :],
        declared_roles=declared,
        assignments=assignments,
        sas=_sas(reader, raw["sas"], "sas") if raw.get("sas") is not None else None,
        cache=_cache(reader, raw["cache"], "cache") if raw.get("cache") is not None else None,
        leeway_seconds=identity.leeway_seconds if leeway_set else None,
        dry_run=reader.boolean(raw["dryRun"], "dryRun", default=False) if raw.get("dryRun") is not None else None,
    )


def _sas(reader: Reader, value: object, location: str) -> SasSettings:
    """Clock skew is capped at 15 minutes: more would let long-expired tokens through."""
    default = SasSettings()
    raw = reader.mapping(value, location, optional=("clockSkewSeconds", "maxTokenLifetimeSeconds"))
    if raw is None:
        return default
    skew = default.clock_skew_seconds
    if raw.get("clockSkewSeconds") is not None:
        checked = reader.integer(
            raw["clockSkewSeconds"],
            at(location, "clockSkewSeconds"),
            minimum=0,
            maximum=MAX_CLOCK_SKEW_SECONDS,
        )
        skew = skew if checked is None else checked
    lifetime = None
    if raw.get("maxTokenLifetimeSeconds") is not None:
        lifetime = reader.integer(raw["maxTokenLifetimeSeconds"], at(location, "maxTokenLifetimeSeconds"), minimum=1)
    return SasSettings(clock_skew_seconds=skew, max_token_lifetime_seconds=lifetime)


def _cache(reader: Reader, value: object, location: str) -> CacheSettings:
    """TTLs in seconds (integer or decimal); only the decision TTL may be 0 (no decision caching)."""
    default = CacheSettings()
    raw = reader.mapping(value, location, optional=(*_CACHE_SECONDS, "decisionMaxEntries"))
    if raw is None:
        return default
    seconds: dict[str, float] = {}
    for key, (field, positive) in _CACHE_SECONDS.items():
        checked = None
        if raw.get(key) is not None:
            checked = reader.seconds(raw[key], at(location, key), minimum=0, exclusive=positive)
        seconds[field] = getattr(default, field) if checked is None else checked
    entries = None
    if raw.get("decisionMaxEntries") is not None:
        entries = reader.integer(
            raw["decisionMaxEntries"], at(location, "decisionMaxEntries"), minimum=1, maximum=MAX_DECISION_ENTRIES
        )
    return CacheSettings(
        config_ttl_seconds=seconds["config_ttl_seconds"],
        decision_ttl_seconds=seconds["decision_ttl_seconds"],
        decision_max_entries=default.decision_max_entries if entries is None else entries,
        jwks_ttl_seconds=seconds["jwks_ttl_seconds"],
        jwks_refresh_cooldown_seconds=seconds["jwks_refresh_cooldown_seconds"],
    )
