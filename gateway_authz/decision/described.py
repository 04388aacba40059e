"""A request described as data (``{"method", "url", "headers"}``), read strictly into the request model.

For ``POST /explain``, ``gateway-authz check`` and ``gateway-authz test``: the request is not on the wire, so
it is described by an absolute URL and its headers (a mapping, or a list of ``[name, value]`` pairs to repeat
one). Sizes are bounded before anything is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from ..core.model import AuthzRequest, headers_from_pairs

__all__ = ["MAX_DESCRIPTION_BYTES", "DescriptionError", "described_request"]

MAX_DESCRIPTION_BYTES = 64 * 1024
_MAX_HEADERS = 100
_MAX_URL = 16 * 1024
_MAX_METHOD = 32


class DescriptionError(ValueError):
    """The description is not a request: the message says what is wrong (never echoing a header value)."""


def described_request(method: object, url: object, headers: object) -> AuthzRequest:
    """The request ``method url`` with ``headers`` as a gateway would describe it to the service."""
    if not isinstance(method, str) or not method or len(method) > _MAX_METHOD or not method.isascii():
        raise DescriptionError("method must be a short non-empty ASCII string, e.g. GET")
    if not isinstance(url, str) or len(url) > _MAX_URL:
        raise DescriptionError("url must be a string of at most 16 KiB")
    parts = urlsplit(url)
    if not parts.netloc or parts.scheme not in ("http", "https", "sb", "ws", "wss"):
        raise DescriptionError("url must be absolute, e.g. https://contoso.servicebus.windows.net/orders")
    pairs = _pairs(headers)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    grouped = headers_from_pairs(pairs)
    request_id = grouped.get("x-request-id", ("",))
    return AuthzRequest(
        gateway="cli",
        method=method.upper(),
        host=parts.netloc,
        target=target,
        headers=grouped,
        scheme=parts.scheme,
        request_id=request_id[0] if len(request_id) == 1 else "",
    )


def _pairs(headers: object) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        items = list(headers.items())
    elif isinstance(headers, list):
        items = []
        for item in headers:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise DescriptionError("headers as a list must hold [name, value] pairs")
            items.append((item[0], item[1]))
    else:
        raise DescriptionError("headers must be an object or a list of [name, value] pairs")
    if len(items) > _MAX_HEADERS:
        raise DescriptionError(f"at most {_MAX_HEADERS} headers")
    pairs = []
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, str) or not name.strip():
            raise DescriptionError("every header needs a non-empty string name and a string value")
        pairs.append((name.strip(), value))
    return pairs
