"""Configuration reload faults: whatever happens to the file, the last good configuration keeps serving.

The service runs in-process on a real config file read by the real loader, with a fake clock and the config
watcher off: each test calls ``reload()`` itself, as the ``configTtlSeconds`` tick (or SIGHUP) would (they call
``reload_in_thread()``, the same steps with the file read on a worker thread, also tested here). After each
fault, ``/readyz`` says ``degraded`` with the reason, ``/metrics`` counts a failed reload and sets
``gateway_authz_config_last_reload_success`` to 0, and decisions are still those of the last good file; a good
file then recovers all three. Faults: file deleted, truncated to nothing, half-written, unreadable (a directory
in its place, and a permission error from an injected loader, since tests run as root in CI where ``chmod 000``
does not stop a read), invalid, and a loader that raises something unexpected.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway_authz.config.loader import load_settings
from gateway_authz.config.reload import ConfigHolder
from gateway_authz.core.appkeys import HOLDER, SERVICE
from gateway_authz.core.model import AuthzRequest, headers_from_pairs
from gateway_authz.core.settings import Settings
from gateway_authz.http.app import create_admin_app, create_app
from tests._sas_sdk import mint_sas

HOST = "contoso.servicebus.windows.net"
NOW = 1_800_000_000.0
KEY_A = "a" * 43 + "="  # 44 characters, the shape of an Azure key
KEY_B = "b" * 43 + "="
KEY_C = "c" * 43 + "="


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config_data(orders_key: str = KEY_A) -> dict[str, Any]:
    """A namespace with a root rule, a protected entity and an anonymous-Send entity."""
    return {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": [HOST],
                "authorizationRules": [
                    {"keyName": "Root", "primaryKey": KEY_C, "rights": ["Manage", "Listen", "Send"]},
                ],
                "hybridConnections": [
                    {
                        "name": "orders",
                        "requiresClientAuthorization": True,
                        "authorizationRules": [{"keyName": "OrdersSend", "primaryKey": orders_key, "rights": ["Send"]}],
                    },
                    {"name": "invoices", "requiresClientAuthorization": True},
                    {"name": "public", "requiresClientAuthorization": False},
                ],
            }
        ],
        "cache": {"configTtlSeconds": 1, "decisionTtlSeconds": 60},
    }


def config_text(orders_key: str = KEY_A) -> str:
    return yaml.safe_dump(config_data(orders_key), sort_keys=False)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def token(path: str, key: str = KEY_A, key_name: str = "OrdersSend") -> str:
    return mint_sas(f"sb://{HOST}{path}", key_name, key, now=NOW).token


class Rig:
    """The decision and admin apps over a config file, with helpers to decide, scrape and reload."""

    def __init__(self, path: Path, clock: FakeClock, app: web.Application, decision: Any, admin: Any) -> None:
        self.path = path
        self.clock = clock
        self.app = app
        self.decision: TestClient[Any, Any] = decision
        self.admin: TestClient[Any, Any] = admin

    @property
    def holder(self) -> ConfigHolder:
        return self.app[HOLDER]

    async def status(self, target: str, credential: str | None = None, method: str = "POST") -> int:
        headers = {"Host": HOST}
        if credential is not None:
            headers["ServiceBusAuthorization"] = credential
        response = await self.decision.request(method, "/ext_authz" + target, headers=headers)
        return response.status

    async def readyz(self) -> dict[str, Any]:
        response = await self.admin.get("/readyz")
        assert response.status == 200  # degraded is still ready: the last good config is serving
        body: dict[str, Any] = await response.json()
        return body

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = await self.admin.get("/metrics")
        out = {}
        for family in text_string_to_metric_families(await response.text()):
            for sample in family.samples:
                out[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return out

    async def failed_reloads(self) -> float:
        return (await self.metrics())[("gateway_authz_config_reloads_total", frozenset({("result", "failed")}))]

    async def last_reload_success(self) -> float:
        return (await self.metrics())[("gateway_authz_config_last_reload_success", frozenset())]


@pytest.fixture
async def rig(tmp_path: Path, aiohttp_client: Any) -> Rig:
    path = tmp_path / "gateway-authz.yaml"
    write_atomically(path, config_text())
    clock = FakeClock()
    app = create_app(
        load_settings(path),
        config_path=str(path),
        clock=clock,
        audit_sink=lambda _line: None,
        ops_sink=lambda _line: None,
        watch_config=False,
    )
    decision = await aiohttp_client(app)
    admin = await aiohttp_client(create_admin_app(app))
    return Rig(path, clock, app, decision, admin)


async def assert_last_good_serves(rig: Rig) -> None:
    """The first file's decisions: OrdersSend with key A allowed, key B refused, anonymous only on /public."""
    assert await rig.status("/orders", token("/orders", KEY_A)) == 200
    assert await rig.status("/orders", token("/orders", KEY_B)) == 401
    assert await rig.status("/orders") == 401
    assert await rig.status("/public/inbox") == 200


