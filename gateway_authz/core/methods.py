"""What a request method may be: an RFC 9110 token of bounded length, checked alike for every gateway.

The HTTP gateways hand the method over in a header (``X-Original-Method``, ``X-Forwarded-Method``) that the
service reads as text, so nothing before this check has made sure it is a method at all (``G\\xffT``, ``GET /x``,
a 5 KB string). Envoy's gRPC ``CheckRequest`` carries it as a field, checked with the same function.
"""

from __future__ import annotations

__all__ = ["MAX_METHOD_LENGTH", "is_method_token"]

MAX_METHOD_LENGTH = 32
# RFC 9110 §5.6.2 tchar: what a method may consist of.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def is_method_token(method: str) -> bool:
    """Whether ``method`` is a non-empty RFC 9110 token of at most :data:`MAX_METHOD_LENGTH` characters."""
    return 0 < len(method) <= MAX_METHOD_LENGTH and _TCHAR.issuperset(method)
