"""Explain gives the decision the decision endpoints give, with a trace, and changes nothing in the service.

Each request of a table (SAS, bearer JWT, anonymous, no credential, unknown host, dry run) is explained and then
decided by the service of the same application; the decision fields must agree. The side-effect tests explain
requests and check that the metrics text, the decision cache, the key-slot use, the recent denies and the audit
log are exactly as before.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from gateway_authz.config.loader import load_settings
from gateway_authz.core.appkeys import HOLDER, JWT, METRICS, SERVICE
from gateway_authz.core.model import AuthzRequest, headers_from_pairs
from gateway_authz.decision.explain import Explanation, explain
from gateway_authz.http.app import create_app
from gateway_authz.sas.token import sign_sas
from tests.cli.test_cli import GROUP, HOST, MEMBER, NOBODY, OWNER, SENDER, _config, _jwt, _key
from tests.oidc_provider import SigningKey

URL = f"https://{HOST}"
AUDIT: web.AppKey[list[bytes]] = web.AppKey("test_audit", list)


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.rsa()


@pytest.fixture
def app(tmp_path: Path, signing_key: SigningKey) -> Any:
    config = _config(signing_key)
    config["namespaces"][0]["hybridConnections"].append({"name": "public", "requiresClientAuthorization": False})
    config["namespaces"].append(
        {"name": "fabrikam", "hosts": ["fabrikam.example"], "dryRun": True, "hybridConnections": [{"name": "x"}]}
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    audit: list[bytes] = []
    application = create_app(load_settings(path), audit_sink=audit.append, watch_config=False)
    application[AUDIT] = audit
    return application


def _sas(path: str, key_name: str, key: str, ttl: int = 3600, host: str = HOST) -> str:
    return sign_sas(f"https://{host}{path}", key_name, key, int(time.time()) + ttl)


def _request(target: str, *headers: tuple[str, str], method: str = "GET", host: str = HOST) -> AuthzRequest:
    return AuthzRequest("cli", method, host, target, headers_from_pairs(headers))


def _table(signing_key: SigningKey) -> dict[str, AuthzRequest]:
    sba = "ServiceBusAuthorization"
    root = ("RootManageSharedAccessKey", _key(1))
    return {
        "sas-root-primary": _request("/orders", (sba, _sas("/orders", *root))),
        "sas-root-secondary": _request("/orders", (sba, _sas("/orders", "RootManageSharedAccessKey", _key(2)))),
        "sas-entity-rule": _request("/orders", (sba, _sas("/orders", "orders-send", _key(3)))),
        "sas-entity-rule-cannot-listen": _request(
            "/orders?sb-hc-action=listen", (sba, _sas("/orders", "orders-send", _key(3)))
        ),
        "sas-entity-rule-other-entity": _request("/invoices", (sba, _sas("/orders", "orders-send", _key(3)))),
        "sas-bad-signature": _request("/orders", (sba, _sas("/orders", "orders-send", _key(9)))),
        "sas-expired": _request("/orders", (sba, _sas("/orders", *root, ttl=-3600))),
        "sas-unknown-rule": _request("/orders", (sba, _sas("/orders", "nobody", _key(1)))),
        "sas-narrow-sr": _request("/invoices", (sba, _sas("/orders", *root))),
        "sas-in-query": _request(f"/orders?sb-hc-token={_sas('/orders', *root).replace(' ', '%20')}"),
        "sas-management-route": _request("/$admin/x", (sba, _sas("/", "orders-send", _key(3))), method="PUT"),
        "malformed-token": _request("/orders", (sba, "SharedAccessSignature nonsense")),
        "two-carriers": _request("/orders", (sba, "a"), (sba, "b")),
        "no-credential": _request("/orders"),
        "anonymous-send": _request("/public"),
        "anonymous-listen": _request("/public?sb-hc-action=listen"),
        "unknown-host": _request("/orders", host="elsewhere.example"),
        "no-method": _request("/orders", method=""),
        "dry-run-namespace": _request("/x", host="fabrikam.example"),
        "jwt-sender": _request("/orders", ("Authorization", f"Bearer {_jwt(signing_key, oid=SENDER)}")),
        "jwt-owner-manage": _request(
            "/$admin/x", ("Authorization", f"Bearer {_jwt(signing_key, oid=OWNER)}"), method="PUT"
        ),
        "jwt-sender-cannot-listen": _request(
            "/orders?sb-hc-action=listen", ("Authorization", f"Bearer {_jwt(signing_key, oid=SENDER)}")
        ),
        "jwt-group": _request("/invoices", (sba, _jwt(signing_key, oid=MEMBER, groups=[GROUP]))),
        "jwt-nobody": _request("/orders", ("Authorization", f"Bearer {_jwt(signing_key, oid=NOBODY)}")),
        "jwt-expired": _request(
            "/orders", ("Authorization", _jwt(signing_key, oid=SENDER, now=time.time() - 7200, lifetime=60))
        ),
        "jwt-wrong-audience": _request(
            "/orders", ("Authorization", _jwt(signing_key, oid=SENDER, audience="https://elsewhere"))
        ),
        "jwt-unknown-key": _request("/orders", ("Authorization", _jwt(SigningKey.rsa(), oid=SENDER))),
    }


def _explain(app: Any, request: AuthzRequest) -> Explanation:
    return explain(app[HOLDER].runtime, request, now=time.time(), keys=app[JWT].keys)


def _fields(decision: Any) -> tuple[Any, ...]:
    return (
        decision.allowed,
        decision.status,
        decision.reason,
        decision.auth,
        decision.principal,
        decision.right,
        decision.namespace,
        decision.entity,
        dict(decision.audit),
    )


async def test_explain_gives_the_decision_the_service_gives_for_every_request_of_the_table(
    app: Any, signing_key: SigningKey
) -> None:
    seen = set()
    for name, request in _table(signing_key).items():
        explained = _explain(app, request).decision
        decided = await app[SERVICE].decide(request)
        assert _fields(explained) == _fields(decided), name
        seen.add((decided.allowed, decided.status))
    assert {(True, 200), (False, 401), (False, 403)} <= seen  # the table covers allows and both denies


async def test_explain_changes_no_metric_cache_key_slot_recent_deny_or_audit_line(
    app: Any, signing_key: SigningKey
) -> None:
    service, runtime = app[SERVICE], app[HOLDER].runtime
    table = _table(signing_key)
    for request in table.values():  # some history first, so that "unchanged" is not "still empty"
        await service.decide(request)
    metrics_before = _counted(app)
    cache_before = dict(runtime.cache._decisions)
    key_use_before = dict(service.key_use.last_used())
    denies_before = service.recent_denies.snapshot()
    audit_before = list(app[AUDIT])
    for request in table.values():
        _explain(app, request)
    assert _counted(app) == metrics_before
    assert dict(service.key_use.last_used()) == key_use_before
    assert service.recent_denies.snapshot() == denies_before
    assert app[AUDIT] == audit_before
    assert dict(runtime.cache._decisions) == cache_before and cache_before


async def test_explain_does_not_fill_the_decision_cache(app: Any) -> None:
    """A token never decided before is explained: the service's next decision on it is still a cache miss."""
    request = _request("/orders", ("ServiceBusAuthorization", _sas("/orders", "orders-send", _key(3), ttl=1234)))
    assert _explain(app, request).decision.allowed
    metrics = app[METRICS]
    misses = metrics.registry.get_sample_value("gateway_authz_decision_cache_total", {"result": "miss"}) or 0.0
    await app[SERVICE].decide(request)
    assert metrics.registry.get_sample_value("gateway_authz_decision_cache_total", {"result": "miss"}) == misses + 1


