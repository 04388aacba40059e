"""The shipped decision cache against the same cache on ``cachetools.TLRUCache``, side by side.

    python -m tests.perf.cache_choice [--rounds 7] [--scale 1.0]

One service (``create_app`` on the benchmark namespace, audit to ``/dev/null``) decides the same requests with
either cache swapped into its runtime, the two alternating round by round (A B B A …) so that drift of a shared
machine falls on both. Rows: a SAS cache hit through ``DecisionService.decide`` (the path every repeated check
takes) and a full cache taking a new entry per decision (unique tokens: the eviction path). Printed: microseconds
per decision for each cache (median over rounds) and the per-round ratio TLRU / shipped (median, min, max).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf import _fixtures as fx
from tests.perf._tlru_cache import TlruDecisionCache
from tests.perf.micro import build_app, envoy_request


def _per_decision(service: Any, requests: list[Any]) -> float:
    async def run() -> float:
        started = time.perf_counter()
        for request in requests:
            await service.decide(request)
        return (time.perf_counter() - started) / len(requests)

    return asyncio.get_event_loop().run_until_complete(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every iteration count (0.1: a smoke run)")
    args = parser.parse_args(argv)

    from gateway_authz.core.appkeys import HOLDER, SERVICE
    from gateway_authz.decision.cache import DecisionCache

    hits = max(100, int(50_000 * args.scale))
    misses = max(100, int(5_000 * args.scale))
    asyncio.set_event_loop(asyncio.new_event_loop())
    with tempfile.TemporaryDirectory() as scratch:
        app = build_app(None, Path(scratch))
        service, holder = app[SERVICE], app[HOLDER]
        base = holder.runtime
        size = base.settings.cache

        def use(factory: Callable[..., Any], maxsize: int) -> None:
            cache = factory(maxsize=maxsize, ttl=size.decision_ttl_seconds, clock=time.time)
            holder.runtime = dataclasses.replace(base, cache=cache)

        hit = [envoy_request("servicebusauthorization", fx.sas_token())] * hits
        tokens = iter(fx.unique_sas_tokens(misses * 2 * (args.rounds + 1)))
        caches = {"tlru": TlruDecisionCache, "shipped": DecisionCache}
        figures: dict[tuple[str, str], list[float]] = {}
        order = list(caches)
        for round_ in range(args.rounds + 1):  # round 0 warms up and is not counted
            for name in order if round_ % 2 else reversed(order):
                use(caches[name], size.decision_max_entries)
                _per_decision(service, hit[:100])
                hit_s = _per_decision(service, hit)
                use(caches[name], 1_000)  # full after the first thousand: every later decision evicts one
                unique = [envoy_request("servicebusauthorization", next(tokens)) for _ in range(misses)]
                miss_s = _per_decision(service, unique)
                if round_:
                    figures.setdefault(("hit", name), []).append(hit_s)
                    figures.setdefault(("miss", name), []).append(miss_s)
    print(f"# machine: {fx.machine()}; {args.rounds} rounds, {hits} hits and {misses} unique tokens per round")
    for row in ("hit", "miss"):
        tlru, shipped = figures[(row, "tlru")], figures[(row, "shipped")]
        ratios = [a / b for a, b in zip(tlru, shipped, strict=True)]
        label = "SAS cache hit (decide)" if row == "hit" else "SAS unique tokens, full cache (decide)"
        print(
            f"{label:<40} tlru {statistics.median(tlru) * 1e6:7.2f} µs"
            f"  shipped {statistics.median(shipped) * 1e6:7.2f} µs"
            f"  ratio median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
