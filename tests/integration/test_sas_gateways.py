"""Azure Relay SAS authorization end to end: client -> real Envoy / NGINX -> gateway-authz -> echo upstream.

One scenario table, run through every gateway column of ``conftest.GATEWAYS`` (Envoy HTTP mode, Envoy gRPC mode,
NGINX) with identical expected outcomes.
Tokens are minted at test time by the Azure SDK's own signing function (``tests/_sas_sdk.py``). The gateways
run the configs shipped in ``k8s/`` with only addresses, ports and paths substituted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from . import _procs
from ._procs import AuditLog, AuthzProcess, EchoSeen, Response
from .conftest import Gateway, SasConfig, new_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    """The service also serves gRPC, for the ``envoy-grpc`` column."""
    return {"grpc": True}


SPOOFED = (("x-authz-auth", "spoofed"), ("x-authz-principal", "spoofed-principal"), ("x-authz-right", "Manage"))
AUDIT_FIELDS = {
    "timestamp",
    "event",
    "decision",
    "status",
    "reason",
    "auth",
    "principal",
    "right",
    "namespace",
    "entity",
    "method",
    "host",
    "path",
    "gateway",
    "request_id",
    "latency_ms",
}


# --------------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Tok:
    """How to mint the scenario's token. ``sr`` is the resource path; the host is the test namespace's."""

    rule: str
    sr: str = "/"
    slot: str = "primary"
    ttl: int = 3600
    wrong_key: bool = False  # the rule's name, signed with a key that is not the rule's
    carrier: str = "servicebusauthorization"  # or "authorization", or "query" (sb-hc-token)
    scheme: str = "sb"


@dataclass(frozen=True)
class Scenario:
    id: str
    method: str
    target: str  # request-target as the client sends it; "{token}" marks where a query token goes
    token: Tok | None
    status: int
    auth: str = ""
    principal: str = ""
    right: str = ""
    key_slot: str = ""
    body: bytes | None = None


def _allow(id: str, method: str, target: str, token: Tok | None, right: str, **kw: Any) -> Scenario:
    auth = "sas" if token else "anonymous"
    principal = token.rule if token else ""
    slot = token.slot if token else ""
    return Scenario(id, method, target, token, 200, auth=auth, principal=principal, right=right, key_slot=slot, **kw)


SCENARIOS = [
    # allow
    _allow("namespace_rule", "GET", "/orders/items?x=1", Tok("RootManageSharedAccessKey", "/"), "Send"),
    _allow(
        "namespace_send_rule_on_any_entity", "POST", "/invoices", Tok("NamespaceSend", "/"), "Send", body=b'{"n": 1}'
    ),
    _allow(
        "entity_rule",
        "POST",
        "/orders/sub/path?x=1",
        Tok("OrdersSend", "/orders/", scheme="https"),
        "Send",
        body=b"hello",
    ),
    _allow(
        "entity_listen_rule_listens", "GET", "/orders?sb-hc-action=listen", Tok("OrdersListen", "/orders"), "Listen"
    ),
    _allow("secondary_key", "GET", "/orders", Tok("OrdersSend", "/orders", slot="secondary"), "Send"),
    _allow(
        "authorization_header_carrier", "GET", "/orders", Tok("OrdersSend", "/orders", carrier="authorization"), "Send"
    ),
    _allow(
        "sb_hc_token_query",
        "GET",
        "/orders?sb-hc-action=connect&sb-hc-token={token}",
        Tok("OrdersSend", "/orders", carrier="query"),
        "Send",
    ),
    _allow(
        "hc_prefix_names_same_entity",
        "GET",
        "/$hc/orders?sb-hc-action=connect",
        Tok("OrdersSend", "/orders", scheme="http"),
        "Send",
    ),
    _allow("anonymous_send_where_configured", "POST", "/public/inbox", None, "Send", body=b"anon"),
    _allow("token_on_anonymous_entity", "GET", "/public", Tok("NamespaceSend", "/public"), "Send"),
    # 401: no usable credential
    Scenario("missing_credential", "GET", "/orders", None, 401),
    Scenario("expired", "GET", "/orders", Tok("OrdersSend", "/orders", ttl=-3600), 401),
    Scenario("bad_signature", "GET", "/orders", Tok("OrdersSend", "/orders", wrong_key=True), 401),
    Scenario("unknown_key_name", "GET", "/orders", Tok("NoSuchRule", "/orders", wrong_key=True), 401),
    Scenario("anonymous_listen_refused", "GET", "/public?sb-hc-action=listen", None, 401),
    # 403: valid credential, no right here
    Scenario("wrong_right_send_token_listens", "GET", "/orders?sb-hc-action=listen", Tok("OrdersSend", "/orders"), 403),
    Scenario(
        "wrong_right_listen_token_sends", "GET", "/orders?sb-hc-action=connect", Tok("OrdersListen", "/orders"), 403
    ),
    Scenario("sibling_entity", "GET", "/invoices", Tok("OrdersSend", "/orders"), 403),
    Scenario("sr_is_not_a_segment_prefix", "GET", "/orders-archive", Tok("NamespaceSend", "/orders"), 403),
    Scenario("rule_on_another_entity", "GET", "/orders", Tok("InvoicesSend", "/orders"), 403),
    Scenario("entity_rule_signing_namespace_sr", "GET", "/orders", Tok("OrdersSend", "/"), 403),
]


def _send(gateway: Gateway, sas_config: SasConfig, s: Scenario) -> tuple[Response, str, Any]:
    """Mint the scenario's token, put it in its carrier, add the spoofed identity headers, send it."""
    headers: list[tuple[str, str]] = list(SPOOFED)
    target = s.target
    minted = None
    if s.token is not None:
        t = s.token
        key = new_key() if t.wrong_key else None
        minted = sas_config.mint(t.rule, t.sr, slot=t.slot, ttl=t.ttl, key=key, scheme=t.scheme)
        if t.carrier == "query":
            target = target.replace("{token}", minted.query_value)
        elif t.carrier == "authorization":
            headers.append(("Authorization", minted.token))
        else:
            headers.append(("ServiceBusAuthorization", minted.token))
    response, request_id = gateway.request(s.method, target, headers, s.body)
    return response, request_id, minted


