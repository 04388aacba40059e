"""Day-2 operations through a real Envoy: three replicas sharing one config file, metrics, dry-run.

Three ``gateway-authz serve`` processes read one config file (as Pods read one ConfigMap); one Envoy runs the
shipped sidecar config (``k8s/sidecar/envoy-config.yaml``, ``envoy-http.yaml``) with its ``gateway_authz``
cluster rewritten to the three replicas, balanced round robin.

- Propagation: a key rotation and a rule removal written to the file must reach every replica within
  ``configTtlSeconds`` + 1 s. Each replica is asked directly (the request Envoy would send) until it answers the new
  way; the time from the write is measured per replica and printed. Then the same is checked through Envoy.
- ``/metrics`` of the three replicas, parsed and summed, must match the traffic sent through Envoy, and Envoy's
  own ext_authz counters.
- Dry-run: a would-be deny passes through Envoy to the upstream, and is logged and counted as a dry-run deny.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import _procs
from ._procs import AuditLog, AuthzProcess
from .conftest import Echo, Gateway, SasConfig, new_key, sas_namespace_config

pytestmark = pytest.mark.integration

CONFIG_TTL = 2.0  # cache.configTtlSeconds of the shared file
REPLICAS = 3
HOST = "contoso.servicebus.windows.net"


@dataclass
class Cluster:
    replicas: list[AuthzProcess]
    envoy: Gateway
    envoy_admin_port: int


@pytest.fixture(scope="module")
def shared_config(integration_dir: Path) -> SasConfig:
    config = SasConfig(path=integration_dir / "shared-config.yaml", data=sas_namespace_config(CONFIG_TTL))
    config.write()
    return config


@pytest.fixture(scope="module")
def replicas(shared_config: SasConfig, integration_dir: Path) -> Iterator[list[AuthzProcess]]:
    """Three service processes on one config file; each must exit 0 on SIGTERM."""
    started: list[AuthzProcess] = []
    try:
        for index in range(REPLICAS):
            started.append(_procs.start_authz(shared_config.path, integration_dir, name=f"replica{index}"))
        yield started
    finally:
        codes = {r.proc.name: r.proc.stop() for r in started}
    assert set(codes.values()) <= {0}, f"replicas must exit 0 on SIGTERM: {codes}"


def _round_robin(config: dict[str, Any]) -> None:
    (cluster,) = [c for c in config["static_resources"]["clusters"] if c["name"] == "gateway_authz"]
    assert cluster.get("lb_policy", "ROUND_ROBIN") == "ROUND_ROBIN"
    cluster["lb_policy"] = "ROUND_ROBIN"


@pytest.fixture(scope="module")
def cluster(replicas: list[AuthzProcess], echo_upstream: Echo, integration_dir: Path) -> Iterator[Cluster]:
    proc, port, admin_port = _procs.start_envoy(
        "envoy-http.yaml",
        integration_dir,
        clusters={"app": echo_upstream.port, "gateway_authz": [r.port for r in replicas]},
        name="envoy-ops",
        mutate=_round_robin,
    )
    with _procs.stopping(proc):
        gateway = Gateway("envoy-http", port, proc, relays_deny_body=True, strips_query_token=True)
        yield Cluster(replicas, gateway, admin_port)


# --------------------------------------------------------------------------------------------------- helpers


def _measure(cluster: Cluster, token: str, expected: int, written_at: float, what: str) -> dict[str, float]:
    """Seconds from ``written_at`` until each replica answers ``expected``; fails past configTtlSeconds + 1 s."""
    deadline = written_at + CONFIG_TTL + 1.0
    reached: dict[str, float] = {}
    while len(reached) < len(cluster.replicas):
        for replica in cluster.replicas:
            name = replica.proc.name
            if name not in reached and _procs.sas_check_status(replica, token, host=HOST, timeout=2.0) == expected:
                reached[name] = time.monotonic() - written_at
        now = time.monotonic()
        if len(reached) < len(cluster.replicas) and now > deadline:
            logs = "\n".join(r.proc.describe(lines=20) for r in cluster.replicas)
            pytest.fail(f"{what}: after {now - written_at:.2f}s only {reached} answer {expected}\n{logs}")
        time.sleep(0.02)
    return reached


def _report(capsys: pytest.CaptureFixture[str], what: str, reached: dict[str, float]) -> None:
    figures = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in sorted(reached.items()))
    with capsys.disabled():
        print(
            f"\n[propagation] {what}: every replica within {max(reached.values()):.2f}s ({figures}); "
            f"configTtlSeconds={CONFIG_TTL:g}, bound {CONFIG_TTL + 1:g}s"
        )


def _through_envoy(cluster: Cluster, token: str, count: int, expected: int) -> list[str]:
    """``count`` requests through Envoy, each answered ``expected``; returns their request ids."""
    ids = []
    for _ in range(count):
        response, request_id = cluster.envoy.request("POST", "/orders", [("ServiceBusAuthorization", token)])
        assert response.status == expected, response
        ids.append(request_id)
    return ids


def _who_answered(cluster: Cluster, request_ids: list[str]) -> dict[str, int]:
    """How many of ``request_ids`` each replica logged; every id must be in exactly one audit log once."""
    counts = {r.proc.name: 0 for r in cluster.replicas}
    seen: dict[str, int] = dict.fromkeys(request_ids, 0)
    deadline = time.monotonic() + 5.0
    while True:
        counts = dict.fromkeys(counts, 0)
        seen = dict.fromkeys(request_ids, 0)
        for replica in cluster.replicas:
            for event in AuditLog(replica.stdout_path).events():
                if event.get("request_id") in seen:
                    seen[event["request_id"]] += 1
                    counts[replica.proc.name] += 1
        if all(v == 1 for v in seen.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert all(v == 1 for v in seen.values()), {k: v for k, v in seen.items() if v != 1}
    return counts


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(cluster: Cluster) -> Samples:
    """``/metrics`` of every replica, parsed by the Prometheus text parser and summed over the replicas."""
    total: Samples = {}
    for replica in cluster.replicas:
        response = _procs.request(replica.admin_port, "GET", "/metrics", [("Host", "127.0.0.1")])
        assert response.status == 200
        for family in text_string_to_metric_families(response.body.decode()):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                total[key] = total.get(key, 0.0) + sample.value
    return total


def _value(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def _envoy_stat(cluster: Cluster, name: str) -> int:
    response = _procs.request(cluster.envoy_admin_port, "GET", f"/stats?filter=^{name}$", [("Host", "127.0.0.1")])
    for line in response.body.decode().splitlines():
        stat, _, value = line.partition(": ")
        if stat == name:
            return int(value)
    return 0


def _write_and_converge(cluster: Cluster, config: SasConfig) -> None:
    """Write the file, then wait until every replica serves a config built after the write (/readyz loaded_at)."""
    config.write()
    written = time.time()

    def converged() -> bool:
        for replica in cluster.replicas:
            response = _procs.request(replica.admin_port, "GET", "/readyz", [("Host", "127.0.0.1")], timeout=2.0)
            if response.json()["config"]["loaded_at"] < written:
                return False
        return True

    procs = [r.proc for r in cluster.replicas]
    _procs.wait_until(converged, timeout=CONFIG_TTL + 1.0, what="every replica on the new config", procs=procs)


# --------------------------------------------------------------------------------------------------- tests


def test_key_rotation_reaches_every_replica_within_the_config_ttl(
    cluster: Cluster, shared_config: SasConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regenerating a primary key: the old key's tokens fail on all three replicas within configTtlSeconds + 1 s."""
    old = shared_config.mint("Rotating", "/orders")
    for replica in cluster.replicas:
        assert _procs.sas_check_status(replica, old.token, host=HOST) == 200
    old_secondary = shared_config.key("Rotating", "secondary")
    shared_config.set_keys("Rotating", new_key(), old_secondary)  # "regenerate primary key", as in Azure
    written_at = time.monotonic()
    reached = _measure(cluster, old.token, 401, written_at, "key rotation")
    _report(capsys, "key rotation (retired primary refused)", reached)

    ids = _through_envoy(cluster, old.token, 3 * REPLICAS, 401)
    assert all(n >= 1 for n in _who_answered(cluster, ids).values())  # round robin: every replica refused it
    _through_envoy(cluster, shared_config.mint("Rotating", "/orders").token, REPLICAS, 200)  # the new primary
    _through_envoy(cluster, shared_config.mint("Rotating", "/orders", slot="secondary").token, REPLICAS, 200)


