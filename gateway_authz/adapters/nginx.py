"""NGINX ``auth_request`` to ``/auth``.

The subrequest is always ``GET /auth`` with every original header; the original request is described by
``X-Original-Method``, ``X-Original-URI`` (the raw ``$request_uri``, so that we canonicalise exactly what the
upstream will receive) and ``X-Original-Host`` (else ``Host``). NGINX's ``proxy_set_header`` overwrites these, so
a client cannot supply its own. A missing or repeated one is a deny.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import SERVICE
from ..model import AuthzRequest, headers_from_pairs
from ._answer import http_response, single_value

__all__ = ["handle", "to_authz_request"]


def to_authz_request(request: web.BaseRequest) -> AuthzRequest:
    headers = headers_from_pairs(request.headers.items())
    return AuthzRequest(
        gateway="nginx",
        method=single_value(headers, "x-original-method"),
        host=single_value(headers, "x-original-host") or single_value(headers, "host"),
        target=single_value(headers, "x-original-uri"),
        headers=headers,
        scheme=single_value(headers, "x-forwarded-proto") or "http",
        request_id=single_value(headers, "x-request-id"),
    )


async def handle(request: web.Request) -> web.StreamResponse:
    decision = await request.app[SERVICE].decide(to_authz_request(request))
    return http_response(decision)
