"""Dry-run: a deny is made, logged and counted as usual, but answered as an allow that vouches for nobody.

Three switches, any one of which puts a deny in dry-run: the top-level ``dryRun``, a namespace's ``dryRun``, and a
route's gRPC ``context_extensions`` ``dry_run: "true"``. The audit line says ``decision: deny``, ``dry_run: true``,
the real reason and the status the client would have had; the metric is ``decision="deny", dry_run="true"``; the
answer is 200 with ``x-authz-auth: anonymous``, no principal and the credential header removed upstream.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway_authz.config.loader import parse_settings
from gateway_authz.core.errors import ConfigError
from gateway_authz.core.model import Decision
from tests._factories import (
    HOST,
    ORDERS_SEND,
    ORDERS_SEND_KEY,
    OTHER_HOST,
    ROOT,
    ROOT_PRIMARY,
    contoso,
    fabrikam,
    harness,
    make_request,
    make_settings,
    mint,
    secret_forms,
)

FORGED_ROOT = mint("/orders", ROOT, "not-the-root-key-" + "x" * 27)  # right key name, wrong key: bad signature


def _dry_run_samples(h: Any, *, dry_run: str) -> dict[tuple[str, str], float]:
    """``{(decision, reason): count}`` of ``gateway_authz_decisions_total`` with the given ``dry_run`` label."""
    out: dict[tuple[str, str], float] = {}
    for family in h.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "gateway_authz_decisions_total" and sample.labels["dry_run"] == dry_run:
                key = (sample.labels["decision"], sample.labels["reason"])
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _assert_dry_run_pass(decision: Decision) -> None:
    assert decision.allowed and decision.status == 200 and decision.dry_run
    assert (decision.auth, decision.principal) == ("anonymous", "")


async def test_global_dry_run_answers_a_deny_as_allow_and_logs_it_as_deny() -> None:
    """Top-level dryRun: a missing credential is answered 200, audited as a 401 deny with dry_run true."""
    h = harness(make_settings(dry_run=True))
    decision = await h.decide(make_request("/orders", request_id="r1"))
    _assert_dry_run_pass(decision)
    assert decision.reason == "missing_credential"
    (event,) = h.events()
    assert event["decision"] == "deny" and event["dry_run"] is True
    assert (event["status"], event["reason"], event["request_id"]) == (401, "missing_credential", "r1")
    assert _dry_run_samples(h, dry_run="true") == {("deny", "missing_credential"): 1.0}
    assert _dry_run_samples(h, dry_run="false") == {}


async def test_dry_run_leaves_allows_untouched() -> None:
    """An allowed request in dry-run is an ordinary allow: its identity, audit and metric are unchanged."""
    h = harness(make_settings(dry_run=True))
    decision = await h.decide(make_request("/orders", sba=mint("/orders")))
    assert decision.allowed and not decision.dry_run
    assert (decision.auth, decision.principal) == ("sas", ROOT)
    (event,) = h.events()
    assert (event["decision"], event["dry_run"], event["status"]) == ("allow", False, 200)
    assert _dry_run_samples(h, dry_run="false") == {("allow", "allowed"): 1.0}


async def test_namespace_dry_run_applies_to_that_namespace_only() -> None:
    """dryRun on contoso passes contoso's denies; fabrikam's and unknown hosts' denies stay denies."""
    h = harness(make_settings(namespaces=[contoso(dry_run=True), fabrikam()]))
    _assert_dry_run_pass(await h.decide(make_request("/orders")))
    real = await h.decide(make_request("/orders", host=OTHER_HOST))
    assert not real.allowed and real.status == 401 and not real.dry_run
    unknown = await h.decide(make_request("/orders", host="unknown.example.com", sba=mint("/orders")))
    assert not unknown.allowed and unknown.status == 403 and not unknown.dry_run
    assert [e["dry_run"] for e in h.events()] == [True, False, False]


@pytest.mark.parametrize(
    ("context", "passes"), [({"dry_run": "true"}, True), ({"dry_run": "false"}, False), ({}, False)]
)
async def test_route_dry_run_from_context_extensions(context: dict[str, str], passes: bool) -> None:
    """gRPC context_extensions dry_run "true" passes that route's denies; "false" or absent enforces."""
    h = harness()
    decision = await h.decide(make_request("/orders", gateway="envoy-grpc", context=context))
    assert decision.allowed is passes and decision.dry_run is passes
    (event,) = h.events()
    assert (event["decision"], event["dry_run"], event["status"]) == ("deny", passes, 401)


async def test_route_dry_run_cannot_switch_off_a_global_dry_run() -> None:
    """Any switch turns dry-run on; a route's dry_run "false" does not enforce inside a global dry-run."""
    h = harness(make_settings(dry_run=True))
    _assert_dry_run_pass(await h.decide(make_request("/orders", gateway="envoy-grpc", context={"dry_run": "false"})))


