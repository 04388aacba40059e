"""Entra ID bearer JWTs and Azure RBAC end to end: client -> real Envoy / NGINX -> gateway-authz -> echo upstream.

A real OIDC provider (``tests/oidc_provider.py``) runs as its own process on a loopback port and mints
Azure-AD-shaped v1 (``https://sts.windows.net/<tid>/``) and v2 (``https://login.microsoftonline.com/<tid>/v2.0``)
tokens. The service trusts the v2 issuer as a ``{tenantid}`` template whose keys come through the discovery
document, and the v1 issuer as a literal string whose keys come from a ``jwksUri``. Role assignments sit at entity,
namespace, resource-group scope and on a group; one scenario table runs through every gateway column of
``conftest.GATEWAYS`` with identical expected outcomes. Then, through the running service: key rotation (a new
``kid`` is accepted after exactly one refetch), the provider going away (cached keys and SAS keep working, readiness
and metrics say the issuer is stale), ``/readyz`` per issuer, and ``gateway-authz check`` against the live issuer.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._sas_sdk import mint_sas

from . import _procs
from ._procs import AuditLog, AuthzProcess, EchoSeen, ManagedProcess, Response
from .conftest import GATEWAY_FIXTURES, GATEWAYS, Gateway, new_key

pytestmark = pytest.mark.integration

OIDC_SCRIPT = Path(__file__).resolve().parents[1] / "oidc_provider.py"

# --------------------------------------------------------------------------------------------------- the directory

SUBSCRIPTION = "3f1c6a52-7d0e-4b8a-9c41-2a6e5b0d9f17"
RG = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-relay"
NS = f"{RG}/providers/Microsoft.Relay/namespaces/contoso"
OTHER_NS = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-other/providers/Microsoft.Relay/namespaces/fabrikam"
ORDERS = f"{NS}/hybridConnections/orders"
INVOICES = f"{NS}/hybridConnections/invoices"
HOST = "contoso.servicebus.windows.net"
OTHER_HOST = "fabrikam.servicebus.windows.net"
AUDIENCE = "https://relay.azure.net"
OTHER_TENANT = "0b4f3a1e-9c2d-4e5f-8a7b-6c5d4e3f2a1b"

# oids of the principals (and one group); each has exactly the assignment its name says
SENDER = "a1000000-0000-4000-8000-000000000001"  # Azure Relay Sender on the 'orders' hybrid connection
LISTENER = "a1000000-0000-4000-8000-000000000002"  # Azure Relay Listener on the namespace
OWNER = "a1000000-0000-4000-8000-000000000003"  # Azure Relay Owner on the resource group
MEMBER = "a1000000-0000-4000-8000-000000000004"  # no assignment of its own; in GROUP
NOBODY = "a1000000-0000-4000-8000-000000000005"  # no assignment at all
CUSTOM = "a1000000-0000-4000-8000-000000000006"  # custom role on the namespace: everything but send on hybrid conns
GROUP = "b2000000-0000-4000-8000-0000000000aa"  # Azure Relay Sender on 'invoices'
CUSTOM_ROLE_ID = "c3000000-0000-4000-8000-0000000000cc"
LISTENER_ROLE_ID = "26e0b698-aa6d-4085-9386-aadae190014d"

SAS_RULE = "RootManageSharedAccessKey"
SPOOFED = (("x-authz-auth", "spoofed"), ("x-authz-principal", "spoofed-principal"), ("x-authz-right", "Manage"))


def service_config(provider: dict[str, Any], sas_key: str) -> dict[str, Any]:
    """The service's config: two namespaces in two resource groups, two issuers, the role assignments above."""
    audiences = [AUDIENCE, AUDIENCE + "/"]
    tenant = provider["tenant"]
    return {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": [HOST],
                "resourceId": NS,
                "managementRoutes": [{"path": "/$admin", "methods": ["PUT", "DELETE"]}],
                "authorizationRules": [
                    {"keyName": SAS_RULE, "primaryKey": sas_key, "rights": ["Manage", "Listen", "Send"]}
                ],
                "hybridConnections": [
                    {"name": "orders", "requiresClientAuthorization": True},
                    {"name": "invoices", "requiresClientAuthorization": True},
                ],
                "wcfRelays": [{"name": "legacy/echo", "requiresClientAuthorization": True}],
            },
            {"name": "fabrikam", "hosts": [OTHER_HOST], "resourceId": OTHER_NS},
        ],
        "identity": {
            "leewaySeconds": 60,
            "issuers": [
                {  # v2: a {tenantid} template, keys through the discovery document
                    "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                    "tenants": [tenant],
                    "audiences": audiences,
                    "discoveryUrl": provider["discovery_v2"],
                    "algorithms": ["RS256", "ES256"],
                },
                {  # v1: the literal issuer string the provider mints, keys from a jwksUri
                    "issuer": provider["issuer_v1"],
                    "tenants": [tenant],
                    "audiences": audiences,
                    "jwksUri": provider["jwks_uri"],
                    "algorithms": ["RS256"],
                },
            ],
        },
        "roleDefinitions": [
            {
                "roleName": "Relay Everything But Hybrid Send",
                "id": CUSTOM_ROLE_ID,
                "dataActions": ["Microsoft.Relay/*"],
                "notDataActions": ["microsoft.relay/namespaces/HYBRIDCONNECTIONS/send/action"],
            }
        ],
        "roleAssignments": [
            _assign(SENDER, "ServicePrincipal", ORDERS, name="Azure Relay Sender"),
            _assign(
                LISTENER,
                "ServicePrincipal",
                NS,
                role_id=f"/providers/Microsoft.Authorization/roleDefinitions/{LISTENER_ROLE_ID}",
            ),
            _assign(OWNER, "User", RG, name="Azure Relay Owner"),
            _assign(GROUP, "Group", INVOICES, name="Azure Relay Sender"),
            _assign(CUSTOM, "ServicePrincipal", NS, role_id=CUSTOM_ROLE_ID),
        ],
        "sas": {"clockSkewSeconds": 30},
        "cache": {
            "configTtlSeconds": 30,
            "decisionTtlSeconds": 60,
            "jwksTtlSeconds": 3600,
            "jwksRefreshCooldownSeconds": 1,
        },
    }


