"""Resources: canonical request paths and SAS ``sr`` URIs, and which namespace and entity a request names.

A request path and a token's ``sr`` go through the *same* canonicaliser, so that "covers" can be a plain
comparison of lower-case path segments. Anything a gateway or upstream could read as a different resource than we
do (dot segments, encoded slashes, backslashes, empty segments, control characters, invalid UTF-8) is refused
rather than normalised: the service must never allow what the upstream will treat as another resource.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations
from urllib.parse import unquote, unquote_to_bytes

from .errors import BadRequest, InvalidCredential, NotPermitted
from .memo import BoundedMemo
from .settings import Entity, Namespace

__all__ = [
    "MAX_TARGET_LENGTH",
    "ResolvedResource",
    "ResourceIndex",
    "ResourcePath",
    "canonical_host",
    "canonical_segments",
    "parse_sr",
    "split_target",
    "upstream_readings",
]

MAX_TARGET_LENGTH = 16 * 1024
_SR_SCHEMES = frozenset({"sb", "http", "https", "ws", "wss"})
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")
_PORT = re.compile(r"^[0-9]{1,5}$")
_UNSAFE_RAW = re.compile(r"[\x00-\x20\x7f\\#]")
_UNSAFE_DECODED = re.compile(r"[\x00-\x1f\x7f\\/]")
# What is still an escape of '.', '/', '\' or '%' after our one decoding: an upstream that decodes twice would read
# "%252e%252e" as "..", so such a segment names two different resources depending on who reads it.
_DOUBLE_ENCODED = re.compile(r"%(?:2[eEfF]|5[cC]|25)")
_HC_PREFIX = "$hc"
# A decoded segment some common upstream would read differently: ";params" (servlet containers drop them), a
# trailing dot or space (Windows/IIS-style trimming), an escape left after our one decoding (a second decoding).
_LOOSE_SEGMENT = re.compile(r"[;%]|[. ]$")
_LOOSE_BROKEN = frozenset(("", ".", ".."))
# Resolutions and token resources remembered: a gateway in front of a few entities sends the same (Host, path) pairs,
# and fresh tokens for one resource the same sr, over and over. Bounded in count and in the length of what is
# remembered (at most ~1.5 MB each, whatever clients send).
_MEMO_ENTRIES = 1024
_MEMO_MAX_CHARS = 512
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


@dataclass(frozen=True, slots=True)
class ResourcePath:
    """A canonical resource: lower-case host without port and lower-case, decoded path segments."""

    host: str
    segments: tuple[str, ...]

    def covers(self, other: ResourcePath) -> bool:
        """Whether ``other`` is this resource or below it, by whole segments (``/hc`` never covers ``/hc2``)."""
        n = len(self.segments)
        return self.host == other.host and other.segments[:n] == self.segments

    def __str__(self) -> str:
        return f"{self.host}/{'/'.join(self.segments)}"


def canonical_host(authority: str) -> str:
    """The lower-case host of a Host header or URI authority, without its port; raises ``ValueError``."""
    host = authority.strip(" \t")
    if not host.isascii():  # never fold or strip a non-ASCII spelling into an ASCII name ("\u212a" -> "k")
        raise ValueError("non-ASCII host")
    host = host.lower()
    if host.startswith("["):  # an IPv6 literal: kept as written, never a configured namespace name
        end = host.find("]")
        if end < 0 or (host[end + 1 :] and not _valid_port(host[end + 2 :], host[end + 1])):
            raise ValueError("bad IPv6 authority")
        return host[: end + 1]
    name, sep, port = host.partition(":")
    if sep and not _valid_port(port, ":"):
        raise ValueError("bad port")
    if name.endswith("."):  # the fully-qualified spelling names the same host
        name = name[:-1]
    if not _HOST.fullmatch(name):
        raise ValueError("bad host")
    return name


def _valid_port(port: str, sep: str) -> bool:
    return sep == ":" and bool(_PORT.fullmatch(port)) and 0 < int(port) < 65536


def canonical_segments(path: str) -> tuple[str, ...]:
    """Decode a raw absolute path into lower-case segments; raises ``ValueError`` on anything ambiguous.

    A leading ``$hc`` segment is dropped (``/$hc/x`` names the same entity as ``/x``) and so is one trailing
    slash; ``/$hc/$hc/…`` is refused, so that a canonical path never starts with ``$hc`` and canonicalising
    is idempotent. Each segment is percent-decoded exactly once, strictly as UTF-8.
    """
    if not path.startswith("/") or _UNSAFE_RAW.search(path) or _PCT.search(path):
        raise ValueError("path is not a clean absolute path")
    raw = path[1:].split("/")
    if raw and raw[-1] == "":
        raw.pop()
    segments: list[str] = []
    for part in raw:
        decoded = unquote_to_bytes(part).decode("utf-8", errors="strict")
        # Servlet-style upstreams drop ";params" from a segment before resolving dots: "..;x" is ".." to them.
        if decoded.partition(";")[0] in ("", ".", "..") or _UNSAFE_DECODED.search(decoded):
            raise ValueError("empty, dot or encoded-separator segment")
        if "%" in decoded and _DOUBLE_ENCODED.search(decoded):
            raise ValueError("a dot, separator or percent sign encoded twice")
        # ASCII letters only: str.lower() would turn the Kelvin sign "\u212a" into "k", another resource upstream
        segments.append(decoded.lower() if decoded.isascii() else decoded.translate(_ASCII_LOWER))
    if segments and segments[0] == _HC_PREFIX:
        segments.pop(0)
        if segments and segments[0] == _HC_PREFIX:  # one strip or two? Either reading is a guess: refuse
            raise ValueError("repeated $hc prefix")
    return tuple(segments)


def split_target(target: str) -> tuple[str, str]:
    """Split a request-target into (path, query); raises ``NotPermitted`` when it is not origin-form."""
    if len(target) > MAX_TARGET_LENGTH or not target.startswith("/"):
        raise NotPermitted("malformed_request", "request target is not an origin-form path")
    path, _, query = target.partition("?")
    return path, query


def parse_sr(decoded_sr: str) -> ResourcePath:
    """Canonicalise a token's resource URI (already percent-decoded once); raises ``InvalidCredential``.

    ``sb``, ``http``, ``https``, ``ws`` and ``wss`` are the same resource; any valid port is ignored (Relay drops
    it); userinfo, query, fragment and every path ambiguity are refused.

    A pure function, and every fresh token for a resource carries the same ``sr``: results for short ones are
    remembered (bounded; a refusal is never remembered, it raises every time).
    """
    if len(decoded_sr) <= _MEMO_MAX_CHARS:
        return _parse_sr_remembered(decoded_sr)
    return _parse_sr(decoded_sr)


@functools.lru_cache(maxsize=_MEMO_ENTRIES)
def _parse_sr_remembered(decoded_sr: str) -> ResourcePath:
    return _parse_sr(decoded_sr)


def _parse_sr(decoded_sr: str) -> ResourcePath:
    try:
        scheme, sep, rest = decoded_sr.partition("://")
        if not sep or scheme.lower() not in _SR_SCHEMES:
            raise ValueError("scheme")
        authority, slash, path = rest.partition("/")
        if "@" in authority or "?" in rest or "#" in rest:
            raise ValueError("userinfo, query or fragment")
        return ResourcePath(canonical_host(authority), canonical_segments(slash + path if slash else "/"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidCredential("malformed_token", f"sr is not a usable resource URI ({exc})") from None


def _drop_params(segment: str) -> str:
    return segment.partition(";")[0]


def _trim(segment: str) -> str:
    return segment.rstrip(". ")


def _decode_again(segment: str) -> str:
    decoded = unquote(segment, errors="replace")
    return decoded.lower() if decoded.isascii() else decoded.translate(_ASCII_LOWER)


# Each common upstream normalisation, in the order that widens most when several apply (a second decoding can
# reveal a ";" or a trailing dot that the others then act on).
_NORMALISATIONS = (_decode_again, _drop_params, _trim)


def upstream_readings(segments: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The other paths an upstream could read canonical ``segments`` as, under each mix of the common normalisations.

    Dropping ``;params`` per segment, trimming trailing dots and spaces per segment, and percent-decoding once
    more: every non-empty combination of the three, each distinct reading once (``()`` when the path reads the
    same under all of them, the usual case). Raises ``ValueError`` when a reading would change the path's shape
    (a segment turning empty, a dot segment, or a separator), which no comparison of entities can make safe.
    """
    if not any(_LOOSE_SEGMENT.search(segment) for segment in segments):
        return ()
    readings: dict[tuple[str, ...], None] = {}
    for count in range(1, len(_NORMALISATIONS) + 1):
        for chosen in combinations(_NORMALISATIONS, count):
            reading = []
            for segment in segments:
                for normalise in chosen:
                    segment = normalise(segment)
                if segment in _LOOSE_BROKEN or _UNSAFE_DECODED.search(segment):
                    raise ValueError("a segment an upstream would read as empty, a dot segment or a separator")
                reading.append(segment)
            readings[tuple(reading)] = None
    readings.pop(segments, None)
    return tuple(readings)


