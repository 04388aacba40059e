"""The ``gateway-authz`` command line, run in-process through :func:`gateway_authz.cli.main.main`.

``check`` is exercised with SAS and with bearer JWTs; the JWT issuer carries its keys inline (``jwks``), so these
tests never touch the network. ``token`` output is taken apart with the service's own parser and verified with the
configured keys; ``keys generate``, ``config validate`` and ``config init`` are checked for their output and exit
status.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_authz.cli.main import main
from gateway_authz.config.loader import load_settings
from gateway_authz.core.settings import AuthorizationRule, Settings
from gateway_authz.sas.token import RuleKeys, parse_sas, verify_sas
from tests.oidc_provider import TENANT, SigningKey, azure_claims

HOST = "contoso.servicebus.windows.net"
SUB = "/subscriptions/3f1c6a52-7d0e-4b8a-9c41-2a6e5b0d9f17"
RG = f"{SUB}/resourceGroups/rg-relay"
NS = f"{RG}/providers/Microsoft.Relay/namespaces/contoso"
ORDERS = f"{NS}/hybridConnections/orders"
SENDER = "a1000000-0000-4000-8000-000000000001"
OWNER = "a1000000-0000-4000-8000-000000000003"
MEMBER = "a1000000-0000-4000-8000-000000000004"
NOBODY = "a1000000-0000-4000-8000-000000000005"
GROUP = "b2000000-0000-4000-8000-0000000000aa"
V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


def _key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.rsa()


def _config(signing_key: SigningKey) -> dict[str, Any]:
    return {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": [HOST],
                "resourceId": NS,
                "managementRoutes": [{"path": "/$admin", "methods": ["PUT"]}],
                "authorizationRules": [
                    {
                        "keyName": "RootManageSharedAccessKey",
                        "primaryKey": _key(1),
                        "secondaryKey": _key(2),
                        "rights": ["Manage", "Listen", "Send"],
                    },
                ],
                "hybridConnections": [
                    {
                        "name": "orders",
                        "requiresClientAuthorization": True,
                        "authorizationRules": [
                            {
                                "keyName": "orders-send",
                                "primaryKey": _key(3),
                                "secondaryKey": _key(4),
                                "rights": ["Send"],
                            },
                        ],
                    },
                    {"name": "invoices", "requiresClientAuthorization": True},
                ],
            }
        ],
        "identity": {
            "issuers": [
                {
                    "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                    "tenants": [TENANT],
                    "audiences": ["https://relay.azure.net", "https://relay.azure.net/"],
                    "jwks": {"keys": [signing_key.public_jwk()]},
                }
            ]
        },
        "roleAssignments": [
            {
                "principalId": SENDER,
                "principalType": "ServicePrincipal",
                "roleDefinitionName": "Azure Relay Sender",
                "scope": ORDERS,
            },
            {"principalId": OWNER, "principalType": "User", "roleDefinitionName": "Azure Relay Owner", "scope": RG},
            {"principalId": GROUP, "principalType": "Group", "roleDefinitionName": "Azure Relay Sender", "scope": NS},
        ],
    }


@pytest.fixture
def config_path(tmp_path: Path, signing_key: SigningKey) -> Path:
    path = tmp_path / "gateway-authz.yaml"
    path.write_text(yaml.safe_dump(_config(signing_key), sort_keys=False))
    return path


def _jwt(key: SigningKey, **claims: Any) -> str:
    return key.compact({"typ": "JWT", "alg": key.alg, "kid": key.kid}, azure_claims(**claims))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _check(
    capsys: pytest.CaptureFixture[str], config: Path, url: str, *headers: str, method: str = "GET"
) -> tuple[int, dict[str, Any], str]:
    argv = ["check", "--config", str(config), "--method", method, "--url", url]
    for header in headers:
        argv += ["-H", header]
    code, out, err = _run(capsys, *argv)
    return code, json.loads(out), out + err


def _settings(path: Path) -> Settings:
    return load_settings(path)


def _rule(settings: Settings, key_name: str) -> AuthorizationRule:
    (namespace,) = settings.namespaces
    rules = list(namespace.rules) + [r for e in namespace.entities for r in e.rules]
    return next(r for r in rules if r.key_name == key_name)


# --------------------------------------------------------------------------------------------------- check: SAS


def test_check_sas_allow_names_rule_and_slot(capsys: pytest.CaptureFixture[str], config_path: Path) -> None:
    """An allowed SAS request: exit 0, the rule (key name) and key slot that verified it."""
    token = _run(
        capsys,
        "token",
        "--config",
        str(config_path),
        "--namespace",
        "contoso",
        "--rule",
        "orders-send",
        "--key",
        "secondary",
        "--resource",
        f"sb://{HOST}/orders",
    )[1].strip()
    code, report, output = _check(capsys, config_path, f"https://{HOST}/orders", f"ServiceBusAuthorization: {token}")
    assert code == 0, output
    assert report["decision"] == "allow" and report["status"] == 200
    assert (report["auth"], report["principal"], report["right"]) == ("sas", "orders-send", "Send")
    assert (report["key_name"], report["key_slot"], report["entity"]) == ("orders-send", "secondary", "orders")
    assert parse_sas(token).signature not in output.encode()
    assert token not in output


def test_check_sas_deny_says_why(capsys: pytest.CaptureFixture[str], config_path: Path) -> None:
    """A SAS token signed with a key the rule does not hold: exit 1, 401 bad_signature and a detail."""
    conn = f"Endpoint=sb://{HOST}/;SharedAccessKeyName=orders-send;SharedAccessKey={_key(9)}"
    code, out, _ = _run(capsys, "token", "--connection-string", conn, "--resource", f"sb://{HOST}/orders")
    assert code == 0
    token = out.strip()
    code, report, output = _check(capsys, config_path, f"https://{HOST}/orders", f"ServiceBusAuthorization: {token}")
    assert code == 1, output
    assert (report["decision"], report["status"], report["reason"]) == ("deny", 401, "bad_signature")
    assert report["detail"]
    assert token not in output


def test_check_sas_wrong_right_is_403(capsys: pytest.CaptureFixture[str], config_path: Path) -> None:
    """A Send-only entity rule asked to listen: 403 insufficient_rights, exit 1."""
    _, token, _ = _run(
        capsys,
        "token",
        "--config",
        str(config_path),
        "--namespace",
        "contoso",
        "--rule",
        "orders-send",
        "--resource",
        f"sb://{HOST}/orders",
    )
    code, report, _ = _check(
        capsys, config_path, f"https://{HOST}/orders?sb-hc-action=listen", f"ServiceBusAuthorization: {token.strip()}"
    )
    assert (code, report["status"], report["reason"]) == (1, 403, "insufficient_rights")


# --------------------------------------------------------------------------------------------------- check: JWT


def test_check_jwt_allow_names_assignment(
    capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey
) -> None:
    """An allowed JWT: issuer, tenant, role, scope and how the principal matched, plus the explain lines."""
    token = _jwt(signing_key, oid=SENDER)
    code, report, output = _check(
        capsys, config_path, f"https://{HOST}/orders/x", f"ServiceBusAuthorization: {token}", method="POST"
    )
    assert code == 0, output
    assert (report["auth"], report["principal"], report["right"]) == ("jwt", SENDER, "Send")
    assert (report["issuer"], report["tenant"]) == (V2_ISSUER, TENANT)
    assert (report["role"], report["scope"], report["via"]) == ("Azure Relay Sender", ORDERS, "oid")
    assert _assignments(report) == [f"Azure Relay Sender at {ORDERS} for {SENDER} (via oid): grants"]
    assert token not in output and token.split(".")[2] not in output


def test_check_jwt_owner_manage_route(
    capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey
) -> None:
    """Owner at resource-group scope on a management route: Manage, granted by the control-plane write action."""
    token = _jwt(signing_key, oid=OWNER)
    code, report, output = _check(
        capsys, config_path, f"https://{HOST}/$admin/orders", f"Authorization: Bearer {token}", method="PUT"
    )
    assert code == 0, output
    assert (report["right"], report["role"], report["scope"]) == ("Manage", "Azure Relay Owner", RG)


def test_check_jwt_deny_explains_each_assignment(
    capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey
) -> None:
    """A 403 lists the principal's assignments and why none applies (wrong scope, or the role lacks the action)."""
    token = _jwt(signing_key, oid=SENDER)
    code, report, output = _check(capsys, config_path, f"https://{HOST}/invoices", f"ServiceBusAuthorization: {token}")
    assert code == 1, output
    assert (report["status"], report["reason"], report["principal"]) == (403, "no_role_assignment", SENDER)
    assert _assignments(report) == [
        f"Azure Relay Sender at {ORDERS} for {SENDER} (via oid): scope does not cover the resource"
    ]
    code, report, _ = _check(
        capsys, config_path, f"https://{HOST}/orders?sb-hc-action=listen", f"ServiceBusAuthorization: {token}"
    )
    assert code == 1
    (line,) = _assignments(report)
    assert line.endswith("role does not grant Microsoft.Relay/namespaces/hybridConnections/listen/action"), line


