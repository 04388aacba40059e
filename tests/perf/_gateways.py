"""The processes of one benchmark run, started with the integration harness's helpers and stopped together.

Gateways run the shipped configs (``k8s/sidecar/envoy-config.yaml``, ``k8s/ingress-nginx/nginx-config.yaml``)
with loopback addresses put in by ``tests/integration/_procs.py``; the only edits are the ones a row is about:
no ext_authz filter at all, no ``auth_request``, or Envoy's own ``jwt_authn`` filter in place of ext_authz.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.integration import _procs
from tests.perf import _fixtures as fx

FLOORS_SCRIPT = Path(__file__).resolve().parent / "floors.py"
# The uncached JWT row: a service whose decision cache holds JWT_SMALL_CACHE entries, fed a cycle of JWT_POOL
# distinct tokens, so that (LRU) every request misses. Minting a fresh RS256 token per request is too slow here.
JWT_SMALL_CACHE = 500
JWT_POOL = 2_000
# Authorizers started with extra environment: "authz-public" is the service on aiohttp's public path only
# (plain web.AppRunner over the routed app, plain web.Response answers), same config as "authz".
_AUTHORIZER_ENV: dict[str, dict[str, str]] = {"authz-public": {"GATEWAY_AUTHZ_FAST_PATH": "0"}}

# gateway key -> (kind, authorizer key or None)
_GATEWAYS: dict[str, tuple[str, str | None]] = {
    "envoy-none": ("envoy-http-noauth", None),
    "envoy-floor": ("envoy-http", "floor-http"),
    "envoy-bare": ("envoy-http", "floor-http-bare"),
    "envoy-floor-headers": ("envoy-http", "floor-http-headers"),
    "envoy-authz": ("envoy-http", "authz"),
    "envoy-authz-small": ("envoy-http", "authz-small"),
    "envoy-authz-public": ("envoy-http", "authz-public"),
    "envoy-jwt-authn": ("envoy-jwt-authn", None),
    "nginx-none": ("nginx-noauth", None),
    "nginx-floor": ("nginx", "floor-http"),
    "nginx-floor-headers": ("nginx", "floor-http-headers"),
    "nginx-authz": ("nginx", "authz"),
    "nginx-authz-public": ("nginx", "authz-public"),
    "envoy-grpc-floor": ("envoy-grpc", "floor-grpc"),
    "envoy-grpc-authz": ("envoy-grpc", "authz-grpc"),
}


def run_quietly(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def jwt_wired() -> bool:
    """Whether a configured issuer makes the service verify JWTs (else the JWT rows are left out)."""
    from gateway_authz.config.loader import load_settings
    from gateway_authz.core.appkeys import SERVICE
    from gateway_authz.http.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "probe.yaml"
        path.write_text(yaml.safe_dump(fx.config(jwks=fx.JwtSigner().jwks)))
        try:
            app = create_app(load_settings(str(path)), watch_config=False)
        except Exception:  # the JWT part of the config not accepted (yet)
            return False
        return getattr(app[SERVICE], "_jwt", None) is not None


def _cpu_seconds_of_session(session: int) -> float:
    """User + system CPU of every process in ``session`` (a ManagedProcess starts a new session)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class Stack:
    """Everything a set of rows needs, started on enter and stopped (in reverse order) on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        selected_gateways: set[str],
        authorizers: set[str] = frozenset(),  # type: ignore[assignment]
        jwt_signer: fx.JwtSigner | None,
        workers: int = 1,
        profile: bool = False,
    ) -> None:
        self.workdir = workdir
        self._gateways = {g: _GATEWAYS[g] for g in selected_gateways}
        self._extra_authorizers = set(authorizers)
        self._signer = jwt_signer
        self._workers = workers
        self._profile = profile
        self._procs: list[_procs.ManagedProcess] = []
        self._ports: dict[str, int] = {}
        self._admin: dict[str, int] = {}
        self._authorizers: dict[str, _procs.ManagedProcess] = {}
        self._logs: list[Path] = []
        self._profilers: list[_procs.ManagedProcess] = []

    # -- life cycle
    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        for profiler in self._profilers:  # py-spy writes its profile on SIGINT
            profiler.signal(signal.SIGINT)
        for profiler in self._profilers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert profiler.popen is not None
                profiler.popen.wait(timeout=30)
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()

    def _keep(self, proc: _procs.ManagedProcess) -> _procs.ManagedProcess:
        self._procs.append(proc)
        return proc

    def _start(self) -> None:
        echo, echo_port = _procs.start_echo(self.workdir)
        self._keep(echo)
        needed = {auth for _kind, auth in self._gateways.values() if auth} | self._extra_authorizers
        for name in sorted(needed):
            self._start_authorizer(name)
        for key, (kind, auth) in sorted(self._gateways.items()):
            target = self._ports[auth] if auth else echo_port
            self._ports[key] = self._start_gateway(key, kind, echo_port, target)

    def _start_authorizer(self, name: str) -> None:
        if name.startswith("floor-"):
            kind = name.split("-")[1]  # floor-http, floor-http-bare, floor-http-headers, floor-grpc
            variant = {"bare": ["--uvloop", "--lowlevel"], "headers": ["--answer-headers"]}
            flags = variant.get(name.split("-")[-1], [])

            def attempt(n: int) -> tuple[_procs.ManagedProcess, int]:
                port = _procs.free_port()
                argv = [sys.executable, str(FLOORS_SCRIPT), "--kind", kind, "--port", str(port), *flags]
                proc = _procs.ManagedProcess(f"{name}-{n}", argv, self.workdir, env=_procs.service_env()).start()
                try:
                    _procs.wait_until(lambda: _procs.port_open(port), timeout=20, what=name, procs=[proc])
                except BaseException:
                    proc.stop()
                    raise
                return proc, port

            proc, port = _procs.start_with_retries(attempt)
            self._ports[name] = port
            self._authorizers[name] = self._keep(proc)
            return
        small = name == "authz-small"
        config = fx.config(
            jwks=self._signer.jwks if self._signer else None,
            decision_max_entries=JWT_SMALL_CACHE if small else 100_000,
        )
        config_path = self.workdir / f"{name}.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        extra = ["--workers", str(self._workers)] if self._workers > 1 else []
        service = _procs.start_authz(
            config_path,
            self.workdir,
            name=name,
            grpc=name == "authz-grpc",
            extra_args=extra,
            env=_AUTHORIZER_ENV.get(name),
        )
        self._keep(service.proc)
        self._authorizers[name] = service.proc
        self._ports[name] = service.grpc_port if service.grpc_port else service.port
        self._admin[name] = service.admin_port
        self._logs.append(service.stdout_path)
        if self._profile:
            self._start_profiler(name, service.proc.pid)

    def _start_profiler(self, name: str, pid: int) -> None:
        spy = shutil.which("py-spy") or os.environ.get("PY_SPY")
        if not spy:
            print("# --profile: py-spy not found (pip install py-spy, or set PY_SPY); no profile taken")
            return
        out = self.workdir / f"profile-{name}.txt"
        argv = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--nonblocking",
            "--subprocesses",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        self._profilers.append(self._keep(_procs.ManagedProcess(f"py-spy-{name}", argv, self.workdir).start()))
        print(f"# profiling {name} (pid {pid}) into {out}")

    def _start_gateway(self, key: str, kind: str, echo_port: int, target: int) -> int:
        if kind.startswith("envoy"):
            grpc = kind == "envoy-grpc"
            clusters = {"app": echo_port, ("gateway_authz_grpc" if grpc else "gateway_authz"): target}
            mutate = {"envoy-http-noauth": _without_ext_authz, "envoy-jwt-authn": self._with_jwt_authn}.get(kind)
            proc, port, _admin = _procs.start_envoy(
                "envoy-grpc.yaml" if grpc else "envoy-http.yaml",
                self.workdir,
                clusters=clusters,
                name=key,
                mutate=mutate,
            )
            self._keep(proc)
            return port
        proc, port, access_log = _start_nginx(
            self.workdir, key, {"app": echo_port, "gateway_authz": target}, no_auth=kind == "nginx-noauth"
        )
        self._keep(proc)
        self._logs.append(access_log)
        return port

    def _with_jwt_authn(self, config: dict[str, Any]) -> None:
        """Envoy verifying the same RS256 token itself: jwt_authn with the issuer's JWKS inline, no ext_authz."""
        assert self._signer is not None
        filters = _http_filters(config)
        filters[:] = [f for f in filters if f["name"] != "envoy.filters.http.ext_authz"]
        filters.insert(
            0,
            {
                "name": "envoy.filters.http.jwt_authn",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {
                        "entra": {
                            "issuer": fx.ISSUER,
                            "audiences": [fx.AUDIENCE],
                            "local_jwks": {"inline_string": json.dumps(self._signer.jwks)},
                            "forward": False,
                        }
                    },
                    "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "entra"}}],
                },
            },
        )

    # -- what rows need
    def port(self, gateway: str) -> int:
        return self._ports[gateway]

    def admin_port(self, authorizer: str | None) -> int | None:
        return self._admin.get(authorizer) if authorizer else None

    def cpu_seconds(self, authorizer: str | None) -> float:
        proc = self._authorizers.get(authorizer) if authorizer else None
        return _cpu_seconds_of_session(proc.pid) if proc is not None else 0.0

    def truncate_logs(self) -> None:
        """Audit and access logs grow by a line per request; both are opened for appending, so this is safe."""
        for path in self._logs:
            with contextlib.suppress(FileNotFoundError):
                os.truncate(path, 0)

    def describe(self) -> str:
        envoy = run_quietly([_procs.find_envoy(), "--version"], timeout=30).stdout.strip().split("version:")[-1]
        nginx = run_quietly([_procs.find_nginx(), "-v"], timeout=30).stderr.strip().split("/")[-1]
        uvloop = run_quietly([sys.executable, "-c", "import uvloop; print(uvloop.__version__)"], timeout=30)
        loop = f"uvloop {uvloop.stdout.strip()}" if uvloop.returncode == 0 else "asyncio (uvloop not installed)"
        return (
            f"Envoy {envoy.strip().split('/')[1] if '/' in envoy else envoy.strip()}, NGINX {nginx}, "
            f"gateway-authz workers {self._workers} on {loop}; floors on the default asyncio loop"
        )