def _expected_upstream_target(gateway: Gateway, target: str, minted: Any) -> str:
    if minted is None or "{token}" not in target:
        return target
    if gateway.strips_query_token:
        return target.replace("&sb-hc-token={token}", "").replace("?sb-hc-token={token}", "")
    return target.replace("{token}", minted.query_value)


def _check_upstream(gateway: Gateway, s: Scenario, seen: EchoSeen, target: str) -> None:
    assert seen.method == s.method
    assert seen.path_qs == target
    if s.body is not None:
        assert seen.body == s.body.decode()
    assert seen.header_all("x-authz-auth") == [s.auth]
    assert seen.header_all("x-authz-right") == [s.right]
    principal = seen.header_all("x-authz-principal")
    if s.principal:
        assert principal == [s.principal]
    else:  # anonymous: no principal at all, and certainly not the client's spoofed one
        assert principal in ([], [""])
    assert seen.header_all("servicebusauthorization") == [], "the credential header reached the upstream"
    if s.token is not None and s.token.carrier == "authorization":
        assert seen.header_all("authorization") == [], "the credential (Authorization) reached the upstream"


def _check_audit(gateway: Gateway, audit: AuditLog, s: Scenario, request_id: str, minted: Any) -> None:
    events = audit.for_request(request_id)
    assert len(events) == 1, f"expected one audit line for {request_id}, got {len(events)}: {events}"
    (event,) = events
    missing = AUDIT_FIELDS - set(event)
    assert not missing, f"audit line lacks {sorted(missing)}: {event}"
    assert event["event"] == "authz.decision"
    assert event["decision"] == ("allow" if s.status == 200 else "deny")
    assert event["status"] == s.status
    assert event["gateway"] == gateway.name
    assert event["method"] == s.method
    assert event["host"].split(":")[0] == "contoso.servicebus.windows.net"
    assert "sig=" not in event["path"] and "sig%3d" not in event["path"].lower(), "credential in audit path"
    if s.status == 200:
        assert (event["auth"], event["principal"], event["right"]) == (s.auth, s.principal, s.right)
        assert event["namespace"] == "contoso"
        if s.auth == "sas":
            assert event.get("key_name") == s.principal
            assert event.get("key_slot") == s.key_slot
    line = json.dumps(event)
    if minted is not None:
        for form in minted.signature_forms:
            assert form not in line


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(gateway: Gateway, sas_config: SasConfig, audit: AuditLog, s: Scenario) -> None:
    """Each row of the table, through each gateway: status, what the upstream saw, one audit line."""
    response, request_id, minted = _send(gateway, sas_config, s)
    assert response.status == s.status, f"{gateway.name} {s.id}: {response}"
    if s.status == 200:
        seen = response.upstream
        assert seen is not None, f"allowed but not answered by the upstream: {response}"
        _check_upstream(gateway, s, seen, _expected_upstream_target(gateway, s.target, minted))
    else:
        assert response.upstream is None, "a denied request reached the upstream"
        if s.status == 401:
            assert response.header("www-authenticate"), f"401 without WWW-Authenticate: {response}"
        if gateway.relays_deny_body:
            body = response.json()
            assert set(body) >= {"error", "reason"} and body["reason"], body
        if minted is not None:
            for form in (minted.token, *minted.signature_forms):
                assert form not in response.body.decode(errors="replace")
    _check_audit(gateway, audit, s, request_id, minted)


