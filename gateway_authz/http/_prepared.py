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

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

__all__ = ["PreparedAnswer", "Wire"]

# What aiohttp's header serializer refuses (a header injection): CR, LF and the other control characters but TAB.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Wire:
    """One answer (status, headers, body) and, when aiohttp would write its headers, its bytes but the ``Date``.

    ``head`` is the status line and headers up to the ``Date`` value and ``tail`` what follows it; ``head`` is
    ``None`` when a header holds a byte aiohttp refuses to write (a header injection), so that the answer is
    never prepared and goes to aiohttp, which refuses it.
    """

    __slots__ = ("body", "head", "headers", "status", "tail")

    def __init__(self, status: int, headers: tuple[tuple[str, str], ...], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.head: bytes | None = None
        self.tail = b""
        if any(_FORBIDDEN.search(name) or _FORBIDDEN.search(value) for name, value in headers):
            return
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        # The order aiohttp writes them in: the response's own headers, Content-Length, Date, Server.
        lines.append(f"Content-Length: {len(body)}\r\nDate: ")
        self.head = "".join(lines).encode("utf-8")
        self.tail = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode() + body

    def dated(self) -> bytes:
        """The whole answer as aiohttp would write it now: ``head``, the current second's ``Date``, ``tail``."""
        if self.head is None:
            raise ValueError("an answer with a header aiohttp refuses to write has no bytes of its own")
        return self.head + _date_header() + self.tail


class PreparedAnswer(web.StreamResponse):
    """A response that writes its prepared bytes on ``prepare``: only for HTTP/1.1 keep-alive, not ``HEAD``."""

    def __init__(self, wire: Wire) -> None:
        if wire.head is None:
            raise ValueError("an answer with a header aiohttp refuses to write is never prepared")
        super().__init__(status=wire.status)
        self.wire = wire  # what it writes; its own ``headers`` stay empty (they are in the bytes)

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._eof_sent:
            return
        wire = self.wire
        self._keep_alive = True
        self._eof_sent = True  # what aiohttp's own write_eof() checks first: there is nothing left to send
        self._body_length = len(wire.body)
        await request.writer.write_eof(wire.dated())


class _DateHeader:
    """The HTTP date of the current second, formatted once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._value = formatdate(second, usegmt=True).encode("ascii")
            self._second = second
        return self._value


_date_header = _DateHeader()
