"""Memory under a flood of distinct valid tokens: the decision cache and every per-credential structure are bounded.

    python -m tests.perf.memory [--count 1000000] [--max-entries 100000]

Pushes ``--count`` distinct, valid SAS tokens (each its own ``se``, so each its own signature and cache key)
through ``DecisionService.decide`` in process, on the benchmark namespace with ``decisionMaxEntries`` =
``--max-entries`` (the shipped default, 100,000), and prints the resident set size (VmRSS) at checkpoints
together with the size of each structure that grows with distinct credentials. Tokens are minted on the fly and
dropped after their decision, so nothing but the service holds them. The target: RSS after 1,000,000 tokens at most
1.5 x RSS after 100,000 (by then the cache is full; from there on it only replaces entries).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml

from tests.perf import _fixtures as fx


def _structures(app: Any) -> dict[str, int]:
    """Sizes of everything that grows with distinct requests or credentials."""
    from gateway_authz.core import resources
    from gateway_authz.core.appkeys import HOLDER, SERVICE

    runtime = app[HOLDER].runtime
    service = app[SERVICE]
    metrics = app[HOLDER]._metrics
    samples = sum(len(list(metric.samples)) for metric in metrics.registry.collect())
    return {
        "decision cache": len(runtime.cache),
        "request memo": len(runtime.cache._requests),
        "resolve memo": len(runtime.policy.index._memo),
        "sr memo": resources._parse_sr_remembered.cache_info().currsize,
        "audit parts": len(service._audit._rendered),
        "metric samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000, help="distinct tokens to decide (1,000,000)")
    parser.add_argument("--max-entries", type=int, default=100_000, help="decisionMaxEntries (100,000)")
    args = parser.parse_args(argv)

    from gateway_authz.config.loader import load_settings
    from gateway_authz.core.appkeys import SERVICE
    from gateway_authz.http.app import create_app
    from tests.perf.micro import envoy_request

    devnull = open(os.devnull, "wb")  # noqa: SIM115 -- for the life of the run

    def sink(line: bytes) -> None:  # one write per line, as standard output without a loop would get
        devnull.write(line)
        devnull.flush()

    checkpoints = sorted({c for c in (10_000, 100_000, 200_000, 500_000, 1_000_000, args.count) if c <= args.count})
    print(f"# machine: {fx.machine()}")
    print(
        f"# {args.count:,} distinct valid SAS tokens through DecisionService.decide; decisionMaxEntries "
        f"{args.max_entries:,}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "memory.yaml"
        path.write_text(yaml.safe_dump(fx.config(decision_max_entries=args.max_entries)))
        app = create_app(load_settings(str(path)), audit_sink=sink, watch_config=False)
        service = app[SERVICE]

        async def flood() -> list[tuple[int, int, float, dict[str, int]]]:
            rows = []
            tokens = fx.unique_sas_tokens(args.count)
            started = time.process_time()
            gc.collect()
            rows.append((0, fx.rss_bytes(), 0.0, _structures(app)))
            done = 0
            for checkpoint in checkpoints:
                while done < checkpoint:
                    decision = await service.decide(envoy_request("servicebusauthorization", next(tokens)))
                    if not decision.allowed:
                        raise SystemExit(f"token {done} was not allowed: {decision}")
                    done += 1
                rows.append((done, fx.rss_bytes(), time.process_time() - started, _structures(app)))
                print(f"  {done:>9,} tokens  RSS {rows[-1][1] / 2**20:7.1f} MiB  {rows[-1][3]}", flush=True)
            return rows

        rows = asyncio.run(flood())
    print()
    print("| distinct tokens | RSS MiB | x RSS at 100k | decision cache entries | CPU s |")
    print("|---:|---:|---:|---:|---:|")
    at_100k = next((rss for n, rss, _s, _x in rows if n == 100_000), None)
    for n, rss, seconds, sizes in rows:
        ratio = f"{rss / at_100k:.2f}" if at_100k else ""
        print(f"| {n:,} | {rss / 2**20:.1f} | {ratio} | {sizes['decision cache']:,} | {seconds:.0f} |")
    final = rows[-1]
    if at_100k and final[0] > 100_000:
        growth = final[1] / at_100k
        verdict = "met" if growth <= 1.5 else "MISSED"
        print(f"\nRSS after {final[0]:,} / after 100,000 = {growth:.2f} (target ≤ 1.5: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
