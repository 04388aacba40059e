"""Everything that touches aiohttp's private state, in one module, switched on only where it was checked.

Two things make a check cheaper than aiohttp's public path does (measured side by side through Envoy and NGINX:
the public path served 0.83x and 0.80x the requests/s of this one, at 1.6-1.7x the CPU per request):

* :class:`PreparedAnswer`: an answer serialized once per distinct answer and written whole. A gateway asks over a
  few keep-alive HTTP/1.1 connections and the answers recur, different only in their ``Date``; aiohttp builds
  every ``web.Response`` from scratch. A prepared answer writes the bytes aiohttp would write for the same response
  (status line and headers serialized once, the ``Date`` of the current second) in one write through the request's
  own stream writer, so aiohttp's flow control still holds. Only the common framing is prepared: HTTP/1.1, kept
  alive, not ``HEAD``; anything else, and an answer with a header aiohttp would refuse, is a ``web.Response``.
* :class:`DecisionRunner`: the decision routes without the router, and checks answered as soon as they are
  parsed. On Python 3.11 aiohttp hands every request to a new task and the connection's task waits for it: three
  turns of the event loop, a task, a future, a request object and a stream writer per request. A connection here
  is aiohttp's ``RequestHandler`` with one change: when bytes arrive while it is idle (its task waits and nothing
  is queued), aiohttp's own parser parses them as always; then the checks among the parsed requests, from the
  first on, are decided and answered right there, in order. The first request that does not qualify, and
  everything after it, stays in aiohttp's queue for its task, so answers keep the order of their requests.
  A request is answered inline when it is what a gateway sends for a check: HTTP/1.1 kept alive, no body, no
  ``Expect`` or upgrade, not ``HEAD``, a decision route's path, the peer reading its answers, and a decision that
  needs no waiting (everything but a bearer token not verified yet). The answer is the same
  :class:`~gateway_authz.adapters._answer.Wire` bytes the handler path writes, the decision the same
  :meth:`~gateway_authz.decision.service.DecisionService.decide_now`, with its audit line and metrics. Parsing,
  limits, malformed requests (aiohttp's 400), keep-alive timeouts and shutdown stay aiohttp's.

Both lean on private attributes. :func:`unavailable_reason` checks, at start-up, the installed aiohttp's release
against :data:`_CHECKED_RELEASES` and the presence of exactly the attributes used here; anything unexpected selects
aiohttp's public path (plain ``web.Response`` answers on a plain ``web.AppRunner``), which the app logs once.
``GATEWAY_AUTHZ_FAST_PATH=0`` (or ``create_app(fast_path=False)``) forces the public path. ``pyproject.toml``
admits only the aiohttp releases listed here, and ``.ci/run`` runs the decision tests both ways.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web
from aiohttp.http import HttpRequestParser, HttpVersion, HttpVersion11, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDictProxy

from ..adapters._answer import Wire, wire_answer
from ..adapters._headers import Adapter
from ..core.appkeys import SERVICE
from ..core.model import Verdict
from ..decision.service import DecisionService

__all__ = [
    "FAST_PATH_ENV",
    "DecisionRunner",
    "Handler",
    "PreparedAnswer",
    "answer_bytes",
    "choose",
    "preparable",
    "unavailable_reason",
]

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

# The environment variable that forces aiohttp's public path when set to 0.
FAST_PATH_ENV = "GATEWAY_AUTHZ_FAST_PATH"
# The aiohttp releases (major, minor) this module was read against and tested with.
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
# What a prepared answer sets on aiohttp's StreamResponse, and what the runner reads of aiohttp's server.
_RESPONSE_STATE = ("_body_length", "_eof_sent", "_keep_alive")
_SERVER_STATE = ("_kwargs", "_loop")


def unavailable_reason(
    version: str = aiohttp.__version__,
    *,
    handler: type[Any] = RequestHandler,
    response: type[Any] = web.StreamResponse,
    runner: type[Any] = web.AppRunner,
    parser: type[Any] = HttpRequestParser,
) -> str | None:
    """Why the fast path cannot run on the installed aiohttp, or ``None`` when every piece it uses is there.

    The arguments default to the installed aiohttp's version and classes; tests pass stand-ins.
    """
    release = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    if release not in _CHECKED_RELEASES:
        checked = ", ".join(f"{major}.{minor}" for major, minor in sorted(_CHECKED_RELEASES))
        return f"aiohttp {version} is not a release it was checked against ({checked})"
    missing = [f"RequestHandler.{name}" for name in _HANDLER_STATE if not hasattr(handler, name)]
    made = response()
    missing += [f"StreamResponse.{name}" for name in _RESPONSE_STATE if not hasattr(made, name)]
    if not hasattr(runner, "_make_server"):
        missing.append("AppRunner._make_server")
    if not hasattr(parser, "message_consumed"):
        missing.append("HttpRequestParser.message_consumed")
    return f"aiohttp {version} lacks {', '.join(missing)}" if missing else None


def choose(requested: bool | None, environ: Mapping[str, str] = os.environ) -> tuple[bool, str | None]:
    """Whether to run the fast path, and why not when it is off: ``requested`` (an explicit setting) wins over
    the environment; either can only switch it off, and it is off whenever :func:`unavailable_reason` says so."""
    if requested is False or (requested is None and environ.get(FAST_PATH_ENV, "1").strip() == "0"):
        return False, f"{FAST_PATH_ENV}=0" if requested is None else "switched off by the caller"
    reason = unavailable_reason()
    return reason is None, reason


class PreparedAnswer(web.StreamResponse):
    """A response that writes its prepared bytes on ``prepare``: only for HTTP/1.1 keep-alive, not ``HEAD``."""

    def __init__(self, wire: Wire, decision_id: str) -> None:
        if wire.head is None:
            raise ValueError("an answer with a header aiohttp refuses to write is never prepared")
        super().__init__(status=wire.status)
        self.wire = wire  # what it writes; its own ``headers`` stay empty (they are in the bytes)
        self.decision_id = decision_id

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._eof_sent:
            return
        wire = self.wire
        self._keep_alive = True
        self._eof_sent = True  # what aiohttp's own write_eof() checks first: there is nothing left to send
        answer = wire.dated(self.decision_id)
        self._body_length = len(wire.body(self.decision_id))
        await request.writer.write_eof(answer)


def preparable(version: HttpVersion, keep_alive: bool, method: str) -> bool:
    """Whether a request's framing lets prepared bytes answer it: HTTP/1.1, kept open, not HEAD."""
    return version == HttpVersion11 and keep_alive and method != "HEAD"


