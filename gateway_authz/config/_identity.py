"""Bearer-JWT issuers and custom role definitions (role assignments are in :mod:`._assignments`).

The issuer checks are the hard bounds of style-anchors P4: an explicit algorithm allow-list that can never
hold ``none`` or an HMAC algorithm, a capped leeway, https for every URL that keys come from (http only on
loopback or when the operator opts in), and inline JWKS that hold public keys only.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ..core.settings import Identity, Issuer, RoleDefinition
from ..entra.roles import BUILTIN_ROLES
from ._reader import Reader, at, index, show

__all__ = [
    "ALGORITHMS",
    "MAX_LEEWAY_SECONDS",
    "read_identity",
    "read_role_definitions",
]

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
MAX_LEEWAY_SECONDS = 300
TENANT_PLACEHOLDER = "{tenantid}"
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_KEY_TYPES = frozenset({"RSA", "EC"})
_MAX_JSON_DEPTH = 16
_PERMISSION = re.compile(r"[!-~]+")
_PERMISSION_LISTS = ("actions", "notActions", "dataActions", "notDataActions")


def read_identity(reader: Reader, value: object, location: str) -> Identity:
    """The JWT settings; an absent section means no bearer tokens are accepted at all."""
    if value is None:
        return Identity()
    raw = reader.mapping(value, location, optional=("leewaySeconds", "issuers"))
    if raw is None:
        return Identity()
    leeway = Identity().leeway_seconds
    if raw.get("leewaySeconds") is not None:
        checked = reader.integer(
            raw["leewaySeconds"], at(location, "leewaySeconds"), minimum=0, maximum=MAX_LEEWAY_SECONDS
        )
        leeway = checked if checked is not None else leeway
    seen: dict[str, str] = {}
    issuers = []
    for item_location, item in reader.items(raw.get("issuers"), at(location, "issuers")):
        issuer = _issuer(reader, item, item_location, seen)
        if issuer is not None:
            issuers.append(issuer)
    return Identity(leeway_seconds=leeway, issuers=tuple(issuers))


def _issuer(reader: Reader, value: object, location: str, seen: dict[str, str]) -> Issuer | None:
    raw = reader.mapping(
        value,
        location,
        required=("issuer", "audiences"),
        optional=("tenants", "discoveryUrl", "jwksUri", "jwks", "algorithms", "allowInsecureHttp"),
    )
    if raw is None:
        return None
    insecure = reader.boolean(raw.get("allowInsecureHttp"), at(location, "allowInsecureHttp"), default=False)
    issuer = _url(reader, raw.get("issuer"), at(location, "issuer"), insecure=insecure, placeholder=True)
    if issuer is not None:
        reader.unique(at(location, "issuer"), issuer, seen, what="issuer")
    tenants = _strings(reader, raw.get("tenants"), at(location, "tenants"), guid=True)
    if issuer is not None and TENANT_PLACEHOLDER in issuer and tenants == ():
        reader.add(at(location, "tenants"), f"must list the allowed tenants when the issuer has {TENANT_PLACEHOLDER}")
        tenants = None
    audiences = _strings(reader, raw.get("audiences"), at(location, "audiences"), guid=False)
    algorithms = _algorithms(reader, raw.get("algorithms"), at(location, "algorithms"))
    sources = [key for key in ("discoveryUrl", "jwksUri", "jwks") if raw.get(key) is not None]
    if len(sources) != 1:
        reader.add(location, f"must have exactly one of discoveryUrl, jwksUri or jwks, not {len(sources)}")
    discovery = jwks_uri = None
    if raw.get("discoveryUrl") is not None:
        discovery = _url(reader, raw["discoveryUrl"], at(location, "discoveryUrl"), insecure=insecure)
    if raw.get("jwksUri") is not None:
        jwks_uri = _url(reader, raw["jwksUri"], at(location, "jwksUri"), insecure=insecure)
    jwks = _jwks(reader, raw.get("jwks"), at(location, "jwks")) if raw.get("jwks") is not None else None
    resolved = (discovery, jwks_uri, jwks)
    if issuer is None or tenants is None or not audiences or algorithms is None or len(sources) != 1:
        return None
    if all(source is None for source in resolved):
        return None
    return Issuer(
        issuer=issuer,
        tenants=tenants,
        audiences=audiences,
        algorithms=algorithms,
        discovery_url=discovery,
        jwks_uri=jwks_uri,
        jwks=jwks,
        allow_insecure_http=insecure,
    )


def _strings(reader: Reader, value: object, location: str, *, guid: bool) -> tuple[str, ...] | None:
    """Unique strings (GUIDs lower-cased); absent is empty; ``None`` if any is invalid."""
    result: list[str] = []
    valid = True
    for item_location, item in reader.items(value, location, required=not guid):
        text = reader.guid(item, item_location) if guid else reader.string(item, item_location, max_length=1024)
        if text is not None and text in result:
            reader.add(item_location, f"{text!r} is listed twice")
            text = None
        valid = valid and text is not None
        if text is not None:
            result.append(text)
    return tuple(result) if valid else None


def _algorithms(reader: Reader, value: object, location: str) -> tuple[str, ...] | None:
    """The allowed ``alg`` values; RS256 (what Entra ID signs with) when absent. Never ``none`` or ``HS*``."""
    if value is None:
        return ("RS256",)
    result: list[str] = []
    valid = True
    for item_location, item in reader.items(value, location, required=True):
        name = reader.choice(item, item_location, ALGORITHMS, what="algorithm")
        if name is not None and name in result:
            reader.add(item_location, f"{name} is listed twice")
            name = None
        valid = valid and name is not None
        if name is not None:
            result.append(name)
    return tuple(result) if valid and result else None


def _url(reader: Reader, value: object, location: str, *, insecure: bool, placeholder: bool = False) -> str | None:
    """An absolute https URL; keys come from here, so http only on loopback or with ``allowInsecureHttp``."""
    text = reader.string(value, location, max_length=2048)
    if text is None:
        return None
    probe = text.replace(TENANT_PLACEHOLDER, "00000000-0000-0000-0000-000000000000") if placeholder else text
    try:
        parts = urlsplit(probe)
        host = parts.hostname
        _ = parts.port  # raises on a malformed port
    except ValueError:
        host = None
    if host is None or re.search(r"[\s{}]", probe) or parts.scheme not in {"https", "http"}:
        hint = f" ({TENANT_PLACEHOLDER} is the only placeholder)" if placeholder and "{" in probe else ""
        reader.add(location, f"{show(text)} is not an absolute https URL{hint}")
        return None
    if parts.username is not None or parts.password is not None or parts.fragment:
        reader.add(location, "must not contain user information or a fragment")
        return None
    if parts.scheme == "http" and not insecure and not _loopback(host):
        reader.add(location, "must use https; http is allowed only for loopback hosts or with allowInsecureHttp")
        return None
    return text


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _jwks(reader: Reader, value: object, location: str) -> Mapping[str, Any] | None:
    """An inline JWK Set of RSA or EC *public* keys as plain JSON values (``dict(jwks)`` is a JWKS)."""
    raw = reader.mapping(value, location, required=("keys",))
    if raw is None:
        return None
    before = len(reader.problems)
    keys: list[object] = []
    for item_location, item in reader.items(raw.get("keys"), at(location, "keys"), required=True):
        if not isinstance(item, dict):
            reader.add(item_location, "must be a JWK object")
            continue
        if item.get("kty") not in _KEY_TYPES:
            reader.add(at(item_location, "kty"), "must be RSA or EC, the key types of the allowed algorithms")
        private = sorted(_PRIVATE_JWK_MEMBERS & item.keys())
        if private:
            reader.add(item_location, f"holds private key material ({', '.join(private)}); use the public key only")
        keys.append(_json(reader, item, item_location, 0))
    if len(reader.problems) > before or not keys:
        return None
    return MappingProxyType({"keys": keys})


def _json(reader: Reader, value: object, location: str, depth: int) -> object:
    """A deep copy of ``value`` in JSON types only; YAML dates, NaN or very deep nesting are problems."""
    if depth > _MAX_JSON_DEPTH:
        reader.add(location, "is nested too deeply")
        return None
    if isinstance(value, dict):
        copy: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                reader.add(location, f"property names must be strings, not {show(key)}")
                return None
            copy[key] = _json(reader, item, at(location, key), depth + 1)
        return copy
    if isinstance(value, list):
        return [_json(reader, item, index(location, i), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        reader.add(location, "must be a finite number")
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    reader.add(location, f"{type(value).__name__} is not a JSON value; quote it")
    return None


def read_role_definitions(
    reader: Reader, value: object, location: str
) -> tuple[tuple[RoleDefinition, ...], frozenset[str]]:
    """The built-in roles plus the valid custom ones, and every name and id declared (even if broken).

    The declared set lets an assignment to a broken custom role stay quiet instead of adding a second,
    misleading "unknown role" problem.
    """
    names = {role.role_name.casefold(): "the built-in roles" for role in BUILTIN_ROLES}
    ids = {role.id: "the built-in roles" for role in BUILTIN_ROLES}
    declared: set[str] = set()
    result = list(BUILTIN_ROLES)
    for item_location, item in reader.items(value, location):
        raw = reader.mapping(item, item_location, required=("roleName", "id"), optional=_PERMISSION_LISTS)
        if raw is None:
            continue
        name = reader.string(raw.get("roleName"), at(item_location, "roleName"), max_length=512)
        role_id = reader.guid(raw.get("id"), at(item_location, "id"))
        declared.update(x for x in (name.casefold() if name else None, role_id) if x)
        name_ok = name is not None and reader.unique(
            at(item_location, "roleName"), name.casefold(), names, what="roleName"
        )
        id_ok = role_id is not None and reader.unique(at(item_location, "id"), role_id, ids, what="role id")
        lists = [_permissions(reader, raw.get(key), at(item_location, key)) for key in _PERMISSION_LISTS]
        actions, not_actions, data_actions, not_data_actions = lists
        if (
            name is None
            or role_id is None
            or not name_ok
            or not id_ok
            or actions is None
            or not_actions is None
            or data_actions is None
            or not_data_actions is None
        ):
            continue
        result.append(
            RoleDefinition(
                role_name=name,
                id=role_id,
                actions=actions,
                not_actions=not_actions,
                data_actions=data_actions,
                not_data_actions=not_data_actions,
            )
        )
    return tuple(result), frozenset(declared)


def _permissions(reader: Reader, value: object, location: str) -> tuple[str, ...] | None:
    """Permission strings like ``Microsoft.Relay/*/send/action``: printable, no spaces, at most one ``*``."""
    result: list[str] = []
    valid = True
    for item_location, item in reader.items(value, location):
        text = reader.string(item, item_location, max_length=512, pattern=_PERMISSION, rule="no spaces")
        if text is not None and text.count("*") > 1:
            reader.add(item_location, "may hold at most one '*' wildcard")
            text = None
        valid = valid and text is not None
        if text is not None:
            result.append(text)
    return tuple(result) if valid else None
