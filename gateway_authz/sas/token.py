"""Shared Access Signature tokens: strict parsing, verification and signing, exactly as Azure Relay does them.

``SharedAccessSignature sr=<enc uri>&sig=<enc base64 mac>&se=<unix secs>&skn=<rule>``; fields in any order,
each exactly once, nothing else. The string to sign is the raw ``sr`` *as sent* (still percent-encoded, so the
case of its escapes matters) + LF + the raw ``se``; the HMAC-SHA256 key is the UTF-8 bytes of the key *string*
(Relay never base64-decodes it). Everything here is pure: the caller passes the clock reading.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Literal, NamedTuple
from urllib.parse import quote_plus, unquote_to_bytes, urlencode

from ..core.credentials import SAS_PREFIX
from ..core.errors import CannotVerify, InvalidCredential
from ..core.memo import BoundedMemo
from ..core.model import Right
from ..core.resources import ResourcePath, parse_sr
from ..core.settings import AuthorizationRule

__all__ = [
    "MAX_SAS_LENGTH",
    "SAS_PREFIX",
    "RuleKeys",
    "SasToken",
    "VerifiedSas",
    "parse_sas",
    "sign_sas",
    "verify_sas",
]

MAX_SAS_LENGTH = 4096
MAX_EXPIRY = 253_402_300_799  # 9999-12-31T23:59:59Z: beyond it no client computes a date
_FIELDS = frozenset({"sr", "sig", "se", "skn"})
_SE = re.compile(r"0|[1-9][0-9]{0,11}")  # ASCII digits only: `int()` alone takes Arabic-Indic digits, " 17", "1_7"
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space, no control characters
_B64 = re.compile(r"[A-Za-z0-9+/]{43}=")  # 32 bytes, standard alphabet, padded: what every SDK emits
_MAX_KEY_NAME = 256
# A token as every SDK writes it (.NET, Java, Node, Python): the four fields in this order, each once, printable ASCII
# (_TOKEN_CHARS less "&"), se as _SE. One match stands for those three checks and the split into fields.
_SDK_ORDER = re.compile(
    r"sr=([\x21-\x25\x27-\x7e]+)&sig=([\x21-\x25\x27-\x7e]+)&se=(0|[1-9][0-9]{0,11})&skn=([\x21-\x25\x27-\x7e]+)"
)
# Raw sr -> its canonical resource: fresh tokens for one resource all carry the same sr, and its percent-decoding and
# canonicalisation are pure. The sr is not secret (the signature is never part of a key). Only successes are kept;
# bounded in entries and in the length of what is kept, cleared whole when full.
_SR_SEEN: BoundedMemo[str, ResourcePath] = BoundedMemo(1024)
_SR_SEEN_MAX_CHARS = 512

KeySlot = Literal["primary", "secondary"]


# The per-request records are immutable NamedTuples: built on every cache miss, and a NamedTuple costs a third of what
# a frozen dataclass's __init__ does (one object.__setattr__ per field).


class SasToken(NamedTuple):
    """A parsed, *unverified* SAS token."""

    raw_sr: str
    raw_se: str
    resource: ResourcePath
    signature: bytes
    expiry: int
    key_name: str

    @property
    def string_to_sign(self) -> bytes:
        return f"{self.raw_sr}\n{self.raw_se}".encode()


class VerifiedSas(NamedTuple):
    """A token whose signature matched ``rule``'s key in ``key_slot`` and which has not expired."""

    token: SasToken
    rule: AuthorizationRule
    key_slot: KeySlot


def _malformed(detail: str) -> InvalidCredential:
    return InvalidCredential("malformed_token", detail)


