"""Running the listeners: decision, admin and (optionally) gRPC, until SIGTERM or SIGINT drains them.

On SIGTERM the listeners stop accepting, requests and RPCs in flight finish (up to ``shutdown_timeout``), then
the process exits 0. SIGHUP re-reads the configuration at once. ``--workers N`` runs N such processes on the
same ports with SO_REUSEPORT, so the kernel spreads connections across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass

from aiohttp import web

from ..core.appkeys import HOLDER
from ..core.settings import Settings
from ..decision.audit import make_ops_logger
from ._quiet import quiet_server_logger
from .app import create_admin_app, create_app, decision_runner
from .lifecycle import ListenError, listen, start_event, stop_event

__all__ = ["DEFAULT_KEEPALIVE_TIMEOUT", "ListenError", "ServeOptions", "run"]

# Envoy accepts up to 60 KiB of request headers; refusing less here would turn a large header into a 400
# (and an NGINX 500) instead of the service's own 401.
_MAX_HEADER_BYTES = 64 * 1024
# aiohttp closes a connection that is waiting for a request head once this many seconds have passed since it
# opened or since its last answer, however slowly bytes trickle in: the bound on what a slow-loris client can
# hold. aiohttp's own default is about an hour. Keep it above the gateways' upstream idle timeouts (the shipped
# Envoy cluster: 60 s; NGINX upstream keepalive: 60 s), so that it is the gateway that closes an idle connection
# and never races a check onto one the service is closing.
DEFAULT_KEEPALIVE_TIMEOUT = 75.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    config_path: str
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081
    grpc_port: int | None = None
    workers: int = 1
    shutdown_timeout: float = 10.0
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    admin_host: str = "127.0.0.1"


async def serve(settings: Settings, options: ServeOptions, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests are allowed to finish."""
    grpc = (options.host, options.grpc_port) if options.grpc_port else None
    app = create_app(
        settings,
        config_path=options.config_path,
        grpc_address=grpc,
        grpc_grace=options.shutdown_timeout,
        reuse_port=reuse_port,
    )
    admin = create_admin_app(app)
    runner = decision_runner(  # the fast path's runner (see fastpath) unless it is off
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=options.shutdown_timeout,
        max_line_size=_MAX_HEADER_BYTES,
        max_field_size=_MAX_HEADER_BYTES,
        keepalive_timeout=options.keepalive_timeout,
        logger=quiet_server_logger(),
    )
    admin_runner = web.AppRunner(
        admin,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=2.0,
        keepalive_timeout=options.keepalive_timeout,
        logger=quiet_server_logger(),
    )
    try:
        await runner.setup()  # starts the gRPC listener, when there is one
    except OSError as exc:  # GrpcBindError: gRPC does not say why, only that the address could not be had
        grpc_address = f"{options.host}:{options.grpc_port}"
        raise ListenError(f"cannot listen on {grpc_address}: address in use or not available") from exc
    await admin_runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app[HOLDER].reload_soon)
    ops_log = make_ops_logger()
    try:
        decision_site = web.TCPSite(runner, options.host, options.port, reuse_port=reuse_port, backlog=1024)
        await listen(decision_site, options.host, options.port)
        admin_site = web.TCPSite(admin_runner, options.admin_host, options.admin_port, reuse_port=reuse_port)
        await listen(admin_site, options.admin_host, options.admin_port)
        listeners = {
            "decision": f"{options.host}:{options.port}",
            "admin": f"{options.admin_host}:{options.admin_port}",
        }
        if options.grpc_port:
            listeners["grpc"] = f"{options.host}:{options.grpc_port}"
        runtime = app[HOLDER].runtime
        ops_log.info(
            "service.start",
            **start_event(
                listeners=listeners,
                config_source=options.config_path,
                namespaces=len(runtime.settings.namespaces),
                missing_keys=len(runtime.missing_keys),
            ),
        )
        # Everything built so far (modules, the compiled config, servers) lives as long as the process; frozen,
        # it is no longer walked by every full garbage collection, whose pause grows with the objects it walks.
        gc.collect()
        gc.freeze()
        await stop.wait()
    finally:
        stopping = time.monotonic()
        await admin_runner.cleanup()
        await runner.cleanup()
    ops_log.info("service.stop", **stop_event(drained_seconds=time.monotonic() - stopping))


def _event_loop_runner() -> asyncio.Runner:
    with contextlib.suppress(ImportError):
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return asyncio.Runner()


def _worker(options: ServeOptions, speaks: bool) -> None:
    """One of ``--workers`` processes; only the first (``speaks``) reports a failure to listen, so that every worker
    failing alike still makes one line."""
    from ..config.loader import load_settings  # each spawned worker loads the file itself: nothing is pickled

    try:
        with _event_loop_runner() as runner:
            runner.run(serve(load_settings(options.config_path, allow_missing_keys=True), options, reuse_port=True))
    except ListenError as exc:
        if speaks:
            print(exc, file=sys.stderr)
        sys.exit(2)


def run(settings: Settings, options: ServeOptions) -> int:
    """Serve in this process (and ``workers - 1`` more); returns the exit status."""
    if options.workers <= 1:
        with _event_loop_runner() as runner:
            runner.run(serve(settings, options))
        return 0
    # Spawned, not forked: gRPC's core must not be forked once it exists, and each worker builds its own.
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(options, n == 0)) for n in range(options.workers)]
    for process in workers:
        process.start()

    def _forward(signum: int, _frame: object) -> None:
        for process in workers:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _forward)
    for process in workers:
        process.join()
    codes = {p.exitcode for p in workers}
    return 0 if codes == {0} else 2 if 2 in codes else 1
