"""The answer to a check as aiohttp sends it: prepared bytes where the fast path runs, else a ``web.Response``."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDict

from ..adapters._answer import wire_answer
from ..core.model import Decision
from .fastpath import PreparedAnswer, preparable

__all__ = ["http_response"]


def http_response(decision: Decision, request: web.BaseRequest, *, prepared: bool = True) -> web.StreamResponse:
    """The answer for the HTTP gateways: exactly 200 to allow (Envoy treats any other 2xx as a denial).

    With ``prepared`` (the fast path is on) an answer whose framing allows it is a :class:`PreparedAnswer`.
    """
    answer = wire_answer(decision)
    if prepared and answer.head is not None and preparable(request.version, request.keep_alive, request.method):
        return PreparedAnswer(answer)
    return web.Response(status=answer.status, body=answer.body or None, headers=CIMultiDict(answer.headers))
