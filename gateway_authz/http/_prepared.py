"""HTTP answers serialized once per distinct answer and written whole: aiohttp's response work, paid once.

A gateway asks over a few keep-alive HTTP/1.1 connections, and the answers it gets recur: the same handful of
allows and denies, different only in their ``Date``. aiohttp builds every ``web.Response`` from scratch (a
header multidict, the checks of ``prepare``, the serialization); in the service under load that cost as much as
the decision itself. A :class:`PreparedAnswer` writes the bytes aiohttp would write for the same response, with
the status line and headers serialized once and the ``Date`` of the current second, in one write through the
request's own stream writer, so that aiohttp's flow control (waiting while the peer does not read) still holds.

Only the common case is prepared: an HTTP/1.1 request that keeps its connection, with any method but ``HEAD``.
HTTP/1.0, ``Connection: close`` and ``HEAD`` change the framing, so those are answered by ``web.Response``, as
is an answer with a header value that aiohttp would refuse to write.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion11
from multidict import CIMultiDict

from ..adapters._answer import Wire, wire_answer
from ..core.model import Verdict

__all__ = ["PreparedAnswer", "answer_bytes", "http_response", "preparable"]


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


def http_response(verdict: Verdict, request: web.BaseRequest) -> web.StreamResponse:
    """The answer for the HTTP gateways: exactly 200 to allow (Envoy treats any other 2xx as a denial)."""
    decision, decision_id = verdict
    answer = wire_answer(decision)
    if answer.head is not None and preparable(request.version, request.keep_alive, request.method):
        return PreparedAnswer(answer, decision_id)
    return web.Response(
        status=answer.status,
        body=answer.body(decision_id) or None,
        headers=CIMultiDict(answer.all_headers(decision_id)),
    )


def preparable(version: HttpVersion, keep_alive: bool, method: str) -> bool:
    """Whether a request's framing lets prepared bytes answer it (see _prepared): HTTP/1.1, kept open, not HEAD."""
    return version == HttpVersion11 and keep_alive and method != "HEAD"


def answer_bytes(verdict: Verdict) -> bytes | None:
    """The whole answer to a :func:`preparable` request, as :class:`PreparedAnswer` writes it; ``None`` when a
    header holds a byte aiohttp refuses to write."""
    decision, decision_id = verdict
    answer = wire_answer(decision)
    return None if answer.head is None else answer.dated(decision_id)