def test_check_jwt_no_assignment_at_all(
    capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey
) -> None:
    """A verified principal with no assignment anywhere: 403 and an explanation saying so."""
    code, report, _ = _check(
        capsys, config_path, f"https://{HOST}/orders", f"ServiceBusAuthorization: {_jwt(signing_key, oid=NOBODY)}"
    )
    assert (code, report["status"]) == (1, 403)
    assert _assignments(report) == [f"no role assignment is made to {NOBODY}"]


def test_check_jwt_group_and_overage(
    capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey
) -> None:
    """Through the groups claim the group's assignment grants; with a groups overage it is not evaluated."""
    member = _jwt(signing_key, oid=MEMBER, groups=[GROUP])
    code, report, _ = _check(capsys, config_path, f"https://{HOST}/invoices", f"ServiceBusAuthorization: {member}")
    assert code == 0
    assert (report["via"], report["scope"]) == ("group", NS)
    overage = _jwt(signing_key, oid=MEMBER, _claim_names={"groups": "src1"}, _claim_sources={"src1": {}})
    code, report, _ = _check(capsys, config_path, f"https://{HOST}/invoices", f"ServiceBusAuthorization: {overage}")
    assert (code, report["status"], report["groups_overage"]) == (1, 403, "true")
    assert any("groups overage" in step["detail"] for step in report["trace"]), report


