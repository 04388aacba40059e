"""What every adapter says back, whatever its wire format: allow headers, the deny body, the challenge.

For the HTTP gateways an answer is a :class:`Wire`: status, headers and body, and the bytes aiohttp would write
for them, serialized once per distinct answer (the HTTP layer decides how they are written).

Every answer also carries its own decision id (``x-authz-decision-id``, and ``decision_id`` in a deny body). The
id differs per answer while the rest recurs, so a :class:`Wire` is a template with two holes for the id, one in
the headers and one in the body, filled when it is written: memoised answers never freeze an id.
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

__all__ = ["DECISION_ID_HEADER", "WWW_AUTHENTICATE", "Wire", "allow_headers", "deny_body", "wire_answer"]

DECISION_ID_HEADER = "x-authz-decision-id"

# One header value with both challenges: NGINX copies only the first WWW-Authenticate line to the client.
WWW_AUTHENTICATE = 'SharedAccessSignature realm="gateway-authz", Bearer realm="gateway-authz"'

_MESSAGES = {
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


def deny_body(decision: Decision, decision_id: str = "") -> bytes:
    """``{"error": …, "reason": …, "decision_id": …}``: a fixed message per status, the reason code and the answer's
    id, never the token."""
    prefix, suffix = _deny_body_parts(decision)
    return prefix + decision_id.encode() + suffix


def _deny_body_parts(decision: Decision) -> tuple[bytes, bytes]:
    """The deny body before and after the decision id's value (an id is ASCII that JSON writes as it is)."""
    message = _MESSAGES.get(decision.status, _MESSAGES[503])
    return orjson.dumps({"error": message, "reason": decision.reason})[:-1] + b',"decision_id":"', b'"}'


def _build(decision: Decision) -> Wire:
    if decision.allowed:
        headers = allow_headers(decision)
        if decision.strip_headers:
            headers += (("x-envoy-auth-headers-to-remove", ", ".join(decision.strip_headers)),)
        return Wire(200, headers, b"", b"")
    headers = (("content-type", "application/json"), ("x-authz-reason", decision.reason))
    if decision.status == 401:
        headers += (("www-authenticate", WWW_AUTHENTICATE),)
    return Wire(decision.status, headers, *_deny_body_parts(decision))


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
    """One answer (status, headers, body) with two holes for its decision id and, when aiohttp would write its
    headers, its bytes but the ``Date`` and the id.

    ``headers`` are the answer's own headers but ``x-authz-decision-id``, which follows them; a deny's body is
    ``body_prefix`` + the id + ``body_suffix`` (an allow has no body: both empty). ``head`` is the status line
    and headers up to the id's value; ``head`` is ``None`` when a header holds a byte aiohttp refuses to write (a
    header injection), so that the answer is never prepared and goes to aiohttp, which refuses it.
    """

    __slots__ = ("_middles", "body_prefix", "body_suffix", "head", "headers", "status", "tail")

    def __init__(
        self, status: int, headers: tuple[tuple[str, str], ...], body_prefix: bytes, body_suffix: bytes
    ) -> None:
        self.status = status
        self.headers = headers
        self.body_prefix = body_prefix
        self.body_suffix = body_suffix
        self.head: bytes | None = None
        self.tail = b""
        self._middles: dict[int, bytes] = {}  # id length -> what lies between the id and the Date
        if any(_FORBIDDEN.search(name) or _FORBIDDEN.search(value) for name, value in headers):
            return
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        # The order aiohttp writes them in: the response's own headers, Content-Length, Date, Server.
        lines.append(f"{DECISION_ID_HEADER}: ")
        self.head = "".join(lines).encode("utf-8")
        self.tail = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode() + body_prefix

    def body(self, decision_id: str) -> bytes:
        """The body of the answer with ``decision_id``: empty for an allow."""
        return self.body_prefix + decision_id.encode() + self.body_suffix if self.body_suffix else b""

    def all_headers(self, decision_id: str) -> tuple[tuple[str, str], ...]:
        """The answer's own headers with ``x-authz-decision-id``, in the order :meth:`dated` writes them."""
        return (*self.headers, (DECISION_ID_HEADER, decision_id))

    def dated(self, decision_id: str) -> bytes:
        """The whole answer with ``decision_id`` as aiohttp would write it now: the id and the current second's
        ``Date`` put into the template. ``decision_id`` must be printable ASCII (a :class:`DecisionIds` id is)."""
        if self.head is None:
            raise ValueError("an answer with a header aiohttp refuses to write has no bytes of its own")
        raw = decision_id.encode()
        middle = self._middles.get(len(raw)) or self._middle(len(raw))
        if self.body_suffix:  # a deny: the id once more, in the body
            return b"".join((self.head, raw, middle, _date_header(), self.tail, raw, self.body_suffix))
        return b"".join((self.head, raw, middle, _date_header(), self.tail))

    def _middle(self, id_length: int) -> bytes:
        """What lies between an id of ``id_length`` bytes and the ``Date`` value: the ``Content-Length`` header."""
        length = len(self.body_prefix) + id_length + len(self.body_suffix) if self.body_suffix else 0
        return self._middles.setdefault(id_length, f"\r\nContent-Length: {length}\r\nDate: ".encode())


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
