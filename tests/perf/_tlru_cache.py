"""The decision cache with its storage on ``cachetools.TLRUCache``: the candidate ``cache_choice`` measures.

Only the storage differs from :class:`gateway_authz.decision.cache.DecisionCache` (keys, the request memo and
the expiry rule are inherited): one ``TLRUCache`` whose time to use is ``min(stored + ttl, expires_at)``. Kept
for the measurement alone (``python -m tests.perf.cache_choice``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from cachetools import TLRUCache

from gateway_authz.core.model import Decision
from gateway_authz.decision.cache import DecisionCache

__all__ = ["TlruDecisionCache"]


class TlruDecisionCache(DecisionCache):
    __slots__ = ("_entries",)

    def __init__(self, *, maxsize: int, ttl: float, clock: Callable[[], float] = time.time) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, clock=clock)
        self._entries: TLRUCache[bytes, tuple[Decision, float]] = TLRUCache(
            maxsize=max(1, maxsize), ttu=self._time_to_use, timer=clock
        )

    def _time_to_use(self, _key: bytes, entry: tuple[Decision, float], now: float) -> float:
        return min(now + self._ttl, entry[1])

    def get(self, key: bytes) -> Decision | None:
        if self._ttl <= 0:
            return None
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: bytes, decision: Decision, expires_at: float | None = None) -> None:
        if self._ttl > 0:
            self._entries[key] = (decision, math.inf if expires_at is None else expires_at)

    def __len__(self) -> int:
        return len(self._entries)