def test_rule_removal_reaches_every_replica_within_the_config_ttl(
    cluster: Cluster, shared_config: SasConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting a rule: its tokens fail on all three replicas within configTtlSeconds + 1 s."""
    token = shared_config.mint("NamespaceSend", "/orders")
    for replica in cluster.replicas:
        assert _procs.sas_check_status(replica, token.token, host=HOST) == 200
    (namespace,) = shared_config.data["namespaces"]
    namespace["authorizationRules"] = [r for r in namespace["authorizationRules"] if r["keyName"] != "NamespaceSend"]
    shared_config.write()
    written_at = time.monotonic()
    reached = _measure(cluster, token.token, 401, written_at, "rule removal")
    _report(capsys, "rule removal (removed rule refused)", reached)
    ids = _through_envoy(cluster, token.token, 3 * REPLICAS, 401)
    assert all(n >= 1 for n in _who_answered(cluster, ids).values())


def test_metrics_of_all_replicas_match_the_traffic_through_envoy(cluster: Cluster, shared_config: SasConfig) -> None:
    """Summed /metrics deltas equal the requests sent through Envoy, and Envoy's own ext_authz ok/denied counts."""
    before = _scrape(cluster)
    envoy_ok, envoy_denied = (_envoy_stat(cluster, f"http.ingress.ext_authz.{s}") for s in ("ok", "denied"))
    root = shared_config.mint("RootManageSharedAccessKey", "/orders").token
    orders_send = shared_config.mint("OrdersSend", "/orders").token
    ids = _through_envoy(cluster, root, 6, 200)
    forged = shared_config.mint("RootManageSharedAccessKey", "/orders", key=new_key()).token
    ids += _through_envoy(cluster, forged, 4, 401)
    for _ in range(5):  # Send-only entity token asking for Listen: 403
        response, request_id = cluster.envoy.request(
            "GET", "/orders?sb-hc-action=listen", [("ServiceBusAuthorization", orders_send)]
        )
        assert response.status == 403, response
        ids.append(request_id)
    for _ in range(2):
        response, request_id = cluster.envoy.request("POST", "/public")
        assert response.status == 200 and response.upstream is not None, response
        ids.append(request_id)
    answered = _who_answered(cluster, ids)
    assert all(n >= 1 for n in answered.values()), answered

    after = _scrape(cluster)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    decisions = "gateway_authz_decisions_total"
    assert delta(decisions, decision="allow", auth="sas", gateway="envoy-http", dry_run="false") == 6
    assert delta(decisions, decision="deny", auth="sas", reason="bad_signature", dry_run="false") == 4
    assert delta(decisions, decision="deny", gateway="envoy-http", auth="sas") == 4 + 5
    assert delta(decisions, decision="allow", auth="anonymous") == 2
    assert delta(decisions) == len(ids)
    assert delta("gateway_authz_decision_seconds_count", gateway="envoy-http") == len(ids)
    assert delta("gateway_authz_decision_cache_total") == 6 + 4 + 5  # every request with a credential looked up
    assert delta("gateway_authz_sas_key_slot_total", key_name="RootManageSharedAccessKey", slot="primary") >= 1
    assert _envoy_stat(cluster, "http.ingress.ext_authz.ok") - envoy_ok == 6 + 2
    assert _envoy_stat(cluster, "http.ingress.ext_authz.denied") - envoy_denied == 4 + 5
    assert _value(after, "gateway_authz_config_last_reload_success") == REPLICAS


def test_dry_run_deny_passes_through_envoy_and_is_logged_and_counted(
    cluster: Cluster, shared_config: SasConfig
) -> None:
    """Namespace dryRun: a forged token passes Envoy as anonymous, stripped, and is a dry-run deny in logs/metrics."""
    (namespace,) = shared_config.data["namespaces"]
    forged = shared_config.mint("RootManageSharedAccessKey", "/orders", key=new_key()).token
    namespace["dryRun"] = True
    try:
        _write_and_converge(cluster, shared_config)
        before = _scrape(cluster)
        response, request_id = cluster.envoy.request(
            "POST", "/orders", [("ServiceBusAuthorization", forged), ("x-authz-principal", "spoofed")]
        )
        assert response.status == 200, response
        upstream = response.upstream
        assert upstream is not None, response
        assert upstream.header_all("x-authz-auth") == ["anonymous"]
        assert upstream.header_all("x-authz-principal") in ([], [""])  # never the forged key name, never spoofed
        assert upstream.header_all("servicebusauthorization") == []  # the credential removed as on an allow
        (event,) = [e for r in cluster.replicas for e in AuditLog(r.stdout_path).for_request(request_id, timeout=0.5)]
        assert (event["decision"], event["dry_run"], event["reason"], event["status"]) == (
            "deny",
            True,
            "bad_signature",
            401,
        )
        after = _scrape(cluster)
        name = "gateway_authz_decisions_total"
        labels = {"decision": "deny", "dry_run": "true", "reason": "bad_signature", "gateway": "envoy-http"}
        assert _value(after, name, **labels) - _value(before, name, **labels) == 1
        assert _value(after, name, decision="allow") == _value(before, name, decision="allow")
    finally:
        namespace.pop("dryRun")
        _write_and_converge(cluster, shared_config)
    response, _ = cluster.envoy.request("POST", "/orders", [("ServiceBusAuthorization", forged)])
    assert response.status == 401, response
