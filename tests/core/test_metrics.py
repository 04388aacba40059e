"""``/metrics`` on the admin app, parsed with the Prometheus text parser after known traffic.

The service runs in-process (``create_app(settings, audit_sink=list.append, watch_config=False)`` with a fake
clock); requests go through the real HTTP adapters, and every counter is compared with what was sent.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gateway_authz.core.appkeys import HOLDER
from gateway_authz.core.errors import ConfigError, ConfigProblem
from gateway_authz.core.metrics import Metrics
from gateway_authz.core.settings import Settings
from gateway_authz.http.app import create_admin_app
from tests._factories import (
    HOST,
    ORDERS_SEND,
    ORDERS_SEND_KEY,
    ROOT,
    ROOT_SECONDARY,
    harness,
    make_settings,
    mint,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def _scrape(admin: TestClient[Any, Any]) -> Samples:
    response = await admin.get("/metrics")
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _parse(await response.text())


async def test_decision_counters_match_the_requests_sent(aiohttp_client: Any) -> None:
    """Counters by decision, reason, gateway and credential type equal the mix of requests sent."""
    h = harness()
    client = await aiohttp_client(h.app)
    admin = await aiohttp_client(create_admin_app(h.app))
    root = mint("/orders")
    expected: Counter[tuple[str, str, str, str]] = Counter()
    for _ in range(5):  # the same token five times: one miss, four hits
        r = await client.post("/ext_authz/orders", headers={"Host": HOST, "ServiceBusAuthorization": root})
        assert r.status == 200
    expected["allow", "allowed", "envoy-http", "sas"] += 5
    for _ in range(3):
        r = await client.get("/auth", headers={"X-Original-Method": "GET", "X-Original-URI": "/orders", "Host": HOST})
        assert r.status == 401
    expected["deny", "missing_credential", "nginx", "none"] += 3
    send_only = mint("/orders", ORDERS_SEND, ORDERS_SEND_KEY)
    for _ in range(2):  # a valid entity token asking for Listen: 403, cached after the first
        r = await client.get(
            "/ext_authz/orders?sb-hc-action=listen", headers={"Host": HOST, "Authorization": send_only}
        )
        assert r.status == 403
    r = await client.get(
        "/forward-auth",
        headers={"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/public", "X-Forwarded-Host": HOST},
    )
    assert r.status == 200
    expected["allow", "allowed", "forward-auth", "anonymous"] += 1

    samples = await _scrape(admin)
    for (decision, reason, gateway, auth), count in expected.items():
        labels = {"decision": decision, "reason": reason, "gateway": gateway, "auth": auth, "dry_run": "false"}
        assert _value(samples, "gateway_authz_decisions_total", **labels) == count, labels
    forbidden = _value(samples, "gateway_authz_decisions_total", decision="deny", gateway="envoy-http", auth="sas")
    assert forbidden == 2
    total = sum(expected.values()) + 2
    assert _value(samples, "gateway_authz_decisions_total") == total
    assert _value(samples, "gateway_authz_decision_seconds_count") == total
    assert _value(samples, "gateway_authz_decision_seconds_bucket", le="+Inf") == total
    assert _value(samples, "gateway_authz_decision_seconds_count", gateway="nginx") == 3
    assert _value(samples, "gateway_authz_decision_cache_total", result="miss") == 2
    assert _value(samples, "gateway_authz_decision_cache_total", result="hit") == 5
    assert len(h.events()) == total  # one audit line per counted decision


async def test_sas_key_slot_shows_which_key_verified(aiohttp_client: Any) -> None:
    """Tokens signed with the secondary key are counted under slot="secondary", per namespace and rule."""
    h = harness(make_settings(decision_ttl=0))  # no decision cache: every request verifies
    client = await aiohttp_client(h.app)
    admin = await aiohttp_client(create_admin_app(h.app))
    for token in (mint("/orders"), mint("/orders", ROOT, ROOT_SECONDARY), mint("/orders", ROOT, ROOT_SECONDARY)):
        r = await client.post("/ext_authz/orders", headers={"Host": HOST, "ServiceBusAuthorization": token})
        assert r.status == 200
    samples = await _scrape(admin)
    slot = "gateway_authz_sas_key_slot_total"
    assert _value(samples, slot, namespace="contoso", key_name=ROOT, slot="primary") == 1
    assert _value(samples, slot, namespace="contoso", key_name=ROOT, slot="secondary") == 2


async def test_config_reload_metrics_and_age(aiohttp_client: Any) -> None:
    """Reloads by result, last-reload success, load time and age of the config in use follow the holder."""
    h = harness(make_settings(fingerprint="one"))
    admin = await aiohttp_client(create_admin_app(h.app))
    loaded_at = h.clock.now
    h.clock.advance(42)
    samples = await _scrape(admin)
    assert _value(samples, "gateway_authz_config_age_seconds") == 42
    assert _value(samples, "gateway_authz_config_loaded_timestamp_seconds") == loaded_at
    assert _value(samples, "gateway_authz_config_last_reload_success") == 1
    for result in ("changed", "unchanged", "failed"):  # exist at 0 before the first reload
        assert ("gateway_authz_config_reloads_total", frozenset({("result", result)})) in samples

    assert not h.swap_settings(make_settings(fingerprint="one"))  # same fingerprint: unchanged
    assert h.swap_settings(make_settings(fingerprint="two"))
    _fail_next_reload(h)
    assert not h.app[HOLDER].reload()
    h.clock.advance(8)
    samples = await _scrape(admin)
    reloads = "gateway_authz_config_reloads_total"
    assert [_value(samples, reloads, result=r) for r in ("unchanged", "changed", "failed")] == [1, 1, 1]
    assert _value(samples, "gateway_authz_config_last_reload_success") == 0
    assert _value(samples, "gateway_authz_config_loaded_timestamp_seconds") == loaded_at + 42
    assert _value(samples, "gateway_authz_config_age_seconds") == 8  # the good config swapped in 8 s ago

    h.swap_settings(make_settings(fingerprint="two"))
    samples = await _scrape(admin)
    assert _value(samples, "gateway_authz_config_last_reload_success") == 1


def _fail_next_reload(h: Any) -> None:
    def broken(_path: str) -> Settings:
        raise ConfigError([ConfigProblem("namespaces[0].authorizationRules[0].primaryKey", "must not be empty")])

    h.app[HOLDER]._loader = broken


async def test_dry_run_denies_are_labelled(aiohttp_client: Any) -> None:
    """A dry-run deny is counted as decision="deny", dry_run="true", and never as an allow."""
    h = harness(make_settings(dry_run=True))
    client = await aiohttp_client(h.app)
    admin = await aiohttp_client(create_admin_app(h.app))
    r = await client.post("/ext_authz/orders", headers={"Host": HOST})
    assert r.status == 200
    samples = await _scrape(admin)
    name = "gateway_authz_decisions_total"
    assert _value(samples, name, decision="deny", dry_run="true", reason="missing_credential") == 1
    assert _value(samples, name, decision="allow") == 0


async def test_jwks_fetch_counter() -> None:
    """jwks_fetched() counts fetches per issuer, ok and failed apart."""
    metrics = Metrics()
    metrics.jwks_fetched("https://login.microsoftonline.com/{tenantid}/v2.0", ok=True)
    metrics.jwks_fetched("https://login.microsoftonline.com/{tenantid}/v2.0", ok=False)
    metrics.jwks_fetched("https://login.microsoftonline.com/{tenantid}/v2.0", ok=False)
    samples = _parse(metrics.render().decode())
    assert _value(samples, "gateway_authz_jwks_fetches_total", result="ok") == 1
    assert _value(samples, "gateway_authz_jwks_fetches_total", result="failed") == 2


def test_each_app_has_its_own_registry() -> None:
    """Two apps in one process never share counters (no process-global collectors)."""
    first, second = harness(), harness()
    first.metrics.decisions.labels("allow", "allowed", "envoy-http", "sas", "false").inc()
    assert first.metrics.registry is not second.metrics.registry
    assert _value(_parse(second.metrics.render().decode()), "gateway_authz_decisions_total") == 0


def test_build_info_and_the_process_and_platform_collectors_are_exported() -> None:
    """Contract §10: ``gateway_authz_build_info{version,python,aiohttp} 1`` beside process and platform metrics."""
    import platform as _platform

    import aiohttp as _aiohttp

    from gateway_authz.core.metrics import Metrics as _Metrics

    text = _Metrics().render().decode()
    line = next(line for line in text.splitlines() if line.startswith("gateway_authz_build_info{"))
    assert f'python="{_platform.python_version()}"' in line and f'aiohttp="{_aiohttp.__version__}"' in line
    assert 'version="' in line and line.endswith(" 1.0")
    assert "python_info{" in text and "process_cpu_seconds_total" in text