async def assert_degraded(rig: Rig, failures_before: float, *, mentions: str = "") -> None:
    body = await rig.readyz()
    assert body["status"] == "degraded", body
    error = body["config"]["last_reload_error"]
    assert error, body
    assert mentions in error, f"{mentions!r} not in {error!r}"
    assert await rig.failed_reloads() == failures_before + 1
    assert await rig.last_reload_success() == 0


async def assert_recovers_with_a_change(rig: Rig) -> None:
    """A good file (OrdersSend rotated to key B) is picked up: ready again, success 1, the new key decides."""
    write_atomically(rig.path, config_text(orders_key=KEY_B))
    assert rig.holder.reload() is True
    body = await rig.readyz()
    assert body["status"] == "ready" and body["config"]["last_reload_error"] is None, body
    assert await rig.last_reload_success() == 1
    assert await rig.status("/orders", token("/orders", KEY_B)) == 200
    assert await rig.status("/orders", token("/orders", KEY_A)) == 401


async def _fault_then_recover(rig: Rig, fault: Callable[[], object], *, mentions: str = "") -> None:
    await assert_last_good_serves(rig)
    before_runtime, before_failures = rig.holder.runtime, await rig.failed_reloads()
    fault()
    assert rig.holder.reload() is False
    assert rig.holder.runtime is before_runtime, "a failed reload replaced the serving configuration"
    await assert_degraded(rig, before_failures, mentions=mentions)
    await assert_last_good_serves(rig)
    await assert_recovers_with_a_change(rig)


async def test_reload_after_the_file_is_deleted_keeps_the_last_good(rig: Rig) -> None:
    """Config file deleted: the last good keeps serving, readiness degraded with 'cannot read', metrics failed."""
    await _fault_then_recover(rig, rig.path.unlink, mentions="cannot read")


async def test_reload_after_the_file_is_truncated_to_nothing_keeps_the_last_good(rig: Rig) -> None:
    """Config file truncated to zero bytes (a writer that crashed after O_TRUNC): the last good keeps serving."""
    await _fault_then_recover(rig, lambda: rig.path.write_bytes(b""))


async def test_reload_of_a_half_written_file_keeps_the_last_good(rig: Rig) -> None:
    """A non-atomic writer caught half-way (an unterminated flow list): the last good keeps serving."""
    text = config_text(orders_key=KEY_B).replace("- Send\n", "[Send\n", 1)  # make the cut land inside a list
    cut = text.index("[Send") + 3

    def half_written() -> None:
        with rig.path.open("w") as handle:
            handle.write(text[:cut])

    await _fault_then_recover(rig, half_written, mentions="not valid YAML")


async def test_reload_of_an_unreadable_path_keeps_the_last_good(rig: Rig) -> None:
    """An empty directory where the file was (an empty mount, contract §5): the last good keeps serving."""

    def unreadable() -> None:
        rig.path.unlink()
        rig.path.mkdir()

    await assert_last_good_serves(rig)
    before_runtime, before_failures = rig.holder.runtime, await rig.failed_reloads()
    unreadable()
    assert rig.holder.reload() is False
    assert rig.holder.runtime is before_runtime
    await assert_degraded(rig, before_failures, mentions="defines no namespace and no issuer")
    await assert_last_good_serves(rig)
    shutil.rmtree(rig.path)
    await assert_recovers_with_a_change(rig)


async def test_reload_when_permission_is_denied_keeps_the_last_good(rig: Rig) -> None:
    """``chmod 000`` (modelled by the loader raising PermissionError, as tests run as root): last good serves."""
    real_loader: Callable[[str], Settings] = rig.holder._loader

    def denied(path: str) -> Settings:
        raise PermissionError(13, "Permission denied", path)

    if os.geteuid() != 0:  # not root: the real thing, through the real loader
        await _fault_then_recover(rig, lambda: rig.path.chmod(0), mentions="Permission denied")
        return
    rig.holder._loader = denied
    await assert_last_good_serves(rig)
    before_runtime, before_failures = rig.holder.runtime, await rig.failed_reloads()
    assert rig.holder.reload() is False
    assert rig.holder.runtime is before_runtime
    await assert_degraded(rig, before_failures, mentions="Permission denied")
    await assert_last_good_serves(rig)
    rig.holder._loader = real_loader
    await assert_recovers_with_a_change(rig)


