"""Which rules, anonymous entities and role assignments decided at least one case of ``gateway-authz test``.

A rule decided a case when a token of it was verified for the case (an allow, or a 403 for lack of rights or
scope); an anonymous entity when it let an anonymous request in; a role assignment when it granted a bearer
token's request (by its role and scope, for the token's ``oid`` or, via a group, for a group assignment).
"""

from __future__ import annotations

from ..core.model import Decision
from ..core.settings import Settings

__all__ = ["Coverage"]


class Coverage:
    def __init__(self, settings: Settings) -> None:
        self.rules: dict[tuple[str, str, str], bool] = {}
        self.anonymous: dict[tuple[str, str], bool] = {}
        for namespace in settings.namespaces:
            for rule in namespace.rules:
                self.rules[(namespace.name, "", rule.key_name)] = False
            for entity in namespace.entities:
                for rule in entity.rules:
                    self.rules[(namespace.name, entity.name, rule.key_name)] = False
                if not entity.requires_client_authorization:
                    self.anonymous[(namespace.name, entity.name)] = False
        names = {role.id.lower(): role.role_name for role in settings.role_definitions}
        self.assignments: dict[tuple[str, str, str, str], bool] = {}
        for assignment in settings.role_assignments:
            role = names.get(assignment.role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower(), "?")
            key = (assignment.principal_id.lower(), role, assignment.scope, assignment.principal_type)
            self.assignments[key] = False
        self._entity_rules = {
            (namespace.name, entity.name): {rule.key_name for rule in entity.rules}
            for namespace in settings.namespaces
            for entity in namespace.entities
        }

    def saw(self, decision: Decision) -> None:
        audit = decision.audit
        if decision.auth == "sas" and decision.status in (200, 403) and "key_name" in audit:
            key_name = audit["key_name"]
            owner = (
                decision.entity if key_name in self._entity_rules.get((decision.namespace, decision.entity), ()) else ""
            )
            if (decision.namespace, owner, key_name) in self.rules:
                self.rules[(decision.namespace, owner, key_name)] = True
        elif decision.auth == "anonymous" and decision.allowed and not decision.dry_run:
            self.anonymous[(decision.namespace, decision.entity)] = True
        elif decision.auth == "jwt" and decision.allowed and "role" in audit:
            for principal, role, scope, kind in self.assignments:
                by_oid = principal == decision.principal.lower()
                by_group = audit.get("via") == "group" and kind == "Group"
                if role == audit["role"] and scope.lower() == audit.get("scope", "").lower() and (by_oid or by_group):
                    self.assignments[(principal, role, scope, kind)] = True

    def report(self) -> list[str]:
        lines = []
        for (namespace, entity, key_name), seen in self.rules.items():
            if not seen:
                where = f"{namespace}/{entity}" if entity else namespace
                lines.append(f"not covered: rule {key_name} on {where}")
        for (namespace, entity), seen in self.anonymous.items():
            if not seen:
                lines.append(f"not covered: anonymous entity {namespace}/{entity}")
        for (principal, role, scope, _kind), seen in self.assignments.items():
            if not seen:
                lines.append(f"not covered: role assignment {role} for {principal} at {scope}")
        total = len(self.rules) + len(self.anonymous) + len(self.assignments)
        covered = sum(self.rules.values()) + sum(self.anonymous.values()) + sum(self.assignments.values())
        share = f"{100 * covered / total:.0f}%" if total else "100%"
        lines.append(f"coverage: {covered} of {total} rules, anonymous entities and role assignments ({share})")
        return lines
