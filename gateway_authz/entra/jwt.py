"""Bearer JWT verification: pure, strict and fail-closed; a function of (token, issuers, keys, now).

A token passes four gates, cheapest first; each failure raises :class:`InvalidCredential` with a stable reason
(or :class:`CannotVerify` when the issuer's keys could not be had)::

    shape    token_too_large, malformed_token, disallowed_alg, unsupported_crit
             the size cap comes before any decoding; three strict base64url segments; header and payload are
             strict UTF-8 JSON objects without duplicate members or NaN/Infinity; ``alg`` a supported
             asymmetric algorithm, ``kid`` a string; any ``crit`` (and ``b64``) refused; ``jku``, ``x5u``,
             ``jwk`` and ``x5c`` are never read, let alone fetched
    issuer   unknown_issuer, wrong_tenant, disallowed_alg
             the issuer entry is chosen by exact ``iss`` (``{tenantid}`` filled from a GUID ``tid``, which
             must be one of the entry's tenants) before any key is considered
    claims   invalid_claims, expired, not_yet_valid, wrong_audience
             ``exp`` required and exclusive, ``nbf``/``iat`` checked, all as JSON numbers within
             0..253402300799, with a leeway capped at five minutes; ``aud`` a string or list of strings
             meeting the entry's audiences; ``oid`` a GUID; ``groups`` a list of strings or an overage
    key      unknown_kid, disallowed_alg, bad_signature / CannotVerify(keys_unavailable)
             the key by ``kid`` from *that* issuer's key set; ``alg`` must fit the key; then the
             signature through PyJWT's algorithm objects

Claims are checked before the key so that expired or foreign tokens never cost a key fetch or an RSA verify;
the result is still only ever a :class:`VerifiedJwt` after the signature holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ..core.errors import CannotVerify, InvalidCredential
from ..core.settings import Issuer
from .issuers import TENANT_PLACEHOLDER, IssuerMatch, IssuerRegistry, is_guid
from .jwk import SUPPORTED_ALGORITHMS, JwkError, KeySet, VerificationKey, b64url_decode, decode_json

__all__ = [
    "MAX_LEEWAY_SECONDS",
    "MAX_TIMESTAMP",
    "MAX_TOKEN_BYTES",
    "Jws",
    "KeyLookup",
    "PendingJwt",
    "UnverifiedJwt",
    "VerifiedJwt",
    "bearer_token",
    "complete_jwt",
    "looks_like_jwt",
    "parse_jws",
    "parse_jwt",
    "precheck_jwt",
    "verify_jwt",
    "verify_signature",
]

MAX_TOKEN_BYTES: Final = 16 * 1024
MAX_LEEWAY_SECONDS: Final = 300
MAX_TIMESTAMP: Final = 253_402_300_799  # 9999-12-31T23:59:59Z, as Tink bounds it

_JWT_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_BEARER: Final = "bearer "

KeyLookup = Callable[[Issuer], KeySet | None]
"""The keys of one issuer, or None when none could ever be loaded (answered as 503, not 401)."""


def looks_like_jwt(value: str) -> bool:
    """Whether a credential is meant as a JWT: ``Bearer …`` or three dot-separated base64url segments.

    Only for telling carriers apart; anything it admits still goes through :func:`bearer_token`.
    """
    if value[: len(_BEARER)].lower() == _BEARER:
        return True
    return len(value) <= MAX_TOKEN_BYTES and _JWT_SHAPE.fullmatch(value) is not None


def bearer_token(value: str) -> str:
    """The JWT in ``Bearer <jwt>`` (scheme case-insensitive, exactly one space) or in a bare ``<jwt>``."""
    if len(value) > MAX_TOKEN_BYTES + len(_BEARER):
        raise InvalidCredential("token_too_large", "credential over the size cap")
    prefix = value[: len(_BEARER)]
    token = value[len(_BEARER) :] if prefix.isascii() and prefix.lower() == _BEARER else value
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidCredential("token_too_large", "token over the size cap")
    if _JWT_SHAPE.fullmatch(token) is None:
        raise InvalidCredential("malformed_token", "not a compact JWT")
    return token


@dataclass(frozen=True, slots=True)
class Jws:
    """A structurally valid compact JWS whose signature has *not* been checked."""

    header: Mapping[str, Any]
    alg: str
    kid: str | None
    payload: bytes = field(repr=False)
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class UnverifiedJwt:
    """A JWS whose payload is a JSON object of claims; nothing in it is trusted yet."""

    jws: Jws
    kid: str
    claims: Mapping[str, Any] = field(repr=False)


def _json_object(raw: bytes, what: str) -> Mapping[str, Any]:
    try:
        value = decode_json(raw)
    except JwkError as exc:
        raise InvalidCredential("malformed_token", f"{what}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidCredential("malformed_token", f"{what} is not a JSON object")
    return MappingProxyType(value)


def parse_jws(token: str) -> Jws:
    """Strictly parse a compact JWS (size, segments, base64url, header); no key is involved yet."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidCredential("token_too_large", "token over the size cap")
    if not token.isascii() or token.count(".") != 2:
        raise InvalidCredential("malformed_token", "not three ASCII segments")
    head, payload, signature = token.split(".")
    try:
        parts = [b64url_decode(segment) for segment in (head, payload, signature)]
    except JwkError as exc:
        raise InvalidCredential("malformed_token", str(exc)) from None
    if not parts[0] or not parts[2]:
        raise InvalidCredential("malformed_token", "empty header or signature")
    header = _json_object(parts[0], "header")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str):
        raise InvalidCredential("malformed_token", "alg missing or not a string")
    if alg not in SUPPORTED_ALGORITHMS:
        raise InvalidCredential("disallowed_alg", f"alg {alg[:16]!r} is not supported")
    if kid is not None and not isinstance(kid, str):
        raise InvalidCredential("malformed_token", "kid is not a string")
    if "crit" in header:
        raise InvalidCredential("unsupported_crit", "crit header parameters are not supported")
    if "b64" in header:
        raise InvalidCredential("malformed_token", "unencoded payloads are not supported")
    signing_input = f"{head}.{payload}".encode("ascii")
    return Jws(header, alg, kid, parts[1], signing_input, parts[2])


