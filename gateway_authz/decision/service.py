"""The decision core every gateway adapter shares: resource → credential → verification → policy → decision.

:meth:`DecisionService.decide` never raises. Every failure, expected or not, becomes a deny; the single place
that produces an allow is :meth:`Decision.allow`, reached only after verification and policy both passed.
Each call writes exactly one audit line and updates the metrics. :meth:`DecisionService.verdict` also gives the
answer its own decision id (fresh per answer, a cached decision's too), which the audit line carries; a deny is
kept in the recent-deny ring and a verified SAS key's last use is noted, for the status page.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ..core.credentials import FoundCredential, find_credential, parse_query
from ..core.decision_ids import DecisionIds
from ..core.errors import AuthzError, CannotVerify, InvalidCredential, NotPermitted
from ..core.memo import BoundedMemo, IdentityMemo
from ..core.metrics import Metrics
from ..core.model import AuthzRequest, Decision, Right, Verdict
from ..core.resources import ResolvedResource, split_target
from ..entra.rbac import RbacPolicy
from ..sas.token import parse_sas
from .audit import AuditLog
from .key_use import KeyUse
from .recent import RecentDenies
from .runtime import Runtime

__all__ = ["DecisionService", "JwtAuthorizer", "RuntimeSource", "dry_run_applies"]

Clock = Callable[[], float]

_COUNTED_DECISIONS = 1024  # decisions whose counter is found by identity; cleared whole when full
_SAS_ALLOWS = 1024  # distinct SAS allows kept to answer again (see _verify_sas); cleared whole when full


class RuntimeSource(Protocol):
    """Whatever holds the configuration now serving (a :class:`~gateway_authz.config.reload.ConfigHolder`)."""

    @property
    def runtime(self) -> Runtime: ...


class JwtAuthorizer(Protocol):
    """Verifies a bearer JWT and evaluates role assignments; raises from the :mod:`errors` tree.

    Returns the decision and the time it stops holding: the token's ``exp``, past which no cached copy is used.
    """

    async def authorize(
        self, token: str, rbac: RbacPolicy, resolved: ResolvedResource, rights: tuple[Right, ...], now: float
    ) -> tuple[Decision, float]: ...


class _Context:
    """What is known about a request so far, so that a deny still says which namespace and right it was.

    The class attributes are the defaults: a request answered from the request memo sets none of them, and an
    instance with no ``__init__`` and no slots costs next to nothing to make.
    """

    auth: Any = ""
    principal = ""
    right: Right | None = None
    namespace = ""
    entity = ""
    strip_headers: tuple[str, ...] = ()  # the credential carriers, removed upstream on a dry-run pass too
    strip_query: tuple[str, ...] = ()


class DecisionService:
    """Decides requests against the configuration ``source`` currently serves."""

    def __init__(
        self,
        source: RuntimeSource,
        *,
        audit: AuditLog,
        metrics: Metrics,
        clock: Clock = time.time,
        jwt: JwtAuthorizer | None = None,
        ops_log: Any = None,
        ids: Callable[[], str] | None = None,
    ) -> None:
        self._source = source
        self._ids = ids or DecisionIds()
        self.recent_denies = RecentDenies(clock=clock)
        self.key_use = KeyUse()
        self._audit = audit
        self._metrics = metrics
        self._decisions = metrics.decisions.labels
        self._latency = metrics.latency.labels
        self._key_slots = metrics.sas_key_slot.labels
        self._cache_hit = metrics.cache.labels("hit")
        self._cache_miss = metrics.cache.labels("miss")
        self._counters: IdentityMemo[Any] = IdentityMemo(_COUNTED_DECISIONS)  # by (gateway, id(decision))
        # a SAS allow's content -> (the allow, its key-slot counter, the rule slot its last use is noted under)
        self._sas_allows: BoundedMemo[tuple[Any, ...], tuple[Decision, Any, Any]] = BoundedMemo(_SAS_ALLOWS)
        self._clock = clock
        self._jwt = jwt
        self._ops_log = ops_log

    async def decide(self, request: AuthzRequest) -> Decision:
        """The decision alone of :meth:`verdict` (its body repeated: one coroutine fewer per call)."""
        started = time.perf_counter()
        context = _Context()
        runtime, outcome = self._first_pass(request, context)
        if isinstance(outcome, _PendingJwt):
            outcome = await self._verify_jwt(outcome, context)
        return self._finish(request, runtime, context, outcome, started)[0]

    async def verdict(self, request: AuthzRequest) -> Verdict:
        """The decision and this answer's decision id, with its audit line written and its metrics counted."""
        started = time.perf_counter()
        context = _Context()
        runtime, outcome = self._first_pass(request, context)
        if isinstance(outcome, _PendingJwt):
            outcome = await self._verify_jwt(outcome, context)
        return self._finish(request, runtime, context, outcome, started)

    def decide_now(self, request: AuthzRequest) -> Decision | None:
        """The decision alone of :meth:`verdict_now`."""
        verdict = self.verdict_now(request)
        return None if verdict is None else verdict[0]

    def verdict_now(self, request: AuthzRequest) -> Verdict | None:
        """The verdict if it needs no waiting, as :meth:`verdict` makes it; ``None`` (and nothing logged or counted)
        for a bearer token that is not cached yet, whose verification may have to fetch its issuer's keys.

        For callers that cannot wait (see :mod:`gateway_authz.http.fastpath`): a ``None`` goes to :meth:`verdict`.
        """
        started = time.perf_counter()
        context = _Context()
        runtime, outcome = self._first_pass(request, context)
        if isinstance(outcome, _PendingJwt):
            return None
        return self._finish(request, runtime, context, outcome, started)

    def _first_pass(self, request: AuthzRequest, context: _Context) -> tuple[Runtime | None, Decision | _PendingJwt]:
        """Everything but the verification of an uncached JWT: the memo, the cache, SAS verification, policy."""
        runtime: Runtime | None = None
        try:
            runtime = self._source.runtime  # inside the try: a failing source is a deny like any other fault
            request_key = runtime.cache.request_key(request) if request.method else None
            remembered = runtime.cache.recall(request_key) if request_key is not None else None
            # Only an allow: a deny takes the full path, which also finds the carriers a dry-run answer strips.
            if remembered is not None and remembered.allowed:
                self._cache_hit.inc()
                return runtime, remembered
            return runtime, self._decide(request, runtime, context, request_key)
        except Exception as exc:
            return runtime, self._failed(exc, context, request.gateway)

    def _failed(self, exc: Exception, context: _Context, gateway: str) -> Decision:
        if isinstance(exc, AuthzError):
            return _deny(exc, context)
        # a bug must still end in a deny, never an allow
        if self._ops_log is not None:
            self._ops_log.error("authz.internal_error", error=type(exc).__name__, gateway=gateway)
        return _deny(CannotVerify("internal_error", type(exc).__name__), context)

    def _finish(
        self, request: AuthzRequest, runtime: Runtime | None, context: _Context, decision: Decision, started: float
    ) -> Verdict:
        """Dry run, the id, the audit line and the metrics: what every decision goes through once, however made."""
        decision_id = self._ids()
        if not decision.allowed:
            dry_run = runtime is not None and dry_run_applies(request, runtime, decision)
            if dry_run:  # logged and counted as the deny it is (with the status it would have had); answered below
                decision = dataclasses.replace(decision, dry_run=True)
            self.recent_denies.add(request, decision, decision_id)
            elapsed = time.perf_counter() - started
            self._audit.decision(request, decision, elapsed * 1000, decision_id)
            self._count(request.gateway, decision, elapsed)
            return (_dry_run_pass(decision, context) if dry_run else decision), decision_id
        elapsed = time.perf_counter() - started
        self._audit.decision(request, decision, elapsed * 1000, decision_id)
        self._count(request.gateway, decision, elapsed)
        return decision, decision_id

    def _count(self, gateway: str, decision: Decision, elapsed: float) -> None:
        key = (gateway, id(decision))
        counter = self._counters.get(decision, key)
        if counter is None:  # the very same (cached) decision finds its counter in one step
            counter = self._counters.put(
                decision,
                key,
                self._decisions(
                    "allow" if decision.allowed and not decision.dry_run else "deny",
                    decision.reason,
                    gateway,
                    decision.auth or "none",
                    "true" if decision.dry_run else "false",
                ),
            )
        counter.inc()
        self._latency(gateway).observe(elapsed)

    def _decide(
        self, request: AuthzRequest, runtime: Runtime, context: _Context, request_key: bytes | None
    ) -> Decision | _PendingJwt:
        if not request.method:  # absent or repeated X-Original-Method: a guess could skip a management route
            raise NotPermitted("malformed_request", "the gateway did not say which method the request used")
        path, query_string = split_target(request.target)
        resolved = runtime.policy.resolve(request.host, path)
        context.namespace = resolved.namespace.name
        context.entity = resolved.entity.name if resolved.entity else ""
        query = parse_query(query_string)
        rights = runtime.policy.required_rights(request, resolved, query)
        context.right = rights[0]
        found = find_credential(request, query)
        if found is None:
            entity = runtime.policy.authorize_anonymous(resolved, rights)
            context.auth = "anonymous"
            return Decision.allow(
                auth="anonymous",
                principal="",
                right=rights[0],
                namespace=resolved.namespace.name,
                entity=entity.name,
            )
        context.auth = found.kind
        context.strip_headers, context.strip_query = found.strip_headers, found.strip_query
        # r._value_, not r.value: the latter is a Python-level property on 3.11, paid per right on every miss
        key = runtime.cache.key(
            found.value, found.carrier, ",".join(found.strip_headers), str(resolved.path), *[r._value_ for r in rights]
        )
        cached = runtime.cache.get(key)
        if cached is not None:
            self._cache_hit.inc()
        elif found.kind == "jwt":  # its issuer's keys may have to be fetched: verified in _verify_jwt, awaited
            return _PendingJwt(request.gateway, runtime, found, resolved, rights, key, request_key)
        else:
            self._cache_miss.inc()
            cached, expires_at = self._verify_sas(found, runtime, resolved, rights, context)
            runtime.cache.put(key, cached, expires_at)
        if request_key is not None:
            runtime.cache.remember(request_key, key)
        return cached

    async def _verify_jwt(self, pending: _PendingJwt, context: _Context) -> Decision:
        try:
            runtime = pending.runtime
            self._cache_miss.inc()
            if self._jwt is None:
                raise InvalidCredential("unknown_issuer", "no JWT issuer is configured")
            found = pending.found
            decision, expires_at = await self._jwt.authorize(
                found.value, runtime.rbac, pending.resolved, pending.rights, self._clock()
            )
            decision = dataclasses.replace(decision, strip_headers=found.strip_headers, strip_query=found.strip_query)
            runtime.cache.put(pending.key, decision, expires_at)
            if pending.request_key is not None:
                runtime.cache.remember(pending.request_key, pending.key)
            return decision
        except Exception as exc:
            return self._failed(exc, context, pending.gateway)

    def _verify_sas(
        self,
        found: FoundCredential,
        runtime: Runtime,
        resolved: ResolvedResource,
        rights: tuple[Right, ...],
        context: _Context,
    ) -> tuple[Decision, float]:
        """The decision on a SAS token and the time it stops holding (its ``se``); raises what is not cached."""
        token = parse_sas(found.value)
        context.principal = token.key_name
        try:
            verified = runtime.policy.authorize_sas(token, resolved, rights, now=self._clock())
        except AuthzError as error:
            if error.status == 403:  # a verified token's 403 is as stable as an allow: cache it, to its expiry
                return _deny(error, context), float(token.expiry)
            raise
        # Every fresh token of one rule for one entity and right is allowed alike, so one decision object answers
        # them all: its audit line head, counter and answer bytes are then found by identity, not made again.
        namespace, entity = resolved.namespace.name, resolved.entity.name if resolved.entity else ""
        slot = verified.key_slot
        content = (token.key_name, slot, rights[0], namespace, entity, found.strip_headers, found.strip_query)
        known = self._sas_allows.get(content)
        if known is None:
            allow = Decision.allow(
                auth="sas",
                principal=token.key_name,
                right=rights[0],
                namespace=namespace,
                entity=entity,
                strip_headers=found.strip_headers,
                strip_query=found.strip_query,
                audit={"key_name": token.key_name, "key_slot": slot},
            )
            owner = entity if any(rule is verified.rule for rule in _entity_rules(resolved)) else ""
            known = self._sas_allows.put(
                content,
                (allow, self._key_slots(namespace, token.key_name, slot), (namespace, owner, token.key_name, slot)),
            )
        decision, key_slot_uses, rule_slot = known
        key_slot_uses.inc()
        self.key_use.used(rule_slot, self._clock())
        return decision, float(token.expiry)


