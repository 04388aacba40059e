"""The decision cache: bounded, expiry-capped, and thrown away whenever the configuration changes.

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
from collections import OrderedDict
from collections.abc import Callable

from ..core.credentials import AUTHZ_HEADER, SBA_HEADER
from ..core.memo import BoundedMemo
from ..core.model import AuthzRequest, Decision

__all__ = ["DecisionCache"]

# Requests remembered (request digest -> cache key, ~250 bytes each); cleared whole when full.
_MEMO_ENTRIES = 16_384
# Copying a started hash costs half of making one: OpenSSL 3 looks the digest up again on every construction.
_SHA256 = hashlib.sha256()
_SHA256_JOINED = hashlib.sha256(b"j")


class DecisionCache:
    """An LRU cache of decisions keyed by digest, each entry with its own expiry; ``ttl <= 0`` disables it.

    An entry is good while ``clock() < min(stored + ttl, expires_at)``, where ``expires_at`` is the end of the
    credential's validity given with the decision to :meth:`put`: the time-to-use rule of a ``TLRUCache``,
    checked on lookup instead of kept in an expiry heap. An expired entry is dropped when it is looked up or when
    it is the least recently used; either way at most ``maxsize`` are held.

    The recency order is a C ``OrderedDict`` (``move_to_end`` on a hit, ``popitem(last=False)`` to evict), and the
    expiries sit beside it in a plain map of floats that the garbage collector skips (a ``(decision, expiry)``
    tuple per entry would be one more object per entry for every full collection to walk). A full cache evicts
    on every miss under a flood of fresh tokens. ``cachetools.TLRUCache`` keeps the same rule; measured side by
    side (``python -m tests.perf.cache_choice``) it cost 16% more per cached decision and 56% more per decision
    on a full cache taking unique tokens (its lookups go through several Python-level methods, and every store
    walks an expiry heap), so this cache stays.
    """

    __slots__ = ("_clock", "_decisions", "_expires", "_maxsize", "_requests", "_ttl")

    def __init__(self, *, maxsize: int, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._clock = clock
        self._maxsize = max(1, maxsize)
        self._requests: BoundedMemo[bytes, bytes] = BoundedMemo(_MEMO_ENTRIES)
        self._decisions: OrderedDict[bytes, Decision] = OrderedDict()  # least recently used first
        self._expires: dict[bytes, float] = {}

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
        decision = self._decisions.get(key)
        if decision is None:
            return None
        if self._clock() < self._expires[key]:
            self._decisions.move_to_end(key)
            return decision
        del self._decisions[key]
        del self._expires[key]
        return None

    def put(self, key: bytes, decision: Decision, expires_at: float | None = None) -> None:
        """Keep ``decision`` under ``key`` for ``decisionTtlSeconds``, and never at or past ``expires_at``."""
        if self._ttl > 0:
            now = self._clock()
            expires = min(now + self._ttl, math.inf if expires_at is None else expires_at)
            if now < expires:  # an entry that could never be used is not stored (as a TLRUCache skips it)
                decisions = self._decisions
                if key in decisions:
                    decisions.move_to_end(key)
                elif len(decisions) >= self._maxsize:
                    evicted, _ = decisions.popitem(last=False)
                    del self._expires[evicted]
                decisions[key] = decision
                self._expires[key] = expires

    def __len__(self) -> int:
        return len(self._decisions)
