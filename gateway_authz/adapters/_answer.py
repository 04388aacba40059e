"""What every adapter says back, whatever its wire format: allow headers, the deny body, the challenge.

For the HTTP gateways an answer is a :class:`Wire`: status, headers and body, and the bytes aiohttp would write
for them, serialized once per distinct answer (the HTTP layer decides how they are written).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

import orjson
from aiohttp.http import SERVER_SOFTWARE

from ..core.memo import BoundedMemo, IdentityMemo
from ..core.model import Decision

__all__ = ["WWW_AUTHENTICATE", "Wire", "allow_headers", "deny_body", "wire_answer"]

# One header value with both challenges: NGINX copies only the first WWW-Authenticate line to the client.
WWW_AUTHENTICATE = 'SharedAccessSignature realm="gateway-authz", Bearer realm="gateway-authz"'

_MESSAGES = {
    400: "the request is malformed or ambiguous",
    401: "a valid credential is required",
    403: "the credential does not grant this right on this resource",
    503: "the authorization service could not verify the request",
}


def allow_headers(decision: Decision) -> tuple[tuple[str, str], ...]:
    """The ``x-authz-*`` headers, always all three so that a client-sent value never survives upstream."""
    return (
        ("x-authz-auth", decision.auth),
        ("x-authz-principal", decision.principal),
        ("x-authz-right", decision.right.value if decision.right else ""),
    )


def deny_body(decision: Decision) -> bytes:
    """``{"error": …, "reason": …}``: a fixed message per status and the reason code, never the token."""
    message = _MESSAGES.get(decision.status, _MESSAGES[503])
    return orjson.dumps({"error": message, "reason": decision.reason})


def _build(decision: Decision) -> Wire:
    if decision.allowed:
        headers = allow_headers(decision)
        if decision.strip_headers:
            headers += (("x-envoy-auth-headers-to-remove", ", ".join(decision.strip_headers)),)
        return Wire(200, headers, b"")
    headers = (("content-type", "application/json"), ("x-authz-reason", decision.reason))
    if decision.status == 401:
        headers += (("www-authenticate", WWW_AUTHENTICATE),)
    return Wire(decision.status, headers, deny_body(decision))


# Answers by what they are made of: few distinct ones recur. A cached decision answers again as the very same
# object, so it is first looked up by identity, then by content.
_ANSWERS_MAX = 1024
_ANSWERS: BoundedMemo[tuple[object, ...], Wire] = BoundedMemo(_ANSWERS_MAX)
_ANSWERS_BY_IDENTITY: IdentityMemo[Wire] = IdentityMemo(_ANSWERS_MAX)


def wire_answer(decision: Decision) -> Wire:
    """The answer to ``decision`` for the HTTP gateways, built once per distinct answer."""
    known = _ANSWERS_BY_IDENTITY.get(decision, id(decision))
    if known is not None:
        return known
    key = (
        decision.allowed,
        decision.status,
        decision.reason,
        decision.auth,
        decision.principal,
        decision.right,
        decision.strip_headers,
    )
    answer = _ANSWERS.get(key)
    if answer is None:
        answer = _ANSWERS.put(key, _build(decision))
    return _ANSWERS_BY_IDENTITY.put(decision, id(decision), answer)


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
