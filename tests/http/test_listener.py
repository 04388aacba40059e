"""The decision listener (``gateway_authz/http/fastpath.py``): checks answered inline, everything else aiohttp's.

Each test runs the listener as ``serve`` does (a :class:`DecisionRunner` on a loopback socket) and, where the
answer is compared, a plain routed ``create_app`` beside it on the same settings and clock. The service's request
handler is wrapped to record what reaches it, which is exactly what was *not* answered inline. The first request
on a connection may reach the handler (the connection's task may not have started yet); from the second on, a
check must not.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from gateway_authz.core.appkeys import FAST_PATH
from gateway_authz.core.model import AuthzRequest, Decision, Right
from gateway_authz.http.app import decision_adapter, decision_runner
from gateway_authz.http.fastpath import DecisionRunner, _InlineServer, unavailable_reason
from tests._factories import (
    HOST,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    Harness,
    audit_without_timing,
    forge,
    harness,
    mint,
)

TOKEN = mint("/orders")
FORGED = forge(TOKEN)
LISTEN_TOKEN = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
_DECISION_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_BOUND = 5.0  # seconds: the longest any single wait in these tests may take


def _get(path: str, *headers: str, method: str = "GET", version: str = "1.1", body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _check(token: str = TOKEN, *, method: str = "GET", host: str = HOST) -> bytes:
    return _get("/ext_authz/orders", f"Host: {host}", f"ServiceBusAuthorization: {token}", method=method)


CHECKS: dict[str, bytes] = {
    "envoy-allow": _check(),
    "envoy-401-forged": _check(FORGED, method="POST"),
    "envoy-401-missing": _get("/ext_authz/orders", f"Host: {HOST}"),
    "envoy-403-listen-token": _get("/ext_authz/orders", f"Host: {HOST}", f"Authorization: {LISTEN_TOKEN}"),
    "envoy-allow-query-token": _get(f"/ext_authz/orders?sb-hc-token={quote(TOKEN, safe='')}", f"Host: {HOST}"),
    "envoy-bare-prefix": _get("/ext_authz", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}"),
    "envoy-encoded-prefix": _get("/ext%5Fauthz/orders", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}"),
    "nginx-allow": _get(
        "/auth",
        f"Host: {HOST}",
        "X-Original-Method: GET",
        "X-Original-URI: /orders",
        f"ServiceBusAuthorization: {TOKEN}",
    ),
    "nginx-missing-method": _get("/auth", f"Host: {HOST}", "X-Original-URI: /orders"),
    "forward-auth-allow": _get(
        "/forward-auth",
        "Host: gateway-authz",
        "X-Forwarded-Method: POST",
        f"X-Forwarded-Host: {HOST}",
        "X-Forwarded-Uri: /orders",
        f"ServiceBusAuthorization: {TOKEN}",
    ),
}

# Requests that are not answered inline, each on a connection that first had a check answered inline.
NOT_INLINE: dict[str, bytes] = {
    "http-1.0": _get("/ext_authz/orders", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}", version="1.0"),
    "http-1.0-keep-alive": _get(
        "/ext_authz/orders",
        f"Host: {HOST}",
        f"ServiceBusAuthorization: {TOKEN}",
        "Connection: keep-alive",
        version="1.0",
    ),
    "connection-close": _get(
        "/ext_authz/orders", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}", "Connection: close"
    ),
    "head": _check(method="HEAD"),
    "expect-100-continue": _get(
        "/ext_authz/orders",
        f"Host: {HOST}",
        f"ServiceBusAuthorization: {TOKEN}",
        "Expect: 100-continue",
        "Content-Length: 0",
        method="POST",
    ),
    "absolute-form-target": _get(
        f"http://{HOST}/ext_authz/orders", f"Host: {HOST}", f"ServiceBusAuthorization: {TOKEN}"
    ),
    "content-length-body": _get(
        "/ext_authz/orders",
        f"Host: {HOST}",
        f"ServiceBusAuthorization: {TOKEN}",
        "Content-Length: 5",
        method="POST",
        body=b"hello",
    ),
    "chunked-body": _get(
        "/ext_authz/orders",
        f"Host: {HOST}",
        f"ServiceBusAuthorization: {TOKEN}",
        "Transfer-Encoding: chunked",
        method="POST",
        body=b"5\r\nhello\r\n0\r\n\r\n",
    ),
    "not-a-decision-route": _get("/healthz", f"Host: {HOST}"),
    "upgrade": _get("/ext_authz/orders", f"Host: {HOST}", "Connection: Upgrade", "Upgrade: websocket"),
    "uncached-bearer-token": _get("/ext_authz/orders", f"Host: {HOST}", "Authorization: Bearer a.b.c"),
}


@dataclass
class Listening:
    port: int
    harness: Harness
    runner: web.AppRunner
    handled: list[str] = field(default_factory=list)  # what reached aiohttp's request handler, in order


def _socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def _listening(*, inline: bool = True, **kwargs: Any) -> AsyncIterator[Listening]:
    """The decision listener as ``serve`` runs it, or (``inline=False``) the plain routed application."""
    h = harness()
    if inline:
        h.app[FAST_PATH] = True  # what this module tests, even in the run with GATEWAY_AUTHZ_FAST_PATH=0
        runner: web.AppRunner = decision_runner(h.app, access_log=None, **kwargs)
        assert isinstance(runner, DecisionRunner)
    else:
        runner = web.AppRunner(h.app, access_log=None, **kwargs)
    await runner.setup()
    sock = _socket()
    listening = Listening(sock.getsockname()[1], h, runner)
    server = runner.server
    assert server is not None
    original = server.request_handler

    async def recording(request: web.BaseRequest) -> web.StreamResponse:
        listening.handled.append(f"{request.method} {request.raw_path}")
        return await original(request)

    server.request_handler = recording
    try:
        await web.SockSite(runner, sock).start()
        yield listening
    finally:
        await runner.cleanup()


class Connection:
    """One client connection that reads whole answers (by Content-Length; a head alone for ``HEAD``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def answer(self, *, head_only: bool = False) -> bytes:
        async with asyncio.timeout(_BOUND):
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head, re.IGNORECASE)
            body = b"" if head_only or not length else await self.reader.readexactly(int(length.group(1)))
        return head + body

    async def ask(self, request: bytes, *, head_only: bool = False) -> bytes:
        self.writer.write(request)
        return await self.answer(head_only=head_only)

    async def closed(self) -> bool:
        """Whether the server closes the connection (within the bound), with nothing more sent."""
        async with asyncio.timeout(_BOUND):
            return await self.reader.read() == b""