async def test_dry_run_pass_never_vouches_for_a_forged_credential() -> None:
    """A bad-signature token naming RootManageSharedAccessKey passes in dry-run as anonymous, not as that rule."""
    h = harness(make_settings(dry_run=True))
    decision = await h.decide(make_request("/orders", sba=FORGED_ROOT))
    _assert_dry_run_pass(decision)
    assert [h.lower() for h in decision.strip_headers] == ["servicebusauthorization"]
    (event,) = h.events()
    assert (event["decision"], event["reason"], event["auth"], event["status"]) == ("deny", "bad_signature", "sas", 401)
    line = h.audit[0].decode()
    assert not any(form in line for form in secret_forms(FORGED_ROOT))


async def test_dry_run_pass_removes_a_query_token_too() -> None:
    """A rejected sb-hc-token is named for removal, as on an allow (gRPC mode removes it upstream)."""
    h = harness(make_settings(dry_run=True))
    decision = await h.decide(make_request("/orders", query_token=FORGED_ROOT, gateway="envoy-grpc"))
    _assert_dry_run_pass(decision)
    assert decision.strip_query == ("sb-hc-token",)


async def test_dry_run_403_is_cached_as_the_deny_and_enforced_once_dry_run_is_off() -> None:
    """The cache holds the real deny; turning dry-run off (a new config) enforces it at once."""
    h = harness(make_settings(dry_run=True, fingerprint="dry"))
    listen = make_request("/orders", sba=mint("/orders", ORDERS_SEND, ORDERS_SEND_KEY), action="listen")
    for _ in range(2):
        decision = await h.decide(listen)
        _assert_dry_run_pass(decision)
        assert decision.reason != "allowed"
    assert h.cache_lookups("hit") == 1.0
    assert h.swap_settings(make_settings(dry_run=False, fingerprint="enforcing"))
    enforced = await h.decide(listen)
    assert not enforced.allowed and enforced.status == 403
    assert [e["dry_run"] for e in h.events()] == [True, True, False]


async def test_envoy_http_answer_of_a_dry_run_pass(aiohttp_client: Any) -> None:
    """Through the Envoy HTTP adapter: exactly 200, anonymous, and the failed credential header to remove."""
    h = harness(make_settings(dry_run=True))
    client: TestClient[Any, Any] = await aiohttp_client(h.app)
    response = await client.post(
        "/ext_authz/orders", headers={"Host": HOST, "ServiceBusAuthorization": FORGED_ROOT, "x-request-id": "e1"}
    )
    assert response.status == 200
    assert response.headers["x-authz-auth"] == "anonymous"
    assert response.headers["x-authz-principal"] == ""
    assert response.headers["x-authz-right"] == "Send"
    assert response.headers["x-envoy-auth-headers-to-remove"].lower() == "servicebusauthorization"
    (event,) = h.events()
    assert (event["gateway"], event["decision"], event["dry_run"]) == ("envoy-http", "deny", True)


async def test_nginx_answer_of_a_dry_run_pass(aiohttp_client: Any) -> None:
    """Through the NGINX adapter: 200 (auth_request lets it through), audited as a dry-run deny."""
    h = harness(make_settings(namespaces=[contoso(dry_run=True)]))
    client: TestClient[Any, Any] = await aiohttp_client(h.app)
    response = await client.get(
        "/auth", headers={"X-Original-Method": "GET", "X-Original-URI": "/orders", "X-Original-Host": HOST}
    )
    assert response.status == 200 and response.headers["x-authz-auth"] == "anonymous"
    (event,) = h.events()
    assert (event["gateway"], event["decision"], event["dry_run"], event["status"]) == ("nginx", "deny", True, 401)


def _config(namespace_dry_run: str, top_dry_run: str) -> bytes:
    return textwrap.dedent(
        f"""\
        namespaces:
          - name: contoso
            hosts: [{HOST}]
            dryRun: {namespace_dry_run}
            authorizationRules:
              - keyName: {ROOT}
                primaryKey: {ROOT_PRIMARY}
                rights: [Manage, Listen, Send]
        dryRun: {top_dry_run}
        """
    ).encode()


@pytest.mark.parametrize(("ns", "top"), [("true", "false"), ("false", "true"), ("false", "false")])
def test_config_loader_reads_both_dry_run_switches(ns: str, top: str) -> None:
    """dryRun at the top level and on a namespace load into Settings.dry_run and Namespace.dry_run."""
    settings = parse_settings(_config(ns, top))
    assert settings.dry_run is (top == "true")
    assert settings.namespaces[0].dry_run is (ns == "true")


def test_config_loader_rejects_a_non_boolean_dry_run() -> None:
    """dryRun: "yes please" is a config error at its location, never silently false."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(_config('"yes please"', "false"))
    assert any(p.location == "namespaces[0].dryRun" for p in caught.value.problems), caught.value.problems
