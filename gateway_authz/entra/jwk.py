"""JSON Web Keys in, typed verification keys out: the one place where an issuer's key material is judged.

Pure and synchronous: :mod:`gateway_authz.entra.jwks` fetches the bytes, :mod:`gateway_authz.entra.jwt` uses the keys.

A key set is read member by member (RFC 7517 §5): a member we cannot or must not use is *skipped* with a
reason, never fatal for the set. Refused at ingest: private keys (``d`` and friends), symmetric ``oct`` keys
(an issuer's key must never double as an HMAC secret), ``use`` other than ``sig``, ``key_ops`` without
``verify``, an ``alg`` that is unknown or does not fit the key, RSA keys under 2048 or over 8192 bits, RSA
moduli with the ROCA fingerprint, EC points off their curve, and curves other than P-256/384/521. A ``kid``
seen on more than one member is *ambiguous* and never resolves to a key. Reasons never contain key material.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import Algorithm, get_default_algorithms

__all__ = [
    "EC_ALGORITHM_BY_CURVE",
    "RSA_ALGORITHMS",
    "SUPPORTED_ALGORITHMS",
    "JwkError",
    "KeySet",
    "VerificationKey",
    "b64url_decode",
    "decode_json",
    "parse_jwk",
    "parse_jwk_set",
]

RSA_ALGORITHMS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHM_BY_CURVE: Final[Mapping[str, str]] = MappingProxyType(
    {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
)
SUPPORTED_ALGORITHMS: Final = RSA_ALGORITHMS | frozenset(EC_ALGORITHM_BY_CURVE.values())

MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192
MAX_KID_LENGTH: Final = 256

_CURVES: Final[Mapping[str, tuple[ec.EllipticCurve, int]]] = MappingProxyType(
    {"P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66)}
)
# PyJWT's algorithm objects are the JOSE engine; they are stateless, so one read-only table serves everyone.
_ENGINE: Final[Mapping[str, Algorithm]] = MappingProxyType(
    {name: alg for name, alg in get_default_algorithms().items() if name in SUPPORTED_ALGORITHMS}
)
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
# ROCA (CVE-2017-15361): a modulus from the flawed Infineon generator is, modulo each of these primes, a power
# of 65537. A random modulus passes all 38 tests with negligible probability.
_ROCA_PRIMES: Final = tuple(p for p in range(3, 168) if all(p % q for q in range(2, p)))


def _powers_of_65537(p: int) -> frozenset[int]:
    powers, x = {1}, 65537 % p
    while x != 1:
        powers.add(x)
        x = x * 65537 % p
    return frozenset(powers)


_ROCA_SUBGROUPS: Final = tuple((p, _powers_of_65537(p)) for p in _ROCA_PRIMES)


class JwkError(ValueError):
    """A key or key set that must not be used. The message is safe to log: it never holds key material."""


def b64url_decode(segment: str) -> bytes:
    """Strict base64url: alphabet only, no padding, canonical trailing bits (RFC 7515 §2, §C)."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise JwkError("not strict base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode("ascii"):
        raise JwkError("non-canonical base64url")
    return raw


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise JwkError("duplicate JSON member")
        result[name] = value
    return result


def _reject_constant(name: str) -> Any:
    raise JwkError(f"JSON constant {name} refused")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JwkError("non-finite JSON number")
    return value


