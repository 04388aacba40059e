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

``--config`` may also name a directory (contract §5): its ``*.yaml``/``*.yml``/``*.json`` files are merged
(:mod:`._estate`), each capped at ``GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES``, and problems read ``FILE: location:
message``. :mod:`._files` reads a source so that loading it again re-parses only the files that changed.

Decisions worth knowing: hosts are lower-case names without a port (the request's port is dropped before
lookup); ``null`` for an optional property means "absent"; a YAML file may not repeat a key; ``algorithms``
defaults to ``[RS256]``; management route paths are stored lower-case, without a trailing ``/``.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

from ..core.errors import ConfigError, ConfigProblem
from ..core.settings import Settings
from ._estate import EstateMerger
from ._files import DEFAULT_MAX_FILE_BYTES, EstateLoader, max_file_bytes
from ._fragment import read_fragment
from ._namespaces import read_namespaces
from ._reader import Reader
from ._secrets import Secrets

__all__ = [
    "MAX_CONFIG_BYTES",
    "EstateLoader",
    "generate_key",
    "load_settings",
    "parse_settings",
    "starter_config",
    "validate_file",
]

MAX_CONFIG_BYTES = DEFAULT_MAX_FILE_BYTES  # per file; GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES changes it
_STARTER_LOCATIONS = {"namespaces[0].name": "namespace", "namespaces[0].hosts[0]": "host"}


def generate_key() -> str:
    """A new random 256-bit key in base64 (44 characters), the shape of the keys Azure issues."""
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def load_settings(
    path: str | Path, *, environ: Mapping[str, str] | None = None, allow_missing_keys: bool = False
) -> Settings:
    """Read, check and resolve the config file or directory at ``path``; raise :class:`ConfigError` listing every
    problem (in a directory, each as ``FILE: location: message``).

    ``environ`` is where ``{env: NAME}`` keys and ``GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES`` are looked up
    (``os.environ`` when ``None``), a seam for tests and for callers that must not read the process environment.
    ``allow_missing_keys`` (the service's own loads) lets key material that is not there yet through as
    unavailable (see :mod:`._secrets`). The settings returned carry what was read, so that a
    :class:`ConfigHolder` built on them re-reads only what changes afterwards.
    """
    return EstateLoader(environ=environ, allow_missing_keys=allow_missing_keys)(str(path))


def parse_settings(
    data: bytes,
    *,
    source: str = "<memory>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    allow_missing_keys: bool = False,
) -> Settings:
    """Like :func:`load_settings` for one file's bytes already in hand; ``{file:}`` paths are relative to ``base_dir``.

    The fingerprint is a SHA-256 over the bytes *and* every resolved key, so that rotating a key in a secret
    file or a variable is seen as a config change by whoever compares fingerprints (reload, cache
    generations).
    """
    environ = os.environ if environ is None else environ
    read = read_fragment(
        data,
        base_dir=base_dir or Path.cwd(),
        environ=environ,
        max_bytes=max_file_bytes(environ),
        single=True,
        allow_missing=allow_missing_keys,
    )
    return EstateMerger().merge([(source, read)], directory=False, source=source)


def validate_file(path: str | Path, *, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """Every problem in the file or directory at ``path`` (empty when it loads), for ``config validate``."""
    try:
        load_settings(path, environ=environ)
    except ConfigError as exc:
        return list(exc.problems)
    return []


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