def _assign(
    principal: str, kind: str, scope: str, *, name: str | None = None, role_id: str | None = None
) -> dict[str, str]:
    role = {"roleDefinitionName": name} if name else {"roleDefinitionId": str(role_id)}
    return {"principalId": principal, "principalType": kind, **role, "scope": scope}


# --------------------------------------------------------------------------------------------------- the provider


@dataclass
class Idp:
    """The OIDC provider process and its admin API; every token it minted is remembered for the log checks."""

    proc: ManagedProcess
    state_dir: Path
    info: dict[str, Any]
    minted: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.info["port"])

    @property
    def tenant(self) -> str:
        return str(self.info["tenant"])

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = _procs.request(
            self.port,
            "POST",
            path,
            [("Host", f"127.0.0.1:{self.port}"), ("Content-Type", "application/json")],
            json.dumps(body).encode(),
        )
        assert response.status == 200, f"provider {path}: {response}"
        return response.json()

    def mint(self, **claims: Any) -> str:
        """A token from the provider (see ``oidc_provider.azure_claims`` for the claim keywords)."""
        token = str(self._post("/_admin/mint", claims)["token"])
        self.minted.append(token)
        return token

    def rotate(self) -> str:
        return str(self._post("/_admin/rotate", {})["kid"])

    def stats(self) -> dict[str, Any]:
        response = _procs.request(self.port, "GET", "/_admin/stats", [("Host", f"127.0.0.1:{self.port}")])
        assert response.status == 200, str(response)
        result: dict[str, Any] = response.json()
        return result

    def fetches(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.stats()["requests"].items()}


