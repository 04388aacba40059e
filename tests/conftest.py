"""Session-wide pytest hooks."""

from __future__ import annotations

import os

import pytest

from tests.fuzz import targets


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many iterations each fuzz harness ran in this session, and the earned allows its oracle checked."""
    counts = targets.COUNTS
    if not counts:
        return
    scale = os.environ.get("GATEWAY_AUTHZ_FUZZ_SCALE", "1")
    mode = "random" if os.environ.get("GATEWAY_AUTHZ_FUZZ_RANDOM") == "1" else "derandomized"
    allows = ", ".join(f"{kind} {n}" for kind, n in sorted(targets.ALLOWS.items())) or "none"
    terminalreporter.section(f"fuzz iterations (scale {scale}, {mode})")
    for name, count in sorted(counts.items()):
        terminalreporter.write_line(f"  {name:<22} {count:>9,}")
    terminalreporter.write_line(f"  {'total':<22} {sum(counts.values()):>9,}   (earned allows checked: {allows})")