class _PendingJwt(NamedTuple):
    """A bearer token still to verify, and what the first pass found out about its request."""

    gateway: str
    runtime: Runtime
    found: FoundCredential
    resolved: ResolvedResource
    rights: tuple[Right, ...]
    key: bytes
    request_key: bytes | None


def _entity_rules(resolved: ResolvedResource) -> tuple[Any, ...]:
    return resolved.entity.rules if resolved.entity is not None else ()


def _deny(error: AuthzError, context: _Context) -> Decision:
    audit = {"key_name": context.principal} if context.auth == "sas" and context.principal else None
    return Decision.deny(
        error,
        auth=context.auth,
        principal=context.principal,
        right=context.right,
        namespace=context.namespace,
        entity=context.entity,
        audit=audit,
    )


def _dry_run_pass(decision: Decision, context: _Context) -> Decision:
    """A dry-run deny as it is answered: 200, but vouching for nobody.

    The upstream sees ``x-authz-auth: anonymous`` with an empty principal, never the key name or ``oid`` of a
    credential that just failed verification (an application trusting ``x-authz-principal`` must not be handed
    ``RootManageSharedAccessKey`` for a forged token), and the credential carriers are removed as on an allow.
    """
    return dataclasses.replace(
        decision,
        allowed=True,
        status=200,
        auth="anonymous",
        principal="",
        strip_headers=context.strip_headers,
        strip_query=context.strip_query,
    )


def dry_run_applies(request: AuthzRequest, runtime: Runtime, decision: Decision) -> bool:
    """Whether this deny is to be answered as an allow: globally, for its namespace, or for its route."""
    if runtime.settings.dry_run or request.context.get("dry_run", "").lower() == "true":
        return True
    namespace = next((ns for ns in runtime.settings.namespaces if ns.name == decision.namespace), None)
    return namespace is not None and namespace.dry_run