# --------------------------------------------------------------------------------------------------- more checks


def test_application_authorization_passes_untouched(gateway: Gateway, sas_config: SasConfig) -> None:
    """With ServiceBusAuthorization as the credential, the app's own Authorization header reaches the upstream."""
    token = sas_config.mint("OrdersSend", "/orders")
    response, _ = gateway.request(
        "GET", "/orders", [("ServiceBusAuthorization", token.token), ("Authorization", "Basic YXBwOnNlY3JldA==")]
    )
    assert response.status == 200, str(response)
    seen = response.upstream
    assert seen is not None
    assert seen.header_all("authorization") == ["Basic YXBwOnNlY3JldA=="]
    assert seen.header_all("servicebusauthorization") == []


def _cli_token(sas_config: SasConfig, rule: str, path: str, *extra: str) -> str:
    """``gateway-authz token`` in the contract's form; returns the printed token."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway_authz",
            "token",
            "--config",
            str(sas_config.path),
            "--namespace",
            "contoso",
            "--rule",
            rule,
            "--resource",
            sas_config.url(path),
            "--ttl",
            "600",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_procs.service_env(),
        check=False,
    )
    assert result.returncode == 0, f"gateway-authz token --rule {rule} failed: {result.stderr}"
    token = result.stdout.strip()
    assert token.startswith("SharedAccessSignature ")
    return token


def test_cli_minted_token(gateway: Gateway, sas_config: SasConfig) -> None:
    """A token printed by `gateway-authz token` (namespace rule, secondary key) is accepted through the gateway."""
    token = _cli_token(sas_config, "RootManageSharedAccessKey", "/orders", "--key", "secondary")
    response, _ = gateway.request("GET", "/orders?sb-hc-action=accept", [("ServiceBusAuthorization", token)])
    assert response.status == 200, str(response)
    seen = response.upstream
    assert seen is not None
    assert seen.header_all("x-authz-principal") == ["RootManageSharedAccessKey"]
    assert seen.header_all("x-authz-right") == ["Listen"]


def test_cli_minted_token_for_entity_rule(envoy_http_gateway: Gateway, sas_config: SasConfig) -> None:
    """`gateway-authz token --rule <an entity's rule> --resource <that entity>` (the contract's form) works."""
    token = _cli_token(sas_config, "OrdersListen", "/orders")
    response, _ = envoy_http_gateway.request("GET", "/orders?sb-hc-action=listen", [("ServiceBusAuthorization", token)])
    assert response.status == 200, str(response)


def _status_with(gateway: Gateway, token: str) -> int:
    response, _ = gateway.request("GET", "/orders", [("ServiceBusAuthorization", token)])
    return response.status


def _wait_for_status(gateway: Gateway, token: str, status: int, timeout: float) -> float:
    start = time.monotonic()
    while True:
        got = _status_with(gateway, token)
        if got == status:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"still {got} (not {status}) {timeout:.1f}s after the config change", pytrace=False)
        time.sleep(0.1)