def test_check_jwt_invalid_token_has_detail_not_assignments(
    capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey
) -> None:
    """An expired token: 401 with the reason and detail; no RBAC explanation (nothing verified to explain)."""
    token = _jwt(signing_key, oid=SENDER, now=time.time() - 7200, lifetime=600)
    code, report, output = _check(capsys, config_path, f"https://{HOST}/orders", f"ServiceBusAuthorization: {token}")
    assert (code, report["status"], report["reason"]) == (1, 401, "expired")
    assert report["detail"] and not _assignments(report)
    other = SigningKey.rsa(kid=signing_key.kid)  # same kid, another key: the signature cannot hold
    forged = _jwt(other, oid=OWNER)
    code, report, _ = _check(capsys, config_path, f"https://{HOST}/orders", f"sb-hc-token: {forged}")
    # a header named like the query parameter is no carrier: the request is anonymous, and orders needs a token
    assert (code, report["status"]) == (1, 401)
    code, report, _ = _check(capsys, config_path, f"https://{HOST}/orders?sb-hc-token={forged}")
    assert (code, report["status"], report["reason"]) == (1, 401, "bad_signature")
    assert token not in output


# --------------------------------------------------------------------------------------------------- check: usage


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["--url", "/orders"], "relative URL"),
        (["--url", f"https://{HOST}/orders", "-H", "no colon"], "header without a colon"),
    ],
)
def test_check_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], config_path: Path, args: list[str], why: str
) -> None:
    """Bad arguments to check: exit 2 with a message on stderr."""
    code, out, err = _run(capsys, "check", "--config", str(config_path), *args)
    assert code == 2, why
    assert out == "" and err.startswith("gateway-authz: ")


