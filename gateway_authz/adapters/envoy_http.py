"""Envoy ext_authz, HTTP service (``path_prefix: /ext_authz``).

Envoy sends the original method and ``/ext_authz`` + the original path and query, with ``Host`` and the headers
its ``allowed_headers`` lets through (include ``servicebusauthorization``, ``x-request-id`` and
``x-forwarded-proto``). The credential header that was used comes back in ``x-envoy-auth-headers-to-remove``.
"""

from __future__ import annotations

from aiohttp import web

from ..appkeys import SERVICE
from ..model import AuthzRequest, headers_from_pairs
from ._answer import http_response, single_value

__all__ = ["PATH_PREFIX", "handle", "to_authz_request"]

PATH_PREFIX = "/ext_authz"


def to_authz_request(request: web.BaseRequest) -> AuthzRequest:
    raw = request.raw_path
    target = raw[len(PATH_PREFIX) :] if raw.startswith(PATH_PREFIX) else ""
    headers = headers_from_pairs(request.headers.items())
    return AuthzRequest(
        gateway="envoy-http",
        method=request.method,
        host=single_value(headers, "host"),
        target=target,
        headers=headers,
        scheme=single_value(headers, "x-forwarded-proto") or "http",
        request_id=single_value(headers, "x-request-id"),
    )


async def handle(request: web.Request) -> web.StreamResponse:
    decision = await request.app[SERVICE].decide(to_authz_request(request))
    return http_response(decision)