def parse_jwt(token: str) -> UnverifiedJwt:
    """:func:`parse_jws` plus a ``kid`` and a JSON-object payload: the shape gate of a bearer JWT."""
    jws = parse_jws(token)
    if jws.kid is None:
        raise InvalidCredential("malformed_token", "kid missing")
    return UnverifiedJwt(jws, jws.kid, _json_object(jws.payload, "payload"))


def verify_signature(jws: Jws, key: VerificationKey, algorithms: Collection[str]) -> None:
    """Raise unless ``jws.alg`` is in ``algorithms`` and fits ``key``, and the signature verifies."""
    if jws.alg not in algorithms:
        raise InvalidCredential("disallowed_alg", f"alg {jws.alg} is not allowed for this issuer")
    if jws.alg not in key.algorithms:
        raise InvalidCredential("disallowed_alg", f"alg {jws.alg} does not fit key {key.kid!r}")
    if not key.signature_valid(jws.alg, jws.signing_input, jws.signature):
        raise InvalidCredential("bad_signature", f"signature does not verify with key {key.kid!r}")


@dataclass(frozen=True, slots=True)
class VerifiedJwt:
    """A token whose signature, issuer, tenant, lifetime and audience all held. Only :func:`complete_jwt`
    makes one. ``groups`` is empty and ``groups_overage`` True when the token only pointed at its groups."""

    issuer: str
    tenant: str
    oid: str
    groups: tuple[str, ...]
    groups_overage: bool
    expires_at: float
    version: str
    audience: str
    subject: str = ""
    app_id: str = ""
    key_id: str = ""
    algorithm: str = ""


@dataclass(frozen=True, slots=True)
class PendingJwt:
    """Shape, issuer and claims checked; the signature is NOT. Only :func:`complete_jwt` goes further."""

    token: UnverifiedJwt
    issuer: IssuerMatch
    oid: str
    groups: tuple[str, ...]
    groups_overage: bool
    expires_at: float
    version: str
    audience: str
    subject: str
    app_id: str

    @property
    def kid(self) -> str:
        """The ``kid`` to look up in the issuer's key set."""
        return self.token.kid


def _timestamp(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCredential("invalid_claims", f"{name} is not a number")
    if not 0 <= value <= MAX_TIMESTAMP:
        raise InvalidCredential("invalid_claims", f"{name} is out of range")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float, leeway: int) -> float:
    exp, nbf, iat = (_timestamp(claims, name) for name in ("exp", "nbf", "iat"))
    if exp is None:
        raise InvalidCredential("invalid_claims", "exp missing")
    if now >= exp + leeway:
        raise InvalidCredential("expired", f"expired at {exp:.0f}")
    if nbf is not None and now + leeway < nbf:
        raise InvalidCredential("not_yet_valid", f"not valid before {nbf:.0f}")
    if iat is not None and now + leeway < iat:
        raise InvalidCredential("not_yet_valid", f"issued in the future at {iat:.0f}")
    return exp


