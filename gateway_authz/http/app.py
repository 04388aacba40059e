"""The aiohttp applications: the decision listener and the admin listener, built by factories.

``create_app`` wires the configuration holder, audit log, metrics and decision service together and registers
the gateway adapters; everything with a lifecycle (the config watcher, the gRPC server) lives in
``cleanup_ctx``. ``create_admin_app`` serves ``/healthz``, ``/readyz`` and ``/metrics`` for the same service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from ..adapters import envoy_http, forward_auth, nginx
from ..adapters._answer import wire_answer
from ..adapters._headers import Adapter
from ..config.reload import ConfigHolder, Loader
from ..core.appkeys import FAST_PATH, HOLDER, JWT, METRICS, SERVICE
from ..core.metrics import Metrics
from ..core.model import Verdict
from ..core.settings import Settings
from ..decision.audit import AuditLog, Sink, make_ops_logger
from ..decision.service import DecisionService
from ..entra.authorizer import EntraAuthorizer
from . import fastpath
from .admin_views import add_operator_views
from .fastpath import Handler

__all__ = [
    "Adapter",
    "create_admin_app",
    "create_app",
    "decision_adapter",
    "decision_handler",
    "decision_runner",
    "fast_decision_handler",
    "http_response",
]


# The decision routes, and the same routes as the fast handler matches them (see fast_decision_handler).
_ENVOY_ROUTE = envoy_http.PATH_PREFIX + "{tail:(/.*)?}"
_PLAIN_ROUTES: dict[str, Adapter] = {"/auth": nginx.to_authz_request, "/forward-auth": forward_auth.to_authz_request}


def http_response(verdict: Verdict, request: web.BaseRequest, *, prepared: bool = True) -> web.StreamResponse:
    """The answer for the HTTP gateways: exactly 200 to allow (Envoy treats any other 2xx as a denial).

    With ``prepared`` (the fast path is on) an answer whose framing allows it is a :class:`~.fastpath.PreparedAnswer`.
    """
    decision, decision_id = verdict
    answer = wire_answer(decision)
    framing_allows = fastpath.preparable(request.version, request.keep_alive, request.method)
    if prepared and answer.head is not None and framing_allows:
        return fastpath.PreparedAnswer(answer, decision_id)
    return web.Response(
        status=answer.status,
        body=answer.body(decision_id) or None,
        headers=CIMultiDict(answer.all_headers(decision_id)),
    )


def create_app(
    settings: Settings,
    *,
    config_path: str | None = None,
    loader: Loader | None = None,
    clock: Callable[[], float] = time.time,
    audit_sink: Sink | None = None,
    ops_sink: Sink | None = None,
    grpc_address: tuple[str, int] | None = None,
    grpc_grace: float = 5.0,
    reuse_port: bool = False,
    watch_config: bool = True,
    fast_path: bool | None = None,
) -> web.Application:
    """The decision application for ``settings``; with ``config_path`` it follows changes to that file.

    ``fast_path``: ``False`` answers through aiohttp's public API only; ``None`` (the default) uses the fast path of
    :mod:`.fastpath` unless ``GATEWAY_AUTHZ_FAST_PATH=0`` or the installed aiohttp fails its start-up check.
    """
    ops_log = make_ops_logger(ops_sink)
    metrics = Metrics(clock=clock)
    holder = ConfigHolder(
        config_path or settings.source,
        settings,
        loader=loader,  # None: the holder follows the file or directory, re-reading what changes
        metrics=metrics,
        ops_log=ops_log,
        clock=clock,
    )
    audit = AuditLog(audit_sink) if audit_sink is not None else AuditLog()
    jwt = EntraAuthorizer(settings, metrics=metrics, ops_log=ops_log)
    holder.on_change.append(jwt.reconfigure)
    metrics.ready.set_function(lambda: 0.0 if holder.runtime.missing_keys else 1.0)
    service = DecisionService(holder, audit=audit, metrics=metrics, clock=clock, ops_log=ops_log, jwt=jwt)
    app = web.Application()
    app[FAST_PATH], why_not = fastpath.choose(fast_path)
    if why_not is not None:
        ops_log.warning("http.fast_path_off", reason=why_not, using="aiohttp's public request handling")
    app[SERVICE] = service
    app[HOLDER] = holder
    app[METRICS] = metrics
    app[JWT] = jwt
    app.cleanup_ctx.append(jwt.lifecycle)
    app.router.add_route("*", _ENVOY_ROUTE, decision_handler(envoy_http.to_authz_request))
    app.router.add_route("*", "/auth", decision_handler(nginx.to_authz_request))
    app.router.add_route("*", "/forward-auth", decision_handler(forward_auth.to_authz_request))
    if watch_config and (config_path or settings.source):
        app.cleanup_ctx.append(_watch_config)
    if grpc_address is not None:
        from ..adapters.envoy_grpc import grpc_server_ctx

        grpc_ctx = grpc_server_ctx(*grpc_address, grace=grpc_grace, reuse_port=reuse_port)
        app.cleanup_ctx.append(grpc_ctx)
        app.on_shutdown.append(grpc_ctx.on_shutdown)  # gRPC stops taking calls when HTTP does, not after
    return app


def decision_handler(adapter: Adapter) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of one decision route: the gateway's adapter, the decision service, the answer."""

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        return http_response(await app[SERVICE].verdict(adapter(request)), request, prepared=app[FAST_PATH])

    return handle


