"""The decision cache on ``cachetools.TLRUCache``: the candidate ``cache_choice`` measures against the shipped one.

Same interface and rules as :class:`gateway_authz.decision.cache.DecisionCache`; kept only for the measurement
(``python -m tests.perf.cache_choice``). Its description as written for the package:

Bounded, expiry-capped, and thrown away whenever the configuration changes.

Keys are SHA-256 digests of the credential and everything else the decision depends on, so the cache never holds
a token; entries live ``decisionTtlSeconds`` at most and never past the credential's own expiry.

Beside it, a bounded memo maps the digest of a request *as received* (method, Host, target, the credential
headers, the route context) to the cache key that request led to, so that a repeated request finds its decision
without being parsed, canonicalised and checked again: everything those steps compute is a function of what the
memo's digest covers and of the configuration the cache belongs to.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from cachetools import TLRUCache

from gateway_authz.core.credentials import AUTHZ_HEADER, SBA_HEADER
from gateway_authz.core.memo import BoundedMemo
from gateway_authz.core.model import AuthzRequest, Decision

__all__ = ["TlruDecisionCache"]

# Requests remembered (request digest -> cache key, ~250 bytes each); cleared whole when full.
_MEMO_ENTRIES = 16_384
# Copying a started hash costs half of making one: OpenSSL 3 looks the digest up again on every construction.
_SHA256 = hashlib.sha256()
_SHA256_JOINED = hashlib.sha256(b"j")


class TlruDecisionCache:
    """Decisions keyed by digest, least recently used evicted first, each entry with its own expiry.

    A ``cachetools.TLRUCache``: an entry is good while ``clock() < min(stored + ttl, expires_at)``, where
    ``expires_at`` is the end of the credential's validity given with the decision to :meth:`put` (its time to
    use), and at most ``maxsize`` entries are held. ``ttl <= 0`` disables the cache.
    """

    __slots__ = ("_clock", "_entries", "_requests", "_ttl")

    def __init__(self, *, maxsize: int, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._clock = clock
        self._requests: BoundedMemo[bytes, bytes] = BoundedMemo(_MEMO_ENTRIES)
        self._entries: TLRUCache[bytes, tuple[Decision, float]] = TLRUCache(
            maxsize=max(1, maxsize), ttu=self._time_to_use, timer=clock
        )

    def _time_to_use(self, _key: bytes, entry: tuple[Decision, float], now: float) -> float:
        return min(now + self._ttl, entry[1])

    @staticmethod
    def key(*parts: str) -> bytes:
        """A digest of ``parts`` such that no two different tuples share an encoding.

        Parts without NUL are joined with NUL, which ``split`` would undo exactly (count included); a tuple where a
        part holds NUL is encoded with a length before each part instead. A leading tag keeps the two apart.
        """
        text = "\0".join(parts)
        if text.count("\0") == len(parts) - 1:
            joined = _SHA256_JOINED.copy()
            joined.update(text.encode("utf-8", "surrogatepass"))
            return joined.digest()
        digest = hashlib.sha256(b"l")
        for part in parts:
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "big"))
            digest.update(encoded)
        return digest.digest()

    @staticmethod
    def request_key(request: AuthzRequest) -> bytes | None:
        """A digest of every part of ``request`` a decision can depend on, unparsed; ``None`` if one holds NUL.

        The parts are joined with NUL after a count of each variable-length group, which is unambiguous as long as
        no part contains NUL itself; a request with one (a gateway should never send it) simply is not memoised.
        """
        headers = request.headers
        sba = headers.get(SBA_HEADER, ())
        authorization = headers.get(AUTHZ_HEADER, ())
        parts = [request.method, request.host, request.target, str(len(sba)), *sba, str(len(authorization))]
        parts += authorization
        if request.context:
            parts.append(str(len(request.context)))
            for name, value in sorted(request.context.items()):
                parts += (name, value)
        text = "\0".join(parts)
        if text.count("\0") != len(parts) - 1:
            return None
        digest = _SHA256.copy()
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.digest()

    def recall(self, request_key: bytes) -> Decision | None:
        """The decision a request with this digest led to, while that decision is still cached."""
        key = self._requests.get(request_key)
        return None if key is None else self.get(key)

    def remember(self, request_key: bytes, key: bytes) -> None:
        """Note that the request with digest ``request_key`` is decided by the entry under ``key``."""
        if self._ttl > 0:
            self._requests.put(request_key, key)

    def get(self, key: bytes) -> Decision | None:
        if self._ttl <= 0:
            return None
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: bytes, decision: Decision, expires_at: float | None = None) -> None:
        """Keep ``decision`` under ``key`` for ``decisionTtlSeconds``, and never at or past ``expires_at``."""
        if self._ttl > 0:
            self._entries[key] = (decision, math.inf if expires_at is None else expires_at)

    def __len__(self) -> int:
        return len(self._entries)