@asynccontextmanager
async def _connect(port: int) -> AsyncIterator[Connection]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield Connection(reader, writer)
    finally:
        writer.close()


def _comparable(answer: bytes) -> bytes:
    return _DECISION_ID.sub(b"<id>", _DATE.sub(b"\r\nDate: -\r\n", answer))


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_answers_inline_on_the_aiohttp_this_was_checked_against() -> None:
    """Fails when aiohttp moves to a release the listener was not checked against: check it, then add it."""
    assert unavailable_reason() is None


# What each check must be answered: a case named for an allow sees an allow, whatever the two paths agree on.
CHECK_STATUS = {
    name: 200 if "allow" in name else 401 if "401" in name else 403 if "403" in name else 0 for name in CHECKS
}
CHECK_STATUS |= {
    "envoy-bare-prefix": 403,
    "envoy-encoded-prefix": 403,
    "nginx-missing-method": 403,
}  # malformed_request


def test_every_check_has_an_expected_status() -> None:
    assert all(CHECK_STATUS.values())


@pytest.mark.parametrize("name", CHECKS.keys())
async def test_a_check_is_answered_inline_as_the_routed_application_answers_it(name: str) -> None:
    """Same bytes (but the Date) and the same audit line as aiohttp's routed application, and never its handler."""
    request_ = CHECKS[name]
    async with (
        _listening() as listener,
        _listening(inline=False) as routed,
        _connect(listener.port) as fast,
        _connect(routed.port) as plain,
    ):
        await fast.ask(CHECKS["envoy-allow"])  # the first request may go to the connection's task
        handled = list(listener.handled)
        answer = await fast.ask(request_)
        await plain.ask(CHECKS["envoy-allow"])
        expected = await plain.ask(request_)
    assert listener.handled == handled
    assert _status(answer) == CHECK_STATUS[name]
    assert _comparable(answer) == _comparable(expected)
    assert audit_without_timing(listener.harness.audit) == audit_without_timing(routed.harness.audit)


