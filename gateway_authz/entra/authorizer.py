"""Bearer JWTs in the decision service: verify with the issuer's keys, then evaluate Azure role assignments.

:class:`EntraAuthorizer` is what :class:`~gateway_authz.decision.service.DecisionService` calls for a JWT
credential. The key cache (:mod:`.jwks`) outlives configuration reloads (unchanged issuers keep their keys); role
assignments come from the serving role-assignment index (:class:`~gateway_authz.entra.rbac.RbacPolicy`), built
with each configuration, so a removed assignment stops working at the next reload.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from ..core.errors import NotPermitted
from ..core.metrics import Metrics
from ..core.model import Decision, Right
from ..core.resources import ResolvedResource
from ..core.settings import Settings
from .jwks import HttpJwksFetcher, JwksCache, JwksFetchError
from .jwt import VerifiedJwt
from .rbac import RbacGrant, RbacPolicy, permission_for

__all__ = ["EntraAuthorizer", "arm_scope", "rbac_decision"]


class _SessionFetcher:
    """Fetches with the app's ``ClientSession`` once the app has started; before that there is nothing to use."""

    __slots__ = ("_fetcher",)

    def __init__(self) -> None:
        self._fetcher: HttpJwksFetcher | None = None

    def attach(self, session: aiohttp.ClientSession | None) -> None:
        self._fetcher = HttpJwksFetcher(session) if session is not None else None

    async def fetch(self, url: str) -> bytes:
        if self._fetcher is None:
            raise JwksFetchError("the service is not running: no HTTP session for key fetches")
        return await self._fetcher.fetch(url)


class EntraAuthorizer:
    """Verifies a JWT (signature, issuer, tenant, audience, times) and finds the role assignment that grants."""

    def __init__(self, settings: Settings, *, metrics: Metrics, ops_log: object = None) -> None:
        self._metrics = metrics
        self._ops_log = ops_log
        self._fetcher = _SessionFetcher()
        self.keys = JwksCache.from_settings(settings, self._fetcher, on_event=self._event)

    def _event(self, name: str, fields: Mapping[str, object]) -> None:
        issuer = str(fields.get("issuer", ""))
        if name in ("jwks.refreshed", "jwks.fetch_failed"):
            self._metrics.jwks_fetched(issuer, ok=name == "jwks.refreshed")
        log = getattr(self._ops_log, "warning" if name != "jwks.refreshed" else "info", None)
        if log is not None:
            log(name, **{k: v for k, v in fields.items() if k != "event"})

    def reconfigure(self, settings: Settings) -> None:
        """Follow a reloaded configuration; unchanged issuers keep their keys."""
        self.keys.update(
            settings.identity,
            ttl_seconds=settings.cache.jwks_ttl_seconds,
            cooldown_seconds=settings.cache.jwks_refresh_cooldown_seconds,
        )

    async def lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: one client session for every key fetch, and the background refresher."""
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            self._fetcher.attach(session)
            self.keys.start()
            try:
                yield
            finally:
                await self.keys.stop()
                self._fetcher.attach(None)

    async def authorize(
        self, token: str, rbac: RbacPolicy, resolved: ResolvedResource, rights: tuple[Right, ...], now: float
    ) -> tuple[Decision, float]:
        """The decision on ``token`` (a 403 too: it is as stable as an allow) and when it stops holding: ``exp``."""
        verified = await self.keys.verify(token, now=now)
        return rbac_decision(verified, rbac, resolved, rights), verified.expires_at


def rbac_decision(
    verified: VerifiedJwt, rbac: RbacPolicy, resolved: ResolvedResource, rights: tuple[Right, ...]
) -> Decision:
    """The decision on a verified token: the role assignment that grants every right in ``rights``, or a 403.

    Pure: the decision service (through :meth:`EntraAuthorizer.authorize`) and ``explain`` both decide with it.
    """
    namespace, entity = resolved.namespace, resolved.entity
    scope = arm_scope(resolved)
    audit = {"issuer": verified.issuer, "tenant": verified.tenant}
    if verified.groups_overage:
        audit["groups_overage"] = "true"  # the token named no groups: only direct assignments could match
    entity_name = entity.name if entity is not None else ""
    grant: RbacGrant | None = None
    try:
        for right in rights:
            grant = rbac.authorize(
                verified.oid,
                verified.groups,
                scope,
                permission_for(right, entity.kind if entity is not None else None),
                groups_overage=verified.groups_overage,
            )
    except NotPermitted as error:  # as stable as an allow for this token: cached, to its expiry
        grant = None
        denial: NotPermitted | None = error
    else:
        denial = None
    if denial is not None or grant is None:
        return Decision.deny(
            denial or NotPermitted("no_role_assignment"),
            auth="jwt",
            principal=verified.oid,
            right=rights[0],
            namespace=namespace.name,
            entity=entity_name,
            audit=audit | {"scope": scope},
        )
    return Decision.allow(
        auth="jwt",
        principal=verified.oid,
        right=rights[0],
        namespace=namespace.name,
        entity=entity_name,
        audit=audit | {"role": grant.role_name, "scope": grant.scope, "via": grant.via},
    )


def arm_scope(resolved: ResolvedResource) -> str:
    """The ARM id of the resource a request addresses: the entity's, or the namespace's when no entity matched."""
    namespace, entity = resolved.namespace, resolved.entity
    return namespace.entity_scope(entity) if entity is not None else namespace.scope
