"""``gateway-authz test``: YAML decision tests run offline, with SAS and JWT recipes minted at run time."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway_authz.cli.main import main
from tests.cli.test_cli import GROUP, HOST, MEMBER, NOBODY, ORDERS, SENDER, V2_ISSUER, _config
from tests.oidc_provider import TENANT, SigningKey

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "gateway-authz.tests.yaml"


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.rsa(kid="test-rsa")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["test", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _files(tmp_path: Path, signing_key: SigningKey, cases: list[dict[str, Any]], **extra: Any) -> Path:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(_config(signing_key)))
    document = {"config": "config.yaml", "signingKeys": {"test-rsa": signing_key.private_jwk()}, "cases": cases}
    document.update(extra)
    path = tmp_path / "tests.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _sas_case(name: str, rule: str, path: str, expect: dict[str, Any], **recipe: Any) -> dict[str, Any]:
    sas = {"rule": rule, "resource": f"https://{HOST}{path}", **recipe}
    return {
        "name": name,
        "request": {
            "method": "POST",
            "url": f"https://{HOST}{path}",
            "headers": {"ServiceBusAuthorization": {"sas": sas}},
        },
        "expect": expect,
    }


def _jwt_case(name: str, oid: str, path: str, expect: dict[str, Any], **claims: Any) -> dict[str, Any]:
    claims = {"iss": V2_ISSUER, "aud": "https://relay.azure.net", "tid": TENANT, "oid": oid, **claims}
    return {
        "name": name,
        "request": {
            "method": "POST",
            "url": f"https://{HOST}{path}",
            "headers": {"Authorization": {"jwt": {"key": "test-rsa", "claims": claims, "ttl": 600}}},
        },
        "expect": expect,
    }


def test_the_shipped_tests_pass_on_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--coverage", str(SHIPPED))
    assert code == 0, out
    assert "13 passed, 0 failed" in out and "coverage: 3 of 3" in out


def test_sas_and_jwt_recipes_are_minted_and_decided(
    tmp_path: Path, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        _sas_case("root sends", "RootManageSharedAccessKey", "/orders", {"decision": "allow", "right": "Send"}),
        _sas_case("entity rule, secondary key", "orders-send", "/orders", {"status": 200}, key="secondary"),
        _sas_case("expired", "orders-send", "/orders", {"status": 401, "reason": "expired"}, ttl=-3600),
        _sas_case("within the skew", "orders-send", "/orders", {"status": 200}, ttl=-60),
        _jwt_case("sender sends", SENDER, "/orders", {"decision": "allow", "auth": "jwt", "principal": SENDER}),
        _jwt_case("nobody", NOBODY, "/orders", {"decision": "deny", "status": 403, "reason": "no_role_assignment"}),
        _jwt_case("group member", MEMBER, "/invoices", {"decision": "allow"}, groups=[GROUP]),
        _jwt_case("wrong audience", SENDER, "/orders", {"status": 401, "reason": "wrong_audience"}, aud="x"),
    ]
    code, out, err = _run(capsys, str(_files(tmp_path, signing_key, cases)))
    assert (code, out.strip().splitlines()[-1]) == (0, "8 passed, 0 failed"), out + err


def test_a_failing_case_prints_expected_and_actual_and_exits_1(
    tmp_path: Path, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        _sas_case("passes", "orders-send", "/orders", {"status": 200}),
        _sas_case("listen is wrongly expected", "orders-send", "/orders", {"decision": "deny", "reason": "expired"}),
    ]
    code, out, _ = _run(capsys, str(_files(tmp_path, signing_key, cases)))
    assert code == 1
    assert "listen is wrongly expected: expected decision=deny reason=expired, got decision=allow reason=allowed" in out
    assert out.strip().splitlines()[-1] == "1 passed, 1 failed"


def test_junit_has_one_testcase_per_case_and_the_failure(
    tmp_path: Path, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        _sas_case("ok", "orders-send", "/orders", {"status": 200}),
        _sas_case("bad", "orders-send", "/orders", {"status": 403}),
    ]
    junit = tmp_path / "junit.xml"
    code, _, _ = _run(capsys, "--junit", str(junit), str(_files(tmp_path, signing_key, cases)))
    assert code == 1
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 (the file this test just had written)
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases_xml = suite.findall("testcase")
    assert [c.get("name") for c in cases_xml] == ["ok", "bad"]
    assert cases_xml[0].find("failure") is None and cases_xml[1].find("failure") is not None


def test_coverage_lists_what_decided_no_case(
    tmp_path: Path, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [_jwt_case("sender", SENDER, "/orders", {"status": 200})]
    code, out, _ = _run(capsys, "--coverage", str(_files(tmp_path, signing_key, cases)))
    assert code == 0
    assert "not covered: rule RootManageSharedAccessKey on contoso" in out
    assert "not covered: rule orders-send on contoso/orders" in out
    assert f"not covered: role assignment Azure Relay Sender for {GROUP}" in out
    assert f"role assignment Azure Relay Sender for {SENDER} at {ORDERS}" not in out
    assert "coverage: 1 of 5" in out


def test_config_flag_wins_over_the_files_config(
    tmp_path: Path, signing_key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _files(tmp_path, signing_key, [_sas_case("ok", "orders-send", "/orders", {"status": 200})])
    code, _, err = _run(capsys, "--config", str(tmp_path / "absent.yaml"), str(path))
    assert code == 2 and "absent.yaml" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cases": [_sas_case("x", "no-such-rule", "/orders", {"status": 200})]}, "no rule 'no-such-rule'"),
        ({"cases": [_jwt_case("x", SENDER, "/orders", {"status": 200}) | {"name": "x"}], "signingKeys": {}}, ""),
        ({"cases": []}, "'cases' must be a non-empty list"),
        ({"cases": [{"name": "x", "request": {"url": "/x"}, "expect": {"status": 200}}]}, "absolute"),
        ({"cases": [{"name": "x", "request": {"url": f"https://{HOST}/"}, "expect": {"colour": 1}}]}, "expect"),
        ({"now": "yesterday"}, "now must be"),
    ],
)
def test_a_broken_test_file_exits_2(
    tmp_path: Path,
    signing_key: SigningKey,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    message: str,
) -> None:
    cases = change.pop("cases", [_sas_case("ok", "orders-send", "/orders", {"status": 200})])
    path = _files(tmp_path, signing_key, cases, **change)
    code, _, err = _run(capsys, str(path))
    assert code == 2 and message in err, err


def test_a_missing_test_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in err
