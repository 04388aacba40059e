"""Decision ids: UUIDv7 strings (RFC 9562), unique and time-ordered, made cheaply enough for every decision.

Layout of the 128 bits: 48 bits of Unix milliseconds, the version (7), 12 bits of a counter within the
millisecond (RFC 9562 §6.2, method 1), the variant, and 62 bits fixed per generator, drawn at random when it is
made. Within one generator the counter keeps ids strictly increasing (when it runs out within a millisecond the
timestamp is advanced by one, as §6.2 allows); the random tail keeps the ids of different processes apart.

The text of an id is the millisecond's prefix (formatted once per millisecond), the counter's four hex digits
and the fixed tail: one clock read and two string joins per id. Ids are not secrets and do not need to be
unguessable; they are for quoting and for finding an audit line.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

__all__ = ["DecisionIds"]

_COUNTER_MAX = 0x0FFF  # 12 bits of rand_a used as the counter
_HEX4 = tuple(f"{0x7000 | n:04x}" for n in range(_COUNTER_MAX + 1))  # version nibble 7 + counter


class DecisionIds:
    """A source of decision ids; call it for the next one. ``clock_ns`` is a seam for tests."""

    __slots__ = ("_clock_ns", "_counter", "_ms", "_prefix", "_tail")

    def __init__(self, *, clock_ns: Callable[[], int] = time.time_ns, tail_bits: int | None = None) -> None:
        self._clock_ns = clock_ns
        bits = secrets.randbits(62) if tail_bits is None else tail_bits & ((1 << 62) - 1)
        value = (0b10 << 62) | bits  # the RFC 9562 variant, then 62 fixed bits
        text = f"{value:016x}"
        self._tail = f"-{text[:4]}-{text[4:]}"
        self._ms = -1
        self._counter = 0
        self._prefix = ""

    def __call__(self) -> str:
        ms = self._clock_ns() // 1_000_000
        if ms > self._ms:
            self._ms, self._counter = ms, 0
            self._prefix = f"{ms >> 16 & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}-"
        else:  # the same millisecond, or the clock went back: count on from the last id
            counter = self._counter + 1
            if counter > _COUNTER_MAX:
                self._ms += 1
                counter = 0
                ms = self._ms
                self._prefix = f"{ms >> 16 & 0xFFFFFFFF:08x}-{ms & 0xFFFF:04x}-"
            self._counter = counter
        return self._prefix + _HEX4[self._counter] + self._tail
