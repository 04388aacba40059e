"""Value objects that cross module boundaries: the right asked for, the request, the decision.

Every gateway adapter translates what its gateway sent into one :class:`AuthzRequest` and turns the one
:class:`Decision` back into its wire format. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple, TypeAlias

from .errors import AuthzError
from .memo import BoundedMemo

__all__ = [
    "AuthKind",
    "AuthzRequest",
    "Decision",
    "Gateway",
    "Right",
    "Verdict",
    "headers_from_pairs",
]

Gateway = Literal["envoy-http", "envoy-grpc", "nginx", "forward-auth", "cli"]
AuthKind = Literal["sas", "jwt", "anonymous", ""]

_EMPTY: Mapping[str, str] = MappingProxyType({})


class Right(enum.Enum):
    """A Relay access right. ``Manage`` implies ``Listen`` and ``Send``."""

    LISTEN = "Listen"
    SEND = "Send"
    MANAGE = "Manage"


def headers_from_pairs(pairs: Iterable[tuple[str, str]]) -> Mapping[str, tuple[str, ...]]:
    """Group header lines by lower-case name, keeping every value in arrival order (so repeats stay visible)."""
    grouped: dict[str, tuple[str, ...]] = {}
    for name, value in pairs:
        key = name.lower()
        seen = grouped.get(key)
        grouped[key] = (value,) if seen is None else (*seen, value)  # a repeat is rare: one pass, no lists
    return MappingProxyType(grouped)


class AuthzRequest(NamedTuple):
    """The original client request, as one gateway described it.

    ``target`` is the request-target exactly as the client sent it (path and optional ``?query``, still
    percent-encoded); ``host`` is the Host / :authority value, possibly with a port; ``headers`` maps lower-case
    names to every value received, so that a repeated credential header is seen as repeated.

    A named tuple rather than a frozen dataclass: it is as immutable, and one is built for every request the
    service answers, where the dataclass's field-by-field ``object.__setattr__`` cost three times as much.
    """

    gateway: Gateway
    method: str
    host: str
    target: str
    headers: Mapping[str, tuple[str, ...]]
    scheme: str = "http"
    request_id: str = ""
    context: Mapping[str, str] = _EMPTY

    def header(self, name: str) -> tuple[str, ...]:
        """Every value of header ``name`` (case-insensitive), or an empty tuple."""
        return self.headers.get(name.lower(), ())


# Read-only audit maps by content: a handful recur (a rule's key name and slot, an assignment's role and scope), and
# a cached decision that shares one is one object fewer for the garbage collector to walk. Bounded, cleared when full.
_AUDIT_MAPS: BoundedMemo[tuple[tuple[str, str], ...], Mapping[str, str]] = BoundedMemo(1024)


def _audit_fields(audit: Mapping[str, str] | None) -> Mapping[str, str]:
    """``audit`` as a read-only map, shared with every earlier decision that had the same fields in the same order."""
    if not audit:
        return _EMPTY
    items = tuple(audit.items())
    try:
        shared = _AUDIT_MAPS.get(items)
    except TypeError:  # a value that cannot be hashed: a map of its own
        return MappingProxyType(dict(items))
    if shared is None:
        shared = _AUDIT_MAPS.put(items, MappingProxyType(dict(items)))
    return shared


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request. Build it only with :meth:`allow` or :meth:`deny`.

    ``strip_headers`` and ``strip_query`` name the credential carriers a gateway must remove before the request
    reaches the upstream; ``audit`` holds the extra audit fields (``key_name``, ``key_slot``, ``issuer``,
    ``tenant``, ``role``, ``scope``…); ``dry_run`` marks a deny that is being answered as an allow.

    How long a decision may be reused is not part of it (the cache holds each entry's expiry beside it), so that
    one decision can answer every token that is decided alike: fresh tokens of one rule differ only in ``se``.
    """

    allowed: bool
    status: int
    reason: str
    auth: AuthKind = ""
    principal: str = ""
    right: Right | None = None
    namespace: str = ""
    entity: str = ""
    strip_headers: tuple[str, ...] = ()
    strip_query: tuple[str, ...] = ()
    audit: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    dry_run: bool = False
    detail: str = ""

    @classmethod
    def allow(
        cls,
        *,
        auth: AuthKind,
        principal: str,
        right: Right,
        namespace: str,
        entity: str,
        strip_headers: tuple[str, ...] = (),
        strip_query: tuple[str, ...] = (),
        audit: Mapping[str, str] | None = None,
        reason: str = "allowed",
    ) -> Decision:
        """The one way to make an allowing decision."""
        return cls(
            allowed=True,
            status=200,
            reason=reason,
            auth=auth,
            principal=principal,
            right=right,
            namespace=namespace,
            entity=entity,
            strip_headers=strip_headers,
            strip_query=strip_query,
            audit=_audit_fields(audit),
        )

    @classmethod
    def deny(
        cls,
        error: AuthzError,
        *,
        auth: AuthKind = "",
        principal: str = "",
        right: Right | None = None,
        namespace: str = "",
        entity: str = "",
        audit: Mapping[str, str] | None = None,
    ) -> Decision:
        """A denying decision whose status and reason come from ``error``."""
        return cls(
            allowed=False,
            status=error.status,
            reason=error.reason,
            auth=auth,
            principal=principal,
            right=right,
            namespace=namespace,
            entity=entity,
            audit=_audit_fields(audit),
            detail=error.detail,
        )


Verdict: TypeAlias = tuple[Decision, str]
"""One answer: ``(decision, decision_id)``, the decision (shared by every request decided alike, and cached) and
this answer's own id, fresh for every answer, a cached decision's too; it is the audit line's ``decision_id`` and
the ``x-authz-decision-id`` the gateway passes on (see :mod:`gateway_authz.core.decision_ids`). A plain tuple:
one is made per answer, and a named tuple cost five times as much to make."""