def decision_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """The runner ``serve`` puts the decision application on: the fast path's when it is on, else aiohttp's own."""
    if not app[FAST_PATH]:
        return web.AppRunner(app, **kwargs)
    return fastpath.DecisionRunner(
        app, handler_for=lambda fallback: fast_decision_handler(app, fallback), adapter_for=decision_adapter, **kwargs
    )


def fast_decision_handler(app: web.Application, fallback: Handler) -> Handler:
    """The decision listener's request handler without the router, for ``serve`` (see :mod:`.listener`, which
    answers most checks before they reach any handler; this one takes the rest).

    The profile of the service under load shows aiohttp's URL dispatch and per-request application plumbing
    beside the decision itself; three fixed routes need neither. This handler picks the adapter from the path
    exactly as the routes of :func:`create_app` do (the same string aiohttp matches, ``path_safe``, against the
    same patterns) and calls the same adapter functions and decision service. Anything else (another path, an
    ``Expect`` header) goes to ``fallback``, the application's own handler, so 404s and ``100-continue`` stay
    aiohttp's. ``create_app`` itself is unchanged: tests and embedders keep the routed application.
    """
    service = app[SERVICE]
    prepared = app[FAST_PATH]

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if not request.headers.get("Expect"):
            adapter = decision_adapter(request.rel_url.path_safe)
            if adapter is not None:
                return http_response(await service.verdict(adapter(request)), request, prepared=prepared)
        return await fallback(request)

    return handle


def decision_adapter(path: str) -> Adapter | None:
    """The adapter of the decision route ``path`` takes (aiohttp's ``path_safe``), as ``create_app`` routes it."""
    adapter = _PLAIN_ROUTES.get(path)
    if adapter is None and _envoy_route(path):
        return envoy_http.to_authz_request
    return adapter


def _envoy_route(path: str) -> bool:
    """Whether ``path`` matches ``_ENVOY_ROUTE`` as aiohttp compiles it: ``/ext_authz(/.*)?``, ``.`` not matching LF."""
    prefix = envoy_http.PATH_PREFIX
    return path == prefix or (path.startswith(prefix + "/") and "\n" not in path)


async def _watch_config(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[HOLDER].watch())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_admin_app(decision_app: web.Application) -> web.Application:
    """``/healthz``, ``/readyz``, ``/metrics`` and the operator views (``/``, ``/status.json``, ``POST /explain``)
    for the service inside ``decision_app``."""
    admin = web.Application()
    holder = decision_app[HOLDER]
    metrics = decision_app[METRICS]
    jwt = decision_app[JWT]

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        runtime = holder.runtime
        issuers = [
            {
                "issuer": status.issuer,
                "loaded": status.loaded,
                "stale": status.stale,
                "keys": status.key_count,
                "last_error": status.last_error,
            }
            for status in jwt.keys.status()
        ]
        degraded = bool(holder.last_error) or any(not i["loaded"] or i["stale"] for i in issuers)
        body: dict[str, Any] = {
            "status": "degraded" if degraded else "ready",
            "config": {
                "source": holder.path,
                # No fingerprint here: it is a digest over the resolved keys, and a weak key could be guessed from it.
                "loaded_at": runtime.loaded_at,
                "namespaces": len(runtime.settings.namespaces),
                "last_reload_error": holder.last_error,
            },
            "issuers": issuers,
        }
        # Still 200 when degraded: the last good configuration and keys are serving, SAS decisions never need an
        # issuer, and taking every replica out of rotation over one bad ConfigMap edit or an identity provider
        # outage would turn a partial problem into a full one. The body and the metrics say what is degraded.
        # Key material that is not there yet (an empty Secret) is different: nothing good is serving for those
        # rules, so the replica is unready (503) and says which references are missing, until they appear.
        missing = runtime.missing_keys
        if missing:
            body["status"] = "unready"
            body["missing_keys"] = list(missing)
        return web.Response(body=orjson.dumps(body), status=503 if missing else 200, content_type="application/json")

    async def metrics_handler(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"content-type": "text/plain; version=0.0.4"})

    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/readyz", readyz)
    admin.router.add_get("/metrics", metrics_handler)
    add_operator_views(admin, decision_app)
    return admin
