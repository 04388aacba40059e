"""Decision ids are UUIDv7 strings, unique and strictly time-ordered; a traceparent is read only when valid."""

from __future__ import annotations

import uuid

import pytest

from gateway_authz.core.decision_ids import DecisionIds
from gateway_authz.core.traceparent import trace_ids
from tests._factories import DECISION_ID

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


class SteppingClock:
    """Nanoseconds that advance only when told to: many ids within one millisecond."""

    def __init__(self, ms: int) -> None:
        self.ns = ms * 1_000_000

    def __call__(self) -> int:
        return self.ns


def test_ids_are_uuid_version_7_with_the_rfc_variant() -> None:
    ids = DecisionIds()
    for _ in range(100):
        value = ids()
        assert DECISION_ID.fullmatch(value) and len(value) <= 64
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_carry_the_millisecond_they_were_made_in() -> None:
    clock = SteppingClock(1_800_000_000_123)
    assert uuid.UUID(DecisionIds(clock_ns=clock)()).int >> 80 == 1_800_000_000_123


def test_ids_within_one_millisecond_are_unique_and_increasing_even_past_the_counter() -> None:
    """5,000 ids in one millisecond: past the 12-bit counter the timestamp is borrowed forward, order kept."""
    ids = DecisionIds(clock_ns=SteppingClock(1_800_000_000_000))
    made = [ids() for _ in range(5000)]
    assert made == sorted(made) and len(set(made)) == len(made)


def test_a_clock_that_steps_back_never_makes_an_id_that_sorts_earlier() -> None:
    clock = SteppingClock(1_800_000_000_500)
    ids = DecisionIds(clock_ns=clock)
    first = ids()
    clock.ns -= 400 * 1_000_000
    assert ids() > first


def test_two_generators_differ_in_their_random_tail() -> None:
    clock = SteppingClock(1_800_000_000_000)
    assert DecisionIds(clock_ns=clock)() != DecisionIds(clock_ns=clock)()


def test_a_valid_traceparent_gives_its_trace_and_span_ids() -> None:
    assert trace_ids(f"00-{TRACE}-{SPAN}-01") == (TRACE, SPAN)


def test_a_future_traceparent_version_may_append_fields() -> None:
    assert trace_ids(f"cc-{TRACE}-{SPAN}-01-what-comes-next") == (TRACE, SPAN)


@pytest.mark.parametrize(
    "value",
    [
        "",
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",  # short trace id
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-0g",
        f"00-{TRACE}-{SPAN}-01" + "-x" * 400,  # over the size bound: not read
    ],
)
def test_an_invalid_traceparent_is_ignored(value: str) -> None:
    assert trace_ids(value) is None