def answer_bytes(verdict: Verdict) -> bytes | None:
    """The whole answer to a :func:`preparable` request, as :class:`PreparedAnswer` writes it; ``None`` when a
    header holds a byte aiohttp refuses to write."""
    decision, decision_id = verdict
    answer = wire_answer(decision)
    return None if answer.head is None else answer.dated(decision_id)


class DecisionRunner(web.AppRunner):
    """The runner of the decision application: its routes without the router, and checks answered inline.

    ``handler_for`` turns aiohttp's own request handler (the router) into the one to install (the router-less
    handler of ``http.app``); ``adapter_for`` gives the adapter of a decision path, or ``None`` for any other path.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        handler_for: Callable[[Handler], Handler],
        adapter_for: Callable[[str], Adapter | None],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._handler_for = handler_for
        self._adapter_for = adapter_for

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # the application's startup, as AppRunner runs it
        handler = self._handler_for(server.request_handler)
        if unavailable_reason() is not None or not all(hasattr(server, name) for name in _SERVER_STATE):
            server.request_handler = handler
            return server
        return _InlineServer(server, handler, self.app[SERVICE], self._adapter_for)


class _InlineServer(web.Server):
    """aiohttp's server as ``server`` was configured, whose connections answer checks inline."""

    def __init__(
        self, server: web.Server, handler: Any, service: DecisionService, adapter_for: Callable[[str], Adapter | None]
    ) -> None:
        super().__init__(
            handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )
        self.service = service
        self.adapter_for = adapter_for

    def __call__(self) -> RequestHandler:
        return _InlineProtocol(self, loop=self._loop, **self._kwargs)


class _Head(NamedTuple):
    """A parsed request's head as the adapters read it (:class:`~gateway_authz.adapters._headers.RequestHead`)."""

    method: str
    raw_path: str
    headers: CIMultiDictProxy[str]


class _InlineProtocol(RequestHandler):
    __slots__ = ("_adapter_for", "_service")

    def __init__(self, manager: _InlineServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._service = manager.service
        self._adapter_for = manager.adapter_for

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
        adapter = self._adapter_for(message.url.path_safe)
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
