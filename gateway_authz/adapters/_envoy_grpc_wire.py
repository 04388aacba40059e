"""The two translations of Envoy's gRPC ext_authz messages; no I/O, no decisions.

``CheckRequest`` -> :class:`~gateway_authz.core.model.AuthzRequest` and :class:`~gateway_authz.core.model.Decision` ->
``CheckResponse``, with Envoy's own generated protos (``xds-protos``).

Wire facts relied on (Envoy 1.40, observed; ``gateways.md`` §3)
    * ``attributes.request.http.path`` holds path *and* query, as the client sent them; ``query`` and
      ``fragment`` are always empty, so a CheckRequest that fills them was not made the way we understand and
      is refused.
    * Headers come either as the ``headers`` map (lower-case keys; pseudo-headers included when
      ``allowed_headers`` is unset; repeats comma-joined; non-UTF-8 bytes replaced by ``!``) or, with
      ``encode_raw_headers: true``, as ``header_map.headers[]`` with ``raw_value`` bytes and repeats kept as
      separate entries. Raw bytes are decoded as UTF-8 with U+FFFD replacement, so a credential with bad bytes
      stays visibly broken and fails to parse (401) instead of being repaired into something else. A
      comma-joined repeat likewise reaches the credential parser as one unparsable value: fail closed.
      Pseudo-headers are dropped from the map; ``:authority`` and ``:scheme`` only stand in for an empty
      ``host`` / ``scheme`` field.
    * ``http.id`` is Envoy's stream id; the audit's ``request_id`` comes from the ``x-request-id`` header.
    * ``OkHttpResponse.headers[].append_action`` is ignored by 1.40 (every entry overwrites) and only the
      deprecated ``append`` appends. We leave ``append`` unset and still say ``OVERWRITE_IF_EXISTS_OR_ADD`` so
      a later Envoy that honours the field keeps overwriting a client-sent ``x-authz-*`` value. Likewise 1.40
      overwrites with an empty value (an anonymous principal) as it is; ``keep_empty_value`` makes that explicit.
    * ``UNAUTHENTICATED`` / ``PERMISSION_DENIED`` without a ``denied_response`` always reach the client as
      403, so every deny carries its ``denied_response`` with the real status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from ..core.errors import NotPermitted
from ..core.memo import BoundedMemo
from ..core.model import AuthzRequest, Decision, Right, headers_from_pairs
from ._answer import DECISION_ID_HEADER, WWW_AUTHENTICATE, allow_headers, deny_body

__all__ = ["check_request_to_authz", "decision_to_check_response"]

# Bounds on what one CheckRequest may carry. Envoy's own defaults (60 KiB of request headers, 100 headers) sit
# well inside them; anything bigger is not a request we want to reason about, so it is denied.
_MAX_METHOD = 32
_MAX_HOST = 1024
_MAX_TARGET = 64 * 1024
_MAX_HEADER_COUNT = 512
_MAX_HEADER_CHARS = 256 * 1024
_MAX_REQUEST_ID = 256
_MAX_CONTEXT_ENTRIES = 32
_MAX_CONTEXT_KEY = 64
_MAX_CONTEXT_VALUE = 1024

# RFC 9110 token characters: what a method may consist of.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SCHEMES = frozenset({"http", "https"})
_ROUTE_RIGHTS: Mapping[str, str] = MappingProxyType({right.value.lower(): right.value for right in Right})
_FLAGS = frozenset({"true", "false"})
_EMPTY_CONTEXT: Mapping[str, str] = MappingProxyType({})

# HTTP status of a deny -> google.rpc code Envoy expects beside it.
_RPC_CODES: Mapping[int, int] = MappingProxyType(
    {401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED, 503: code_pb2.UNAVAILABLE}
)
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def _malformed(detail: str) -> NotPermitted:
    return NotPermitted("malformed_request", detail)


# ---------------------------------------------------------------------------------------------------------
# CheckRequest -> AuthzRequest


def check_request_to_authz(request: Any) -> AuthzRequest:
    """Translate an ``envoy.service.auth.v3.CheckRequest`` into the one internal request model.

    Raises :class:`~gateway_authz.core.errors.NotPermitted` (``malformed_request``, with a ``detail`` for the
    audit) when the request is incomplete or out of bounds: the servicer answers that with a 403 denial.
    """
    if not request.HasField("attributes"):
        raise _malformed("no attributes")
    attributes = request.attributes
    if not attributes.HasField("request") or not attributes.request.HasField("http"):
        raise _malformed("no attributes.request.http")
    http = attributes.request.http

    method: str = http.method
    if not method or len(method) > _MAX_METHOD or not _TCHAR.issuperset(method):
        raise _malformed("method")
    target: str = http.path
    if not target.startswith("/"):
        raise _malformed("path empty or not origin-form")
    if len(target) > _MAX_TARGET:
        raise _malformed("path too long")
    if http.query or http.fragment:
        raise _malformed("query or fragment outside path")

    regular: list[tuple[str, str]] = []
    pseudo: dict[str, str] = {}
    for name, value in _header_lines(http):
        if name.startswith(":"):
            pseudo.setdefault(name, value)
        else:
            regular.append((name, value))

    host: str = http.host or pseudo.get(":authority", "")
    if not host or len(host) > _MAX_HOST:
        raise _malformed("host")
    scheme = (http.scheme or pseudo.get(":scheme", "") or "http").lower()
    if scheme not in _SCHEMES:
        raise _malformed("scheme")

    headers = headers_from_pairs(regular)
    request_ids = headers.get("x-request-id", ())
    request_id = request_ids[0] if request_ids and len(request_ids[0]) <= _MAX_REQUEST_ID else ""
    return AuthzRequest(
        gateway="envoy-grpc",
        method=method,
        host=host,
        target=target,
        headers=headers,
        scheme=scheme,
        request_id=request_id,
        context=_route_context(attributes.context_extensions),
    )


def _header_lines(http: Any) -> list[tuple[str, str]]:
    """Every header line as ``(lower-case name, value)``, from whichever of the two forms Envoy filled."""
    raw = http.header_map.headers
    if raw:
        if http.headers:
            raise _malformed("both headers and header_map")
        if len(raw) > _MAX_HEADER_COUNT:
            raise _malformed("too many headers")
        # raw_value is what encode_raw_headers fills; value is the fallback a non-raw sender would use.
        lines = [
            (entry.key, entry.raw_value.decode("utf-8", "replace") if entry.raw_value else entry.value) for entry in raw
        ]
    else:
        if len(http.headers) > _MAX_HEADER_COUNT:
            raise _malformed("too many headers")
        lines = list(http.headers.items())
    if sum(len(name) + len(value) for name, value in lines) > _MAX_HEADER_CHARS:
        raise _malformed("headers too large")
    if not all(name for name, _ in lines):
        raise _malformed("empty header name")
    return [(name.lower(), value) for name, value in lines]


def _route_context(extensions: Mapping[str, str]) -> Mapping[str, str]:
    """``context_extensions`` as a bounded read-only map; ``right`` and ``dry_run`` checked and normalised."""
    if not extensions:
        return _EMPTY_CONTEXT
    if len(extensions) > _MAX_CONTEXT_ENTRIES:
        raise _malformed("too many context_extensions")
    context: dict[str, str] = {}
    for key, value in extensions.items():
        if not key or len(key) > _MAX_CONTEXT_KEY or len(value) > _MAX_CONTEXT_VALUE:
            raise _malformed("context_extensions entry out of bounds")
        context[key] = value
    if "right" in context:
        right = _ROUTE_RIGHTS.get(context["right"].lower())
        if right is None:
            raise _malformed("context_extensions.right")
        context["right"] = right
    if "dry_run" in context:
        flag = context["dry_run"].lower()
        if flag not in _FLAGS:
            raise _malformed("context_extensions.dry_run")
        context["dry_run"] = flag
    return MappingProxyType(context)


# ---------------------------------------------------------------------------------------------------------
# Decision -> CheckResponse


def decision_to_check_response(decision: Decision, decision_id: str = "") -> Any:
    """Translate a :class:`~gateway_authz.core.model.Decision` into an ``envoy.service.auth.v3.CheckResponse``.

    Only ``allowed`` with status 200 becomes ``OK``; every other decision, however inconsistent, is a denial.
    ``decision_id`` goes in ``x-authz-decision-id``: to the upstream on an allow, to the client on a deny.
    """
    if decision.allowed and decision.status == 200:
        response = external_auth_pb2.CheckResponse()
        response.CopyFrom(_ok_response(decision))  # the shared template stays as it is
        response.ok_response.headers.append(_header(DECISION_ID_HEADER, decision_id))
        return response
    return _denied_response(decision, decision_id)


def _header(name: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=_OVERWRITE,
        keep_empty_value=True,
    )


# OK answers by what they are made of; few distinct ones recur. A message is only ever serialised after it is
# returned (grpc calls SerializeToString), never changed, so one object can answer many calls.
_OK_RESPONSES: BoundedMemo[tuple[object, ...], Any] = BoundedMemo(1024)


def _ok_response(decision: Decision) -> Any:
    key = (decision.auth, decision.principal, decision.right, decision.strip_headers, decision.strip_query)
    response = _OK_RESPONSES.get(key)
    if response is None:
        response = _OK_RESPONSES.put(key, _build_ok_response(decision))
    return response


def _build_ok_response(decision: Decision) -> Any:
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.OK),
        ok_response=external_auth_pb2.OkHttpResponse(
            headers=[_header(name, value) for name, value in allow_headers(decision)],
            headers_to_remove=[name.lower() for name in decision.strip_headers],
            query_parameters_to_remove=list(decision.strip_query),
        ),
    )


def _denied_response(decision: Decision, decision_id: str) -> Any:
    status = decision.status
    if status not in _RPC_CODES:
        # Not a status the contract allows on a deny: keep the class (server fault or not), never the code.
        status = 503 if status >= 500 else 403
        decision = dataclasses.replace(decision, status=status)
    headers = [
        ("content-type", "application/json"),
        ("x-authz-reason", decision.reason),
        (DECISION_ID_HEADER, decision_id),
    ]
    if status == 401:
        headers.insert(0, ("www-authenticate", WWW_AUTHENTICATE))
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=_RPC_CODES[status], message=decision.reason),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=[_header(name, value) for name, value in headers],
            body=deny_body(decision, decision_id).decode(),
        ),
    )
