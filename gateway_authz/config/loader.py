"""Load, check and resolve the YAML configuration into a frozen :class:`~gateway_authz.core.settings.Settings`.

The file follows contract.md §2 (property names from Azure's ARM resources) plus the team's additions: a
top-level and per-namespace ``dryRun``, per-namespace ``managementRoutes`` and per-issuer
``allowInsecureHttp``. The schema is strict: an unknown or misspelt property is an error, never silently
ignored, because a typo such as ``requireClientAuthorization: true`` falling back to a default is exactly the
kind of mistake that opens a hole.

Loading never stops at the first problem: :class:`~gateway_authz.core.errors.ConfigError` carries every problem
with its location (``namespaces[0].authorizationRules[2].rights``) so that an operator fixes a file in one
round. Keys may be literal, ``{env: NAME}`` or ``{file: PATH}`` (relative paths are read from the config
file's directory); they are resolved here, once, so that a missing secret is a load error and not a
request-time 503.

Decisions worth knowing: hosts are lower-case names without a port (the request's port is dropped before
lookup); ``null`` for an optional property means "absent"; a YAML file may not repeat a key; ``algorithms``
defaults to ``[RS256]``; management route paths are stored lower-case, without a trailing ``/``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from ..core.errors import ConfigError, ConfigProblem
from ..core.settings import CacheSettings, SasSettings, Settings
from ._identity import read_identity, read_role_assignments, read_role_definitions
from ._namespaces import read_namespaces
from ._reader import Reader, at
from ._secrets import Secrets
from ._yaml import parse_tree

__all__ = [
    "MAX_CONFIG_BYTES",
    "generate_key",
    "load_settings",
    "parse_settings",
    "starter_config",
    "validate_file",
]

MAX_CONFIG_BYTES = 1024 * 1024
MAX_CLOCK_SKEW_SECONDS = 900
MAX_DECISION_ENTRIES = 10_000_000
_SECTIONS = ("identity", "roleDefinitions", "roleAssignments", "sas", "cache", "dryRun")
# YAML name -> (CacheSettings field, must be > 0 rather than >= 0)
_CACHE_SECONDS = {
    "configTtlSeconds": ("config_ttl_seconds", True),
    "decisionTtlSeconds": ("decision_ttl_seconds", False),
    "jwksTtlSeconds": ("jwks_ttl_seconds", True),
    "jwksRefreshCooldownSeconds": ("jwks_refresh_cooldown_seconds", True),
}
_STARTER_LOCATIONS = {"namespaces[0].name": "namespace", "namespaces[0].hosts[0]": "host"}


def generate_key() -> str:
    """A new random 256-bit key in base64 (44 characters), the shape of the keys Azure issues."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def load_settings(
    path: str | Path, *, environ: Mapping[str, str] | None = None, allow_missing_keys: bool = False
) -> Settings:
    """Read, check and resolve the config file at ``path``; raise :class:`ConfigError` listing every problem.

    ``environ`` is where ``{env: NAME}`` keys are looked up (``os.environ`` when ``None``), a seam for tests
    and for callers that must not read the process environment. ``allow_missing_keys`` (the service's own
    loads) lets key material that is not there yet through as unavailable (see :mod:`._secrets`).
    """
    file = Path(path)
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read {file}: {exc.strerror or type(exc).__name__}")]) from None
    return parse_settings(
        data, source=str(file), base_dir=file.parent, environ=environ, allow_missing_keys=allow_missing_keys
    )


def parse_settings(
    data: bytes,
    *,
    source: str = "<memory>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    allow_missing_keys: bool = False,
) -> Settings:
    """Like :func:`load_settings`, for bytes already in hand; ``{file:}`` paths are relative to ``base_dir``.

    The fingerprint is a SHA-256 over the bytes *and* every resolved key, so that rotating a key in a secret
    file or a variable is seen as a config change by whoever compares fingerprints (reload, cache
    generations).
    """
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([ConfigProblem("", f"the file is larger than {MAX_CONFIG_BYTES} bytes")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem("", "the file is not UTF-8 text")]) from None
    tree, problems = parse_tree(text)
    if problems:
        raise ConfigError(problems)
    reader = Reader()
    environ = os.environ if environ is None else environ
    secrets_ = Secrets(reader, environ, base_dir or Path.cwd(), allow_missing=allow_missing_keys)
    settings = _settings(reader, secrets_, tree)
    if reader.problems or settings is None:
        raise ConfigError(reader.problems or [ConfigProblem("", "invalid configuration")])
    return dataclasses.replace(settings, source=source, fingerprint=_fingerprint(data, secrets_.resolved))


