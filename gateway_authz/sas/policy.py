"""Policy: which right a request needs, and whether a verified SAS token (or no token) grants it.

The SAS rules, in the order they are checked::

    signature   the token's skn names a rule on the sr's entity or on the namespace; one of its keys signed it
    expiry      se (+ clock skew) has not passed
    scope       rule scope ⊑ sr ⊑ request, by whole segments; an entity rule only ever allows its own entity
    rights      the rule grants every right the request needs (Manage implies Listen and Send)

Role assignments for JWTs are in :mod:`gateway_authz.entra.rbac`; this module only decides SAS and anonymous access.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..core.credentials import QueryFacts
from ..core.errors import BadRequest, CannotVerify, InvalidCredential, NotPermitted
from ..core.memo import BoundedMemo
from ..core.model import AuthzRequest, Right
from ..core.resources import ResolvedResource, ResourceIndex, ResourcePath, canonical_segments
from ..core.settings import Entity, Namespace, SasSettings, Settings
from .token import RuleKeys, SasToken, VerifiedSas, verify_sas

__all__ = ["CompiledPolicy"]

_ROUTE_RIGHTS = {r.value.lower(): r for r in Right}
_SEND_ONLY = (Right.SEND,)  # what a request needs when nothing says otherwise: most requests
# (namespace, sr, key name) -> the rules that may have signed such a token: every fresh token for a resource asks the
# same question. Only non-secret parts of the token are in the key. Bounded in entries and in the length of a key,
# cleared whole when full; it belongs to one compiled configuration and goes with it.
_PLAN_ENTRIES = 1024
_PLAN_MAX_CHARS = 512


@dataclass(frozen=True, slots=True)
class _ScopedRules:
    namespace: dict[str, RuleKeys]
    entities: dict[tuple[str, str], RuleKeys]  # (entity name lower-case, key name) -> keys
    by_name: dict[str, tuple[RuleKeys, ...]]  # key name -> that name's rules on every entity


class _SasPlan(NamedTuple):
    sr_in_namespace: bool
    sr_entity: Entity | None  # the entity the sr names in this namespace, if any
    entity_keys: RuleKeys | None  # that entity's rule with the token's key name
    namespace_keys: RuleKeys | None  # the namespace's rule with the token's key name
    candidates: tuple[RuleKeys, ...]  # entity rule first, then namespace rule
    others: tuple[RuleKeys, ...]  # the key name's rules on other entities: a 403 rather than a 401 if one signed


class CompiledPolicy:
    """A configuration compiled once for per-request use: lookups indexed, HMAC keys prepared."""

    __slots__ = ("_management", "_rules", "_sas_plans", "index", "settings")
    index: ResourceIndex

    def __init__(self, settings: Settings, *, previous: CompiledPolicy | None = None) -> None:
        """Compile ``settings``; a namespace that is the very object ``previous`` compiled is reused from it, so a
        reload that changed one file of a large estate prepares the keys of that file's namespaces only."""
        self.settings = settings
        added: list[Namespace] = list(settings.namespaces)
        removed: list[Namespace] = []
        self._rules: dict[str, _ScopedRules] = {}
        self._management: dict[str, tuple[tuple[tuple[str, ...], frozenset[str]], ...]] = {}
        if previous is not None:
            now = {ns.name: ns for ns in settings.namespaces}
            before = {ns.name: ns for ns in previous.settings.namespaces}
            added = [ns for ns in settings.namespaces if before.get(ns.name) is not ns]
            removed = [ns for ns in previous.settings.namespaces if now.get(ns.name) is not ns]
            self._rules, self._management = dict(previous._rules), dict(previous._management)
            for ns in removed:
                del self._rules[ns.name], self._management[ns.name]
        small = 4 * (len(added) + len(removed)) < len(settings.namespaces)
        index: ResourceIndex
        if previous is not None and small:
            index = previous.index.replaced(removed, added)
        else:
            index = ResourceIndex(settings.namespaces)
        self.index = index
        for ns in added:
            self._rules[ns.name] = _compile_rules(ns)
            self._management[ns.name] = tuple(
                (canonical_segments(route.path), route.methods) for route in ns.management_routes
            )
        self._sas_plans: BoundedMemo[tuple[str, str, tuple[str, ...], str], _SasPlan] = BoundedMemo(_PLAN_ENTRIES)

    def required_rights(
        self, request: AuthzRequest, resolved: ResolvedResource, query: QueryFacts
    ) -> tuple[Right, ...]:
        """Every right the request needs; a token must grant all of them.

        A route's ``right`` (gRPC ``context_extensions``) or a configured management route states what the route
        needs; ``sb-hc-action`` states what the client is about to do. When both speak, both must be granted, so
        a client cannot pick an action the route's right does not cover. With neither, a request needs Send.
        """
        rights: list[Right] = []
        route_right = request.context.get("right")
        if route_right is not None:
            right = _ROUTE_RIGHTS.get(route_right.lower())
            if right is None:
                raise NotPermitted("malformed_request", "context_extensions right is not Listen, Send or Manage")
            rights.append(right)
        routes = self._management[resolved.namespace.name]
        method = request.method.upper()
        route = _management_route(routes, resolved.path.segments, method)
        if route is not None:
            rights.append(Right.MANAGE)
        for reading in resolved.readings:  # "PUT /$admin;x" is "PUT /$admin" to a servlet-style upstream
            if _management_route(routes, reading, method) != route:
                raise BadRequest("ambiguous_path", "an upstream normalising the path would reach another route")
        if query.action_right is not None:
            rights.append(query.action_right)
        if not rights:
            return _SEND_ONLY
        if len(rights) == 1:  # nothing to de-duplicate (dict.fromkeys would hash the enum members in Python)
            return (rights[0],)
        return tuple(dict.fromkeys(rights))

    def resolve(self, host: str, path: str) -> ResolvedResource:
        return self.index.resolve(host, path)

    def authorize_sas(
        self, token: SasToken, resolved: ResolvedResource, rights: Iterable[Right], *, now: float
    ) -> VerifiedSas:
        """Verify ``token`` for ``resolved`` and check it grants ``rights``; raises on any failure."""
        namespace = resolved.namespace
        sr = token.resource
        plan_key = (namespace.name, sr.host, sr.segments, token.key_name)
        plan = self._sas_plans.get(plan_key)
        if plan is None:
            plan = self._sas_plan(namespace, sr, token.key_name)
            if len(sr.host) + sum(map(len, sr.segments)) + len(token.key_name) <= _PLAN_MAX_CHARS:
                self._sas_plans.put(plan_key, plan)
        sas = self.settings.sas
        try:
            verified = verify_sas(
                token,
                plan.candidates,
                now=now,
                clock_skew=sas.clock_skew_seconds,
                max_lifetime=sas.max_token_lifetime_seconds,
            )
        except InvalidCredential as error:
            if error.reason in ("unknown_key_name", "bad_signature"):
                _refuse_if_signed_elsewhere(token, plan.others, now=now, sas=sas)
            raise
        request_segments = resolved.path.segments
        if not plan.sr_in_namespace or request_segments[: len(sr.segments)] != sr.segments:
            raise NotPermitted("token_scope", "the token's sr does not cover the requested resource")
        entity_keys = plan.entity_keys
        signer: RuleKeys | None
        if entity_keys is not None and verified.rule is entity_keys.rule:
            if resolved.entity is not plan.sr_entity:
                raise NotPermitted("rule_scope", "an entity rule only grants access to its own entity")
            signer = entity_keys
        else:
            signer = plan.namespace_keys
        if signer is None or signer.rule is not verified.rule:  # verify_sas only returns a candidate's rule
            raise CannotVerify("internal_error", "verified rule is not a candidate")
        for right in rights:
            if right not in signer.granted:
                raise NotPermitted("insufficient_rights", "the rule does not grant the required right")
        return verified

    def _sas_plan(self, namespace: Namespace, sr: ResourcePath, key_name: str) -> _SasPlan:
        """Which rules may have signed a token for ``sr`` named ``key_name``, met in ``namespace``'s requests."""
        rules = self._rules[namespace.name]
        sr_in_namespace = sr.host in namespace.hosts
        sr_entity = self.index.entity_for(namespace, sr.segments) if sr_in_namespace else None
        entity_keys = rules.entities.get((sr_entity.name.lower(), key_name)) if sr_entity else None
        namespace_keys = rules.namespace.get(key_name)
        candidates = tuple(k for k in (entity_keys, namespace_keys) if k is not None)
        others = tuple(k for k in rules.by_name.get(key_name, ()) if k not in candidates)
        return _SasPlan(sr_in_namespace, sr_entity, entity_keys, namespace_keys, candidates, others)

    @staticmethod
    def authorize_anonymous(resolved: ResolvedResource, rights: tuple[Right, ...]) -> Entity:
        """Allow a request without a credential only to Send to an entity that lets anonymous senders in."""
        entity = resolved.entity
        if entity is not None and not entity.requires_client_authorization and rights == (Right.SEND,):
            return entity
        raise InvalidCredential(
            "missing_credential", "no credential in sb-hc-token, ServiceBusAuthorization or Authorization"
        )