def _start_provider(workdir: Path, state_dir: Path, port: int | None = None, timeout: float = 15.0) -> Idp:
    """The provider on a free loopback port (or ``port``); ready once ``provider.json`` is written and it listens."""

    def attempt(n: int) -> Idp:
        chosen = port if port is not None else _procs.free_port()
        (state_dir / "provider.json").unlink(missing_ok=True)
        # -P: the script's folder (tests/, whose http/ would shadow the standard library's) stays off sys.path
        argv = [sys.executable, "-P", str(OIDC_SCRIPT), "--port", str(chosen), "--state-dir", str(state_dir)]
        proc = ManagedProcess(f"oidc-{n}" if n else "oidc", argv, workdir, env=_procs.service_env()).start()
        try:
            _procs.wait_until(
                lambda: (state_dir / "provider.json").exists() and _procs.port_open(chosen),
                timeout=timeout,
                what=f"OIDC provider on :{chosen}",
                procs=[proc],
            )
        except BaseException:
            proc.stop()
            raise
        return Idp(proc, state_dir, json.loads((state_dir / "provider.json").read_text()))

    return _procs.start_with_retries(attempt, attempts=1 if port is not None else 3)


@pytest.fixture(scope="module")
def idp(integration_dir: Path) -> Iterator[Idp]:
    provider = _start_provider(integration_dir, integration_dir / "oidc-state")
    try:
        yield provider
    finally:
        provider.proc.stop()


@dataclass
class JwtSetup:
    path: Path
    data: dict[str, Any]
    sas_key: str


@pytest.fixture(scope="module")
def jwt_config(idp: Idp, integration_dir: Path) -> JwtSetup:
    sas_key = new_key()
    data = service_config(idp.info, sas_key)
    path = integration_dir / "gateway-authz-jwt.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return JwtSetup(path, data, sas_key)


@pytest.fixture(scope="module")
def authz_config_path(jwt_config: JwtSetup) -> Path:
    return jwt_config.path


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    """The service also serves gRPC, for the ``envoy-grpc`` column (when the harness has it)."""
    return {"grpc": True}


def _readyz(service: AuthzProcess) -> tuple[int, dict[str, Any]]:
    response = _procs.request(service.admin_port, "GET", "/readyz", [("Host", "127.0.0.1")])
    return response.status, response.json()


@pytest.fixture(scope="module")
def jwt_service(authz_service: AuthzProcess, idp: Idp) -> AuthzProcess:
    """The service, once its background refresher has loaded both issuers' keys (bounded wait)."""

    def loaded() -> bool:
        status, body = _readyz(authz_service)
        return status == 200 and len(body["issuers"]) == 2 and all(i["loaded"] for i in body["issuers"])

    _procs.wait_until(loaded, timeout=15, what="both issuers' keys loaded", procs=[authz_service.proc, idp.proc])
    return authz_service


# --------------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Tok:
    """How to mint the scenario's token: whose, which version, which carrier, and what to change."""

    oid: str
    version: str = "2.0"
    carrier: str = "servicebusauthorization"  # or "bearer" (Authorization: Bearer), or "query" (sb-hc-token)
    groups: tuple[str, ...] | None = None
    overage: bool = False
    kid: str = "rsa"  # "rsa" (the default signing key) or "ec"
    tamper: bool = False  # swap the payload for the Owner's, keeping the signature
    claims: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Scenario:
    id: str
    method: str
    target: str  # "{token}" marks where a query token goes
    token: Tok | None
    status: int
    right: str = ""
    role: str = ""
    scope: str = ""
    reason: str = ""
    host: str = HOST
    via: str = "oid"


def _ok(id: str, method: str, target: str, token: Tok, right: str, role: str, scope: str, **kw: Any) -> Scenario:
    return Scenario(id, method, target, token, 200, right=right, role=role, scope=scope, reason="allowed", **kw)


def _no(id: str, method: str, target: str, token: Tok | None, status: int, reason: str, **kw: Any) -> Scenario:
    return Scenario(id, method, target, token, status, reason=reason, **kw)


_SENDER_ROLE, _LISTENER_ROLE, _OWNER_ROLE = "Azure Relay Sender", "Azure Relay Listener", "Azure Relay Owner"
_CUSTOM_ROLE = "Relay Everything But Hybrid Send"
_EXPIRED = (("now", time.time() - 7200), ("lifetime", 3600))

