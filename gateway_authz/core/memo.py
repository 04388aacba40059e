"""Bounded memos of derived values: by key (:class:`BoundedMemo`) and by an object's identity (:class:`IdentityMemo`).

Both are emptied whole when they reach their size rather than evicting one entry at a time: what they hold is
cheap to derive again and a handful of keys recur, so no recency order has to be kept up on every lookup, and a
flood of one-off keys costs one ``clear()`` per ``size`` entries.

Both are bounded in bytes as well as in entries: keys are often made of what a client sent (a path, a host, a
key name), and a bound on entries alone lets a client that sends long ones hold ``size`` times as much. Each
entry is weighed on :meth:`~BoundedMemo.put` (the characters of its strings and bytes, tuples included, plus a
fixed cost per object); the memo is emptied when the next entry would take it past ``max_bytes``, and an entry
that alone weighs more than ``max_bytes / 16`` is not stored at all (it is derived again when asked for).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_BYTES", "BoundedMemo", "IdentityMemo", "weigh"]

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
_OBJECT = 64  # what an entry's container, a number or any other object is counted as
_LARGEST_SHARE = 16  # an entry weighing more than max_bytes / this is not remembered


def weigh(value: object) -> int:
    """An estimate of the memory ``value`` holds: strings and bytes by length, tuples by their items."""
    if isinstance(value, str | bytes):
        return _OBJECT + len(value)
    if isinstance(value, tuple):
        return _OBJECT + sum(weigh(item) for item in value)
    return _OBJECT


class BoundedMemo(dict[_K, _V]):
    """A ``dict`` (``get`` and ``in`` are the built-in ones) whose :meth:`put` empties it first when it is full."""

    __slots__ = ("_bytes", "max_bytes", "size")

    def __init__(self, size: int, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        super().__init__()
        self.size = size
        self.max_bytes = max_bytes
        self._bytes = 0

    @property
    def weight(self) -> int:
        """The estimated bytes held (see :func:`weigh`)."""
        return self._bytes

    def put(self, key: _K, value: _V) -> _V:
        """Store ``value`` under ``key``, after clearing every entry if ``size`` are held or ``max_bytes`` would be
        passed; an entry too heavy to keep is not stored. Returns ``value``."""
        cost = _OBJECT + weigh(key) + weigh(value)
        if cost * _LARGEST_SHARE > self.max_bytes:
            return value
        if len(self) >= self.size or self._bytes + cost > self.max_bytes:
            self.clear()
        self[key] = value
        self._bytes += cost
        return value

    def clear(self) -> None:
        super().clear()
        self._bytes = 0


class IdentityMemo(Generic[_V]):
    """Values derived from objects, looked up by a key built from ``id(obj)``; cleared whole when ``size`` is reached.

    A cached decision answers again as the very same object, so what was rendered or looked up for it (its audit
    parts, its counter, its answer headers) is found by ``id()`` without hashing its content. Each entry keeps its
    object, so that the id cannot be taken by another object while the entry lives, and a lookup checks it.
    """

    __slots__ = ("_entries",)

    def __init__(self, size: int, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._entries: BoundedMemo[Hashable, tuple[object, _V]] = BoundedMemo(size, max_bytes=max_bytes)

    def get(self, obj: object, key: Hashable) -> _V | None:
        """The value stored for ``obj`` under ``key`` (made with ``id(obj)``), or ``None``."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] is obj else None

    def put(self, obj: object, key: Hashable, value: _V) -> _V:
        self._entries.put(key, (obj, value))
        return value

    @property
    def weight(self) -> int:
        return self._entries.weight