def parse_sas(value: str) -> SasToken:
    """Parse a ``SharedAccessSignature …`` value strictly; raises :class:`InvalidCredential`."""
    if len(value) > MAX_SAS_LENGTH:
        raise InvalidCredential("token_too_large", f"SAS token longer than {MAX_SAS_LENGTH} characters")
    if not value.startswith(SAS_PREFIX):
        raise _malformed("not a SharedAccessSignature token")
    body = value[len(SAS_PREFIX) :]
    in_sdk_order = _SDK_ORDER.fullmatch(body)
    if in_sdk_order is not None:  # the checks of the general route below, all passed in one match
        raw_sr, raw_sig, raw_se, raw_skn = in_sdk_order.groups()
    else:
        if not _TOKEN_CHARS.fullmatch(body):
            raise _malformed("token holds whitespace, control or non-ASCII characters")
        raw_sr, raw_sig, raw_se, raw_skn = _split_fields(body)
        if not _SE.fullmatch(raw_se):
            raise _malformed("se is not a plain non-negative number of seconds")
    expiry = int(raw_se)
    if expiry > MAX_EXPIRY:
        raise _malformed("se is not a plain non-negative number of seconds")
    resource = _SR_SEEN.get(raw_sr)  # an sr decoded and canonicalised before: no need to do either again
    try:
        sig_text = _unquote_base64(raw_sig)
        key_name = unquote_to_bytes(raw_skn).decode("utf-8") if "%" in raw_skn else raw_skn
        decoded_sr = unquote_to_bytes(raw_sr).decode("utf-8") if resource is None else ""
    except UnicodeDecodeError:
        raise _malformed("field is not valid UTF-8 after percent-decoding") from None
    if not _B64.fullmatch(sig_text):
        raise _malformed("sig is not a base64 HMAC-SHA256")
    if not 0 < len(key_name) <= _MAX_KEY_NAME:
        raise _malformed("skn is empty or too long")
    try:
        signature = binascii.a2b_base64(sig_text, strict_mode=True)
    except binascii.Error:
        raise _malformed("sig is not base64") from None
    if binascii.b2a_base64(signature, newline=False) != sig_text.encode():  # unused low bits set: four spellings
        raise _malformed("sig is not canonical base64")
    if resource is None:
        resource = parse_sr(decoded_sr)
        if len(raw_sr) <= _SR_SEEN_MAX_CHARS:
            _SR_SEEN.put(raw_sr, resource)
    return SasToken(raw_sr, raw_se, resource, signature, expiry, key_name)  # by position: keywords cost more


def _split_fields(body: str) -> tuple[str, str, str, str]:
    """The raw ``sr``, ``sig``, ``se`` and ``skn`` of a token body in any order, each exactly once, nothing else."""
    fields: dict[str, str] = {}
    for part in body.split("&"):
        name, sep, field_value = part.partition("=")
        if not sep or not field_value:
            raise _malformed("empty field or field without a value")
        if name not in _FIELDS:
            raise _malformed("unknown field")
        if name in fields:
            raise _malformed("repeated field")
        fields[name] = field_value
    if len(fields) != len(_FIELDS):
        raise _malformed("missing field")
    return fields["sr"], fields["sig"], fields["se"], fields["skn"]


def _unquote_base64(raw: str) -> str:
    """``unquote_to_bytes(raw).decode("ascii")`` for a printable-ASCII ``raw``; raises ``UnicodeDecodeError``.

    What SDKs send escapes exactly ``+``, ``/`` and ``=``, in upper-case hex: replaced directly. The replacements
    add no ``%``, so if none is left every escape was one of those three and the result is what the general
    decoder gives; any other escape (lower-case hex, say) goes through the general decoder itself.
    """
    text = raw.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    if "%" in text:
        return unquote_to_bytes(raw).decode("ascii")
    return text


def _grants(rights: frozenset[Right]) -> tuple[Right, ...]:
    probe = AuthorizationRule(key_name="", primary_key="", secondary_key=None, rights=rights)
    return tuple(right for right in Right if probe.grants(right))


# What each possible set of rights grants: one shared tuple per set rather than one per rule.
_GRANTED = {
    rights: _grants(rights)
    for rights in (frozenset(r for bit, r in enumerate(Right) if mask >> bit & 1) for mask in range(1 << len(Right)))
}