def _audience(claims: Mapping[str, Any], allowed: frozenset[str]) -> str:
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise InvalidCredential("wrong_audience", "aud missing or not a string or list of strings")
    for value in values:
        if value in allowed:
            return str(value)
    raise InvalidCredential("wrong_audience", "no audience of the token is accepted")


def _groups(claims: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    names = claims.get("_claim_names")
    if claims.get("hasgroups") is True or (isinstance(names, dict) and "groups" in names):
        return (), True
    groups = claims.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidCredential("invalid_claims", "groups is not a list of strings")
    return tuple(dict.fromkeys(groups)), False


def _optional_string(claims: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str):
            return value
    return ""


def _version(claims: Mapping[str, Any], iss: str) -> str:
    ver = claims.get("ver")
    if ver in ("1.0", "2.0"):
        return str(ver)
    if iss.endswith("/v2.0"):
        return "2.0"
    return "1.0" if iss.startswith("https://sts.windows.net/") else ""


def precheck_jwt(token: str, issuers: IssuerRegistry, *, now: float, leeway: int) -> PendingJwt:
    """Gates 1 to 3 (shape, issuer, claims) for a bare compact JWT; ``now`` is wall-clock seconds."""
    jwt = parse_jwt(token)
    match = issuers.resolve(jwt.claims)
    if jwt.jws.alg not in match.algorithms:
        raise InvalidCredential("disallowed_alg", f"alg {jwt.jws.alg} is not allowed for {match.config.issuer}")
    claims = jwt.claims
    exp = _check_times(claims, now, min(max(int(leeway), 0), MAX_LEEWAY_SECONDS))
    audience = _audience(claims, match.audiences)
    oid = claims.get("oid")
    if not is_guid(oid):
        raise InvalidCredential("invalid_claims", "oid missing or not a GUID")
    groups, overage = _groups(claims)
    return PendingJwt(
        token=jwt,
        issuer=match,
        oid=str(oid).lower(),
        groups=groups,
        groups_overage=overage,
        expires_at=exp,
        version=_version(claims, match.iss),
        audience=audience,
        subject=_optional_string(claims, "sub"),
        app_id=_optional_string(claims, "appid", "azp"),
    )


def complete_jwt(pending: PendingJwt, keys: KeySet | None) -> VerifiedJwt:
    """Gate 4: the key by ``kid`` from the issuer's own key set, then the signature."""
    if keys is None:
        raise CannotVerify("keys_unavailable", f"no signing keys loaded for {pending.issuer.config.issuer}")
    key = keys.get(pending.kid)
    if key is None:
        why = "ambiguous" if pending.kid in keys.ambiguous else "unknown"
        raise InvalidCredential("unknown_kid", f"{why} kid {pending.kid[:64]!r} for {pending.issuer.config.issuer}")
    own_iss = key.issuer.replace(TENANT_PLACEHOLDER, pending.issuer.tenant) if key.issuer else None
    if own_iss is not None and own_iss != pending.issuer.iss:
        raise InvalidCredential("unknown_kid", f"key {key.kid!r} belongs to another issuer")
    verify_signature(pending.token.jws, key, pending.issuer.algorithms)
    return VerifiedJwt(
        issuer=pending.issuer.iss,
        tenant=pending.issuer.tenant,
        oid=pending.oid,
        groups=pending.groups,
        groups_overage=pending.groups_overage,
        expires_at=pending.expires_at,
        version=pending.version,
        audience=pending.audience,
        subject=pending.subject,
        app_id=pending.app_id,
        key_id=key.kid,
        algorithm=pending.token.jws.alg,
    )


def verify_jwt(token: str, issuers: IssuerRegistry, keys: KeyLookup, *, now: float, leeway: int) -> VerifiedJwt:
    """All four gates over a bare compact JWT (see :func:`bearer_token` for ``Bearer`` values)."""
    pending = precheck_jwt(token, issuers, now=now, leeway=leeway)
    return complete_jwt(pending, keys(pending.issuer.config))