def validate_file(path: str | Path, *, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """Every problem in the file at ``path`` (empty when it loads), for ``gateway-authz config validate``."""
    try:
        load_settings(path, environ=environ)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _fingerprint(data: bytes, resolved: list[tuple[str, str]]) -> str:
    """SHA-256 over the file and each resolved key, every part length-prefixed so no two inputs collide."""
    digest = hashlib.sha256(b"gateway-authz config v1\x00")
    for part in (data, *(piece.encode() for pair in resolved for piece in pair)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _settings(reader: Reader, secrets_: Secrets, tree: object) -> Settings | None:
    raw = reader.mapping(tree, "", required=("namespaces",), optional=_SECTIONS)
    if raw is None:
        return None
    namespaces = read_namespaces(reader, secrets_, raw.get("namespaces"), "namespaces")
    identity = read_identity(reader, raw.get("identity"), "identity")
    roles, declared = read_role_definitions(reader, raw.get("roleDefinitions"), "roleDefinitions")
    assignments = read_role_assignments(reader, raw.get("roleAssignments"), "roleAssignments", roles, declared)
    return Settings(
        namespaces=namespaces,
        identity=identity,
        role_definitions=roles,
        role_assignments=assignments,
        sas=_sas(reader, raw.get("sas"), "sas"),
        cache=_cache(reader, raw.get("cache"), "cache"),
        dry_run=reader.boolean(raw.get("dryRun"), "dryRun", default=False),
    )


def _sas(reader: Reader, value: object, location: str) -> SasSettings:
    """Clock skew is capped at 15 minutes: more would let long-expired tokens through."""
    default = SasSettings()
    if value is None:
        return default
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
    if value is None:
        return default
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


def starter_config(namespace: str, host: str, *, key_factory: Callable[[], str] = generate_key) -> str:
    """YAML for a new namespace, provisioned as Azure does: ``RootManageSharedAccessKey`` with all rights.

    ``namespace`` and ``host`` are checked with the loader's own rules first (problems are located at
    ``namespace`` and ``host``), so the text returned always loads.
    """
    reader = Reader()
    probe = {"name": namespace, "hosts": [host]}
    read_namespaces(reader, Secrets(reader, {}, Path.cwd()), [probe], "namespaces")
    problems = [ConfigProblem(_STARTER_LOCATIONS.get(p.location, p.location), p.message) for p in reader.problems]
    if problems:
        raise ConfigError(problems)
    return _STARTER.format(
        namespace=json.dumps(namespace),
        host=json.dumps(host),
        primary=json.dumps(key_factory()),
        secondary=json.dumps(key_factory()),
    )


_STARTER = """\
# gateway-authz configuration (README; contract.md section 2). Check it with: gateway-authz config validate FILE
# The keys below were generated for you: keep this file secret, or move the keys out of it
# with {{env: VARIABLE}} or {{file: /path/to/secret}}.
namespaces:
  - name: {namespace}
    hosts: [{host}]
    authorizationRules:                       # at most 12 per namespace and per entity
      - keyName: RootManageSharedAccessKey
        primaryKey: {primary}
        secondaryKey: {secondary}
        rights: [Manage, Listen, Send]        # Manage needs Listen and Send, as in Azure
    # hybridConnections:
    #   - name: orders                        # may contain '/', e.g. eu/orders
    #     requiresClientAuthorization: true   # false: anonymous senders allowed; Listen always needs a token
    #     authorizationRules:
    #       - keyName: orders-send
    #         primaryKey: {{env: ORDERS_SEND_KEY}}
    #         rights: [Send]
    # wcfRelays:
    #   - name: legacy/echo

# sas:
#   clockSkewSeconds: 300                     # 0-900
#   maxTokenLifetimeSeconds: null             # optional cap on se - now

# cache:
#   configTtlSeconds: 30                      # how long a loaded config is trusted before it is re-read
#   decisionTtlSeconds: 60                    # never longer than the credential's own expiry; 0 turns it off
#   decisionMaxEntries: 100000
#   jwksTtlSeconds: 3600
#   jwksRefreshCooldownSeconds: 30
"""