def test_check_broken_config_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A config that does not load: exit 2, every problem with its location."""
    path = tmp_path / "bad.yaml"
    path.write_text("namespaces:\n  - name: x\n    hosts: []\n")
    code, out, err = _run(capsys, "check", "--config", str(path), "--url", f"https://{HOST}/")
    assert code == 2 and out == ""
    assert "config: namespaces[0].name" in err


# --------------------------------------------------------------------------------------------------- token


def _verify(settings: Settings, token: str, key_name: str) -> str:
    """Parse with the service's parser and verify with the configured rule; returns the key slot."""
    parsed = parse_sas(token)
    assert parsed.key_name == key_name
    verified = verify_sas(parsed, [RuleKeys(_rule(settings, key_name))], now=time.time(), clock_skew=0)
    return verified.key_slot


@pytest.mark.parametrize("slot", ["primary", "secondary"])
def test_token_from_config(capsys: pytest.CaptureFixture[str], config_path: Path, slot: str) -> None:
    """`token --config` signs with the rule's primary or secondary key; the service verifies it as that slot."""
    code, out, _ = _run(
        capsys,
        "token",
        "--config",
        str(config_path),
        "--namespace",
        "contoso",
        "--rule",
        "RootManageSharedAccessKey",
        "--key",
        slot,
        "--resource",
        f"sb://{HOST}/orders",
        "--ttl",
        "120",
    )
    assert code == 0
    token = out.strip()
    assert _verify(_settings(config_path), token, "RootManageSharedAccessKey") == slot
    parsed = parse_sas(token)
    assert abs(parsed.expiry - (time.time() + 120)) <= 5
    assert parsed.resource.segments == ("orders",)


def test_token_from_config_entity_rule(capsys: pytest.CaptureFixture[str], config_path: Path) -> None:
    """An entity's rule is found from --resource (or --entity)."""
    for extra in ([], ["--entity", "orders"]):
        code, out, _ = _run(
            capsys,
            "token",
            "--config",
            str(config_path),
            "--namespace",
            "contoso",
            "--rule",
            "orders-send",
            "--resource",
            f"sb://{HOST}/orders",
            *extra,
        )
        assert code == 0
        assert _verify(_settings(config_path), out.strip(), "orders-send") == "primary"


def test_token_from_connection_string(capsys: pytest.CaptureFixture[str], config_path: Path) -> None:
    """`token --connection-string`: the resource defaults to EntityPath (or the namespace); the key signs it."""
    conn = f"Endpoint=sb://{HOST}/;SharedAccessKeyName=orders-send;SharedAccessKey={_key(3)};EntityPath=orders"
    code, out, _ = _run(capsys, "token", "--connection-string", conn)
    assert code == 0
    token = out.strip()
    assert _verify(_settings(config_path), token, "orders-send") == "primary"
    assert parse_sas(token).resource.segments == ("orders",)
    root = f"Endpoint=sb://{HOST}/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={_key(2)}"
    code, out, _ = _run(capsys, "token", "--connection-string", root, "--ttl", "60")
    assert code == 0
    assert _verify(_settings(config_path), out.strip(), "RootManageSharedAccessKey") == "secondary"
    assert parse_sas(out.strip()).resource.segments == ()


@pytest.mark.parametrize(
    "args",
    [
        ["--connection-string", f"Endpoint=sb://{HOST}/;SharedAccessKeyName=x;SharedAccessKey=k", "--ttl", "0"],
        ["--connection-string", "Endpoint=https://nope/;SharedAccessKeyName=x;SharedAccessKey=k"],
        ["--connection-string", f"Endpoint=sb://{HOST}/;SharedAccessKeyName=x"],
        ["--config", "{config}", "--namespace", "contoso", "--rule", "RootManageSharedAccessKey"],
        ["--config", "{config}", "--namespace", "nope", "--rule", "x", "--resource", f"sb://{HOST}/"],
        ["--config", "{config}", "--namespace", "contoso", "--rule", "nope", "--resource", f"sb://{HOST}/"],
        ["--config", "{config}", "--namespace", "contoso", "--rule", "x", "--entity", "nope", "--resource", "sb://h/"],
    ],
    ids=["ttl_zero", "not_sb", "no_key", "no_resource", "no_namespace", "no_rule", "no_entity"],
)
def test_token_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], config_path: Path, args: list[str]) -> None:
    """Bad token arguments: exit 2, a message, no token."""
    code, out, err = _run(capsys, "token", *(a.replace("{config}", str(config_path)) for a in args))
    assert code == 2
    assert out == "" and err.startswith("gateway-authz: ")