def _check_strings(value: Any) -> None:
    """Lone surrogates (``"\\ud800"``) are valid JSON escapes but not Unicode; refuse them everywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# One decoder for every document: ``json.loads`` with hooks builds a new decoder and scanner per call. Its C
# scanner keeps no state between calls that matters (a key-interning memo, cleared after each document).
_STRICT_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant, parse_float=_finite_float
)


def decode_json(data: bytes) -> Any:
    """Strict JSON: UTF-8 only (no BOM, no UTF-16 sniffing), no duplicate members, no NaN/Infinity/overflow.

    Raises :class:`JwkError` for every failure, including the ``ValueError`` of over-long integers and the
    ``RecursionError`` of deep nesting, so callers see one exception type.
    """
    try:
        text = data.decode("utf-8")
        value = _STRICT_JSON.decode(text)  # a leading BOM is no JSON value: refused like any other stray character
        if "\\u" in text:  # valid UTF-8 cannot hold a surrogate: only a \u escape can make one
            _check_strings(value)
    except JwkError:
        raise
    except (ValueError, RecursionError) as exc:
        raise JwkError(f"invalid JSON ({type(exc).__name__})") from None
    return value


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key fit for signature verification, with the algorithms it may be used with."""

    kid: str
    kty: str
    algorithms: frozenset[str]
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False, compare=False)
    issuer: str | None = None

    def signature_valid(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a valid ``alg`` signature by this key; a misfit ``alg`` is simply False."""
        engine = _ENGINE.get(alg)
        if engine is None or alg not in self.algorithms:
            return False
        try:
            return engine.verify(signing_input, self.public_key, signature)
        except (ValueError, TypeError):
            return False


@dataclass(frozen=True, slots=True)
class KeySet:
    """An issuer's usable keys by ``kid``; ``ambiguous`` kids never resolve; ``rejected`` says what was skipped."""

    keys: Mapping[str, VerificationKey] = field(default_factory=lambda: MappingProxyType({}))
    ambiguous: frozenset[str] = frozenset()
    rejected: tuple[tuple[str, str], ...] = ()

    def get(self, kid: str) -> VerificationKey | None:
        """The key for ``kid``, or None when unknown or ambiguous."""
        return self.keys.get(kid)

    def knows(self, kid: str) -> bool:
        """Whether ``kid`` was published at all (usable or ambiguous), so a refetch would not help."""
        return kid in self.keys or kid in self.ambiguous

    def __len__(self) -> int:
        return len(self.keys)


def _b64_uint(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise JwkError(f"{name} missing")
    return int.from_bytes(b64url_decode(value), "big")


def _rsa_key(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    n, e = _b64_uint(jwk, "n"), _b64_uint(jwk, "e")
    bits = n.bit_length()
    if bits < MIN_RSA_BITS or bits > MAX_RSA_BITS:
        raise JwkError(f"RSA modulus of {bits} bits refused")
    if e < 3 or e % 2 == 0:
        raise JwkError("RSA public exponent refused")
    if all(n % p in powers for p, powers in _ROCA_SUBGROUPS):
        raise JwkError("RSA modulus has the ROCA fingerprint")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise JwkError("invalid RSA public key") from None


def _ec_key(jwk: Mapping[str, Any]) -> tuple[ec.EllipticCurvePublicKey, str]:
    crv = jwk.get("crv")
    if not isinstance(crv, str) or crv not in _CURVES:
        raise JwkError("unsupported EC curve")
    curve, size = _CURVES[crv]
    coords = []
    for name in ("x", "y"):
        value = jwk.get(name)
        raw = b64url_decode(value) if isinstance(value, str) else b""
        if len(raw) != size:
            raise JwkError(f"EC coordinate {name} has the wrong length")
        coords.append(int.from_bytes(raw, "big"))
    try:
        return ec.EllipticCurvePublicNumbers(coords[0], coords[1], curve).public_key(), crv
    except ValueError:
        raise JwkError("EC point is not on the curve") from None


def _check_usage(jwk: Mapping[str, Any]) -> None:
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise JwkError("use is not sig")
    ops = jwk.get("key_ops")
    if ops is not None and (
        not isinstance(ops, list | tuple) or not all(isinstance(op, str) for op in ops) or "verify" not in ops
    ):
        raise JwkError("key_ops does not allow verify")


def parse_jwk(jwk: object) -> VerificationKey:
    """One public JWK into a :class:`VerificationKey`; raises :class:`JwkError` when it must not be used."""
    if not isinstance(jwk, Mapping):
        raise JwkError("not a JSON object")
    kty = jwk.get("kty")
    if kty == "oct":
        raise JwkError("symmetric key refused")
    if kty not in ("RSA", "EC"):
        raise JwkError("unsupported kty")
    if _PRIVATE_MEMBERS & jwk.keys():
        raise JwkError("private key material refused")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise JwkError("kid missing or unusable")
    _check_usage(jwk)
    issuer = jwk.get("issuer")
    if issuer is not None and not isinstance(issuer, str):
        raise JwkError("issuer is not a string")
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if kty == "RSA":
        public_key, fitting = _rsa_key(jwk), RSA_ALGORITHMS
    else:
        public_key, crv = _ec_key(jwk)
        fitting = frozenset({EC_ALGORITHM_BY_CURVE[crv]})
    alg = jwk.get("alg")
    if alg is not None:
        if not isinstance(alg, str) or alg not in fitting:
            raise JwkError("alg does not fit the key")
        fitting = frozenset({alg})
    return VerificationKey(kid=kid, kty=kty, algorithms=fitting, public_key=public_key, issuer=issuer)


def parse_jwk_set(document: object) -> KeySet:
    """A JWK Set into a :class:`KeySet`, skipping unusable members; raises only when it is not a set at all."""
    if not isinstance(document, Mapping):
        raise JwkError("JWK Set is not a JSON object")
    members = document.get("keys")
    if not isinstance(members, list | tuple):
        raise JwkError("JWK Set has no keys list")
    usable: dict[str, VerificationKey] = {}
    seen: dict[str, int] = {}
    rejected: list[tuple[str, str]] = []
    for index, member in enumerate(members):
        kid = member.get("kid") if isinstance(member, Mapping) else None
        label = kid if isinstance(kid, str) and len(kid) <= MAX_KID_LENGTH else f"#{index}"
        if isinstance(kid, str):
            seen[kid] = seen.get(kid, 0) + 1
        try:
            key = parse_jwk(member)
        except JwkError as exc:
            rejected.append((label, str(exc)))
            continue
        usable[key.kid] = key
    ambiguous = frozenset(kid for kid, count in seen.items() if count > 1)
    rejected.extend((kid, "duplicate kid") for kid in sorted(ambiguous) if kid in usable)
    keys = {kid: key for kid, key in usable.items() if kid not in ambiguous}
    return KeySet(keys=MappingProxyType(keys), ambiguous=ambiguous, rejected=tuple(rejected))
