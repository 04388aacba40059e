"""Where the credential is, and what kind it is: Azure Relay's carriers and precedence.

The ``sb-hc-token`` query parameter, else the ``ServiceBusAuthorization`` header, else ``Authorization``.
``Authorization`` is the credential only when neither of the others is present; otherwise it belongs to the
application (Relay's end-to-end pattern) and passes upstream untouched. A carrier present twice, a spelling of a
carrier name that a lenient upstream would decode to the real one, or a query token and a header token that differ,
are refused: the service must read the same credential the upstream would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple
from urllib.parse import unquote_plus, unquote_to_bytes

from ..core.errors import InvalidCredential, NotPermitted
from ..core.model import AuthzRequest, Right

__all__ = [
    "MAX_CREDENTIAL_LENGTH",
    "FoundCredential",
    "QueryFacts",
    "find_credential",
    "parse_query",
]

MAX_CREDENTIAL_LENGTH = 16 * 1024
SAS_PREFIX = "SharedAccessSignature "  # what starts a SAS token, in every carrier
TOKEN_PARAM = "sb-hc-token"  # noqa: S105 -- a parameter name, not a secret
ACTION_PARAM = "sb-hc-action"
SBA_HEADER = "servicebusauthorization"
AUTHZ_HEADER = "authorization"
_RESERVED = (TOKEN_PARAM, ACTION_PARAM)
# The carriers to strip, one shared tuple each: a decision keeps its tuple as long as it is cached.
_STRIP_SBA: tuple[str, ...] = (SBA_HEADER,)
_STRIP_AUTHZ: tuple[str, ...] = (AUTHZ_HEADER,)
_STRIP_TOKEN_PARAM: tuple[str, ...] = (TOKEN_PARAM,)
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_ACTION_RIGHTS = {"listen": Right.LISTEN, "accept": Right.LISTEN, "request": Right.LISTEN, "connect": Right.SEND}

CredentialKind = Literal["sas", "jwt"]


@dataclass(frozen=True, slots=True)
class QueryFacts:
    """What the query string says to the authorizer: the token parameter and the Relay action, if any."""

    token: str | None
    action_right: Right | None


_NOTHING_IN_QUERY = QueryFacts(token=None, action_right=None)  # most requests have no query: one shared answer


class FoundCredential(NamedTuple):  # built per request: a NamedTuple costs a third of a frozen dataclass
    """The credential a request carries and the carriers a gateway must strip before the upstream sees them."""

    kind: CredentialKind
    value: str
    carrier: Literal["query", "servicebusauthorization", "authorization"]
    strip_headers: tuple[str, ...]
    strip_query: tuple[str, ...]


def parse_query(query: str) -> QueryFacts:
    """Pick ``sb-hc-token`` and ``sb-hc-action`` out of a raw query string, strictly."""
    if not query:
        return _NOTHING_IN_QUERY
    found: dict[str, str] = {}
    for pair in query.split("&"):
        raw_name, _, raw_value = pair.partition("=")
        try:
            name = unquote_to_bytes(raw_name).decode("utf-8").lower()
        except UnicodeDecodeError:
            continue  # not a name any Relay parameter decodes to
        if name not in _RESERVED:
            continue
        if raw_name != name:
            raise InvalidCredential("ambiguous_credential", f"{name} spelled other than literally")
        if name in found:
            raise InvalidCredential("duplicate_credential", f"{name} given more than once")
        try:
            found[name] = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise InvalidCredential("malformed_token", f"{name} is not valid UTF-8") from None
    action = found.get(ACTION_PARAM)
    action_right = None
    if action is not None:
        action_right = _ACTION_RIGHTS.get(action)
        if action_right is None:
            raise NotPermitted("malformed_request", "unknown sb-hc-action")
    return QueryFacts(token=found.get(TOKEN_PARAM), action_right=action_right)


def _single(request: AuthzRequest, name: str) -> str | None:
    values = request.headers.get(name, ())  # `name` is one of our lower-case constants: no `header()` lower-casing
    if len(values) > 1:
        raise InvalidCredential("duplicate_credential", f"{name} header given more than once")
    return values[0] if values else None


def find_credential(request: AuthzRequest, query: QueryFacts) -> FoundCredential | None:
    """The credential by Relay's precedence, or ``None`` when the request carries none."""
    sba = _single(request, SBA_HEADER)
    strip_sba = _STRIP_SBA if sba is not None else ()
    if query.token is not None:
        if sba is not None and sba != query.token:
            raise InvalidCredential("conflicting_credentials", "sb-hc-token and ServiceBusAuthorization differ")
        return _classify(query.token, "query", strip_sba, _STRIP_TOKEN_PARAM)
    if sba is not None:
        return _classify(sba, "servicebusauthorization", strip_sba, ())
    authorization = _single(request, AUTHZ_HEADER)
    if authorization is not None:
        return _classify(authorization, "authorization", _STRIP_AUTHZ, ())
    return None


def _classify(
    value: str,
    carrier: Literal["query", "servicebusauthorization", "authorization"],
    strip_headers: tuple[str, ...],
    strip_query: tuple[str, ...],
) -> FoundCredential:
    if len(value) > MAX_CREDENTIAL_LENGTH:
        raise InvalidCredential("token_too_large", "credential longer than the size limit")
    if value.startswith(SAS_PREFIX):
        kind: CredentialKind = "sas"
    else:
        if value[:7].lower() == "bearer ":
            value = value[7:]
        if not _JWT_SHAPE.fullmatch(value):
            raise InvalidCredential("unsupported_credential", "neither a SAS token nor a JWT")
        kind = "jwt"
    return FoundCredential(kind, value, carrier, strip_headers, strip_query)
