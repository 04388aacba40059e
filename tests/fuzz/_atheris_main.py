"""What the two atheris scripts share: import paths, instrumentation, a seed corpus, iteration counts at exit."""

from __future__ import annotations

import atexit
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

import atheris  # noqa: E402  (after the path set-up; installed by hand: pip install atheris)


def load_instrumented() -> None:
    """Import the product under atheris' coverage instrumentation (before anything else imports it)."""
    with atheris.instrument_imports(include=["gateway_authz"]):
        pass


def run(one_input: Callable[[bytes], None], seeds: Iterable[bytes], name: str) -> None:
    """Fuzz ``one_input`` with libFuzzer's arguments from the command line; seed a corpus when none is given."""
    from tests.fuzz.targets import COUNTS

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = Path(tempfile.mkdtemp(prefix=f"gateway-authz-{name}-"))
        for i, seed in enumerate(seeds):
            (corpus / f"seed-{i}").write_bytes(seed)
        argv.append(str(corpus))
        print(f"seed corpus: {corpus}", file=sys.stderr)

    def report() -> None:
        total = sum(COUNTS.values())
        lines = ", ".join(f"{k} {v:,}" for k, v in sorted(COUNTS.items()))
        print(f"harness iterations: {total:,} ({lines})", file=sys.stderr)

    atexit.register(report)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