def _counted(app: Any) -> list[str]:
    """The service's own metric samples, but the ones that move with the clock (ages)."""
    text = app[METRICS].render().decode()
    return [line for line in text.splitlines() if line.startswith("gateway_authz_") and "_age_seconds" not in line]


def _steps(explanation: Explanation) -> list[tuple[str, str, str]]:
    return [(s.step, s.result, s.detail) for s in explanation.trace]


def test_the_trace_names_the_carrier_the_key_slot_and_the_missing_right(app: Any) -> None:
    request = _request(
        "/orders?sb-hc-action=listen", ("ServiceBusAuthorization", _sas("/orders", "orders-send", _key(4)))
    )
    explanation = _explain(app, request)
    steps = _steps(explanation)
    assert ("carrier", "ok", "SAS credential read from the ServiceBusAuthorization header") in steps
    assert ("rule orders-send on entity orders", "ok", "signed with the secondary key") in steps
    assert ("rights", "fail", "rule grants Send; missing Listen") in steps
    assert (explanation.decision.status, explanation.decision.reason) == (403, "insufficient_rights")


def test_the_trace_says_an_expired_token_expired(app: Any) -> None:
    request = _request("/orders", ("ServiceBusAuthorization", _sas("/orders", "orders-send", _key(3), ttl=-3600)))
    steps = _steps(_explain(app, request))
    assert any(step == "expiry" and result == "fail" and "expired at" in detail for step, result, detail in steps)


def test_the_trace_lists_each_role_assignment_and_why_it_failed(app: Any, signing_key: SigningKey) -> None:
    request = _request("/invoices", ("Authorization", f"Bearer {_jwt(signing_key, oid=SENDER)}"))
    explanation = _explain(app, request)
    assignments = [s for s in explanation.trace if s.step == "role assignment"]
    assert assignments and all(s.result == "fail" for s in assignments)
    assert "scope does not cover the resource" in assignments[0].detail
    assert explanation.decision.reason == "no_role_assignment"


def test_the_trace_says_a_groups_overage_was_not_evaluated(app: Any, signing_key: SigningKey) -> None:
    token = _jwt(signing_key, oid=MEMBER, _claim_names={"groups": "src1"}, _claim_sources={"src1": {}})
    explanation = _explain(app, _request("/invoices", ("Authorization", token)))
    assert any(s.step == "groups" and s.result == "fail" and "overage" in s.detail for s in explanation.trace)


def test_an_explanation_never_holds_the_signature_or_the_token(app: Any, signing_key: SigningKey) -> None:
    sas = _sas("/orders", "orders-send", _key(3))
    jwt = _jwt(signing_key, oid=SENDER)
    for value in (sas, jwt, f"Bearer {jwt}"):
        text = orjson.dumps(_explain(app, _request("/orders", ("Authorization", value))).to_json()).decode()
        signature = value.rsplit("sig=", 1)[-1].split("&")[0] if "sig=" in value else value.rsplit(".", 1)[-1]
        assert signature not in text and value not in text
