"""Every answer carries its own ``x-authz-decision-id`` that finds its audit line, a cached decision's too.

Decisions are cached and answers are memoised by identity, so these tests ask the same request twice (the
second answer comes from the cache and the memoised answer template) and check that the two ids differ, that
each is the ``decision_id`` of exactly one audit line, and that a deny body carries the id of its header. Both
ways ``serve`` answers are covered: inline on the listener's connection and through aiohttp's handler.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests._factories import DECISION_ID, HOST, forge, mint
from tests.http.test_listener import _check, _connect, _get, _listening

TOKEN = mint("/orders")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_ID_HEADER = re.compile(rb"\r\nx-authz-decision-id: ([^\r]*)\r\n")


def _id(answer: bytes) -> str:
    found = _ID_HEADER.search(answer)
    assert found is not None, answer
    return found.group(1).decode()


def _line_of(events: list[dict[str, Any]], decision_id: str) -> dict[str, Any]:
    lines = [event for event in events if event["decision_id"] == decision_id]
    assert len(lines) == 1, (decision_id, events)
    return lines[0]


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "handler"])
async def test_two_answers_to_one_cached_allow_carry_different_ids_that_find_their_audit_lines(inline: bool) -> None:
    async with _listening(inline=inline) as listening, _connect(listening.port) as connection:
        first = await connection.ask(_check())
        second = await connection.ask(_check())  # the cached decision, the memoised answer
        assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")
        ids = _id(first), _id(second)
        assert ids[0] != ids[1] and all(DECISION_ID.fullmatch(i) for i in ids)
        assert ids[0] < ids[1]  # time-ordered
        events = listening.harness.events()
        assert [_line_of(events, i)["decision"] for i in ids] == ["allow", "allow"]


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "handler"])
async def test_two_answers_to_one_deny_carry_different_ids_in_header_and_body(inline: bool) -> None:
    async with _listening(inline=inline) as listening, _connect(listening.port) as connection:
        answers = [await connection.ask(_check(forge(TOKEN))) for _ in range(2)]
        ids = [_id(answer) for answer in answers]
        assert ids[0] != ids[1]
        for answer, decision_id in zip(answers, ids, strict=True):
            assert answer.startswith(b"HTTP/1.1 401")
            body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
            assert body == {
                "error": "a valid credential is required",
                "reason": "bad_signature",
                "decision_id": decision_id,
            }
            assert _line_of(listening.harness.events(), decision_id)["status"] == 401


async def test_a_valid_traceparent_puts_trace_and_span_ids_into_the_audit_line() -> None:
    async with _listening() as listening, _connect(listening.port) as connection:
        request = _get(
            "/ext_authz/orders", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}", f"traceparent: {TRACEPARENT}"
        )
        answer = await connection.ask(request)
        line = _line_of(listening.harness.events(), _id(answer))
        assert (line["trace_id"], line["span_id"]) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")


async def test_an_invalid_traceparent_is_ignored_and_the_request_decided_as_without_it() -> None:
    async with _listening() as listening, _connect(listening.port) as connection:
        request = _get(
            "/ext_authz/orders", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}", "traceparent: 00-nonsense"
        )
        answer = await connection.ask(request)
        assert answer.startswith(b"HTTP/1.1 200")
        line = _line_of(listening.harness.events(), _id(answer))
        assert "trace_id" not in line and "span_id" not in line
