"""Which path the decision listener takes: the fast path where its start-up check passes, aiohttp's public one else.

Everything that reads or writes aiohttp's private state is in ``gateway_authz/http/fastpath.py``; its start-up
check names each piece that is missing, and any miss (or ``GATEWAY_AUTHZ_FAST_PATH=0``) selects the public path,
logged once. The public path answers exactly as the fast one (the decision tests run both ways in ``.ci/run``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway_authz.core.appkeys import FAST_PATH
from gateway_authz.http import fastpath
from gateway_authz.http.app import create_app, decision_runner
from tests._factories import HOST, make_settings, mint


def _without(name: str) -> type[Any]:
    """A stand-in for aiohttp's RequestHandler whose ``name`` attribute is gone."""
    return type("Handler", (), {n: None for n in fastpath._HANDLER_STATE if n != name})


def test_the_installed_aiohttp_passes_the_start_up_check() -> None:
    """Fails when aiohttp moves to a release the fast path was not checked against: check it, then add it."""
    assert fastpath.unavailable_reason() is None


def test_an_unchecked_aiohttp_release_selects_the_public_path() -> None:
    reason = fastpath.unavailable_reason("3.15.0")
    assert reason is not None and "3.15.0" in reason and "3.14" in reason


@pytest.mark.parametrize("name", ["_waiter", "_messages", "_process_keepalive"])
def test_missing_private_state_is_named(name: str) -> None:
    reason = fastpath.unavailable_reason(handler=_without(name))
    assert reason == f"aiohttp {aiohttp.__version__} lacks RequestHandler.{name}"


def test_a_response_without_its_private_fields_is_named() -> None:
    class Response:  # a StreamResponse whose _eof_sent and friends are gone
        pass

    reason = fastpath.unavailable_reason(response=Response)
    assert reason is not None
    assert all(f"StreamResponse.{name}" in reason for name in ("_body_length", "_eof_sent", "_keep_alive"))


def test_the_environment_or_the_caller_switch_it_off() -> None:
    assert fastpath.choose(None, {}) == (True, None)
    assert fastpath.choose(None, {"GATEWAY_AUTHZ_FAST_PATH": "0"}) == (False, "GATEWAY_AUTHZ_FAST_PATH=0")
    assert fastpath.choose(False, {}) == (False, "switched off by the caller")
    assert fastpath.choose(True, {"GATEWAY_AUTHZ_FAST_PATH": "0"}) == (True, None)  # an explicit setting wins


def _app(fast_path: bool | None, ops: list[bytes]) -> web.Application:
    return create_app(make_settings(), audit_sink=lambda _line: None, ops_sink=ops.append, fast_path=fast_path)


def test_the_public_path_is_selected_and_logged_once() -> None:
    ops: list[bytes] = []
    app = _app(False, ops)
    assert app[FAST_PATH] is False
    assert type(decision_runner(app)) is web.AppRunner  # aiohttp's own runner, its router and handler
    events = [json.loads(line) for line in ops if b"fast_path" in line]
    assert [(e["event"], e["reason"]) for e in events] == [("http.fast_path_off", "switched off by the caller")]


def test_the_fast_path_is_selected_silently_where_the_check_passes() -> None:
    ops: list[bytes] = []
    app = _app(True, ops)
    assert app[FAST_PATH] is True
    assert isinstance(decision_runner(app), fastpath.DecisionRunner)
    assert not [line for line in ops if b"fast_path" in line]


async def test_the_public_path_answers_through_plain_responses(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_app(False, []))
    token = mint(expiry=int(time.time()) + 3600)
    allowed = await client.post("/ext_authz/orders", headers={"Host": HOST, "ServiceBusAuthorization": token})
    denied = await client.post("/ext_authz/orders", headers={"Host": HOST})
    assert (allowed.status, denied.status) == (200, 401)
    assert (allowed.headers["x-authz-auth"], allowed.headers["x-authz-principal"]) == (
        "sas",
        "RootManageSharedAccessKey",
    )
    body = json.loads(await denied.text())
    assert (
        set(body) == {"error", "reason", "decision_id"} and body["decision_id"] == denied.headers["x-authz-decision-id"]
    )