# --------------------------------------------------------------------------------------------------- keys, config


def test_keys_generate(capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh 256-bit key, base64 (44 characters), different every time."""
    keys = set()
    for _ in range(3):
        code, out, _ = _run(capsys, "keys", "generate")
        assert code == 0
        key = out.strip()
        assert len(key) == 44 and len(base64.b64decode(key, validate=True)) == 32
        keys.add(key)
    assert len(keys) == 3


def test_config_validate_valid(capsys: pytest.CaptureFixture[str], config_path: Path) -> None:
    """A valid file: exit 0 and says so."""
    code, out, _ = _run(capsys, "config", "validate", str(config_path))
    assert code == 0
    assert out.strip() == f"{config_path}: valid"


def test_config_validate_reports_every_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An invalid file: exit 1, every problem on its own line with its exact location."""
    data = {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": [HOST],
                "authorizationRules": [{"keyName": "r", "primaryKey": _key(1), "rights": ["Manage"]}],
            }
        ],
        "roleAssignments": [
            {"principalId": SENDER, "principalType": "Robot", "roleDefinitionName": "No Such Role", "scope": "x"}
        ],
        "surprise": 1,
    }
    path = tmp_path / "invalid.yaml"
    path.write_text(yaml.safe_dump(data))
    code, out, _ = _run(capsys, "config", "validate", str(path))
    assert code == 1
    for location in (
        "namespaces[0].authorizationRules[0].rights",
        "roleAssignments[0].principalType",
        "roleAssignments[0].roleDefinitionName",
        "roleAssignments[0].scope",
        "surprise",
    ):
        assert location in out, f"{location} missing from:\n{out}"


def test_config_validate_missing_file_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file that is not there is a problem too (exit 1), not a crash."""
    code, out, _ = _run(capsys, "config", "validate", str(tmp_path / "absent.yaml"))
    assert code == 1 and out.strip()


def test_config_init_provisions_like_azure(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`config init` prints a config that loads, with RootManageSharedAccessKey holding all rights and fresh keys."""
    code, first, _ = _run(capsys, "config", "init", "--namespace", "fabrikam", "--host", "fabrikam.example.net")
    assert code == 0
    path = tmp_path / "init.yaml"
    path.write_text(first)
    assert _run(capsys, "config", "validate", str(path))[0] == 0
    (namespace,) = load_settings(path).namespaces
    assert (namespace.name, namespace.hosts) == ("fabrikam", ("fabrikam.example.net",))
    (rule,) = namespace.rules
    assert rule.key_name == "RootManageSharedAccessKey"
    assert {r.value for r in rule.rights} == {"Manage", "Listen", "Send"}
    assert rule.primary_key != rule.secondary_key
    for key in (rule.primary_key, rule.secondary_key):
        assert key is not None
        assert len(base64.b64decode(key, validate=True)) == 32
    _, second, _ = _run(capsys, "config", "init", "--namespace", "fabrikam", "--host", "fabrikam.example.net")
    assert second != first, "every init must generate fresh keys"


def test_config_init_bad_namespace_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A namespace name Azure would refuse: exit 2 with the reason, nothing on stdout."""
    code, out, err = _run(capsys, "config", "init", "--namespace", "x", "--host", "h.example.net")
    assert code == 2 and out == ""
    assert "namespace" in err


def test_unique_ids_do_not_leak(capsys: pytest.CaptureFixture[str], config_path: Path, signing_key: SigningKey) -> None:
    """Nothing a check prints contains the JWT or its signature, whatever the carrier."""
    token = _jwt(signing_key, oid=str(uuid.uuid4()))
    for header in (f"ServiceBusAuthorization: {token}", f"Authorization: Bearer {token}"):
        _, _, output = _check(capsys, config_path, f"https://{HOST}/orders", header)
        assert token not in output and token.split(".")[2] not in output


def _assignments(report: dict[str, Any]) -> list[str]:
    """The role assignment steps of a ``check`` report's trace, as lines."""
    return [step["detail"] for step in report["trace"] if step["step"] == "role assignment"]
