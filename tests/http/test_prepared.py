"""Prepared answers (``http/fastpath.py``): the same bytes aiohttp's own ``web.Response`` writes, but the Date.

Each answer is asked for twice over a raw HTTP/1.1 connection to a real aiohttp server: once as the adapters send
it (:func:`http_response`, which prepares it) and once as a plain ``web.Response`` with the same status, headers
and body. Apart from the ``Date`` value the bytes must be equal. Requests that change the framing (HTTP/1.0,
``Connection: close``, ``HEAD``) and headers aiohttp refuses to write must take aiohttp's own path.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from gateway_authz.adapters import _answer
from gateway_authz.core.errors import CannotVerify, InvalidCredential, NotPermitted
from gateway_authz.core.model import Decision, Right
from gateway_authz.http import app as answers
from gateway_authz.http.fastpath import PreparedAnswer

DECISIONS: dict[str, Decision] = {
    "allow-sas-stripped": Decision.allow(
        auth="sas",
        principal="orders-send",
        right=Right.SEND,
        namespace="contoso",
        entity="orders",
        strip_headers=("servicebusauthorization",),
    ),
    "allow-anonymous": Decision.allow(auth="anonymous", principal="", right=Right.SEND, namespace="c", entity="o"),
    "allow-non-ascii-principal": Decision.allow(
        auth="jwt", principal="zoë-ünïcode", right=Right.LISTEN, namespace="c", entity="o"
    ),
    "deny-401": Decision.deny(InvalidCredential("bad_signature", "x"), auth="sas", right=Right.SEND),
    "deny-403": Decision.deny(NotPermitted("insufficient_rights", "x"), auth="sas", right=Right.LISTEN),
    "deny-503": Decision.deny(CannotVerify("jwks_unavailable", "x"), auth="jwt"),
}
INJECTION = Decision.allow(
    auth="jwt", principal="evil\r\nx-authz-right: Manage", right=Right.SEND, namespace="c", entity=""
)
DECISION_ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


def _plain(decision: Decision) -> web.Response:
    """What aiohttp writes for the same answer with none of the preparing."""
    answer = _answer.wire_answer(decision)
    return web.Response(
        status=answer.status,
        body=answer.body(DECISION_ID) or None,
        headers=CIMultiDict(answer.all_headers(DECISION_ID)),
    )


async def _server(aiohttp_server: Any, decision: Decision, seen: list[type]) -> Any:
    async def prepared(request: web.Request) -> web.StreamResponse:
        response = answers.http_response((decision, DECISION_ID), request)
        seen.append(type(response))
        return response

    async def plain(_request: web.Request) -> web.StreamResponse:
        return _plain(decision)

    app = web.Application()
    app.router.add_route("*", "/prepared", prepared)
    app.router.add_route("*", "/plain", plain)
    return await aiohttp_server(app)


async def _exchange(port: int, head: str) -> bytes:
    """Send one request head; read until the server closes or one whole answer is in (by Content-Length; a head
    alone for ``HEAD``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        data = b""
        async with asyncio.timeout(5):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return data
                data += chunk
                header, sep, body = data.partition(b"\r\n\r\n")
                if sep and head.startswith("HEAD "):
                    return data
                length = re.search(rb"\r\nContent-Length: (\d+)", header)
                if sep and length and len(body) >= int(length.group(1)):
                    return data
    finally:
        writer.close()


def _request(method: str, path: str, version: str = "1.1", extra: str = "") -> str:
    return f"{method} {path} HTTP/{version}\r\nHost: example\r\n{extra}\r\n"


@pytest.mark.parametrize("decision", DECISIONS.values(), ids=DECISIONS.keys())
async def test_prepared_answer_is_byte_for_byte_aiohttps_response(aiohttp_server: Any, decision: Decision) -> None:
    seen: list[type] = []
    server = await _server(aiohttp_server, decision, seen)
    prepared = await _exchange(server.port, _request("GET", "/prepared"))
    plain = await _exchange(server.port, _request("GET", "/plain"))
    assert seen == [PreparedAnswer]
    assert _DATE.sub(b"\r\nDate: -\r\n", prepared) == _DATE.sub(b"\r\nDate: -\r\n", plain)
    assert re.search(rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n", prepared)


async def test_prepared_answers_keep_the_connection_for_the_next_request(aiohttp_server: Any) -> None:
    seen: list[type] = []
    server = await _server(aiohttp_server, DECISIONS["deny-401"], seen)
    two = _request("GET", "/prepared") * 2
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(two.encode())
        data = b""
        async with asyncio.timeout(5):
            while data.count(b"HTTP/1.1 401 Unauthorized") < 2 or not data.endswith(b"}"):
                data += await reader.read(65536)
    finally:
        writer.close()
    assert seen == [PreparedAnswer, PreparedAnswer]


@pytest.mark.parametrize(
    ("method", "version", "extra"),
    [("GET", "1.0", ""), ("GET", "1.1", "Connection: close\r\n"), ("HEAD", "1.1", "")],
    ids=["http-1.0", "connection-close", "head"],
)
async def test_framing_changes_take_aiohttps_own_response(
    aiohttp_server: Any, method: str, version: str, extra: str
) -> None:
    seen: list[type] = []
    server = await _server(aiohttp_server, DECISIONS["deny-401"], seen)
    prepared = await _exchange(server.port, _request(method, "/prepared", version, extra))
    plain = await _exchange(server.port, _request(method, "/plain", version, extra))
    assert seen == [web.Response]
    assert _DATE.sub(b"\r\nDate: -\r\n", prepared) == _DATE.sub(b"\r\nDate: -\r\n", plain)
    if method == "HEAD":
        assert prepared.endswith(b"\r\n\r\n")  # no body after the head


async def test_header_injection_is_never_prepared(aiohttp_server: Any) -> None:
    """A value with CR/LF gets no prepared bytes; aiohttp's own serializer refuses it: no answer, never the header."""
    assert _answer.wire_answer(INJECTION).head is None
    seen: list[type] = []
    server = await _server(aiohttp_server, INJECTION, seen)
    answer = await _exchange(server.port, _request("GET", "/prepared"))
    assert seen == [web.Response]
    assert not answer.startswith(b"HTTP/1.1 200")  # the connection is dropped: every gateway counts that a deny
    assert b"x-authz-right: Manage" not in answer
