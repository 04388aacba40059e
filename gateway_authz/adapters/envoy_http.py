"""Envoy ext_authz, HTTP service (``path_prefix: /ext_authz``).

Envoy sends the original method and ``/ext_authz`` + the original path and query, with ``Host`` and the headers
its ``allowed_headers`` lets through (include ``servicebusauthorization``, ``x-request-id`` and
``x-forwarded-proto``). The credential header that was used comes back in ``x-envoy-auth-headers-to-remove``.
"""

from __future__ import annotations

from ..core.model import AuthzRequest
from ._headers import HeaderView, RequestHead

__all__ = ["PATH_PREFIX", "to_authz_request"]

PATH_PREFIX = "/ext_authz"


def to_authz_request(request: RequestHead) -> AuthzRequest:
    raw = request.raw_path
    target = raw[len(PATH_PREFIX) :] if raw.startswith(PATH_PREFIX) else ""
    headers = HeaderView(request.headers)
    return AuthzRequest(
        gateway="envoy-http",
        method=request.method,
        host=headers.single("host"),
        target=target,
        headers=headers,
        scheme=headers.single("x-forwarded-proto") or "http",
        request_id=headers.single("x-request-id"),
    )