def _http_filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    filters: list[dict[str, Any]] = hcm["typed_config"]["http_filters"]
    return filters


def _without_ext_authz(config: dict[str, Any]) -> None:
    filters = _http_filters(config)
    filters[:] = [f for f in filters if f["name"] != "envoy.filters.http.ext_authz"]


def _start_nginx(
    workdir: Path, name: str, upstreams: dict[str, int], *, no_auth: bool
) -> tuple[_procs.ManagedProcess, int, Path]:
    """Like ``_procs.start_nginx``, with ``auth_request off`` for the no-auth row."""
    nginx = _procs.find_nginx()

    def attempt(n: int) -> tuple[_procs.ManagedProcess, int, Path]:
        port = _procs.free_port()
        rundir = workdir / f"{name}-{n}"
        conf = _procs.render_nginx_conf(listen_port=port, upstreams=upstreams, rundir=rundir)
        if no_auth:
            conf, count = re.subn(r"auth_request\s+/_gateway_authz;", "auth_request off;", conf)
            assert count == 1, "nginx.conf: expected one auth_request line"
        conf_path = rundir / "nginx.conf"
        conf_path.write_text(conf)
        argv = _procs.nginx_argv(nginx, rundir, conf_path)
        check = run_quietly([*argv, "-t"], timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the config:\n{check.stderr}")
        proc = _procs.ManagedProcess(f"{name}-{n}", argv, workdir).start()
        try:
            _procs.wait_until(lambda: _procs.port_open(port), timeout=15, what=name, procs=[proc])
        except BaseException:
            proc.stop()
            raise
        return proc, port, rundir / "nginx-access.log"

    return _procs.start_with_retries(attempt)