SCENARIOS = [
    # Sender at entity scope: sends there, nowhere else
    _ok("sender_sends_on_its_entity", "POST", "/orders", Tok(SENDER), "Send", _SENDER_ROLE, ORDERS),
    _ok(
        "sender_connects_below_its_entity",
        "GET",
        "/orders/a/b?sb-hc-action=connect",
        Tok(SENDER),
        "Send",
        _SENDER_ROLE,
        ORDERS,
    ),
    _ok("sender_v1_token", "POST", "/$hc/orders", Tok(SENDER, version="1.0"), "Send", _SENDER_ROLE, ORDERS),
    _no("sender_other_entity", "POST", "/invoices", Tok(SENDER), 403, "no_role_assignment"),
    _no("sender_namespace_itself", "GET", "/", Tok(SENDER), 403, "no_role_assignment"),
    _no("sender_wcf_relay", "POST", "/legacy/echo", Tok(SENDER), 403, "no_role_assignment"),
    _no("sender_listens", "GET", "/orders?sb-hc-action=listen", Tok(SENDER), 403, "no_role_assignment"),
    _no("sender_manages", "PUT", "/$admin/orders", Tok(SENDER), 403, "no_role_assignment"),
    # Listener at namespace scope: listens on every entity, sends on none
    _ok(
        "listener_listens_orders",
        "GET",
        "/orders?sb-hc-action=listen",
        Tok(LISTENER, version="1.0"),
        "Listen",
        _LISTENER_ROLE,
        NS,
    ),
    _ok(
        "listener_accepts_invoices",
        "GET",
        "/invoices?sb-hc-action=accept",
        Tok(LISTENER),
        "Listen",
        _LISTENER_ROLE,
        NS,
    ),
    _ok(
        "listener_listens_wcf_relay",
        "GET",
        "/legacy/echo?sb-hc-action=listen",
        Tok(LISTENER, kid="ec"),
        "Listen",
        _LISTENER_ROLE,
        NS,
    ),
    _no("listener_sends", "POST", "/orders", Tok(LISTENER), 403, "no_role_assignment"),
    _no("listener_connects", "GET", "/invoices?sb-hc-action=connect", Tok(LISTENER), 403, "no_role_assignment"),
    _no(
        "listener_other_namespace",
        "GET",
        "/?sb-hc-action=listen",
        Tok(LISTENER),
        403,
        "no_role_assignment",
        host=OTHER_HOST,
    ),
    # Owner at resource-group scope: everything in the namespace, including a management route
    _ok("owner_listens", "GET", "/orders?sb-hc-action=listen", Tok(OWNER), "Listen", _OWNER_ROLE, RG),
    _ok("owner_sends", "POST", "/invoices", Tok(OWNER, version="1.0"), "Send", _OWNER_ROLE, RG),
    _ok("owner_sends_wcf_relay", "POST", "/legacy/echo/x", Tok(OWNER), "Send", _OWNER_ROLE, RG),
    _ok("owner_manages", "PUT", "/$admin/orders", Tok(OWNER), "Manage", _OWNER_ROLE, RG),
    _no("owner_other_resource_group", "POST", "/", Tok(OWNER), 403, "no_role_assignment", host=OTHER_HOST),
    # a group assignment, through the groups claim; not with a groups overage
    _ok(
        "group_member_sends",
        "POST",
        "/invoices",
        Tok(MEMBER, groups=(GROUP,)),
        "Send",
        _SENDER_ROLE,
        INVOICES,
        via="group",
    ),
    _no("group_member_other_entity", "POST", "/orders", Tok(MEMBER, groups=(GROUP,)), 403, "no_role_assignment"),
    _no("group_overage", "POST", "/invoices", Tok(MEMBER, overage=True), 403, "no_role_assignment"),
    # a custom role with notDataActions
    _ok("custom_role_listens", "GET", "/orders?sb-hc-action=listen", Tok(CUSTOM), "Listen", _CUSTOM_ROLE, NS),
    _ok("custom_role_sends_wcf_relay", "POST", "/legacy/echo", Tok(CUSTOM), "Send", _CUSTOM_ROLE, NS),
    _no("custom_role_not_data_action", "POST", "/orders", Tok(CUSTOM), 403, "no_role_assignment"),
    # carriers
    _ok("bearer_authorization", "POST", "/orders", Tok(SENDER, carrier="bearer"), "Send", _SENDER_ROLE, ORDERS),
    _ok(
        "sb_hc_token_query",
        "GET",
        "/orders?sb-hc-action=connect&sb-hc-token={token}",
        Tok(SENDER, carrier="query"),
        "Send",
        _SENDER_ROLE,
        ORDERS,
    ),
    # 401: no usable credential
    _no(
        "wrong_audience",
        "POST",
        "/orders",
        Tok(SENDER, claims=(("audience", "https://management.azure.com/"),)),
        401,
        "wrong_audience",
    ),
    _no("wrong_tenant", "POST", "/orders", Tok(SENDER, claims=(("tenant", OTHER_TENANT),)), 401, "wrong_tenant"),
    _no(
        "wrong_tenant_v1",
        "POST",
        "/orders",
        Tok(SENDER, version="1.0", claims=(("tenant", OTHER_TENANT),)),
        401,
        "unknown_issuer",
    ),
    _no("expired", "POST", "/orders", Tok(SENDER, claims=_EXPIRED), 401, "expired"),
    _no(
        "unknown_issuer",
        "POST",
        "/orders",
        Tok(SENDER, claims=(("iss", "https://evil.example.com/v2.0"),)),
        401,
        "unknown_issuer",
    ),
    _no("forged_claims", "POST", "/orders", Tok(SENDER, tamper=True), 401, "bad_signature"),
    _no("ec_key_not_allowed_for_v1", "POST", "/orders", Tok(SENDER, version="1.0", kid="ec"), 401, "disallowed_alg"),
    # 403: a valid token, no assignment
    _no("no_assignment", "POST", "/orders", Tok(NOBODY), 403, "no_role_assignment"),
    _no(
        "no_assignment_listen",
        "GET",
        "/orders?sb-hc-action=listen",
        Tok(NOBODY, version="1.0"),
        403,
        "no_role_assignment",
    ),
]


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _mint(idp: Idp, t: Tok) -> str:
    claims: dict[str, Any] = {"version": t.version, "oid": t.oid, **dict(t.claims)}
    if t.groups is not None:
        claims["groups"] = list(t.groups)
    if t.overage:  # Entra ID's shape when a user has too many groups for the token
        claims["_claim_names"] = {"groups": "src1"}
        claims["_claim_sources"] = {"src1": {"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}}
    if t.kid == "ec":
        claims["kid"] = next(k for k in idp.stats()["published"] if k.startswith("ec-"))
    token = idp.mint(**claims)
    if t.tamper:
        head, payload, sig = token.split(".")
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        body["oid"] = OWNER
        token = f"{head}.{_b64u(json.dumps(body).encode())}.{sig}"
        idp.minted.append(token)
    return token


def _send(gateway: Gateway, idp: Idp, s: Scenario) -> tuple[Response, str, str | None]:
    headers: list[tuple[str, str]] = list(SPOOFED)
    target = s.target
    token = None
    if s.token is not None:
        token = _mint(idp, s.token)
        if s.token.carrier == "query":
            target = target.replace("{token}", token)
        elif s.token.carrier == "bearer":
            headers.append(("Authorization", f"Bearer {token}"))
        else:
            headers.append(("ServiceBusAuthorization", token))  # bare, as the Azure SDKs send it
    body = b"payload" if s.method in ("POST", "PUT") else None
    response, request_id = gateway.request(s.method, target, headers, body, host=s.host)
    return response, request_id, token


def _check_upstream(gateway: Gateway, s: Scenario, seen: EchoSeen, target: str) -> None:
    assert seen.method == s.method
    assert seen.path_qs == target
    assert s.token is not None
    assert seen.header_all("x-authz-auth") == ["jwt"]
    assert seen.header_all("x-authz-principal") == [s.token.oid]
    assert seen.header_all("x-authz-right") == [s.right]
    assert seen.header_all("servicebusauthorization") == [], "the credential header reached the upstream"
    assert seen.header_all("authorization") == [], "the credential (Authorization) reached the upstream"


def _check_audit(gateway: Gateway, audit: AuditLog, s: Scenario, request_id: str, token: str | None, idp: Idp) -> None:
    events = audit.for_request(request_id)
    assert len(events) == 1, f"expected one audit line for {request_id}, got {events}"
    (event,) = events
    assert event["event"] == "authz.decision"
    assert event["gateway"] == gateway.name
    assert event["decision"] == ("allow" if s.status == 200 else "deny")
    assert (event["status"], event["reason"], event["auth"]) == (s.status, s.reason, "jwt")
    assert s.token is not None
    if s.status != 401:  # the token verified: who, from where, and the RBAC outcome
        assert event["principal"] == s.token.oid
        iss_v1, iss_v2 = idp.info["issuer_v1"], idp.info["issuer_v2"]
        assert event["issuer"] == (iss_v1 if s.token.version == "1.0" else iss_v2)
        assert event["tenant"] == idp.tenant
    if s.status == 200:
        assert (event["right"], event["role"], event["scope"], event["via"]) == (s.right, s.role, s.scope, s.via)
    elif s.status == 403:
        assert "role" not in event, event
        assert event["scope"], "a 403 names the resource scope nothing granted on"
        assert (event.get("groups_overage") == "true") == s.token.overage
    line = json.dumps(event)
    assert token is not None
    for piece in (token, token.split(".")[2]):
        assert piece not in line, "the token (or its signature) is in the audit line"


@pytest.mark.parametrize("s", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_scenario(gateway: Gateway, idp: Idp, jwt_service: AuthzProcess, audit: AuditLog, s: Scenario) -> None:
    """Each row through each gateway: status, what the upstream saw, one audit line with the RBAC facts."""
    response, request_id, token = _send(gateway, idp, s)
    assert response.status == s.status, f"{gateway.name} {s.id}: {response}"
    if s.status == 200:
        seen = response.upstream
        assert seen is not None, f"allowed but not answered by the upstream: {response}"
        expected = s.target
        if token is not None and "{token}" in s.target:
            expected = (
                s.target.replace("&sb-hc-token={token}", "")
                if gateway.strips_query_token
                else s.target.replace("{token}", token)
            )
        _check_upstream(gateway, s, seen, expected)
    else:
        assert response.upstream is None, "a denied request reached the upstream"
        if s.status == 401:
            assert response.header("www-authenticate"), f"401 without WWW-Authenticate: {response}"
        if gateway.relays_deny_body:
            assert response.json()["reason"] == s.reason
        assert token is None or token not in response.body.decode(errors="replace")
    _check_audit(gateway, audit, s, request_id, token, idp)


# --------------------------------------------------------------------------------------------------- lifecycle


def _gateways(request: pytest.FixtureRequest) -> list[Gateway]:
    return [request.getfixturevalue(GATEWAY_FIXTURES[name]) for name in GATEWAYS]


def _status(gateway: Gateway, token: str, target: str = "/orders", method: str = "POST") -> int:
    response, _ = gateway.request(method, target, [("ServiceBusAuthorization", token)], b"x")
    return response.status


def test_readyz_reports_each_issuer(jwt_service: AuthzProcess, idp: Idp) -> None:
    """/readyz lists both issuers with their keys loaded, fresh, and no error."""
    status, body = _readyz(jwt_service)
    assert status == 200
    by_issuer = {i["issuer"]: i for i in body["issuers"]}
    assert set(by_issuer) == {"https://login.microsoftonline.com/{tenantid}/v2.0", idp.info["issuer_v1"]}
    for issuer in by_issuer.values():
        assert issuer["loaded"] and not issuer["stale"] and issuer["last_error"] == "", issuer
        assert issuer["keys"] >= 2, issuer  # the provider publishes an RSA and an EC key


def test_key_rotation_new_kid_after_one_refetch(
    request: pytest.FixtureRequest, jwt_service: AuthzProcess, idp: Idp, jwt_config: JwtSetup
) -> None:
    """A token signed by a freshly published key is accepted after exactly one refetch per issuer, on every
    gateway, without a restart; later tokens with that kid cost no fetch."""
    gateways = _gateways(request)
    pid = jwt_service.proc.pid
    time.sleep(jwt_config.data["cache"]["jwksRefreshCooldownSeconds"] + 0.3)  # past any earlier cooldown
    before = idp.fetches()
    new_kid = idp.rotate()
    v2 = idp.mint(version="2.0", oid=SENDER)
    head = v2.split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"] == new_kid
    assert _status(gateways[0], v2) == 200
    after_v2 = idp.fetches()
    assert after_v2.get("/keys", 0) - before.get("/keys", 0) == 1, (before, after_v2)
    discovery = next(p for p in after_v2 if p.endswith("/v2.0/.well-known/openid-configuration"))
    assert after_v2[discovery] - before.get(discovery, 0) == 1, (before, after_v2)

    v1 = idp.mint(version="1.0", oid=SENDER)
    assert _status(gateways[0], v1) == 200
    after_v1 = idp.fetches()
    assert after_v1.get("/keys", 0) - after_v2.get("/keys", 0) == 1, "the v1 issuer's own store refetched once"

    for gateway in gateways:
        for version in ("2.0", "1.0"):
            assert _status(gateway, idp.mint(version=version, oid=SENDER)) == 200, gateway.name
            assert _status(gateway, idp.mint(version=version, oid=SENDER), "/invoices") == 403, gateway.name
    assert idp.fetches().get("/keys", 0) == after_v1.get("/keys", 0), "a known kid caused a fetch"
    _, body = _readyz(jwt_service)
    assert all(i["keys"] >= 3 and not i["stale"] for i in body["issuers"]), body
    assert jwt_service.proc.running() and jwt_service.proc.pid == pid, "the service restarted"


def _metric(service: AuthzProcess, prefix: str) -> list[str]:
    response = _procs.request(service.admin_port, "GET", "/metrics", [("Host", "127.0.0.1")])
    return [line for line in response.body.decode().splitlines() if line.startswith(prefix)]


def test_provider_down_cached_keys_and_sas_keep_working(
    request: pytest.FixtureRequest, jwt_service: AuthzProcess, idp: Idp, jwt_config: JwtSetup, audit: AuditLog
) -> None:
    """With the identity provider stopped: tokens signed with cached keys pass, SAS decisions are untouched, an
    unknown kid is a 401 (never an allow, never a 5xx); readiness stays 200 but says the issuer is stale; the
    failed fetch is counted. The provider is restarted on the same port afterwards."""
    gateways = _gateways(request)
    cooldown = jwt_config.data["cache"]["jwksRefreshCooldownSeconds"]
    # Minted while the provider is up, first used while it is down: not in the decision cache, so each one is
    # verified against the keys the service cached earlier.
    tokens = {gw.name: (idp.mint(version="2.0", oid=SENDER), idp.mint(version="1.0", oid=LISTENER)) for gw in gateways}
    unknown_kid = idp.mint(version="2.0", oid=SENDER, header={"kid": f"never-published-{uuid.uuid4().hex[:8]}"})
    port = idp.port
    assert idp.proc.stop() is not None
    assert not _procs.port_open(port)
    try:
        time.sleep(cooldown + 0.3)  # so that the unknown kid below is allowed one (failing) refetch
        for gw in gateways:
            v2, v1 = tokens[gw.name]
            assert _status(gw, v2) == 200, gw.name
            response, request_id = gw.request("GET", "/invoices?sb-hc-action=listen", [("ServiceBusAuthorization", v1)])
            assert response.status == 200, f"{gw.name}: {response}"
            (event,) = audit.for_request(request_id)
            assert (event["role"], event["scope"], event["principal"]) == (_LISTENER_ROLE, NS, LISTENER)
            sas = mint_sas(f"sb://{HOST}/orders", SAS_RULE, jwt_config.sas_key).token
            assert _status(gw, sas) == 200, gw.name
            forged = mint_sas(f"sb://{HOST}/orders", SAS_RULE, new_key()).token
            assert _status(gw, forged) == 401, gw.name
        response, request_id = gateways[0].request("POST", "/orders", [("ServiceBusAuthorization", unknown_kid)], b"x")
        assert response.status == 401, str(response)
        (event,) = audit.for_request(request_id)
        assert event["reason"] == "unknown_kid"

        status, body = _readyz(jwt_service)
        assert status == 200, "an identity provider outage must not take the replica out of rotation"
        assert body["status"] == "degraded", body
        (v2_status,) = [i for i in body["issuers"] if i["issuer"].endswith("/v2.0")]
        assert v2_status["loaded"] and v2_status["stale"] and v2_status["keys"] >= 2, v2_status
        assert v2_status["last_error"], v2_status
        failed = [
            line
            for line in _metric(jwt_service, "gateway_authz_jwks_fetches_total")
            if 'result="failed"' in line and "login.microsoftonline.com" in line
        ]
        assert failed and float(failed[0].rsplit(" ", 1)[1]) >= 1, failed
    finally:
        restarted = _start_provider(idp.proc.workdir, idp.state_dir, port=port)
        idp.proc, idp.info = restarted.proc, restarted.info


# --------------------------------------------------------------------------------------------------- the CLI


def _cli_check(config: Path, url: str, *headers: str, method: str = "GET") -> tuple[int, dict[str, Any], str]:
    argv = [sys.executable, "-m", "gateway_authz", "check", "--config", str(config), "--method", method, "--url", url]
    for header in headers:
        argv += ["-H", header]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_procs.service_env(), check=False)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"check printed no JSON (exit {result.returncode}): {result.stdout}\n{result.stderr}")
    return result.returncode, report, result.stdout + result.stderr


def test_cli_check_explains_jwt_decisions(idp: Idp, jwt_config: JwtSetup, jwt_service: AuthzProcess) -> None:
    """`gateway-authz check` fetches the issuer's keys itself (discovery and jwksUri) and says which assignment
    granted, or lists the principal's assignments and why none applies."""
    allow = idp.mint(version="2.0", oid=MEMBER, groups=[GROUP])
    code, report, output = _cli_check(
        jwt_config.path, f"https://{HOST}/invoices", f"ServiceBusAuthorization: {allow}", method="POST"
    )
    assert code == 0, output
    assert (report["decision"], report["auth"], report["principal"]) == ("allow", "jwt", MEMBER)
    assert (report["role"], report["scope"], report["via"]) == (_SENDER_ROLE, INVOICES, "group")
    assert report["issuer"] == idp.info["issuer_v2"] and report["tenant"] == idp.tenant
    assert any("grants" in line and GROUP in line for line in _assignment_lines(report)), report

    deny = idp.mint(version="1.0", oid=SENDER)
    code, report, output = _cli_check(
        jwt_config.path, f"https://{HOST}/orders?sb-hc-action=listen", f"Authorization: Bearer {deny}"
    )
    assert code == 1, output
    assert (report["decision"], report["status"], report["reason"]) == ("deny", 403, "no_role_assignment")
    assert report["issuer"] == idp.info["issuer_v1"]
    assert any("does not grant" in line and "listen/action" in line for line in _assignment_lines(report)), report
    for token in (allow, deny):
        assert token not in output and token.split(".")[2] not in output


# --------------------------------------------------------------------------------------------------- whole module


@pytest.fixture(scope="module", autouse=True)
def _whole_module_log_checks(idp: Idp, sent_request_ids: list[str], authz_service: AuthzProcess) -> Iterator[None]:
    """After the last test: every request sent was audited exactly once and no minted token (nor its signature)
    reached the service's logs."""
    yield
    time.sleep(0.2)
    log = AuditLog(authz_service.stdout_path)
    counts: dict[str, int] = {}
    for event in log.events():
        if event.get("event") == "authz.decision":
            counts[str(event.get("request_id"))] = counts.get(str(event.get("request_id")), 0) + 1
    wrong = {rid: counts.get(rid, 0) for rid in sent_request_ids if counts.get(rid, 0) != 1}
    text = authz_service.stdout_path.read_text(errors="replace") + authz_service.stderr_path.read_text(errors="replace")
    leaked = [t[:12] for t in idp.minted if t in text or t.split(".")[2] in text]
    problems = []
    if wrong:
        problems.append(f"{len(wrong)} of {len(sent_request_ids)} requests not audited exactly once: {wrong}")
    if leaked:
        problems.append(f"tokens in the service's logs: {leaked}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _assignment_lines(report: dict[str, Any]) -> list[str]:
    """The role assignment steps of a ``check`` report's trace."""
    return [step["detail"] for step in report["trace"] if step["step"] == "role assignment"]
