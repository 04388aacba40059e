"""Config traps: warnings from ``config_warnings``, printed by ``config validate``, failing with ``--strict``,
and logged by the service at start and on reload."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_authz.cli.main import main
from gateway_authz.config.loader import load_settings
from gateway_authz.config.warnings import ConfigLint, config_warnings
from gateway_authz.core.appkeys import HOLDER
from gateway_authz.http.app import create_app

SUB = "/subscriptions/3f1c6a52-7d0e-4b8a-9c41-2a6e5b0d9f17/resourceGroups/rg"
NS = f"{SUB}/providers/Microsoft.Relay/namespaces/contoso"
KEY = "ORdcOUfDztKEaw9H6CkKOJIcRYN6LH7SenEw1uPqYhE="
KEY2 = "fKVCiKDVkomg6aeSxu0moy2YewjXgHsRM4xe8510Azo="


ROOT = {"keyName": "Root", "primaryKey": KEY, "secondaryKey": KEY2, "rights": ["Send"]}


def _config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": ["contoso.servicebus.windows.net"],
                "resourceId": NS,
                "authorizationRules": [
                    {"keyName": "Root", "primaryKey": KEY, "secondaryKey": KEY2, "rights": ["Send"]}
                ],
                "hybridConnections": [{"name": "orders", "authorizationRules": []}],
            }
        ],
        "roleAssignments": [],
    }
    config.update(overrides)
    return config


def _write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _warnings(tmp_path: Path, config: dict[str, Any]) -> list[str]:
    return [str(w) for w in config_warnings(load_settings(_write(tmp_path, config)))]


def _assignment(scope: str) -> dict[str, str]:
    return {
        "principalId": "a1000000-0000-4000-8000-000000000001",
        "principalType": "User",
        "roleDefinitionName": "Azure Relay Sender",
        "scope": scope,
    }


def test_a_clean_config_has_no_warning(tmp_path: Path) -> None:
    scopes = [NS, f"{NS}/hybridConnections/orders", SUB, "/subscriptions/3f1c6a52-7d0e-4b8a-9c41-2a6e5b0d9f17"]
    assert _warnings(tmp_path, _config(roleAssignments=[_assignment(s) for s in scopes])) == []


def test_a_typo_in_a_role_assignment_scope_is_caught_with_a_did_you_mean(tmp_path: Path) -> None:
    typo = f"{NS}/hybridConnections/ordres"
    assert _warnings(tmp_path, _config(roleAssignments=[_assignment(typo)])) == [
        f"roleAssignments[0].scope: {typo} names no configured namespace or entity and lies above none, so it "
        f"never matches; did you mean {NS}/hybridConnections/orders?"
    ]


def test_a_scope_in_another_resource_group_is_caught(tmp_path: Path) -> None:
    other = NS.replace("/resourceGroups/rg/", "/resourceGroups/rg2/")
    (warning,) = _warnings(tmp_path, _config(roleAssignments=[_assignment(other)]))
    assert warning.startswith("roleAssignments[0].scope: ") and f"did you mean {NS}?" in warning


def test_keys_not_shaped_like_azure_keys_are_a_warning_that_never_shows_the_key(tmp_path: Path) -> None:
    config = _config()
    config["namespaces"][0]["authorizationRules"][0]["primaryKey"] = "hunter2-short-password"
    warnings = _warnings(tmp_path, config)
    assert warnings == [
        "namespaces[0].authorizationRules[0].primaryKey: is not a 32-byte base64 key like the keys Azure issues "
        "(22 characters); 'gateway-authz keys generate' makes one"
    ]
    assert "hunter2" not in "".join(warnings)


def test_an_entity_rule_that_duplicates_a_namespace_rule_is_a_warning(tmp_path: Path) -> None:
    config = _config()
    config["namespaces"][0]["hybridConnections"][0]["authorizationRules"] = [
        {"keyName": "Root", "primaryKey": KEY, "secondaryKey": KEY2, "rights": ["Send"]}
    ]
    assert _warnings(tmp_path, config) == [
        "namespaces[0].hybridConnections[0].authorizationRules[0]: duplicates the namespace rule Root (same keys "
        "and rights); remove one"
    ]


def test_a_host_claimed_by_two_namespaces_is_refused_by_the_loader_already(tmp_path: Path) -> None:
    config = _config()
    config["namespaces"].append({"name": "fabrikam", "hosts": ["contoso.servicebus.windows.net"]})
    assert main(["config", "validate", "--config", str(_write(tmp_path, config))]) == 1


def test_an_unknown_role_name_is_refused_by_the_loader(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assignment = _assignment(NS) | {"roleDefinitionName": "Azure Relay Sendr"}
    assert main(["config", "validate", "--config", str(_write(tmp_path, _config(roleAssignments=[assignment])))]) == 1
    assert "unknown role" in capsys.readouterr().out


def test_validate_prints_warnings_and_passes_without_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _config(roleAssignments=[_assignment(f"{NS}/hybridConnections/ordres")]))
    assert main(["config", "validate", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: roleAssignments[0].scope:" in out and "valid with 1 warning(s)" in out


def test_validate_strict_fails_on_a_typoed_scope(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _config(roleAssignments=[_assignment(f"{NS}/hybridConnections/ordres")]))
    assert main(["config", "validate", "--strict", "--config", str(path)]) == 1
    assert "did you mean" in capsys.readouterr().out


def test_validate_strict_passes_a_clean_config(tmp_path: Path) -> None:
    assert main(["config", "validate", "--strict", "--config", str(_write(tmp_path, _config()))]) == 0


def test_validate_still_takes_a_bare_path_with_a_deprecation_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "validate", str(_write(tmp_path, _config()))]) == 0
    assert "deprecated; use --config PATH" in capsys.readouterr().err


def test_the_service_logs_each_warning_once_at_start(tmp_path: Path) -> None:
    ops: list[bytes] = []
    settings = load_settings(_write(tmp_path, _config(roleAssignments=[_assignment(f"{NS}/hybridConnections/x")])))
    create_app(settings, ops_sink=ops.append, audit_sink=lambda _line: None, watch_config=False)
    events = [json.loads(line) for line in ops]
    warnings = [e for e in events if e["event"] == "config.warning"]
    assert [w["location"] for w in warnings] == ["roleAssignments[0].scope"]


def test_the_service_logs_the_warnings_of_a_reloaded_config(tmp_path: Path) -> None:
    ops: list[bytes] = []
    path = _write(tmp_path, _config())
    app = create_app(load_settings(path), config_path=str(path), ops_sink=ops.append, audit_sink=lambda _l: None)
    assert not [line for line in ops if b"config.warning" in line]
    path.write_text(yaml.safe_dump(_config(roleAssignments=[_assignment(f"{NS}/hybridConnections/x")])))
    assert app[HOLDER].reload()
    warnings = [json.loads(line) for line in ops if b"config.warning" in line]
    assert [w["location"] for w in warnings] == ["roleAssignments[0].scope"]


def test_an_estate_of_thousands_of_namespaces_is_checked_without_comparing_every_pair(tmp_path: Path) -> None:
    """2,000 namespaces with 6 entities each, 12,000 assignments (a thousand of them stray): pairwise this was 144
    million scope comparisons and a service that never became ready; indexed it is one lookup each. The bounded wait
    fails the test rather than hanging the suite if the pairwise loop comes back. The first 20 strays get a hint."""
    namespaces = [
        {
            "name": f"estate{n}",
            "hosts": [f"estate{n}.servicebus.windows.net"],
            "resourceId": f"{SUB}/providers/Microsoft.Relay/namespaces/estate{n}",
            "authorizationRules": [ROOT],
            "hybridConnections": [{"name": f"hc{e}", "authorizationRules": []} for e in range(6)],
        }
        for n in range(2000)
    ]
    stray = set(range(0, 12000, 12))
    namespace = f"{SUB}/providers/Microsoft.Relay/namespaces/estate"
    scopes = [f"{namespace}{n % 2000}{'x' * (n in stray)}/hybridConnections/hc{n // 2000}" for n in range(12000)]
    config = _config(namespaces=namespaces, roleAssignments=[_assignment(s) for s in scopes])
    settings = load_settings(_write(tmp_path, config), environ={"GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES": str(16 << 20)})
    result: list[list[str]] = []
    worker = threading.Thread(target=lambda: result.append([str(w) for w in config_warnings(settings)]), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert result, "config_warnings did not finish within 60 s for 2,000 namespaces"
    assert result[0] == [
        f"roleAssignments[{n}].scope: {scopes[n]} names no configured namespace or entity and lies above none, so it "
        f"never matches" + (f"; did you mean {namespace}{n % 2000}/hybridConnections/hc{n // 2000}?" if n < 240 else "")
        for n in sorted(stray)
    ]


def _two_namespaces(tmp_path: Path) -> Any:
    short = {"keyName": "Short", "primaryKey": "c2hvcnQ=", "rights": ["Send"]}
    other = {"name": "fabrikam", "hosts": ["fabrikam.servicebus.windows.net"], "authorizationRules": [short]}
    config = _config(roleAssignments=[_assignment(f"{NS}/hybridConnections/ordres"), _assignment(NS)])
    config["namespaces"][0]["authorizationRules"] = [short]
    config["namespaces"].append(other)
    return load_settings(_write(tmp_path, config))


def test_a_reload_checks_only_the_namespaces_that_changed(tmp_path: Path) -> None:
    """The service's lint keeps what it checked: an unchanged namespace's warnings are the very same objects, a
    replaced namespace is checked again (its own warnings come and go), and the answer equals a fresh check."""
    settings = _two_namespaces(tmp_path)
    lint = ConfigLint()
    first = lint(settings)
    assert [w.location for w in first] == [
        "namespaces[0].authorizationRules[0].primaryKey",
        "namespaces[1].authorizationRules[0].primaryKey",
        "roleAssignments[0].scope",
    ]
    fixed_rule = dataclasses.replace(settings.namespaces[1].rules[0], primary_key=KEY)
    fixed = dataclasses.replace(settings.namespaces[1], rules=(fixed_rule,))
    changed = dataclasses.replace(settings, namespaces=(settings.namespaces[0], fixed))
    second = lint(changed)
    assert second == config_warnings(changed)
    assert [w.location for w in second] == [first[0].location, first[2].location]
    assert second[0] is first[0] and second[1] is first[2]  # not checked again


def test_a_reload_checks_the_role_assignments_again_when_they_or_the_configured_scopes_change(tmp_path: Path) -> None:
    settings = _two_namespaces(tmp_path)
    lint = ConfigLint()
    stray = lint(settings)[-1]
    assert lint(settings)[-1] is stray
    orders = settings.namespaces[0].entities[0]
    renamed = dataclasses.replace(settings.namespaces[0], entities=(dataclasses.replace(orders, name="ordres"),))
    now_configured = dataclasses.replace(settings, namespaces=(renamed, settings.namespaces[1]))
    assert [w.location for w in lint(now_configured)] == [w.location for w in config_warnings(now_configured)]
    assert "roleAssignments[0].scope" not in [w.location for w in lint(now_configured)]
    reassigned = dataclasses.replace(settings, role_assignments=settings.role_assignments[1:])
    assert not [w for w in lint(reassigned) if w.location.startswith("roleAssignments")]