def _management_route(
    routes: tuple[tuple[tuple[str, ...], frozenset[str]], ...], segments: tuple[str, ...], method: str
) -> int | None:
    """The index of the first management route ``method`` on ``segments`` falls under, if any."""
    for i, (prefix, methods) in enumerate(routes):
        if segments[: len(prefix)] == prefix and (not methods or method in methods):
            return i
    return None


def _refuse_if_signed_elsewhere(token: SasToken, others: Sequence[RuleKeys], *, now: float, sas: SasSettings) -> None:
    """A valid token signed by a rule on *another* entity is a credential without rights here: 403, not 401.

    Valid means verified in full (expiry and lifetime cap included): an expired token is a 401 wherever it was
    signed, so its own expiry reason is raised instead.
    """
    if not others:
        return
    try:
        verify_sas(
            token, others, now=now, clock_skew=sas.clock_skew_seconds, max_lifetime=sas.max_token_lifetime_seconds
        )
    except InvalidCredential as error:
        if error.reason == "bad_signature":
            return
        raise
    raise NotPermitted("rule_scope", "the signing rule belongs to another entity")


def _compile_rules(namespace: Namespace) -> _ScopedRules:
    entities = {
        (entity.name.lower(), rule.key_name): RuleKeys(rule) for entity in namespace.entities for rule in entity.rules
    }
    by_name: dict[str, list[RuleKeys]] = {}
    for (_entity, key_name), keys in entities.items():
        by_name.setdefault(key_name, []).append(keys)
    return _ScopedRules(
        namespace={rule.key_name: RuleKeys(rule) for rule in namespace.rules},
        entities=entities,
        by_name={name: tuple(keys) for name, keys in by_name.items()},
    )
