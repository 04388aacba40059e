"""NGINX ``auth_request`` to ``/auth``.

The subrequest is always ``GET /auth`` with every original header; the original request is described by
``X-Original-Method``, ``X-Original-URI`` (the raw ``$request_uri``, so that we canonicalise exactly what the
upstream will receive) and ``X-Original-Host`` (else ``Host``, only when it is absent). NGINX's
``proxy_set_header`` overwrites these, so a client cannot supply its own. A missing or repeated one is a deny.
"""

from __future__ import annotations

from ..core.model import AuthzRequest
from ._headers import HeaderView, RequestHead

__all__ = ["to_authz_request"]


def to_authz_request(request: RequestHead) -> AuthzRequest:
    headers = HeaderView(request.headers)
    return AuthzRequest(
        gateway="nginx",
        method=headers.single("x-original-method"),
        # Host only when X-Original-Host is absent: a repeated one is "" (a deny), never a fall back to Host
        host=headers.single("x-original-host") if "x-original-host" in headers else headers.single("host"),
        target=headers.single("x-original-uri"),
        headers=headers,
        scheme=headers.single("x-forwarded-proto") or "http",
        request_id=headers.single("x-request-id"),
    )
