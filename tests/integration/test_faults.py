"""Faults survived: a bad config at start, a broken config file during reloads, the service killed or hung under
load, and slow-loris clients on the decision port. Real processes on loopback throughout.

What each fault must come to:

- config invalid at start: the process exits 2 before listening, naming the exact key (``namespaces[0]...``);
- config deleted, truncated, half-written, unreadable or invalid while serving: the last good configuration keeps
  deciding through Envoy and NGINX, ``/readyz`` says ``degraded`` with the reason, ``/metrics`` counts the failed
  reloads and shows ``gateway_authz_config_last_reload_success 0``; a good file recovers all of it;
- the service killed (SIGKILL) under load: from then on Envoy answers 503 (HTTP and gRPC, ``status_on_error``)
  and NGINX 500, nothing reaches the upstream; restarted on the same ports, the gateways recover by themselves;
- the service hung (SIGSTOP): checks time out into the same 503 / 500, and it recovers on SIGCONT;
- slow-loris clients holding hundreds of connections on the decision port while dripping header bytes: normal
  requests through Envoy and NGINX are still answered within a bound, and the service closes the slow connections
  once ``--keepalive-timeout`` lapses (a head must be complete by then), so they cannot pile up.

SIGTERM under load (drain) is covered by ``test_graceful_shutdown.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import _procs
from ._hardening import (
    HOST,
    metric,
    readyz,
    scrape,
    serve_argv,
    start_authz_on,
    wait_for,
)
from ._procs import AuthzProcess, Response
from .conftest import Echo, Gateway, SasConfig, new_key, sas_namespace_config

pytestmark = pytest.mark.integration

RELOAD_TTL = 0.25  # configTtlSeconds for this module: reload faults are seen within a fraction of a second


@pytest.fixture(scope="module")
def sas_config(integration_dir: Path) -> SasConfig:
    """The shared test namespace, re-read every quarter second."""
    config = SasConfig(path=integration_dir / "gateway-authz.yaml", data=sas_namespace_config(RELOAD_TTL))
    config.write()
    return config


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


def _get(port: int, target: str, headers: list[tuple[str, str]] | None = None, timeout: float = 10.0) -> Response:
    return _procs.request(port, "GET", target, [("Host", HOST), *(headers or [])], timeout=timeout)


def _sba(token: str) -> list[tuple[str, str]]:
    return [("ServiceBusAuthorization", token)]


def _tampered(token: str) -> str:
    at = token.index("sig=") + 6
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]


# --------------------------------------------------------------------------------------------------- config at start


def _bad_configs(base: dict[str, Any]) -> dict[str, tuple[Callable[[dict[str, Any]], object], str]]:
    """name -> (how to break a copy of the config, text the error must contain)."""

    def set_at(path: list[Any], value: Any) -> Callable[[dict[str, Any]], object]:
        def apply(data: dict[str, Any]) -> object:
            node: Any = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            return None

        return apply

    ns = ["namespaces", 0]
    rules = [{"keyName": f"Rule{i}", "primaryKey": new_key(), "rights": ["Send"]} for i in range(13)]
    dup = [{"keyName": "Same", "primaryKey": new_key(), "rights": ["Send"]}] * 2
    return {
        "manage-without-listen-send": (
            set_at([*ns, "authorizationRules", 0, "rights"], ["Manage"]),
            "namespaces[0].authorizationRules[0].rights",
        ),
        "misspelt-property": (
            set_at([*ns, "hybridConnections", 0, "requireClientAuthorization"], False),
            "namespaces[0].hybridConnections[0].requireClientAuthorization: unknown property",
        ),
        "thirteen-rules": (set_at([*ns, "authorizationRules"], rules), "namespaces[0].authorizationRules"),
        "duplicate-key-name": (
            set_at([*ns, "hybridConnections", 1, "authorizationRules"], dup),
            "namespaces[0].hybridConnections[1].authorizationRules[1].keyName",
        ),
        "key-from-unset-env": (
            set_at([*ns, "authorizationRules", 1, "primaryKey"], {"env": "GATEWAY_AUTHZ_TEST_NO_SUCH_VARIABLE"}),
            "namespaces[0].authorizationRules[1].primaryKey",
        ),
        "negative-clock-skew": (set_at(["sas", "clockSkewSeconds"], -1), "sas.clockSkewSeconds"),
    }


BAD_CONFIG_NAMES = [*_bad_configs(sas_namespace_config()), "missing-file", "not-yaml"]


@pytest.mark.parametrize("case", BAD_CONFIG_NAMES)
def test_invalid_config_at_start_exits_non_zero_naming_the_key(integration_dir: Path, case: str) -> None:
    """A bad config at start: exit status 2, a ``config: <location>: ...`` line naming the key, nothing listening."""
    path = integration_dir / f"bad-{case}.yaml"
    if case == "missing-file":
        expected = f"cannot read {path}"
    elif case == "not-yaml":
        path.write_text("namespaces: [\n  - name: contoso\n")
        expected = "not valid YAML"
    else:
        data = sas_namespace_config()
        apply, expected = _bad_configs(data)[case]
        apply(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    port, admin_port = _procs.free_port(), _procs.free_port()
    env = {k: v for k, v in _procs.service_env().items() if k != "GATEWAY_AUTHZ_TEST_NO_SUCH_VARIABLE"}
    result = subprocess.run(
        serve_argv(path, port, admin_port), capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr}"
    config_lines = [line for line in result.stderr.splitlines() if line.startswith("config: ")]
    assert any(expected in line for line in config_lines), f"no line naming {expected!r}:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert not _procs.port_open(port) and not _procs.port_open(admin_port)


# --------------------------------------------------------------------------------------------------- reload faults


def _rewrite_in_place(path: Path, text: str) -> None:
    """A non-atomic writer: truncate, then write (what ``echo > file`` or a naive editor does)."""
    with path.open("w") as handle:
        handle.write(text)


def _fault(name: str, config: SasConfig) -> Callable[[], None]:
    """The fault, applied to the live config file. Every variant would also remove the OrdersSend rule if it were
    ever taken for the new configuration, so a request signed by OrdersSend shows which config decides."""
    changed = yaml.safe_load(yaml.safe_dump(config.data))
    changed["namespaces"][0]["hybridConnections"][0]["authorizationRules"] = []
    changed_text = yaml.safe_dump(changed, sort_keys=False)
    path = config.path

    def deleted() -> None:
        path.unlink()

    def truncated() -> None:
        _rewrite_in_place(path, "")

    def half_written() -> None:
        # A non-atomic writer caught half-way: the new text cut right after the "[" of the emptied rule list.
        cut = changed_text.index(": []") + len(": [")
        _rewrite_in_place(path, changed_text[:cut])

    def unreadable() -> None:
        # Tests run as root in CI, where chmod 000 does not stop a read: a directory in the file's place is
        # unreadable for every user (EISDIR). The permission bits get their own test below.
        path.unlink()
        path.mkdir()

    def invalid() -> None:
        changed["namespaces"][0]["authorizationRules"][0]["rights"] = ["Manage"]
        config.path.with_suffix(".tmp").write_text(yaml.safe_dump(changed, sort_keys=False))
        os.replace(config.path.with_suffix(".tmp"), path)

    return {
        "deleted": deleted,
        "truncated": truncated,
        "half-written": half_written,
        "unreadable": unreadable,
        "invalid": invalid,
    }[name]


def _restore(config: SasConfig) -> None:
    if config.path.is_dir():
        shutil.rmtree(config.path)
    config.write()


def _reload_state(service: AuthzProcess) -> tuple[float, float]:
    samples = scrape(service.admin_port)
    return (
        metric(samples, "gateway_authz_config_reloads_total", result="failed"),
        metric(samples, "gateway_authz_config_last_reload_success"),
    )


@pytest.mark.parametrize("fault", ["deleted", "truncated", "half-written", "unreadable", "invalid"])
def test_config_fault_during_reload_last_good_keeps_serving(
    fault: str,
    sas_config: SasConfig,
    authz_service: AuthzProcess,
    envoy_http_gateway: Gateway,
    envoy_grpc_gateway: Gateway,
    nginx_gateway: Gateway,
) -> None:
    """The file broken while serving: the last good config decides through every gateway, readiness and metrics
    say degraded, and the restored file recovers them."""
    gateways = (envoy_http_gateway, envoy_grpc_gateway, nginx_gateway)
    orders = sas_config.mint("OrdersSend", "/orders").token
    failed_before, _ = _reload_state(authz_service)
    try:
        _fault(fault, sas_config)()

        def failing() -> bool:
            failed, success = _reload_state(authz_service)
            return failed >= failed_before + 2 and success == 0

        wait_for(failing, timeout=10, what=f"two failed reloads after the file was {fault}")
        status, body = readyz(authz_service.admin_port)
        assert status == 200 and body["status"] == "degraded", body
        assert body["config"]["last_reload_error"], body
        for gw in gateways:  # decided by the last good configuration, where OrdersSend still exists
            allowed, _ = gw.request("GET", "/orders", _sba(orders))
            assert allowed.status == 200 and allowed.upstream is not None, f"{gw.name} {fault}: {allowed}"
            assert allowed.upstream.header_all("x-authz-principal") == ["OrdersSend"]
            assert gw.request("GET", "/orders", _sba(_tampered(orders)))[0].status == 401
            assert gw.request("GET", "/orders")[0].status == 401
            assert gw.request("POST", "/public/inbox")[0].status == 200
        assert authz_service.proc.running()
    finally:
        _restore(sas_config)
    wait_for(
        lambda: _reload_state(authz_service)[1] == 1 and readyz(authz_service.admin_port)[1]["status"] == "ready",
        timeout=10,
        what="recovery after the good file is back",
    )
    for gw in gateways:
        assert gw.request("GET", "/orders", _sba(orders))[0].status == 200


def test_config_unreadable_by_permission_when_not_root(
    sas_config: SasConfig, authz_service: AuthzProcess, envoy_http_gateway: Gateway
) -> None:
    """``chmod 000`` on the file: for a non-root service, the same as any unreadable file (as root, where the
    permission bits do not stop a read, the file must still be served: root reads it, and nothing degrades)."""
    orders = sas_config.mint("OrdersSend", "/orders").token
    failed_before, _ = _reload_state(authz_service)
    try:
        sas_config.path.chmod(0)
        if os.geteuid() == 0:
            time.sleep(RELOAD_TTL * 4)
            assert _reload_state(authz_service) == (failed_before, 1), "root could not read a chmod 000 file?"
        else:
            wait_for(lambda: _reload_state(authz_service)[1] == 0, timeout=10, what="a failed reload")
            assert readyz(authz_service.admin_port)[1]["status"] == "degraded"
        assert envoy_http_gateway.request("GET", "/orders", _sba(orders))[0].status == 200
    finally:
        sas_config.path.chmod(0o600)
    wait_for(lambda: _reload_state(authz_service)[1] == 1, timeout=10, what="recovery")


def test_sighup_reloads_at_once_and_the_service_keeps_answering(integration_dir: Path) -> None:
    """SIGHUP re-reads the file there and then (here the timer would wait an hour): a rotated key is in force
    after the signal and not before, and the process answers throughout and still exits 0 on SIGTERM."""
    config = SasConfig(path=integration_dir / "sighup.yaml", data=sas_namespace_config(3600))
    config.write()
    service = _procs.start_authz(config.path, integration_dir, name="gateway-authz-sighup")
    try:
        old = config.mint("OrdersSend", "/orders").token

        def status(token: str) -> int:
            return _procs.sas_check_status(service, token, host=HOST)

        assert status(old) == 200
        config.set_keys("OrdersSend", new_key(), new_key())
        new = config.mint("OrdersSend", "/orders").token
        time.sleep(0.5)  # no timer reload for an hour: the file changed, the service did not look
        assert (status(old), status(new)) == (200, 401)
        service.proc.signal(signal.SIGHUP)
        wait_for(lambda: status(new) == 200, timeout=10, what="the rotated key after SIGHUP")
        assert status(old) == 401
        assert service.proc.running()
    finally:
        code = service.proc.stop()
    assert code == 0, service.proc.describe()


# --------------------------------------------------------------------------------------------------- hung service


def test_service_hung_checks_time_out_into_a_deny(
    sas_config: SasConfig,
    authz_service: AuthzProcess,
    envoy_http_gateway: Gateway,
    envoy_grpc_gateway: Gateway,
    nginx_gateway: Gateway,
) -> None:
    """SIGSTOP (a hung service): Envoy answers 503 after its 1 s check timeout, NGINX 500 after its 2 s read
    timeout, never the upstream; after SIGCONT the same request is allowed again."""
    token = sas_config.mint("RootManageSharedAccessKey", "/").token
    expected = {"envoy-http": (503, 3.0), "envoy-grpc": (503, 3.0), "nginx": (500, 5.0)}
    authz_service.proc.signal(signal.SIGSTOP)
    try:
        for gw in (envoy_http_gateway, envoy_grpc_gateway, nginx_gateway):
            status, bound = expected[gw.name]
            started = time.monotonic()
            response, _ = gw.request("GET", "/orders", _sba(token))
            took = time.monotonic() - started
            assert response.upstream is None, f"{gw.name} let a request through while the service hung"
            assert response.status == status, f"{gw.name}: {response}"
            assert took < bound, f"{gw.name} took {took:.1f}s to fail closed"
    finally:
        authz_service.proc.signal(signal.SIGCONT)
    for gw in (envoy_http_gateway, envoy_grpc_gateway, nginx_gateway):
        wait_for(lambda gw=gw: gw.request("GET", "/orders", _sba(token))[0].status == 200, timeout=10, what="resume")


# --------------------------------------------------------------------------------------------------- killed


@dataclass
class Outcome:
    gateway: str
    valid: bool
    sent_at: float
    status: int
    reached_upstream: bool


def _load(ports: dict[str, int], tokens: dict[bool, str], stop: threading.Event, out: list[Outcome]) -> None:
    """One client: round-robin over the gateways, alternating a valid and an invalid token, until ``stop``."""
    n = 0
    while not stop.is_set():
        name = list(ports)[n % len(ports)]
        valid = (n // len(ports)) % 2 == 0
        n += 1
        sent_at = time.monotonic()
        try:
            response = _get(ports[name], "/orders", _sba(tokens[valid]), timeout=5)
            out.append(Outcome(name, valid, sent_at, response.status, response.upstream is not None))
        except OSError:
            out.append(Outcome(name, valid, sent_at, 0, False))  # a reset connection is no allow either


@pytest.fixture
def killable(echo_upstream: Echo, integration_dir: Path, sas_config: SasConfig) -> Iterator[dict[str, Any]]:
    """A service of its own (HTTP and gRPC) behind its own Envoy HTTP, Envoy gRPC and NGINX."""
    port, admin_port, grpc_port = _procs.free_port(), _procs.free_port(), _procs.free_port()
    workdir = integration_dir / "killable"
    service = start_authz_on(
        sas_config.path, workdir, name="authz-killable", port=port, admin_port=admin_port, grpc_port=grpc_port
    )
    procs = [service.proc]
    try:
        eh, eh_port, _ = _procs.start_envoy(
            "envoy-http.yaml", workdir, clusters={"app": echo_upstream.port, "gateway_authz": port}, name="k-eh"
        )
        procs.append(eh)
        eg, eg_port, _ = _procs.start_envoy(
            "envoy-grpc.yaml",
            workdir,
            clusters={"app": echo_upstream.port, "gateway_authz_grpc": grpc_port},
            name="k-eg",
        )
        procs.append(eg)
        ng, ng_port = _procs.start_nginx(
            workdir, upstreams={"app": echo_upstream.port, "gateway_authz": port}, name="k-ng"
        )
        procs.append(ng)
        yield {
            "service": service,
            "workdir": workdir,
            "ports": {"envoy-http": eh_port, "envoy-grpc": eg_port, "nginx": ng_port},
            "procs": procs,
        }
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_service_killed_under_load_gateways_deny_never_allow(killable: dict[str, Any], sas_config: SasConfig) -> None:
    """SIGKILL under load from 4 clients: every request sent after the kill is a 503 (Envoy) / 500 (NGINX) or a
    reset, none reaches the upstream; an invalid token never does at any time; restarted on the same ports, the
    service is used again without touching the gateways."""
    service: AuthzProcess = killable["service"]
    ports: dict[str, int] = killable["ports"]
    valid = sas_config.mint("OrdersSend", "/orders").token
    tokens = {True: valid, False: _tampered(valid)}
    stop, outcomes = threading.Event(), [list[Outcome]() for _ in range(4)]
    clients = [threading.Thread(target=_load, args=(ports, tokens, stop, out), daemon=True) for out in outcomes]
    for client in clients:
        client.start()
    try:
        time.sleep(1.5)
        service.proc.popen.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        service.proc.popen.wait(timeout=10)  # type: ignore[union-attr]
        killed_at = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=15)
    assert service.proc.popen is not None and service.proc.popen.returncode == -signal.SIGKILL
    everything = [o for out in outcomes for o in out]
    before = [o for o in everything if o.sent_at < killed_at]
    after = [o for o in everything if o.sent_at > killed_at]
    print(f"\nkill under load: {len(before)} requests before the kill, {len(after)} after")
    assert [o for o in everything if not o.valid and o.reached_upstream] == [], "an invalid token got through"
    assert any(o.valid and o.status == 200 for o in before), "no allowed request before the kill: no load?"
    assert len({o.gateway for o in after}) == 3 and len(after) >= 30, f"too little load after the kill: {len(after)}"
    expected = {"envoy-http": {503}, "envoy-grpc": {503}, "nginx": {500}}
    wrong = [o for o in after if o.reached_upstream or o.status not in expected[o.gateway] | {0}]
    assert wrong == [], f"after the kill: {wrong[:10]}"

    restarted = start_authz_on(
        sas_config.path,
        killable["workdir"],
        name="authz-restarted",
        port=service.port,
        admin_port=service.admin_port,
        grpc_port=service.grpc_port,
    )
    killable["procs"].append(restarted.proc)
    for name, port in ports.items():
        wait_for(
            lambda port=port: _get(port, "/orders", _sba(valid)).status == 200,
            timeout=15,
            what=f"{name} using the restarted service",
        )
        assert _get(port, "/orders", _sba(tokens[False])).status == 401


# --------------------------------------------------------------------------------------------------- slow-loris

SLOW_CONNECTIONS = 400
KEEPALIVE = 2.0  # --keepalive-timeout for this test (shipped default: 75 s)


class SlowLoris:
    """Many connections to the decision port, each sending a partial request head and one more header line now and
    then, never finishing it. ``open_count()`` tells how many the server has not closed yet."""

    def __init__(self, port: int, count: int, *, after_one_request: int = 0) -> None:
        """The first ``after_one_request`` connections send one complete request before they start dripping."""
        self.socks: list[socket.socket] = []
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i < after_one_request:
                sock.sendall(f"POST /ext_authz/public HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n".encode())
            sock.sendall(f"GET /ext_authz/orders HTTP/1.1\r\nHost: {HOST}\r\nx-slow: {i}\r\n".encode())
            sock.setblocking(False)
            self.socks.append(sock)
        self.opened_at = time.monotonic()
        self.closed: set[int] = set()
        self.answered: set[int] = set()

    def drip(self) -> None:
        for i, sock in enumerate(self.socks):
            if i in self.closed:
                continue
            self._poll(i, sock)
            if i not in self.closed:
                with contextlib.suppress(BlockingIOError):
                    try:
                        sock.send(b"x-drip: 1\r\n")
                    except OSError:
                        self.closed.add(i)

    def _poll(self, i: int, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                self.closed.add(i)
            return
        if data:
            self.answered.add(i)  # the server answered an unfinished head: worth knowing
        else:
            self.closed.add(i)

    def open_count(self) -> int:
        for i, sock in enumerate(self.socks):
            if i not in self.closed:
                self._poll(i, sock)
        return len(self.socks) - len(self.closed)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def _shorter_authz_idle_timeout(config: dict[str, Any]) -> None:
    """Keep Envoy's idle timeout below the service's, as the shipped config does (60 s < 75 s), at test scale."""
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "gateway_authz":
            options = cluster["typed_extension_protocol_options"][
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
            ]
            options["common_http_protocol_options"]["idle_timeout"] = f"{KEEPALIVE / 2}s"


def test_slow_loris_on_the_decision_port_does_not_starve_others(
    echo_upstream: Echo, integration_dir: Path, sas_config: SasConfig
) -> None:
    """400 connections dripping header lines: requests through Envoy and NGINX keep being answered correctly within
    2 s each, and the service closes every slow connection once ``--keepalive-timeout`` (2 s here) lapses."""
    workdir = integration_dir / "slowloris"
    port, admin_port = _procs.free_port(), _procs.free_port()
    service = start_authz_on(
        sas_config.path,
        workdir,
        name="authz-slowloris",
        port=port,
        admin_port=admin_port,
        extra=["--keepalive-timeout", str(KEEPALIVE)],
    )
    procs = [service.proc]
    loris: SlowLoris | None = None
    try:
        eh, eh_port, _ = _procs.start_envoy(
            "envoy-http.yaml",
            workdir,
            clusters={"app": echo_upstream.port, "gateway_authz": port},
            name="sl-eh",
            mutate=_shorter_authz_idle_timeout,
        )
        procs.append(eh)
        ng, ng_port = _procs.start_nginx(
            workdir, upstreams={"app": echo_upstream.port, "gateway_authz": port}, name="sl-ng"
        )
        procs.append(ng)
        token = sas_config.mint("OrdersSend", "/orders").token

        loris = SlowLoris(port, SLOW_CONNECTIONS, after_one_request=SLOW_CONNECTIONS // 4)
        latencies: list[float] = []
        n = 0
        open_at_half: int | None = None
        all_closed_after: float | None = None
        deadline = loris.opened_at + KEEPALIVE * 3
        while time.monotonic() < deadline:
            loris.drip()
            since = time.monotonic() - loris.opened_at
            if open_at_half is None and since >= KEEPALIVE / 2:
                open_at_half = loris.open_count()
            if all_closed_after is None and loris.open_count() == 0:
                all_closed_after = since
            for gw_port in (eh_port, ng_port):
                started = time.monotonic()
                good = _get(gw_port, "/orders", _sba(token), timeout=10)
                bad = _get(gw_port, "/orders", _sba(_tampered(token)), timeout=10)
                latencies.append((time.monotonic() - started) / 2)
                assert good.status == 200 and good.upstream is not None, f"starved or wrong: {good}"
                assert bad.status == 401 and bad.upstream is None, f"wrong: {bad}"
                n += 2
            time.sleep(0.05)
        worst = max(latencies)
        print(
            f"\nslow-loris: {SLOW_CONNECTIONS} slow connections ({len(loris.answered)} after one answered request), "
            f"{open_at_half} still open at {KEEPALIVE / 2:.0f}s, all closed after {all_closed_after or 0:.1f}s; "
            f"{n} normal requests answered meanwhile, worst {worst * 1000:.0f} ms"
        )
        assert open_at_half, "the slow connections were dropped at once, not held until the timeout"
        assert all_closed_after is not None and all_closed_after <= KEEPALIVE + 2.0, (
            f"slow connections still open {KEEPALIVE * 3:.0f}s on (keep-alive timeout {KEEPALIVE}s): "
            f"{loris.open_count()} left"
        )
        assert len(loris.answered) == SLOW_CONNECTIONS // 4, "only the completed requests may be answered"
        assert worst < 2.0, f"a normal request took {worst:.2f}s while the slow-loris ran"
        assert service.proc.running()
    finally:
        if loris is not None:
            loris.close()
        for proc in reversed(procs):
            proc.stop()
