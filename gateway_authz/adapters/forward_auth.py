"""Traefik ForwardAuth / Caddy ``forward_auth`` to ``/forward-auth``.

The original request is described by ``X-Forwarded-Method``, ``X-Forwarded-Uri``, ``X-Forwarded-Host`` and
``X-Forwarded-Proto``, which the proxy sets. Configure the proxy not to trust client-sent ``X-Forwarded-*``
(Traefik: ``trustForwardHeader: false``). A missing or repeated one is a deny.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import SERVICE
from ..model import AuthzRequest, headers_from_pairs
from ._answer import http_response, single_header

__all__ = ["handle", "to_authz_request"]


def to_authz_request(request: web.BaseRequest) -> AuthzRequest:
    return AuthzRequest(
        gateway="forward-auth",
        method=single_header(request, "X-Forwarded-Method"),
        host=single_header(request, "X-Forwarded-Host"),
        target=single_header(request, "X-Forwarded-Uri"),
        headers=headers_from_pairs(request.headers.items()),
        scheme=single_header(request, "X-Forwarded-Proto") or "http",
        request_id=single_header(request, "X-Request-Id"),
    )


async def handle(request: web.Request) -> web.StreamResponse:
    decision = await request.app[SERVICE].decide(to_authz_request(request))
    return http_response(decision)
