"""What every adapter says back, whatever its wire format: allow headers, the deny body, the challenge."""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion11
from multidict import CIMultiDict

from ..core.memo import BoundedMemo, IdentityMemo
from ..core.model import Decision
from ..http._prepared import PreparedAnswer, Wire

__all__ = ["WWW_AUTHENTICATE", "allow_headers", "answer_bytes", "deny_body", "http_response", "preparable"]

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


def deny_body(decision: Decision) -> bytes:
    """``{"error": …, "reason": …}``: a fixed message per status and the reason code, never the token."""
    message = _MESSAGES.get(decision.status, _MESSAGES[503])
    return orjson.dumps({"error": message, "reason": decision.reason})


def http_response(decision: Decision, request: web.BaseRequest) -> web.StreamResponse:
    """The answer for the HTTP gateways: exactly 200 to allow (Envoy treats any other 2xx as a denial)."""
    answer = _answer(decision)
    if answer.head is not None and preparable(request.version, request.keep_alive, request.method):
        return PreparedAnswer(answer)
    return web.Response(status=answer.status, body=answer.body or None, headers=CIMultiDict(answer.headers))


def preparable(version: HttpVersion, keep_alive: bool, method: str) -> bool:
    """Whether a request's framing lets prepared bytes answer it (see _prepared): HTTP/1.1, kept open, not HEAD."""
    return version == HttpVersion11 and keep_alive and method != "HEAD"


def answer_bytes(decision: Decision) -> bytes | None:
    """The whole answer to a :func:`preparable` request, as :class:`PreparedAnswer` writes it; ``None`` when a
    header holds a byte aiohttp refuses to write."""
    answer = _answer(decision)
    return None if answer.head is None else answer.dated()


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


def _answer(decision: Decision) -> Wire:
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
