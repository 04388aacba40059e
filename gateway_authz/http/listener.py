"""The decision listener's connections: aiohttp's own, with checks answered as soon as they are parsed.

On Python 3.11 aiohttp hands every request to a new task and the connection's task waits for it: three turns of
the event loop, a task, a future, a request object and a stream writer per request. For a check the service
answers from memory that machinery was a large part of the work: about 56,000 of the 193,000 instructions a
cache hit took in the live server, and the reason a decision cost more than the do-nothing floor.

A connection here is aiohttp's ``RequestHandler`` with one change. When bytes arrive while the connection is idle
(its task waits for the next request and nothing is queued), aiohttp's own parser parses them as always; then
the checks among the parsed requests, from the first on, are decided and answered right there, in order. The
first request that does not qualify, and everything after it, stays in aiohttp's queue and the connection's task
handles it exactly as it would have: nothing is answered inline while aiohttp holds a request, so answers keep
the order of the requests on the connection, pipelined or not.

A request is answered inline when it is what a gateway sends for a check: HTTP/1.1 on a kept-alive connection,
no body, no ``Expect`` or upgrade, not ``HEAD``, a path of a decision route, the peer reading its answers, and a
decision that needs no waiting (everything but a bearer token not verified yet). The answer is the same
:class:`~gateway_authz.adapters._answer.Wire` bytes the handler path writes; the decision is the same
:meth:`DecisionService.decide_now` that :meth:`~DecisionService.decide` is made of, with its audit line and
metrics. Parsing, limits, malformed requests (aiohttp's 400), keep-alive timeouts and shutdown stay aiohttp's.

This leans on ``RequestHandler``'s private state, so it is switched on only for the aiohttp releases it was
checked against (:data:`_CHECKED_RELEASES`). On any other release the listener runs aiohttp's plain handling,
as correct and slower, and ``tests/test_listener.py`` fails until this module has been checked against it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import aiohttp
from aiohttp import web
from aiohttp.http import HttpRequestParser, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDictProxy

from ..core.appkeys import SERVICE
from ..decision.service import DecisionService
from ._prepared import answer_bytes, preparable
from .app import decision_adapter, fast_decision_handler

__all__ = ["DecisionRunner", "answers_inline"]

# The aiohttp releases (major, minor) whose RequestHandler this module was read against and tested with.
_CHECKED_RELEASES = frozenset({(3, 14)})
# The private state of aiohttp's RequestHandler (and its BaseProtocol) the inline answers read and keep up.
_HANDLER_STATE = (
    "_buffer_paused",
    "_close",
    "_force_close",
    "_keepalive",
    "_keepalive_handle",
    "_keepalive_timeout",
    "_manager",
    "_messages",
    "_next_keepalive_close_time",
    "_parser",
    "_paused",
    "_payload_parser",
    "_process_keepalive",
    "_request_count",
    "_upgraded",
    "_waiter",
)


def answers_inline() -> bool:
    """Whether the installed aiohttp is one the inline answers were checked against."""
    release = tuple(int(part) for part in aiohttp.__version__.split(".")[:2])
    return (
        release in _CHECKED_RELEASES
        and all(hasattr(RequestHandler, name) for name in _HANDLER_STATE)
        and hasattr(HttpRequestParser, "message_consumed")
    )


class DecisionRunner(web.AppRunner):
    """The runner of the decision application: its routes without the router, and checks answered inline."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # the application's startup, as AppRunner runs it
        handler = fast_decision_handler(self.app, server.request_handler)
        if not answers_inline():
            server.request_handler = handler
            return server
        return _InlineServer(server, handler, self.app[SERVICE])


class _InlineServer(web.Server):
    """aiohttp's server as ``server`` was configured, whose connections answer checks inline."""

    def __init__(self, server: web.Server, handler: Any, service: DecisionService) -> None:
        super().__init__(
            handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self.service = service

    def __call__(self) -> RequestHandler:
        return _InlineProtocol(self, loop=self._loop, **self._kwargs)


class _Head(NamedTuple):
    """A parsed request's head as the adapters read it (:class:`~gateway_authz.adapters._headers.RequestHead`)."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]


class _InlineProtocol(RequestHandler):
    __slots__ = ("_service",)

    def __init__(self, manager: _InlineServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._service = manager.service

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if (
            waiter is None  # the connection's task is busy with a request (or has not started yet)
            or waiter.done()  # ... or is about to be, with the requests queued for it
            or self._close
            or self._force_close
            or self._upgraded
            or self._payload_parser is not None
        ):
            super().data_received(data)
            return
        # Idle: parse as aiohttp does, but hold back the wake-up of its task until the checks are answered.
        self._waiter = None
        try:
            super().data_received(data)
            if not self._buffer_paused:  # a full queue is aiohttp's to drain: it resumes reading as it goes
                self._answer_queued()
        finally:
            self._waiter = waiter
            if not waiter.done():
                if self._close or self._force_close:
                    waiter.cancel()  # what close() and force_close() do to a waiting task
                elif self._messages:
                    waiter.set_result(None)

    def _answer_queued(self) -> None:
        """Answer the queued requests from the first on, while they qualify; leave the rest to aiohttp's task.

        Only ever the front of the queue: an answer written here is always the answer to the oldest request
        on the connection not yet answered, which is what keeps answers in the order of their requests.
        """
        messages = self._messages
        answered = 0
        try:
            while messages and not self._paused and self.transport is not None:
                message, payload = messages[0]
                answer = self._answer(message, payload)
                if answer is None:
                    break
                messages.popleft()
                if self._parser is not None:
                    self._parser.message_consumed()
                answered += 1
                self.transport.write(answer)
        except Exception as exc:  # a bug, or an answer that cannot be written: logged as aiohttp logs a handler's
            self.log_exception("Error answering a check inline", exc_info=exc)
            self.force_close()
            return
        if answered:
            if self._manager is not None:
                self._manager.requests_count += answered
            self._keep_alive_until(self._loop.time() + self._keepalive_timeout)

    def _answer(self, message: object, payload: object) -> bytes | None:
        """The answer to ``message`` if it is a check answered inline, else None."""
        if (
            payload is not EMPTY_PAYLOAD  # a body (or a parse error's placeholder) is aiohttp's to read
            or not isinstance(message, RawRequestMessage)  # a parse error, answered by aiohttp's task
            or not preparable(message.version, not message.should_close, message.method)
            or message.upgrade
            or message.url.absolute
            or "Expect" in message.headers
        ):
            return None
        adapter = decision_adapter(message.url.path_safe)
        if adapter is None:
            return None
        verdict = self._service.verdict_now(adapter(_Head(message.method, message.path, message.headers)))
        if verdict is None:
            return None
        answer = answer_bytes(verdict)
        if answer is None:  # a header aiohttp refuses to write: its handler path drops the connection, as this does
            raise ValueError("an answer header holds a control character")
        return answer

    def _keep_alive_until(self, close_time: float) -> None:
        """What aiohttp's task does after an answer: the connection, once idle, closes ``keepalive_timeout`` later."""
        self._keepalive = True
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)