async def test_reload_of_an_invalid_config_keeps_the_last_good_and_names_the_key(rig: Rig) -> None:
    """A schema error (Manage without Listen/Send, and a misspelt property): readiness names both locations."""
    data = config_data(orders_key=KEY_B)
    data["namespaces"][0]["authorizationRules"][0]["rights"] = ["Manage"]
    data["namespaces"][0]["hybridConnections"][0]["requireClientAuthorization"] = False

    def invalid() -> None:
        write_atomically(rig.path, yaml.safe_dump(data, sort_keys=False))

    await _fault_then_recover(rig, invalid, mentions="namespaces[0].authorizationRules[0].rights")
    # both problems were reported, not just the first
    assert rig.holder.last_error is None  # recovered; check the text of a fresh failure
    invalid()
    assert rig.holder.reload() is False
    assert "namespaces[0].hybridConnections[0].requireClientAuthorization" in (rig.holder.last_error or "")


async def test_reload_when_the_loader_raises_something_unexpected_keeps_the_last_good(rig: Rig) -> None:
    """Any exception from the loader (a bug, MemoryError-like trouble) is a failed reload, never a crash."""
    real_loader = rig.holder._loader

    def broken(_path: str) -> Settings:
        raise RuntimeError("boom")

    rig.holder._loader = broken
    await assert_last_good_serves(rig)
    before_failures = await rig.failed_reloads()
    assert rig.holder.reload() is False
    await assert_degraded(rig, before_failures, mentions="RuntimeError: boom")
    await assert_last_good_serves(rig)
    rig.holder._loader = real_loader
    await assert_recovers_with_a_change(rig)


async def test_repeated_failures_keep_counting_and_the_config_age_keeps_growing(rig: Rig) -> None:
    """Five failed reloads in a row: counted five times, still degraded, and the age of the config in use grows."""
    failures = await rig.failed_reloads()
    rig.path.unlink()
    for n in range(1, 6):
        rig.clock.now += 10
        assert rig.holder.reload() is False
        assert await rig.failed_reloads() == failures + n
    samples = await rig.metrics()
    assert samples[("gateway_authz_config_age_seconds", frozenset())] == 50
    assert (await rig.readyz())["status"] == "degraded"
    await assert_last_good_serves(rig)


class GatedLoader:
    """The real loader behind a gate the test opens: a config read that takes as long as the test wants."""

    def __init__(self, loader: Callable[[str], Settings]) -> None:
        self._loader = loader
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.threads: list[int] = []
        self.inside = self.most_inside = 0
        self._lock = threading.Lock()

    def __call__(self, path: str) -> Settings:
        with self._lock:
            self.threads.append(threading.get_ident())
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.entered.set()
        try:
            assert self.gate.wait(10), "the test never opened the gate"
            return self._loader(path)
        finally:
            with self._lock:
                self.inside -= 1


