"""The decision cache: bounded, expiry-capped, and thrown away whenever the configuration changes.

Keys are SHA-256 digests of the credential and everything else the decision depends on, so the cache never holds
a token; entries live ``decisionTtlSeconds`` at most and never past the credential's own expiry.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable

from cachetools import TLRUCache

from .model import Decision

__all__ = ["DecisionCache"]


class DecisionCache:
    """A TLRU cache of decisions keyed by digest; ``ttl <= 0`` disables it."""

    __slots__ = ("_cache", "_ttl")

    def __init__(self, *, maxsize: int, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl = ttl
        self._cache: TLRUCache[bytes, Decision] = TLRUCache(maxsize=max(1, maxsize), ttu=self._ttu, timer=clock)

    def _ttu(self, _key: bytes, decision: Decision, now: float) -> float:
        expires = decision.expires_at if decision.expires_at is not None else math.inf
        return min(now + self._ttl, expires)

    @staticmethod
    def key(*parts: str) -> bytes:
        """A digest of ``parts``, each prefixed with its length, so no two different tuples share an encoding."""
        digest = hashlib.sha256()
        for part in parts:
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "big"))
            digest.update(encoded)
        return digest.digest()

    def get(self, key: bytes) -> Decision | None:
        if self._ttl <= 0:
            return None
        return self._cache.get(key)

    def put(self, key: bytes, decision: Decision) -> None:
        if self._ttl > 0:
            self._cache[key] = decision

    def __len__(self) -> int:
        return len(self._cache)
