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
from ._answer import http_response, single_header

__all__ = ["handle", "to_authz_request"]


def to_authz_request(request: web.BaseRequest) -> AuthzRequest:
    host = single_header(request, "X-Original-Host") or single_header(request, "Host")
    return AuthzRequest(
        gateway="nginx",
        method=single_header(request, "X-Original-Method"),
        host=host,
        target=single_header(request, "X-Original-URI"),
        headers=headers_from_pairs(request.headers.items()),
        scheme=single_header(request, "X-Forwarded-Proto") or "http",
        request_id=single_header(request, "X-Request-Id"),
    )


async def handle(request: web.Request) -> web.StreamResponse:
    decision = await request.app[SERVICE].decide(to_authz_request(request))
    return http_response(decision)
