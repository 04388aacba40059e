"""A bounded memo of what was derived from an object, found again by the object's identity."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["IdentityMemo"]

_V = TypeVar("_V")


class IdentityMemo(Generic[_V]):
    """Values derived from objects, looked up by a key built from ``id(obj)``; cleared whole when ``size`` is reached.

    A cached decision answers again as the very same object, so what was rendered or looked up for it (its audit
    parts, its counter, its answer headers) is found by ``id()`` without hashing its content. Each entry keeps its
    object, so that the id cannot be taken by another object while the entry lives, and a lookup checks it.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[Hashable, tuple[object, _V]] = {}

    def get(self, obj: object, key: Hashable) -> _V | None:
        """The value stored for ``obj`` under ``key`` (made with ``id(obj)``), or ``None``."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] is obj else None

    def put(self, obj: object, key: Hashable, value: _V) -> _V:
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (obj, value)
        return value
