"""Traefik ForwardAuth / Caddy ``forward_auth`` to ``/forward-auth``.

The original request is described by ``X-Forwarded-Method``, ``X-Forwarded-Uri``, ``X-Forwarded-Host`` and
``X-Forwarded-Proto``, which the proxy sets. Configure the proxy not to trust client-sent ``X-Forwarded-*``
(Traefik: ``trustForwardHeader: false``). A missing or repeated one is a deny.
"""

from __future__ import annotations

from ..core.model import AuthzRequest
from ._headers import HeaderView, RequestHead

__all__ = ["to_authz_request"]


def to_authz_request(request: RequestHead) -> AuthzRequest:
    headers = HeaderView(request.headers)
    return AuthzRequest(
        gateway="forward-auth",
        method=headers.single("x-forwarded-method"),
        host=headers.single("x-forwarded-host"),
        target=headers.single("x-forwarded-uri"),
        headers=headers,
        scheme=headers.single("x-forwarded-proto") or "http",
        request_id=headers.single("x-request-id"),
    )
