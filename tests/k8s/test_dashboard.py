"""The Grafana dashboard: every panel query names only metrics a real service exports on ``/metrics`` (scraped after
traffic through its HTTP adapters), filtered by the namespace, instance and gateway variables; the panels operations
asked for are there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway_authz.http.app import create_admin_app, create_app
from tests._factories import HOST, ORDERS_SEND, ORDERS_SEND_KEY, make_settings, mint

DASHBOARD = Path(__file__).resolve().parents[2] / "k8s" / "overlays" / "monitoring" / "grafana-dashboard.json"
# Labels Prometheus adds when it scrapes (target labels), not the service.
SCRAPE_LABELS = {"namespace", "instance", "pod", "job", "le"}
NAME = re.compile(r"\b(?:gateway_authz|process|python)_[a-z_]+")


async def _scraped(aiohttp_client: Any) -> dict[str, set[str]]:
    """Sample name -> label names, from a real app's /metrics after an allow, a deny and a cache hit."""
    app = create_app(make_settings(), audit_sink=lambda _line: None, ops_sink=lambda _line: None, watch_config=False)
    client = await aiohttp_client(app)
    admin = await aiohttp_client(create_admin_app(app))
    token = mint(f"sb://{HOST}/orders", ORDERS_SEND, ORDERS_SEND_KEY)
    for headers in ({"Host": HOST, "ServiceBusAuthorization": token},) * 2 + ({"Host": HOST},):
        async with client.post("/ext_authz/orders", headers=headers) as response:
            assert response.status in (200, 401)
    async with admin.get("/metrics") as response:
        text = await response.text()
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if not family.samples and family.type == "counter":  # declared, no label set counted yet (JWKS fetches)
            found[family.name + "_total"] = {"*"}
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


async def test_every_panel_query_names_metrics_the_service_exports(aiohttp_client: Any) -> None:
    exported = await _scraped(aiohttp_client)
    panels = [p for p in _dashboard()["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in _dashboard()["panels"]}) == len(_dashboard()["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(NAME.findall(expr))
            assert names and names <= set(exported), (panel["title"], names - set(exported))
            for selector in re.findall(r"\{([^}]*)\}", expr):
                labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
                allowed = set().union(*(exported[n] for n in names)) | SCRAPE_LABELS
                assert "*" in allowed or labels <= allowed, (panel["title"], labels - allowed)
            assert target["datasource"]["uid"] == "${datasource}"


def test_namespace_instance_and_gateway_variables_filter_every_query() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "instance", "gateway"} <= set(variables)
    for panel in _dashboard()["panels"]:
        for target in panel.get("targets", []):
            for name, selector in re.findall(r"\b(gateway_authz_[a-z_]+)\{([^}]*)\}", target["expr"]):
                assert 'namespace=~"$namespace"' in selector and 'instance=~"$instance"' in selector, (name, panel)
                if name.startswith(("gateway_authz_decisions", "gateway_authz_decision_seconds")):
                    assert 'gateway=~"$gateway"' in selector, (name, panel)


def test_the_panels_operations_asked_for_are_there() -> None:
    exprs = " ".join(t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", []))
    for needed in (
        r"sum by \(decision, reason\) \(rate\(gateway_authz_decisions_total",  # decisions by reason
        r"gateway_authz_decision_seconds_bucket",  # latency
        r'gateway_authz_decision_cache_total\{result="hit"',  # cache hit ratio
        r"gateway_authz_sas_key_slot_total",  # key-slot use
        r"gateway_authz_config_last_reload_success",  # reload status
        r"gateway_authz_config_reloads_total",
        r"gateway_authz_ready",
        r"gateway_authz_build_info",
    ):
        assert re.search(needed, exprs), needed