async def _until(check: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``check()`` holds; fail after five seconds."""
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


async def test_a_slow_config_read_does_not_hold_up_decisions(rig: Rig) -> None:
    """The timer's (and SIGHUP's) reload reads the file on a worker thread: while the read hangs, decisions
    are still answered by the configuration serving, which is swapped only once the read is done."""
    loader = GatedLoader(rig.holder._loader)
    rig.holder._loader = loader
    before = rig.holder.runtime
    write_atomically(rig.path, config_text(orders_key=KEY_B))
    reload = asyncio.create_task(rig.holder.reload_in_thread())
    await _until(loader.entered.is_set, "the reload to start reading")
    await assert_last_good_serves(rig)  # answered meanwhile, by the first file
    assert rig.holder.runtime is before and not reload.done()
    loader.gate.set()
    assert await asyncio.wait_for(reload, 10) is True
    assert loader.threads and threading.get_ident() not in loader.threads, "the file was read on the event loop"
    assert await rig.status("/orders", token("/orders", KEY_B)) == 200
    assert await rig.status("/orders", token("/orders", KEY_A)) == 401


async def test_a_reload_thread_hands_the_gil_back_often_and_the_interval_is_restored(rig: Rig) -> None:
    """While the reload's thread compiles, the interpreter asks it for the GIL every 0.5 ms (not every 5 ms), so
    decisions ready on the loop wait at most that long; afterwards the interval is what it was."""
    seen: list[float] = []
    real = rig.holder._loader

    def loader(path: str) -> Settings:
        seen.append(sys.getswitchinterval())
        return real(path)

    rig.holder._loader = loader
    before = sys.getswitchinterval()
    write_atomically(rig.path, config_text(orders_key=KEY_B))
    assert await rig.holder.reload_in_thread() is True
    assert seen == [0.0005] and sys.getswitchinterval() == before


async def test_reloads_in_a_thread_run_one_at_a_time(rig: Rig) -> None:
    """A SIGHUP arriving during the timer's reload waits for it: two reads never race to swap."""
    loader = GatedLoader(rig.holder._loader)
    rig.holder._loader = loader
    write_atomically(rig.path, config_text(orders_key=KEY_B))
    first = asyncio.create_task(rig.holder.reload_in_thread())
    second = asyncio.create_task(rig.holder.reload_in_thread())
    await _until(loader.entered.is_set, "the first read")
    await asyncio.sleep(0.05)
    loader.gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), 10) == [True, False]  # type: ignore[comparison-overlap]  # gather's list; changed, then unchanged
    assert loader.most_inside == 1 and len(loader.threads) == 2


async def test_reload_soon_reloads_without_being_awaited(rig: Rig) -> None:
    """What the SIGHUP handler calls: it returns at once, and the new file is serving shortly after."""
    write_atomically(rig.path, config_text(orders_key=KEY_B))
    before = rig.holder.runtime
    rig.holder.reload_soon()
    assert rig.holder.runtime is before  # nothing read yet: the handler does not wait for the file
    await _until(lambda: rig.holder.runtime is not before, "the new configuration to serve")
    assert await rig.status("/orders", token("/orders", KEY_B)) == 200


async def test_a_failed_read_in_a_thread_keeps_the_last_good(rig: Rig) -> None:
    """The worker thread's failure is the loop's failed reload: counted, degraded, last good serving."""
    before_runtime, before_failures = rig.holder.runtime, await rig.failed_reloads()
    rig.path.unlink()
    assert await rig.holder.reload_in_thread() is False
    assert rig.holder.runtime is before_runtime
    await assert_degraded(rig, before_failures, mentions="cannot read")
    await assert_last_good_serves(rig)


def _prefixes(text: str) -> list[int]:
    """Cut points: every line boundary, and the middle and one-before-end of every line."""
    cuts = {0, len(text)}
    start = 0
    for line in text.splitlines(keepends=True):
        end = start + len(line)
        cuts.update({start, start + len(line) // 2, max(start, end - 2), end})
        start = end
    return sorted(cuts)


# Requests the full config denies; no prefix of the file that happens to load may allow any of them.
DENIED_BY_THE_FULL_FILE = [
    ("POST", "/orders", None),
    ("POST", "/invoices", None),
    ("POST", "/", None),
    ("GET", "/public?sb-hc-action=listen", None),
    ("POST", "/invoices", "orders-token"),
    ("POST", "/orders", "wrong-key-token"),
]


async def test_no_truncation_of_the_file_ever_widens_access(rig: Rig) -> None:
    """Every prefix of the config file (a torn write): the reload fails and the last good serves, or the prefix
    loads and allows none of the requests the full file denies."""
    text = config_text()
    credentials = {"orders-token": token("/orders"), "wrong-key-token": token("/orders", KEY_B), None: None}
    service = rig.app[SERVICE]
    loaded = failed = 0
    for cut in _prefixes(text):
        write_atomically(rig.path, text)
        rig.holder.reload()
        good = rig.holder.runtime
        write_atomically(rig.path, text[:cut])
        rig.holder.reload()
        if rig.holder.last_error is not None:
            assert rig.holder.runtime is good, f"a failed reload at cut {cut} replaced the serving configuration"
            failed += 1
            continue
        loaded += 1
        for method, target, credential in DENIED_BY_THE_FULL_FILE:
            value = credentials[credential]
            pairs = [("host", HOST)] + ([("servicebusauthorization", value)] if value else [])
            request = AuthzRequest("envoy-http", method, HOST, target, headers_from_pairs(pairs))
            decision = await service.decide(request)
            assert not decision.allowed, f"cut at {cut} allowed {method} {target} ({credential}):\n{text[:cut]}"
    assert failed > 0 and loaded > 0, (failed, loaded)
