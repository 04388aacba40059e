"""The configured token issuers, indexed once: which entry a token's ``iss`` names, and its tenant.

An entry's ``issuer`` is either an exact string or a template with one ``{tenantid}``, filled from the token's
``tid`` (a GUID). Matching is exact, literal entries first; the tenant must be one of the entry's ``tenants``.
Settings that could never verify safely are refused when the index is built, not at request time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..core.errors import InvalidCredential
from ..core.settings import Issuer
from .jwk import SUPPORTED_ALGORITHMS

__all__ = ["TENANT_PLACEHOLDER", "IssuerMatch", "IssuerRegistry", "is_guid"]

TENANT_PLACEHOLDER: Final = "{tenantid}"
_GUID: Final = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def is_guid(value: object) -> bool:
    """Whether ``value`` is a GUID string (any case), as Entra ID tenant and object ids are."""
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class IssuerMatch:
    """The issuer entry a token names, with the concrete ``iss`` and the (lower-case) tenant."""

    config: Issuer
    iss: str
    tenant: str
    audiences: frozenset[str]
    algorithms: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Entry:
    config: Issuer
    tenants: frozenset[str]
    audiences: frozenset[str]
    algorithms: frozenset[str]


class IssuerRegistry:
    """The configured issuers, indexed once: exact ``iss`` strings and ``{tenantid}`` templates.

    Raises ``ValueError`` at construction for settings that could never verify safely: unsupported or
    symmetric algorithms, no audiences, a template without tenants, a duplicate issuer.
    """

    def __init__(self, issuers: Iterable[Issuer]) -> None:
        self._issuers = tuple(issuers)
        self._literal: dict[str, _Entry] = {}
        self._templates: dict[tuple[str, str], _Entry] = {}
        for issuer in self._issuers:
            entry = self._entry(issuer)
            if issuer.issuer.count(TENANT_PLACEHOLDER) == 1:
                prefix, suffix = issuer.issuer.split(TENANT_PLACEHOLDER)
                if not entry.tenants:
                    raise ValueError(f"issuer {issuer.issuer}: a {TENANT_PLACEHOLDER} template needs tenants")
                if (prefix, suffix) in self._templates:
                    raise ValueError(f"issuer {issuer.issuer} is configured twice")
                self._templates[(prefix, suffix)] = entry
            elif TENANT_PLACEHOLDER in issuer.issuer or issuer.issuer in self._literal:
                raise ValueError(f"issuer {issuer.issuer} is ambiguous")
            else:
                self._literal[issuer.issuer] = entry

    @staticmethod
    def _entry(issuer: Issuer) -> _Entry:
        algorithms = frozenset(issuer.algorithms)
        if not algorithms or not algorithms <= SUPPORTED_ALGORITHMS:
            raise ValueError(f"issuer {issuer.issuer}: algorithms must be among {sorted(SUPPORTED_ALGORITHMS)}")
        if not issuer.audiences:
            raise ValueError(f"issuer {issuer.issuer}: at least one audience is required")
        if not all(is_guid(t) for t in issuer.tenants):
            raise ValueError(f"issuer {issuer.issuer}: tenants must be GUIDs")
        tenants = frozenset(t.lower() for t in issuer.tenants)
        return _Entry(issuer, tenants, frozenset(issuer.audiences), algorithms)

    @property
    def issuers(self) -> tuple[Issuer, ...]:
        """The issuer entries, in configuration order."""
        return self._issuers

    def resolve(self, claims: Mapping[str, Any]) -> IssuerMatch:
        """The entry for the token's ``iss`` (literal first, then templates filled from ``tid``)."""
        iss, tid = claims.get("iss"), claims.get("tid")
        if not isinstance(iss, str):
            raise InvalidCredential("unknown_issuer", "iss missing or not a string")
        entry = self._literal.get(iss)
        if entry is None and is_guid(tid):
            for (prefix, suffix), candidate in self._templates.items():
                if iss == f"{prefix}{tid}{suffix}":
                    entry = candidate
                    break
        if entry is None:
            raise InvalidCredential("unknown_issuer", f"no issuer configured for iss {iss[:200]!r}")
        if tid is not None and not is_guid(tid):
            raise InvalidCredential("wrong_tenant", "tid is not a GUID")
        tenant = tid.lower() if isinstance(tid, str) else ""
        if entry.tenants and tenant not in entry.tenants:
            raise InvalidCredential(
                "wrong_tenant", f"tenant {tenant or '(none)'} is not allowed for {entry.config.issuer}"
            )
        return IssuerMatch(entry.config, iss, tenant, entry.audiences, entry.algorithms)
