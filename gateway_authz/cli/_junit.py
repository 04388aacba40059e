"""JUnit XML for ``gateway-authz test --junit FILE``: one testsuite per test file, one testcase per case."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["write_junit"]


class _Result(Protocol):
    @property
    def file(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def passed(self) -> bool: ...
    @property
    def message(self) -> str: ...
    @property
    def seconds(self) -> float: ...


def write_junit(path: Path, results: Sequence[_Result]) -> None:
    root = ET.Element("testsuites", name="gateway-authz test")
    by_file: dict[str, list[_Result]] = {}
    for result in results:
        by_file.setdefault(result.file, []).append(result)
    for file, cases in by_file.items():
        failures = sum(not case.passed for case in cases)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=file,
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            time=f"{sum(c.seconds for c in cases):.6f}",
        )
        for case in cases:
            element = ET.SubElement(suite, "testcase", name=case.name, classname=file, time=f"{case.seconds:.6f}")
            if not case.passed:
                ET.SubElement(element, "failure", message=case.message).text = case.message
    root.set("tests", str(len(results)))
    root.set("failures", str(sum(not r.passed for r in results)))
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