@pytest.mark.parametrize("request_", NOT_INLINE.values(), ids=NOT_INLINE.keys())
async def test_what_is_not_a_plain_check_goes_to_aiohttp_and_is_answered_the_same(request_: bytes) -> None:
    """HTTP/1.0, close, HEAD, Expect, absolute form, a body, another path, an upgrade, a JWT to verify."""
    head_only = request_.startswith(b"HEAD ")
    async with (
        _listening() as listener,
        _listening(inline=False) as routed,
        _connect(listener.port) as fast,
        _connect(routed.port) as plain,
    ):
        await fast.ask(CHECKS["envoy-allow"])
        handled = len(listener.handled)
        answer = await fast.ask(request_, head_only=head_only)
        await plain.ask(CHECKS["envoy-allow"])
        expected = await plain.ask(request_, head_only=head_only)
    assert len(listener.handled) == handled + 1
    assert _comparable(answer) == _comparable(expected)
    assert audit_without_timing(listener.harness.audit) == audit_without_timing(routed.harness.audit)


async def test_answers_keep_the_order_of_pipelined_requests_whoever_answers_them() -> None:
    """A check, then a request with a body, then more checks in one write: the checks behind the body wait."""
    body = NOT_INLINE["content-length-body"]
    pipelined = (
        CHECKS["envoy-allow"]
        + body
        + CHECKS["envoy-401-forged"]
        + _get("/nope", f"Host: {HOST}")
        + CHECKS["envoy-403-listen-token"]
    )
    async with _listening() as listener, _connect(listener.port) as connection:
        await connection.ask(CHECKS["envoy-allow"])
        handled = len(listener.handled)
        connection.writer.write(pipelined)
        statuses = [_status(await connection.answer()) for _ in range(5)]
        after = list(listener.handled[handled:])
        again = await connection.ask(CHECKS["envoy-401-forged"])  # idle again: inline again
    assert statuses == [200, 200, 401, 404, 403]
    assert after == ["POST /ext_authz/orders", "POST /ext_authz/orders", "GET /nope", "GET /ext_authz/orders"]
    assert _status(again) == 401 and len(listener.handled) == handled + 4


async def test_a_burst_beyond_aiohttps_queue_is_answered_whole_and_in_order() -> None:
    """More pipelined checks than aiohttp queues at once (it pauses reading): every one answered, in order."""
    checks = [CHECKS["envoy-allow"], CHECKS["envoy-401-forged"]] * 60
    async with _listening() as listener, _connect(listener.port) as connection:
        await connection.ask(CHECKS["envoy-allow"])
        connection.writer.write(b"".join(checks))
        statuses = [_status(await connection.answer()) for _ in checks]
    assert statuses == [200, 401] * 60
    assert len(listener.harness.audit) == 1 + len(checks)


async def test_a_malformed_request_after_inline_answers_is_aiohttps_400() -> None:
    async with _listening() as listener, _listening(inline=False) as routed:
        bad = b"GET /ext_authz/orders HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"
        async with _connect(listener.port) as fast, _connect(routed.port) as plain:
            await fast.ask(CHECKS["envoy-allow"])
            await plain.ask(CHECKS["envoy-allow"])
            answer, expected = await fast.ask(bad), await plain.ask(bad)
            assert await fast.closed()
    assert _status(answer) == 400
    assert _comparable(answer) == _comparable(expected)


async def test_inline_answers_keep_an_active_connection_open_past_the_keepalive_timeout() -> None:
    """Each answer restarts the idle timer as aiohttp's own do; an idle connection still closes on time."""
    async with _listening(keepalive_timeout=0.4) as listener, _connect(listener.port) as connection:
        for _ in range(5):  # 1.25 s of checks on one connection, never 0.4 s idle
            assert _status(await connection.ask(CHECKS["envoy-allow"])) == 200
            await asyncio.sleep(0.25)
        assert await connection.closed()
    assert len(listener.harness.audit) == 5


