"""What every adapter says back, whatever its wire format: allow headers, the deny body, the challenge."""

from __future__ import annotations

import orjson
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .._identity import IdentityMemo
from ..model import Decision

__all__ = ["WWW_AUTHENTICATE", "allow_headers", "deny_body", "http_response"]

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
# which aiohttp's per-response copy takes fastest. A cached decision answers again as the very same object, so it is
# first looked up by identity, then by content.
_ALLOW_ANSWERS: dict[tuple[object, ...], CIMultiDictProxy[str]] = {}
_ALLOW_ANSWERS_MAX = 1024
_ALLOW_ANSWERS_BY_IDENTITY: IdentityMemo[CIMultiDictProxy[str]] = IdentityMemo(_ALLOW_ANSWERS_MAX)


def _allow_answer_headers(decision: Decision) -> CIMultiDictProxy[str]:
    known = _ALLOW_ANSWERS_BY_IDENTITY.get(decision, id(decision))
    if known is not None:
        return known
    key = (decision.auth, decision.principal, decision.right, decision.strip_headers)
    headers = _ALLOW_ANSWERS.get(key)
    if headers is None:
        built = dict(allow_headers(decision))
        if decision.strip_headers:
            built["x-envoy-auth-headers-to-remove"] = ", ".join(decision.strip_headers)
        if len(_ALLOW_ANSWERS) >= _ALLOW_ANSWERS_MAX:
            _ALLOW_ANSWERS.clear()
        headers = _ALLOW_ANSWERS[key] = CIMultiDictProxy(CIMultiDict(built))
    return _ALLOW_ANSWERS_BY_IDENTITY.put(decision, id(decision), headers)
