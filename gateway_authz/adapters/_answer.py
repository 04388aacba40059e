"""What every adapter says back, whatever its wire format: allow headers, the deny body, the challenge."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from ..model import Decision

__all__ = ["WWW_AUTHENTICATE", "allow_headers", "deny_body", "http_response", "single_header", "single_value"]

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


def http_response(decision: Decision) -> web.Response:
    """The answer for the HTTP gateways: exactly 200 to allow (Envoy treats any other 2xx as a denial)."""
    if decision.allowed:
        return web.Response(status=200, headers=_allow_answer_headers(decision))
    deny_headers = {"content-type": "application/json", "x-authz-reason": decision.reason}
    if decision.status == 401:
        deny_headers["www-authenticate"] = WWW_AUTHENTICATE
    return web.Response(status=decision.status, body=deny_body(decision), headers=deny_headers)


# An allow's answer headers by what they are made of: few distinct ones recur. Kept as an immutable CIMultiDict view,
# which aiohttp's per-response copy takes fastest.
_ALLOW_ANSWERS: dict[tuple[object, ...], CIMultiDictProxy[str]] = {}
_ALLOW_ANSWERS_MAX = 1024


def _allow_answer_headers(decision: Decision) -> CIMultiDictProxy[str]:
    key = (decision.auth, decision.principal, decision.right, decision.strip_headers)
    headers = _ALLOW_ANSWERS.get(key)
    if headers is None:
        built = dict(allow_headers(decision))
        if decision.strip_headers:
            built["x-envoy-auth-headers-to-remove"] = ", ".join(decision.strip_headers)
        if len(_ALLOW_ANSWERS) >= _ALLOW_ANSWERS_MAX:
            _ALLOW_ANSWERS.clear()
        headers = _ALLOW_ANSWERS[key] = CIMultiDictProxy(CIMultiDict(built))
    return headers


def single_header(request: web.BaseRequest, name: str) -> str:
    """The one value of ``name``, or ``""`` when it is absent or repeated (which then fails closed downstream)."""
    values = request.headers.getall(name, ())
    return values[0] if len(values) == 1 else ""


def single_value(headers: Mapping[str, tuple[str, ...]], name: str) -> str:
    """:func:`single_header` over headers already grouped by lower-case ``name`` (``headers_from_pairs``)."""
    values = headers.get(name, ())
    return values[0] if len(values) == 1 else ""