async def test_shutdown_closes_a_connection_whose_checks_were_answered_inline() -> None:
    async with _listening() as listener, _connect(listener.port) as connection:
        await connection.ask(CHECKS["envoy-allow"])
        await connection.ask(CHECKS["envoy-allow"])
        await listener.runner.cleanup()
        assert await connection.closed()


# --------------------------------------------------------------------------------------------------------------
# One connection driven by hand, over a fake transport: flow control and a header that cannot be written
# --------------------------------------------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _until(condition: Any) -> None:
    """Poll state of aiohttp's objects, which signal nothing, one loop turn at a time, within the bound."""
    async with asyncio.timeout(_BOUND):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)


@asynccontextmanager
async def _driven(server_for: Any = None) -> AsyncIterator[tuple[Any, FakeTransport, Listening]]:
    async with _listening() as listener:
        server: Any = listener.runner.server if server_for is None else server_for(listener)
        protocol = server()
        transport = FakeTransport()
        protocol.connection_made(transport)
        await _until(lambda: protocol._waiter is not None)  # the connection's task waits for a request
        try:
            yield protocol, transport, listener
        finally:
            protocol.connection_lost(None)


async def test_checks_on_a_connection_whose_peer_does_not_read_wait_for_aiohttps_writer() -> None:
    """While writing is paused, nothing is answered inline: aiohttp's task writes one answer and waits for the
    peer to read; the checks behind it wait with it, and are answered inline again once all is written."""
    check = CHECKS["envoy-allow"]
    async with _driven() as (protocol, transport, listener):
        protocol.pause_writing()
        protocol.data_received(check)
        await _until(lambda: len(transport.written) == 1)  # aiohttp writes, then waits for the drain
        protocol.data_received(check)
        await asyncio.sleep(0.05)
        assert len(transport.written) == 1 and len(listener.handled) == 1
        protocol.resume_writing()
        await _until(lambda: len(transport.written) == 2)
        assert len(listener.handled) == 2
        await _until(lambda: protocol._waiter is not None)  # idle again
        protocol.data_received(check)  # answered inline, at once
        assert len(transport.written) == 3 and len(listener.handled) == 2
    assert [_status(answer) for answer in transport.written] == [200, 200, 200]


async def test_a_check_arriving_before_aiohttps_task_takes_its_request_waits_its_turn() -> None:
    """Bytes that arrive while aiohttp's task has been woken but has not run yet are queued behind its request."""
    async with _driven() as (protocol, transport, listener):
        protocol.data_received(NOT_INLINE["content-length-body"])  # queued: wakes the task, which has not run
        protocol.data_received(CHECKS["envoy-401-forged"])
        assert transport.written == []
        await _until(lambda: len(transport.written) == 2)
    assert [_status(answer) for answer in transport.written] == [200, 401]
    assert listener.handled == ["POST /ext_authz/orders", "POST /ext_authz/orders"]


class _InjectingService:
    """A decision service whose allow names a principal with CR/LF in it (a header injection)."""

    def verdict_now(self, _request: AuthzRequest) -> tuple[Decision, str]:
        decision = Decision.allow(
            auth="jwt", principal="evil\r\nx-authz-right: Manage", right=Right.SEND, namespace="c", entity=""
        )
        return decision, "01890f4e-0000-7000-8000-000000000000"


async def test_an_answer_header_with_cr_lf_is_never_written_inline_and_the_connection_drops() -> None:
    """As aiohttp's handler path does with such an answer (see test_adapters_prepared): nothing sent, closed."""

    def injecting(listener: Listening) -> _InlineServer:
        server = listener.runner.server
        assert server is not None
        return _InlineServer(server, server.request_handler, _InjectingService(), decision_adapter)  # type: ignore[arg-type]

    async with _driven(injecting) as (protocol, transport, _listener):
        protocol.data_received(CHECKS["envoy-allow"])
        assert transport.written == [] and transport.closing
