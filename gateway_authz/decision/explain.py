"""Why a request is allowed or denied: the decision the decision endpoints would give, with the steps that made it.

:func:`explain` walks the pipeline of :class:`~gateway_authz.decision.service.DecisionService` with the same
functions (resource resolution, required rights, credential carriers, SAS verification, JWT checks, role
assignments, dry run) and records a step for each: which carrier was read, what the token says (never its
signature), each candidate rule or role assignment and why it matched or failed. The decision itself comes
from the same calls the service makes; the steps beside it only describe.

It changes nothing: no audit line, no metric, no decision cache entry, no key-slot use, no recent deny, and no
key fetch (a bearer token is checked against the keys its issuer has now; the service would refetch an unknown
``kid``, which a step says). Used by ``POST /explain`` on the admin listener and by ``gateway-authz check``.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..core.credentials import FoundCredential, find_credential, parse_query
from ..core.errors import AuthzError, CannotVerify, InvalidCredential, NotPermitted
from ..core.model import AuthzRequest, Decision, Right
from ..core.resources import ResolvedResource, split_target
from ..core.settings import AuthorizationRule, Issuer
from ..entra.authorizer import arm_scope, rbac_decision
from ..entra.jwk import KeySet
from ..entra.jwt import bearer_token, complete_jwt, parse_jwt, precheck_jwt
from ..entra.rbac import permission_for
from ..sas.token import RuleKeys, SasToken, parse_sas
from .audit import redact_target
from .runtime import Runtime
from .service import dry_run_applies

__all__ = ["Explanation", "JwtKeys", "Step", "explain"]

Result = Literal["ok", "fail", "skip"]


class JwtKeys(Protocol):
    """The issuers' keys as they are now (:class:`~gateway_authz.entra.jwks.JwksCache`); nothing is fetched."""

    @property
    def registry(self) -> Any: ...

    @property
    def leeway_seconds(self) -> int: ...

    def current_keys(self, issuer: Issuer) -> KeySet | None: ...


@dataclass(frozen=True, slots=True)
class Step:
    step: str
    result: Result
    detail: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """The decision as the decision endpoints would answer it, and the steps that led to it."""

    decision: Decision
    trace: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        d = self.decision
        body: dict[str, Any] = {
            "decision": "allow" if d.allowed else "deny",
            "status": d.status,
            "reason": d.reason,
            "auth": d.auth,
            "principal": d.principal,
            "right": d.right.value if d.right else "",
            "namespace": d.namespace,
            "entity": d.entity,
            "dry_run": d.dry_run,
        }
        body.update({k: v for k, v in d.audit.items() if k not in body})
        if d.detail:
            body["detail"] = d.detail
        body["trace"] = [{"step": s.step, "result": s.result, "detail": s.detail} for s in self.trace]
        return body


def _when(seconds: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:.0f}"


