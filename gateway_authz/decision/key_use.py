"""When each SAS key last verified a token: per rule (namespace, entity or ``""``, key name) and key slot.

Recorded when a token is verified, not when a cached decision answers again, so the time can be up to
``cache.decisionTtlSeconds`` older than the last request that key decided. Only names and times: never a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["KeyUse", "RuleSlot"]

RuleSlot = tuple[str, str, str, str]  # namespace, entity ("" for a namespace rule), key name, "primary"|"secondary"


class KeyUse:
    """Last-use times by :data:`RuleSlot`; bounded by the rules configured (entries are only ever configured names)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[RuleSlot, float] = {}

    def used(self, slot: RuleSlot, at: float) -> None:
        self._last[slot] = at

    def last_used(self) -> Mapping[RuleSlot, float]:
        return MappingProxyType(dict(self._last))