def test_key_rotation_without_restart(
    gateway: Gateway, sas_config: SasConfig, authz_service: AuthzProcess, audit: AuditLog
) -> None:
    """Secondary-key tokens pass; after the file swaps keys and configTtlSeconds lapses, the retired key fails."""
    ttl = float(sas_config.data["cache"]["configTtlSeconds"])
    pid = authz_service.proc.pid
    old_primary, old_secondary = new_key(), new_key()
    sas_config.set_keys("Rotating", old_primary, old_secondary)
    by_old_primary = sas_config.mint("Rotating", "/orders", key=old_primary).token
    by_old_secondary = sas_config.mint("Rotating", "/orders", key=old_secondary).token
    _wait_for_status(gateway, by_old_primary, 200, timeout=ttl + 5)  # the service has read these keys
    assert _status_with(gateway, by_old_secondary) == 200
    assert _status_with(gateway, by_old_primary) == 200  # now also in the decision cache

    # Rotate as Azure documents it: the secondary becomes the primary, a fresh secondary, the old primary retired.
    new_secondary = new_key()
    sas_config.set_keys("Rotating", old_secondary, new_secondary)
    took = _wait_for_status(gateway, by_old_primary, 401, timeout=ttl + 5)
    assert took <= ttl + 2, f"the retired key kept working {took:.1f}s (configTtlSeconds={ttl})"

    response, request_id = gateway.request("GET", "/orders", [("ServiceBusAuthorization", by_old_secondary)])
    assert response.status == 200, str(response)
    (event,) = audit.for_request(request_id)
    assert event.get("key_slot") == "primary"
    by_new_secondary = sas_config.mint("Rotating", "/orders", key=new_secondary).token
    response, request_id = gateway.request("GET", "/orders", [("ServiceBusAuthorization", by_new_secondary)])
    assert response.status == 200, str(response)
    (event,) = audit.for_request(request_id)
    assert event.get("key_slot") == "secondary"
    assert authz_service.proc.running() and authz_service.proc.pid == pid, "the service restarted"


# --------------------------------------------------------------------------------------------------- whole-log checks


def _secrets(sas_config: SasConfig) -> list[str]:
    out: list[str] = []
    for minted in sas_config.minted:
        out.extend(minted.signature_forms)
        out.append(minted.token)
    for key in sas_config.all_keys():
        out.extend({key, quote(key, safe="")})
    return out


def _logs_with_secrets(paths: list[Any], secrets: list[str]) -> list[str]:
    found: list[str] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        found.extend(f"{path.name}: {secret[:6]}…" for secret in secrets if secret in text)
    return found


def test_no_secret_in_any_log(
    sas_config: SasConfig,
    authz_service: AuthzProcess,
    envoy_http_gateway: Gateway,
    envoy_grpc_gateway: Gateway,
    nginx_gateway: Gateway,
) -> None:
    """No key, signature or whole token in the service's stdout/stderr (or the gateways' logs), every carrier."""
    gateways = (envoy_http_gateway, envoy_grpc_gateway, nginx_gateway)
    for gw in gateways:
        good = sas_config.mint("OrdersSend", "/orders")
        bad = sas_config.mint("OrdersSend", "/orders", key=new_key())
        for token in (good, bad):
            gw.request("GET", "/orders", [("ServiceBusAuthorization", token.token)])
            gw.request("GET", "/orders", [("Authorization", token.token)])
            gw.request("GET", f"/orders?sb-hc-token={token.query_value}")
    time.sleep(0.2)
    logs = [authz_service.stdout_path, authz_service.stderr_path]
    for gw in gateways:
        logs.extend([gw.proc.stdout_path, gw.proc.stderr_path, *gw.proc.extra_logs])
    leaked = _logs_with_secrets(logs, _secrets(sas_config))
    assert not leaked, f"secrets in logs: {leaked}"


@pytest.fixture(scope="module", autouse=True)
def _whole_module_log_checks(
    sas_config: SasConfig, sent_request_ids: list[str], authz_service: AuthzProcess
) -> Iterator[None]:
    """After the last test: every request sent was audited exactly once, stdout held only audit lines, and no
    token or key minted anywhere in the module reached the service's logs."""
    yield
    service = authz_service
    time.sleep(0.2)
    log = AuditLog(service.stdout_path)
    non_json = [line for line in log.raw_lines() if line.strip() and not line.lstrip().startswith("{")]
    counts: dict[str, int] = {}
    for event in log.events():
        if event.get("event") == "authz.decision":
            counts[str(event.get("request_id"))] = counts.get(str(event.get("request_id")), 0) + 1
    wrong = {rid: counts.get(rid, 0) for rid in sent_request_ids if counts.get(rid, 0) != 1}
    leaked = _logs_with_secrets([service.stdout_path, service.stderr_path], _secrets(sas_config))
    problems = []
    if non_json:
        problems.append(f"non-JSON lines on the service's stdout: {non_json[:5]}")
    if wrong:
        problems.append(
            f"{len(wrong)} of {len(sent_request_ids)} requests not audited exactly once: "
            f"{dict(list(wrong.items())[:10])}"
        )
    if leaked:
        problems.append(f"secrets in the service's logs: {leaked}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