class _Walk:
    """One explanation in progress: the steps so far and what is known for a deny's context (as the service)."""

    def __init__(self, runtime: Runtime, request: AuthzRequest, now: float, keys: JwtKeys | None) -> None:
        self.runtime, self.request, self.now, self.keys = runtime, request, now, keys
        self.steps: list[Step] = []
        self.auth: Any = ""
        self.principal = ""
        self.right: Right | None = None
        self.namespace = ""
        self.entity = ""

    def add(self, step: str, result: Result, detail: str) -> None:
        self.steps.append(Step(step, result, detail))

    def deny(self, error: AuthzError) -> Decision:
        audit = {"key_name": self.principal} if self.auth == "sas" and self.principal else None
        return Decision.deny(
            error,
            auth=self.auth,
            principal=self.principal,
            right=self.right,
            namespace=self.namespace,
            entity=self.entity,
            audit=audit,
        )

    def decide(self) -> Decision:
        request, policy = self.request, self.runtime.policy
        self.add("request", "ok", f"{request.method or '(no method)'} {request.host} {redact_target(request.target)}")
        if not request.method:
            raise NotPermitted("malformed_request", "the gateway did not say which method the request used")
        path, query_string = split_target(request.target)
        try:
            resolved = policy.resolve(request.host, path)
        except AuthzError as error:
            self.add("resource", "fail", f"{error.reason}: {error.detail or 'no namespace serves this host'}")
            raise
        self.namespace = resolved.namespace.name
        self.entity = resolved.entity.name if resolved.entity else ""
        entity = f"entity {resolved.entity.kind.value}/{resolved.entity.name}" if resolved.entity else "no entity"
        self.add("resource", "ok", f"namespace {self.namespace}, {entity}, path /{'/'.join(resolved.path.segments)}")
        query = parse_query(query_string)
        rights = policy.required_rights(request, resolved, query)
        self.right = rights[0]
        self.add("rights", "ok", "needs " + " and ".join(r.value for r in rights))
        found = find_credential(request, query)
        if found is None:
            self.add("carrier", "skip", "no sb-hc-token, ServiceBusAuthorization or Authorization credential")
            return self._anonymous(resolved, rights)
        self.auth = found.kind
        self.add("carrier", "ok", f"{found.kind.upper()} credential read from {_carrier_name(found)}")
        if found.kind == "sas":
            return self._sas(found, resolved, rights)
        return self._jwt(found, resolved, rights)

    def _anonymous(self, resolved: ResolvedResource, rights: tuple[Right, ...]) -> Decision:
        entity = resolved.entity
        try:
            allowed = self.runtime.policy.authorize_anonymous(resolved, rights)
        except AuthzError:
            why = (
                "the request names no entity"
                if entity is None
                else "the entity requires client authorization"
                if entity.requires_client_authorization
                else "anonymous senders may only Send"
            )
            self.add("anonymous", "fail", why)
            raise
        self.auth = "anonymous"
        self.add("anonymous", "ok", f"entity {allowed.name} lets anonymous senders Send")
        return Decision.allow(
            auth="anonymous", principal="", right=rights[0], namespace=self.namespace, entity=allowed.name
        )

    def _sas(self, found: FoundCredential, resolved: ResolvedResource, rights: tuple[Right, ...]) -> Decision:
        try:
            token = parse_sas(found.value)
        except AuthzError as error:
            self.add("token", "fail", f"{error.reason}: {error.detail}")
            raise
        self.principal = token.key_name
        sr = f"{token.resource.host}/{'/'.join(token.resource.segments)}"
        self.add("token", "ok", f"SAS token: skn={token.key_name}, sr={sr}, se={token.expiry} ({_when(token.expiry)})")
        self._sas_candidates(token, resolved, rights)
        try:
            verified = self.runtime.policy.authorize_sas(token, resolved, rights, now=self.now)
        except AuthzError as error:
            self.add("decision", "fail", f"{error.reason}: {error.detail}")
            raise
        self.add("decision", "ok", f"rule {token.key_name}, {verified.key_slot} key, grants the right")
        return Decision.allow(
            auth="sas",
            principal=token.key_name,
            right=rights[0],
            namespace=self.namespace,
            entity=self.entity,
            strip_headers=found.strip_headers,
            strip_query=found.strip_query,
            audit={"key_name": token.key_name, "key_slot": verified.key_slot},
        )

    def _sas_candidates(self, token: SasToken, resolved: ResolvedResource, rights: tuple[Right, ...]) -> None:
        """A step per rule named by the token's ``skn`` that could have signed it: key slot, expiry, scope, rights."""
        namespace = resolved.namespace
        sr = token.resource
        sr_in_namespace = sr.host in namespace.hosts
        if not sr_in_namespace:
            self.add("scope", "fail", f"the token's sr host {sr.host} is not a host of namespace {namespace.name}")
        sr_entity = self.runtime.policy.index.entity_for(namespace, sr.segments) if sr_in_namespace else None
        candidates: list[tuple[str, AuthorizationRule]] = []
        if sr_entity is not None:
            candidates += [(f"entity {sr_entity.name}", r) for r in sr_entity.rules if r.key_name == token.key_name]
        candidates += [(f"namespace {namespace.name}", r) for r in namespace.rules if r.key_name == token.key_name]
        if not candidates:
            self.add("rule", "fail", f"no rule named {token.key_name} on the token's entity or on the namespace")
            return
        message = token.string_to_sign
        skew = self.runtime.settings.sas.clock_skew_seconds
        for owner, rule in candidates:
            slot = RuleKeys(rule).match(message, token.signature)
            label = f"rule {rule.key_name} on {owner}"
            if slot is None:
                self.add(label, "fail", "the signature matches neither the primary nor the secondary key")
                continue
            self.add(label, "ok", f"signed with the {slot} key")
            if self.now >= token.expiry + skew:
                self.add("expiry", "fail", f"expired at {_when(token.expiry)} (clock skew allowed: {skew}s)")
            else:
                self.add("expiry", "ok", f"valid until {_when(token.expiry)} (+{skew}s clock skew)")
            covered = resolved.path.segments[: len(sr.segments)] == sr.segments
            self.add(
                "scope",
                "ok" if covered and sr_in_namespace else "fail",
                "the token's sr covers the requested path" if covered else "the token's sr does not cover the path",
            )
            missing = [r.value for r in rights if not rule.grants(r)]
            granted = ", ".join(sorted(r.value for r in rule.rights))
            self.add(
                "rights",
                "fail" if missing else "ok",
                f"rule grants {granted}" + (f"; missing {', '.join(missing)}" if missing else ""),
            )
            return

    def _jwt(self, found: FoundCredential, resolved: ResolvedResource, rights: tuple[Right, ...]) -> Decision:
        self._jwt_facts(found.value)
        if self.keys is None:
            self.add("issuer", "fail", "no JWT issuer is configured")
            raise InvalidCredential("unknown_issuer", "no JWT issuer is configured")
        keys = self.keys
        try:
            pending = precheck_jwt(bearer_token(found.value), keys.registry, now=self.now, leeway=keys.leeway_seconds)
        except AuthzError as error:
            self.add("claims", "fail", f"{error.reason}: {error.detail}")
            raise
        self.add(
            "claims",
            "ok",
            f"issuer {pending.issuer.iss} trusted, tenant {pending.issuer.tenant}, audience {pending.audience}, "
            f"valid until {_when(pending.expires_at)}",
        )
        keyset = keys.current_keys(pending.issuer.config)
        try:
            verified = complete_jwt(pending, keyset)
        except AuthzError as error:
            hint = (
                "; the service would refetch the issuer's keys (cooldown permitting) before deciding"
                if error.reason in ("unknown_kid", "keys_unavailable")
                else ""
            )
            self.add("signature", "fail", f"{error.reason}: {error.detail}{hint}")
            raise
        self.add("signature", "ok", f"verified with key {verified.key_id} ({verified.algorithm})")
        self.principal = verified.oid
        if verified.groups_overage:
            self.add("groups", "fail", "groups overage: the token names no groups; group assignments not evaluated")
        else:
            self.add("groups", "ok", f"{len(verified.groups)} group(s) in the token")
        scope = arm_scope(resolved)
        kind = resolved.entity.kind if resolved.entity is not None else None
        any_line = False
        groups = () if verified.groups_overage else verified.groups
        for right in rights:
            permission = permission_for(right, kind)
            for line in self.runtime.rbac.explain(verified.oid, groups, scope, permission):
                any_line = True
                detail = f"{permission}: {line}" if len(rights) > 1 else line
                self.add("role assignment", "ok" if line.endswith(": grants") else "fail", detail)
        if not any_line:
            to_groups = " or to any group in the token" if groups else ""
            self.add("role assignment", "fail", f"no role assignment is made to {verified.oid}{to_groups}")
        decision = rbac_decision(verified, self.runtime.rbac, resolved, rights)
        return dataclasses.replace(decision, strip_headers=found.strip_headers, strip_query=found.strip_query)

    def _jwt_facts(self, value: str) -> None:
        """What the token says, unverified and without its signature: header and the claims that decide."""
        try:
            jwt = parse_jwt(bearer_token(value))
        except AuthzError as error:
            self.add("token", "fail", f"{error.reason}: {error.detail}")
            return
        claims: Mapping[str, Any] = jwt.claims
        shown = []
        for name in ("iss", "tid", "aud", "oid", "exp", "nbf", "iat"):
            if name in claims:
                text = str(claims[name])
                shown.append(f"{name}={text[:200]}")
        groups = claims.get("groups")
        if isinstance(groups, list):
            shown.append(f"groups={len(groups)}")
        self.add("token", "ok", f"JWT alg={jwt.jws.alg} kid={jwt.kid[:64]}: " + ", ".join(shown))


def _carrier_name(found: FoundCredential) -> str:
    return {
        "query": "the sb-hc-token query parameter",
        "servicebusauthorization": "the ServiceBusAuthorization header",
    }.get(found.carrier, "the Authorization header")


def explain(runtime: Runtime, request: AuthzRequest, *, now: float, keys: JwtKeys | None) -> Explanation:
    """The decision for ``request`` as the decision endpoints would answer it now, and its trace. Never raises."""
    walk = _Walk(runtime, request, now, keys)
    try:
        decision = walk.decide()
    except AuthzError as error:
        decision = walk.deny(error)
    except Exception as exc:  # a bug must still end in a deny, as in the service
        walk.add("error", "fail", type(exc).__name__)
        decision = walk.deny(CannotVerify("internal_error", type(exc).__name__))
    if not decision.allowed and dry_run_applies(request, runtime, decision):
        walk.add("dry run", "ok", f"would deny {decision.status} {decision.reason}; answered 200 as anonymous")
        decision = dataclasses.replace(decision, dry_run=True, allowed=True, status=200, auth="anonymous", principal="")
    walk.add("result", "ok" if decision.allowed else "fail", f"{decision.status} {decision.reason}")
    return Explanation(decision, tuple(walk.steps))
