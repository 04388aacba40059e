"""What the running service believes, as plain data: the facts ``GET /status.json`` serves and ``GET /`` shows.

Names, counts, times and results only: never a key, a signature, a token or a key fingerprint. Paths of recent
denies had their credentials removed when they were recorded.
"""

from __future__ import annotations

import datetime
import platform
import time
from typing import Any

from ..config.reload import ConfigHolder
from ..core.settings import AuthorizationRule, Issuer
from ..decision.key_use import RuleSlot
from ..decision.service import DecisionService
from ..entra.authorizer import EntraAuthorizer

__all__ = ["iso", "status_facts"]


def iso(seconds: float | None) -> str | None:
    """UTC ISO 8601 to the second, or None."""
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_facts(
    holder: ConfigHolder, service: DecisionService, jwt: EntraAuthorizer, *, started_at: float, now: float | None = None
) -> dict[str, Any]:
    from .. import __version__  # the package imports this module: read it late

    now = time.time() if now is None else now
    runtime = holder.runtime
    settings = runtime.settings
    last_use = service.key_use.last_used()
    return {
        "version": __version__,
        "python": platform.python_version(),
        "started_at": iso(started_at),
        "uptime_seconds": round(max(0.0, now - started_at), 1),
        "config": {
            "source": holder.path,
            "loaded_at": iso(runtime.loaded_at),
            "last_reload": {"ok": holder.last_error is None, "error": holder.last_error},
        },
        "namespaces": [
            {
                "name": namespace.name,
                "hosts": list(namespace.hosts),
                "scope": namespace.scope,
                "dry_run": namespace.dry_run,
                "rules": _rules(namespace.name, "", namespace.rules, last_use),
                "entities": [
                    {
                        "kind": entity.kind.value,
                        "name": entity.name,
                        "requires_client_authorization": entity.requires_client_authorization,
                        "rules": _rules(namespace.name, entity.name, entity.rules, last_use),
                    }
                    for entity in namespace.entities
                ],
            }
            for namespace in settings.namespaces
        ],
        "role_assignments": len(settings.role_assignments),
        "role_definitions": len(settings.role_definitions),
        "issuers": _issuers(settings.identity.issuers, jwt),
        "recent_denies": [
            {
                "time": iso(deny.at),
                "status": deny.status,
                "reason": deny.reason,
                "method": deny.method,
                "host": deny.host,
                "path": deny.path,
                "gateway": deny.gateway,
                "namespace": deny.namespace,
                "decision_id": deny.decision_id,
                "dry_run": deny.dry_run,
            }
            for deny in service.recent_denies.snapshot()
        ],
    }


def _rules(namespace: str, entity: str, rules: tuple[AuthorizationRule, ...], last_use: Any) -> list[dict[str, Any]]:
    def used(rule: AuthorizationRule, slot: str) -> str | None:
        key: RuleSlot = (namespace, entity, rule.key_name, slot)
        return iso(last_use.get(key))

    return [
        {
            "key_name": rule.key_name,
            "rights": sorted(right.value for right in rule.rights),
            "has_secondary_key": bool(rule.secondary_key),
            "primary_last_used": used(rule, "primary"),
            "secondary_last_used": used(rule, "secondary"),
        }
        for rule in rules
    ]


def _issuers(issuers: tuple[Issuer, ...], jwt: EntraAuthorizer) -> list[dict[str, Any]]:
    states = {state.issuer: state for state in jwt.keys.status()}
    out = []
    for issuer in issuers:
        state = states.get(issuer.issuer)
        keyset = jwt.keys.current_keys(issuer)
        out.append(
            {
                "issuer": issuer.issuer,
                "tenants": list(issuer.tenants),
                "source": state.source if state else "none",
                "key_ids": sorted(keyset.keys) if keyset is not None else [],
                "loaded": bool(state and state.loaded),
                "stale": bool(state and state.stale),
                "last_refresh_ok": bool(state and state.loaded and not state.last_error),
                "last_error": state.last_error if state else "",
                "fetches": state.fetches if state else 0,
                "failures": state.failures if state else 0,
            }
        )
    return out