class RuleKeys:
    """A rule with its HMAC keys prepared once, on the rule's first use (the key schedule is not per request).

    On first use rather than at load: a prepared HMAC holds about 800 bytes of OpenSSL state, and an estate of
    10,000 namespaces has hundreds of thousands of keys, most of which a given replica may never see.
    """

    __slots__ = ("_macs", "granted", "rule", "unavailable")

    def __init__(self, rule: AuthorizationRule) -> None:
        self.rule = rule
        # Every right the rule confers, as a tuple: `in` on it compares members by identity, where `rule.grants`
        # hashes the enum members in Python on every request.
        self.granted = _GRANTED.get(rule.rights) or tuple(right for right in Right if rule.grants(right))
        self._macs: tuple[tuple[KeySlot, hmac.HMAC], ...] | None = None
        # A key that is not there yet may be the one that signed: no match is then "cannot verify", not "forged".
        self.unavailable = rule.unavailable

    def _prepare(self) -> tuple[tuple[KeySlot, hmac.HMAC], ...]:
        rule = self.rule
        slots: list[tuple[KeySlot, hmac.HMAC]] = []
        pairs: tuple[tuple[KeySlot, str | None], ...] = (
            ("primary", rule.primary_key),
            ("secondary", rule.secondary_key),
        )
        for slot, key in pairs:
            if key:  # never an HMAC under an empty or absent key (a key not there yet is "")
                slots.append((slot, hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)))
        self._macs = tuple(slots)
        return self._macs

    def match(self, message: bytes, signature: bytes) -> KeySlot | None:
        """The slot whose key signed ``message`` with ``signature``, compared in constant time, or ``None``."""
        macs = self._macs
        if macs is None:
            macs = self._prepare()
        for slot, prepared in macs:
            mac = prepared.copy()
            mac.update(message)
            if hmac.compare_digest(mac.digest(), signature):
                return slot
        return None


def verify_sas(
    token: SasToken,
    candidates: Sequence[RuleKeys],
    *,
    now: float,
    clock_skew: int,
    max_lifetime: int | None = None,
) -> VerifiedSas:
    """Check the signature against each candidate rule (primary, then secondary key), then the expiry.

    A token is valid while ``now < se + clock_skew``. With ``max_lifetime`` set, a token whose ``se`` lies
    further ahead than that (plus the skew) is refused: an operator's cap on long-lived tokens.
    """
    if not candidates:
        raise InvalidCredential("unknown_key_name", "no rule with that key name covers the token's resource")
    message = token.string_to_sign
    for keys in candidates:
        slot = keys.match(message, token.signature)
        if slot is not None:
            if now >= token.expiry + clock_skew:
                raise InvalidCredential("expired", "the token's se has passed")
            if max_lifetime is not None and token.expiry - now > max_lifetime + clock_skew:
                raise InvalidCredential("lifetime_too_long", "se lies beyond sas.maxTokenLifetimeSeconds")
            return VerifiedSas(token, keys.rule, slot)
    for keys in candidates:
        if keys.unavailable:  # fail closed, but as 503: the key that would decide is missing, not the token wrong
            raise CannotVerify("key_unavailable", "; ".join(keys.unavailable))
    raise InvalidCredential("bad_signature", "the signature matches no key of the named rule")


def sign_sas(resource_uri: str, key_name: str, key: str, expiry: int) -> str:
    """A token signed exactly as the official Azure SDKs sign one (``quote_plus``, uppercase escapes)."""
    encoded_uri = quote_plus(resource_uri)
    digest = hmac.new(key.encode("utf-8"), f"{encoded_uri}\n{expiry}".encode(), hashlib.sha256).digest()
    fields = {"sr": resource_uri, "sig": base64.b64encode(digest).decode(), "se": str(expiry), "skn": key_name}
    return SAS_PREFIX + urlencode(fields)