@dataclass(frozen=True, slots=True)
class ResolvedResource:
    """The namespace and entity (``None`` for the namespace itself) that a canonical request path names.

    ``readings`` are the other segment tuples an upstream could make of the same path (:func:`upstream_readings`);
    each names the same entity as ``path``, and a policy that looks at segments (management routes) checks them too.
    """

    namespace: Namespace
    entity: Entity | None
    path: ResourcePath
    readings: tuple[tuple[str, ...], ...] = ()


class ResourceIndex:
    """Host → namespace and segments → entity lookups, built once per configuration."""

    __slots__ = ("_by_host", "_entities", "_max_depth", "_memo")

    def __init__(self, namespaces: Iterable[Namespace]) -> None:
        self._by_host: dict[str, Namespace] = {}
        self._entities: dict[tuple[str, tuple[str, ...]], Entity] = {}
        self._max_depth = 0
        self._memo: BoundedMemo[tuple[str, str], ResolvedResource] = BoundedMemo(_MEMO_ENTRIES)
        for ns in namespaces:
            for host in ns.hosts:
                self._by_host[host.lower()] = ns
            for entity in ns.entities:
                self._entities[(ns.name, entity.segments)] = entity
                self._max_depth = max(self._max_depth, len(entity.segments))

    def replaced(self, removed: Iterable[Namespace], added: Iterable[Namespace]) -> ResourceIndex:
        """A new index: this one less the hosts and entities of ``removed``, plus those of ``added``.

        For a reload that changed a few namespaces of many: the lookup tables are copied (in C), not rebuilt from
        every entity. The deepest entity name may be over-estimated afterwards, which costs a lookup, never a match.
        """
        index = ResourceIndex(())
        index._by_host = dict(self._by_host)
        index._entities = dict(self._entities)
        index._max_depth = self._max_depth
        for ns in removed:
            for host in ns.hosts:
                if index._by_host.get(host.lower()) is ns:
                    del index._by_host[host.lower()]
            for entity in ns.entities:
                index._entities.pop((ns.name, entity.segments), None)
        for ns in added:
            for host in ns.hosts:
                index._by_host[host.lower()] = ns
            for entity in ns.entities:
                index._entities[(ns.name, entity.segments)] = entity
                index._max_depth = max(index._max_depth, len(entity.segments))
        return index

    def namespace_for(self, host: str) -> Namespace | None:
        """The namespace serving canonical ``host``, if any."""
        return self._by_host.get(host)

    def entity_for(self, namespace: Namespace, segments: tuple[str, ...]) -> Entity | None:
        """The entity with the longest name that is a whole-segment prefix of ``segments``."""
        for depth in range(min(len(segments), self._max_depth), 0, -1):
            entity = self._entities.get((namespace.name, segments[:depth]))
            if entity is not None:
                return entity
        return None

    def resolve(self, host_header: str, path: str) -> ResolvedResource:
        """Resolve a request's Host and raw path; raises ``NotPermitted`` for unknown hosts or bad paths.

        A pure function of its arguments and this configuration, so a success is remembered (failures are not).
        """
        key = (host_header, path)
        resolved = self._memo.get(key)
        if resolved is None:
            resolved = self._resolve(host_header, path)
            if len(host_header) + len(path) <= _MEMO_MAX_CHARS:
                self._memo.put(key, resolved)
        return resolved

    def _resolve(self, host_header: str, path: str) -> ResolvedResource:
        try:
            host = canonical_host(host_header)
        except ValueError:
            raise NotPermitted("malformed_request", "Host is not a valid host name") from None
        namespace = self._by_host.get(host)
        if namespace is None:
            raise NotPermitted("unknown_namespace", f"no namespace serves host {host!r}")
        try:
            segments = canonical_segments(path)
        except (ValueError, UnicodeDecodeError):
            raise NotPermitted("malformed_request", "request path is ambiguous or not canonical") from None
        entity = self.entity_for(namespace, segments)
        try:
            readings = upstream_readings(segments)
        except ValueError as exc:
            raise BadRequest("ambiguous_path", str(exc)) from None
        for reading in readings:
            if self.entity_for(namespace, reading) is not entity:
                raise BadRequest("ambiguous_path", "an upstream normalising the path would reach another entity")
        return ResolvedResource(namespace, entity, ResourcePath(host, segments), readings)
