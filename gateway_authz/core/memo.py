"""Bounded memos of derived values: by key (:class:`BoundedMemo`) and by an object's identity (:class:`IdentityMemo`).

Both are emptied whole when they reach their size rather than evicting one entry at a time: what they hold is
cheap to derive again and a handful of keys recur, so no recency order has to be kept up on every lookup, and a
flood of one-off keys costs one ``clear()`` per ``size`` entries.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedMemo", "IdentityMemo"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class BoundedMemo(dict[_K, _V]):
    """A ``dict`` (``get`` and ``in`` are the built-in ones) whose :meth:`put` empties it first when it is full."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: _K, value: _V) -> _V:
        """Store ``value`` under ``key``, after clearing every entry if ``size`` are held; returns ``value``."""
        if len(self) >= self.size:
            self.clear()
        self[key] = value
        return value


class IdentityMemo(Generic[_V]):
    """Values derived from objects, looked up by a key built from ``id(obj)``; cleared whole when ``size`` is reached.

    A cached decision answers again as the very same object, so what was rendered or looked up for it (its audit
    parts, its counter, its answer headers) is found by ``id()`` without hashing its content. Each entry keeps its
    object, so that the id cannot be taken by another object while the entry lives, and a lookup checks it.
    """

    __slots__ = ("_entries",)

    def __init__(self, size: int) -> None:
        self._entries: BoundedMemo[Hashable, tuple[object, _V]] = BoundedMemo(size)

    def get(self, obj: object, key: Hashable) -> _V | None:
        """The value stored for ``obj`` under ``key`` (made with ``id(obj)``), or ``None``."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] is obj else None

    def put(self, obj: object, key: Hashable, value: _V) -> _V:
        self._entries.put(key, (obj, value))
        return value
