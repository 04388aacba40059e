"""The PrometheusRule's alerts: ``promtool check rules`` on them, ``promtool test rules`` with the cases in
``alerts_test.yaml``, and a one-line runbook for each in ``docs/operations.md``.

promtool is Debian's ``prometheus`` package (``.ci/run`` installs it); without it these tests skip on a laptop and
fail in CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.integration._procs import missing_binary

from .test_manifests import K8S, REPO

RULE = K8S / "overlays" / "monitoring" / "prometheusrule.yaml"
CASES = Path(__file__).resolve().parent / "alerts_test.yaml"
REQUIRED = {
    "GatewayAuthzServerErrors",  # any 5xx answer
    "GatewayAuthzDenyRatioHigh",  # deny ratio well above its baseline
    "GatewayAuthzConfigReloadFailing",
    "GatewayAuthzJwksRefreshFailing",
    "GatewayAuthzNotReady",
    "GatewayAuthzSecondaryKeyStillInUse",  # secondary key still in use long after a rotation started
}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_binary("promtool", "apt-get install prometheus")
        raise AssertionError("unreachable")
    return path


def _groups() -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(RULE.read_text())["spec"]
    return spec


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in _groups()["groups"] for rule in group["rules"] if "alert" in rule]


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules_passes(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(_groups()))
    result = _run([_promtool(), "check", "rules", str(rules)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    """Each alert fires on its case and not on the look-alike (annotations are left to `check rules`)."""
    groups = _groups()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    (tmp_path / "tests.yaml").write_text(CASES.read_text().replace("rule_files: [RULES]", "rule_files: [rules.yaml]"))
    result = _run([_promtool(), "test", "rules", "tests.yaml"], tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_is_tested_and_the_required_ones_exist() -> None:
    names = {rule["alert"] for rule in _alerts()}
    assert names >= REQUIRED
    tested = set(re.findall(r"alertname: (\w+)", CASES.read_text()))
    assert tested == names


def test_every_alert_has_a_one_line_runbook() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    for rule in _alerts():
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{anchor}"
        (line,) = [line for line in operations.splitlines() if f'id="{anchor}"' in line]
        assert line.startswith("| ") and len(line) > 80, line
        assert rule["labels"]["severity"] in ("page", "ticket")
