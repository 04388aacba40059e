"""Contract §6: ``gateway-authz config import`` from saved ``az … -o json`` output (fixtures written from
azure-exports.md: flattened and nested objects, GET-style lower-case ids, entity names with '/', key listings with and
without connection strings, conditional, foreign-scope and duplicate assignments, custom and built-in roles)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from gateway_authz.cli.main import main
from gateway_authz.config.loader import load_settings
from gateway_authz.sas.token import sign_sas

EXPORTS = Path(__file__).parent / "azure_exports"
ALL = [
    "namespaces.json",
    "fabrikam-namespace-arm.json",
    "hycos.json",
    "wcfrelays.json",
    "namespace-rules.json",
    "entity-rules.json",
    "keys-root.json",
    "keys-sendonly.json",
    "keys-orders-send.json",
    "keys-echo-listen.json",
    "role-assignments.json",
    "role-definitions.json",
    "classic-admins.json",
]
HOST = "contoso-relay.servicebus.windows.net"


def run_import(out: Path, names: list[str] = ALL, *extra: str) -> int:
    return main(["config", "import", "--out", str(out), *extra, *(str(EXPORTS / n) for n in names)])


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_an_export_becomes_a_working_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config"
    assert run_import(out) == 0
    settings = load_settings(out, environ={})
    by_name = {ns.name: ns for ns in settings.namespaces}
    assert sorted(by_name) == ["contoso-relay", "fabrikam-relay"]
    contoso = by_name["contoso-relay"]
    assert contoso.hosts == (HOST,)
    assert contoso.resource_id is not None and contoso.resource_id.endswith(
        "/resourceGroups/relay-rg/providers/Microsoft.Relay/namespaces/contoso-relay"
    )
    assert {r.key_name for r in contoso.rules} == {"RootManageSharedAccessKey", "SendOnly"}
    entities = {e.name: e for e in contoso.entities}
    assert sorted(entities) == ["eu/orders", "legacy/echo", "orders", "public"]
    assert entities["public"].requires_client_authorization is False
    assert [r.key_name for r in entities["eu/orders"].rules] == ["orders-send"]
    assert entities["eu/orders"].rules[0].primary_key == "E" * 43 + "="
    assert [r.key_name for r in entities["legacy/echo"].rules] == ["echo-listen"]
    assert by_name["fabrikam-relay"].hosts == ("fabrikam-relay.servicebus.chinacloudapi.cn",)
    # kept: hc scope, namespace (GET spelling), resource group, subscription, custom role; the duplicate counts once
    assert len(settings.role_assignments) == 5
    assert [r.role_name for r in settings.role_definitions][-1] == "Relay Listener For Orders"
    err = capsys.readouterr().err
    assert (
        "skipped 1: conditional" in err and "has a condition" in err and "a0000000-0000-0000-0000-000000000006" in err
    )
    assert "skipped 3: outside Relay scopes" in err  # storage account, management group, another subscription
    assert "skipped 1: classic administrators" in err
    assert "principalType ForeignGroup skipped" in err


def test_a_sas_token_signed_with_an_imported_key_is_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "config"
    assert run_import(out) == 0
    token = sign_sas(f"sb://{HOST}/eu/orders", "orders-send", "E" * 43 + "=", int(time.time()) + 600)
    url = f"https://{HOST}/eu/orders"
    capsys.readouterr()
    assert (
        main(
            ["check", "--config", str(out), "--method", "POST", "--url", url, "-H", f"ServiceBusAuthorization: {token}"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["principal"] == "orders-send"
    wrong = sign_sas(f"sb://{HOST}/eu/orders", "orders-send", "X" * 43 + "=", int(time.time()) + 600)
    assert (
        main(
            ["check", "--config", str(out), "--method", "POST", "--url", url, "-H", f"ServiceBusAuthorization: {wrong}"]
        )
        == 1
    )


def test_keys_are_only_in_0600_secret_files(tmp_path: Path) -> None:
    out = tmp_path / "config"
    assert run_import(out) == 0
    for path in out.glob("*.yaml"):
        text = path.read_text()
        assert "A" * 43 not in text and "E" * 43 not in text and "SharedAccessKey=" not in text
    secrets = [p for p in (out / "secrets").rglob("*") if p.is_file()]
    assert len(secrets) == 8  # four rules with a key listing, primary and secondary each
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secrets)
    contoso = json.loads((out / "contoso-relay.yaml").read_text().split("\n", 1)[1])
    root = contoso["namespaces"][0]["authorizationRules"][0]
    assert root["primaryKey"] == {"file": "secrets/contoso-relay/RootManageSharedAccessKey.primary"}


def test_a_separate_secrets_directory_is_referenced(tmp_path: Path) -> None:
    out, secrets = tmp_path / "config", tmp_path / "keys"
    assert run_import(out, ALL, "--secrets-dir", str(secrets)) == 0
    assert (secrets / "contoso-relay" / "SendOnly.primary").read_text() == "C" * 43 + "="
    assert load_settings(out, environ={}).namespaces


def test_rules_without_a_key_listing_are_left_out_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "config"
    names = [n for n in ALL if not n.startswith("keys-")]
    assert run_import(out, names) == 0
    err = capsys.readouterr().err
    assert "rule RootManageSharedAccessKey on contoso-relay: no key listing, left out" in err
    assert "skipped 5: rules without a key listing" in err
    settings = load_settings(out, environ={})
    contoso = next(ns for ns in settings.namespaces if ns.name == "contoso-relay")
    assert contoso.rules == () and len(contoso.entities) == 4  # still written: role assignments keep working
    assert settings.role_assignments


def test_output_is_deterministic(tmp_path: Path) -> None:
    assert run_import(tmp_path / "one") == 0
    assert run_import(tmp_path / "two", list(reversed(ALL))) == 0
    first = snapshot(tmp_path / "one")
    assert first == snapshot(tmp_path / "two")
    assert run_import(tmp_path / "one") == 0
    assert snapshot(tmp_path / "one") == first


@pytest.mark.parametrize("name", ["unrecognised.json", "keys-without-connection-strings.json"])
def test_an_unrecognised_or_unplaceable_input_exits_1(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_import(tmp_path / "config", ["namespaces.json", name]) == 1
    err = capsys.readouterr().err
    assert name in err
    assert "C" * 43 not in err  # a key is never printed, even when its listing is refused


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["config", "import", str(EXPORTS / "namespaces.json")])  # --out missing
    assert caught.value.code == 2
    assert run_import(tmp_path / "config", ["does-not-exist.json"]) == 2
