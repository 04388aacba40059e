"""The benchmark: gateway-authz against the do-nothing floor, through real Envoy and NGINX, on loopback.

    python -m tests.perf.bench                       # the full table (about 15 minutes)
    python -m tests.perf.bench --duration 3 --rounds 1 --rows envoy-floor,envoy-sas-hit

Starts everything on 127.0.0.1 (the echo upstream, the floors of ``floors.py``, gateway-authz, Envoy with the
shipped ``k8s/`` configs, NGINX with the shipped ``nginx.conf``), drives each row with ``wrk`` and the Lua script
``wrk/bench.lua``, and prints one table: requests/s, p50 and p99 (wrk's own latency histogram), the CPU the
authorizer spent per request, the decision-cache hit share seen in gateway-authz's metrics, and each
gateway-authz row's ratio to its floor. A row's floor is given the very requests of that row, credential
header included (the floor ignores it; the gateway and the load generator still carry it), so that the
authorizer is the one thing that differs; the ratio to the floor given no credential at all is shown beside.
Rows run in rounds, floor and gateway-authz side by side, the order reversed every other round so that slow
drift of a shared machine falls on both; the table shows medians over the rounds and the per-round spread, and
the ratios are medians of per-round ratios. Every process is stopped at the end, whatever happens. Not part of
the test run (``tests/perf`` is outside pytest's collection).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python tests/perf/bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf import _fixtures as fx
from tests.perf import _gateways as gw

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "bench.lua"


@dataclass(frozen=True)
class Target:
    """A target from the issue: requests/s at least ``rps`` x the floor's, p99 at most ``p99`` x the floor's."""

    rps: float
    p99: float | None = None

    def met(self, rps_ratio: float, p99_ratio: float) -> bool:
        return rps_ratio >= self.rps and (self.p99 is None or p99_ratio <= self.p99)

    def __str__(self) -> str:
        return f"≥{self.rps:g}x" + (f", p99 ≤{self.p99:g}x" if self.p99 is not None else "")


@dataclass
class Row:
    key: str
    title: str
    gateway: str  # the gateway process key in gw.Stack
    authorizer: str | None  # the authorizer process key (CPU accounting), None for "no auth"
    credential: str  # "none", "sas", "sas-unique", "jwt", "jwt-unique"
    floor: str | None = None
    target: Target | None = None
    default: bool = True  # in the table unless --rows names rows
    beside: str | None = None  # another row this one is also compared with (req/s ratio), e.g. Envoy's jwt_authn
    # The floor given requests with no credential at all (what the issue describes): its req/s ratio is reported
    # beside the one to ``floor``, which is given the very requests of this row.
    bare_floor: str | None = None
    direct: bool = False  # wrk straight at the authorizer's /ext_authz (no gateway): its own ceiling
    results: list[dict[str, Any]] = field(default_factory=list)


ROWS: tuple[Row, ...] = (
    Row("envoy-none", "Envoy, no ext_authz", "envoy-none", None, "none"),
    Row(
        "envoy-floor",
        "Envoy + do-nothing aiohttp ext_authz (floor), no credential",
        "envoy-floor",
        "floor-http",
        "none",
    ),
    Row(
        "envoy-floor-sas",
        "Envoy + the floor, the SAS rows' requests (floor)",
        "envoy-floor",
        "floor-http",
        "sas",
    ),
    Row(
        "envoy-bare",
        "Envoy + do-nothing aiohttp web.Server on uvloop (reference)",
        "envoy-bare",
        "floor-http-bare",
        "none",
        "envoy-floor",
    ),
    Row(
        "envoy-floor-headers",
        "Envoy + the floor answering gateway-authz's allow headers",
        "envoy-floor-headers",
        "floor-http-headers",
        "sas",
        "envoy-floor-sas",
    ),
    Row(
        "envoy-sas-hit",
        "Envoy + gateway-authz, SAS, cache hit",
        "envoy-authz",
        "authz",
        "sas",
        "envoy-floor-sas",
        Target(1.0, 1.2),
        bare_floor="envoy-floor",
    ),
    Row(
        "envoy-sas-hit-public",
        "Envoy + gateway-authz on aiohttp's public path only, SAS, cache hit",
        "envoy-authz-public",
        "authz-public",
        "sas",
        "envoy-floor-sas",
        default=False,
        beside="envoy-sas-hit",
        bare_floor="envoy-floor",
    ),
    Row(
        "envoy-sas-miss",
        "Envoy + gateway-authz, SAS, unique tokens (miss)",
        "envoy-authz",
        "authz",
        "sas-unique",
        "envoy-floor-sas",
        Target(0.85),
        bare_floor="envoy-floor",
    ),
    Row("envoy-jwt-authn", "Envoy jwt_authn filter, RS256 (no ext_authz)", "envoy-jwt-authn", None, "jwt"),
    Row(
        "envoy-floor-jwt",
        "Envoy + the floor, the JWT rows' requests (floor)",
        "envoy-floor",
        "floor-http",
        "jwt",
    ),
    Row(
        "envoy-jwt-hit",
        "Envoy + gateway-authz, JWT RS256, cache hit",
        "envoy-authz",
        "authz",
        "jwt",
        "envoy-floor-jwt",
        Target(1.0),
        bare_floor="envoy-floor",
    ),
    Row(
        "envoy-jwt-miss",
        "Envoy + gateway-authz, JWT RS256, uncached",
        "envoy-authz-small",
        "authz-small",
        "jwt-unique",
        "envoy-floor-jwt",
        beside="envoy-jwt-authn",
        bare_floor="envoy-floor",
    ),
    Row("nginx-none", "NGINX, no auth_request", "nginx-none", None, "none"),
    Row(
        "nginx-floor",
        "NGINX + do-nothing aiohttp auth_request (floor), no credential",
        "nginx-floor",
        "floor-http",
        "none",
    ),
    Row("nginx-floor-sas", "NGINX + the floor, the SAS row's requests (floor)", "nginx-floor", "floor-http", "sas"),
    Row(
        "nginx-floor-headers",
        "NGINX + the floor answering gateway-authz's allow headers",
        "nginx-floor-headers",
        "floor-http-headers",
        "sas",
        "nginx-floor-sas",
    ),
    Row(
        "nginx-sas-hit",
        "NGINX + gateway-authz, SAS, cache hit",
        "nginx-authz",
        "authz",
        "sas",
        "nginx-floor-sas",
        Target(1.0),
        bare_floor="nginx-floor",
    ),
    Row(
        "nginx-sas-hit-public",
        "NGINX + gateway-authz on aiohttp's public path only, SAS, cache hit",
        "nginx-authz-public",
        "authz-public",
        "sas",
        "nginx-floor-sas",
        default=False,
        beside="nginx-sas-hit",
        bare_floor="nginx-floor",
    ),
    Row(
        "grpc-floor",
        "Envoy + do-nothing grpc.aio ext_authz (floor), no credential",
        "envoy-grpc-floor",
        "floor-grpc",
        "none",
    ),
    Row(
        "grpc-floor-sas",
        "Envoy + grpc.aio floor, the SAS rows' requests (floor)",
        "envoy-grpc-floor",
        "floor-grpc",
        "sas",
    ),
    Row(
        "grpc-sas-hit",
        "Envoy gRPC + gateway-authz, SAS, cache hit",
        "envoy-grpc-authz",
        "authz-grpc",
        "sas",
        "grpc-floor-sas",
        Target(0.85),
        bare_floor="grpc-floor",
    ),
    Row(
        "grpc-sas-miss",
        "Envoy gRPC + gateway-authz, SAS, unique tokens",
        "envoy-grpc-authz",
        "authz-grpc",
        "sas-unique",
        "grpc-floor-sas",
        bare_floor="grpc-floor",
    ),
    Row(
        "direct-floor",
        "wrk → do-nothing aiohttp /ext_authz directly",
        "floor-http",
        "floor-http",
        "none",
        default=False,
        direct=True,
    ),
    Row(
        "direct-sas-hit",
        "wrk → gateway-authz /ext_authz directly, SAS, cache hit",
        "authz",
        "authz",
        "sas",
        "direct-floor",
        default=False,
        direct=True,
    ),
    Row(
        "direct-sas-hit-public",
        "wrk → gateway-authz on aiohttp's public path only, /ext_authz directly, SAS, cache hit",
        "authz-public",
        "authz-public",
        "sas",
        "direct-floor",
        default=False,
        direct=True,
        beside="direct-sas-hit",
    ),
)
JWT_ROWS = frozenset({"envoy-jwt-authn", "envoy-floor-jwt", "envoy-jwt-hit", "envoy-jwt-miss"})


# --------------------------------------------------------------------------------------------------- wrk


def find_wrk() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if os.access("/usr/bin/wrk", os.X_OK) else None)
    if found is None:
        sys.exit("wrk not found: the benchmark needs the load generator wrk (Debian/Ubuntu: apt-get install wrk)")
    return found


def run_wrk(
    wrk: str,
    port: int,
    token_file: Path | None,
    header: str,
    *,
    path_prefix: str = "",
    seconds: float,
    connections: int,
    threads: int,
) -> dict[str, Any]:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        "-H",
        f"Host: {fx.HOST}",
        f"http://127.0.0.1:{port}{path_prefix}{fx.PATH}",
        "--",
        str(token_file) if token_file else "-",
        header,
        str(threads),
    ]
    done = gw.run_quietly(argv, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH-RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


# --------------------------------------------------------------------------------------------------- metrics


def cache_counts(admin_port: int) -> dict[str, float]:
    """gateway-authz's decision-cache and decision counters, from its /metrics (this worker's view)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {"hit": 0.0, "miss": 0.0, "allow": 0.0, "deny": 0.0}
    for line in text.splitlines():
        if line.startswith("gateway_authz_decision_cache_total{"):
            counts["hit" if 'result="hit"' in line else "miss"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("gateway_authz_decisions_total{"):
            counts["allow" if 'decision="allow"' in line else "deny"] += float(line.rsplit(" ", 1)[1])
    return counts


# --------------------------------------------------------------------------------------------------- tokens


class Tokens:
    """Token files for wrk: one line per request to send (cycled), fresh unique ones for every measured run."""

    def __init__(self, workdir: Path, jwt_signer: fx.JwtSigner | None) -> None:
        self._dir = workdir / "tokens"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._next_se = int(time.time()) + 6 * 3600
        self._signer = jwt_signer
        self._fixed_sas = self._write("sas-fixed", [fx.sas_token()])
        self._fixed_jwt = self._write("jwt-fixed", [f"Bearer {jwt_signer.token()}"]) if jwt_signer else None
        self._jwt_pool: Path | None = None
        self._serial = 0

    def _write(self, name: str, lines: list[str] | Iterator[str]) -> Path:
        path = self._dir / f"{name}.txt"
        with path.open("w") as out:
            for line in lines:
                out.write(line + "\n")
        return path

    def header(self, credential: str) -> str:
        return "Authorization" if credential.startswith("jwt") else "ServiceBusAuthorization"

    def file_for(self, credential: str, expected_requests: int) -> Path | None:
        if credential == "none":
            return None
        if credential == "sas":
            return self._fixed_sas
        if credential == "jwt":
            return self._fixed_jwt
        if credential == "sas-unique":  # never seen before by the service: every request a cache miss
            count = max(5_000, expected_requests)
            start, self._next_se = self._next_se, self._next_se + count
            self._serial += 1
            return self._write(f"sas-unique-{self._serial}", fx.unique_sas_tokens(count, start=start))
        if credential == "jwt-unique":  # a pool bigger than that service's small cache, cycled: every one a miss
            if self._jwt_pool is None:
                assert self._signer is not None
                tokens = (f"Bearer {self._signer.token()}" for _ in range(gw.JWT_POOL))
                self._jwt_pool = self._write("jwt-pool", tokens)
            return self._jwt_pool
        raise ValueError(credential)


# --------------------------------------------------------------------------------------------------- the run


def measure(
    row: Row, stack: gw.Stack, tokens: Tokens, wrk: str, args: argparse.Namespace, *, seconds: float, record: bool
) -> dict[str, Any]:
    authz_admin = stack.admin_port(row.authorizer)
    expected = int(row.results[-1]["rps"] * seconds * 1.3) if row.results else int(seconds * 12_000)
    token_file = tokens.file_for(row.credential, expected)
    stack.truncate_logs()
    before_cache = cache_counts(authz_admin) if authz_admin else None
    before_cpu = stack.cpu_seconds(row.authorizer)
    port = stack.port(row.authorizer if row.direct and row.authorizer else row.gateway)
    result = run_wrk(
        wrk,
        port,
        token_file,
        tokens.header(row.credential),
        path_prefix="/ext_authz" if row.direct else "",
        seconds=seconds,
        connections=args.connections,
        threads=args.threads,
    )
    result["authz_cpu_s"] = stack.cpu_seconds(row.authorizer) - before_cpu if row.authorizer else None
    if before_cache is not None and authz_admin is not None:
        after = cache_counts(authz_admin)
        result["cache"] = {k: after[k] - before_cache[k] for k in after}
    result["non_2xx"] = result["status"]
    if record:
        row.results.append(result)
    return result


def run(args: argparse.Namespace) -> int:
    wrk = find_wrk()
    selected = [r for r in ROWS if (r.key in args.rows if args.rows else r.default)]
    jwt_wired = gw.jwt_wired()
    if not jwt_wired:
        skipped = [r.key for r in selected if r.key in JWT_ROWS]
        selected = [r for r in selected if r.key not in JWT_ROWS]
        if skipped:
            print(f"# JWT rows left out ({', '.join(skipped)}): JWT verification is not wired into the service yet")
    floors = {f for r in selected for f in (r.floor, r.beside, r.bare_floor) if f}
    missing = sorted(f for f in floors if f not in {r.key for r in selected})
    selected = [r for r in ROWS if r in selected or r.key in missing]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gateway-authz-bench-"))
    print(f"# machine: {fx.machine()}")
    print(f"# command: python -m tests.perf.bench {' '.join(sys.argv[1:])}".rstrip())
    print(f"# logs and configs: {workdir}")
    signer = fx.JwtSigner() if jwt_wired and any(r.credential.startswith("jwt") for r in selected) else None
    with gw.Stack(
        workdir,
        selected_gateways={r.gateway for r in selected if not r.direct},
        authorizers={r.authorizer for r in selected if r.authorizer},
        jwt_signer=signer,
        workers=args.workers,
        profile=args.profile,
    ) as stack:
        print(f"# {stack.describe()}")
        tokens = Tokens(workdir, signer)
        print(f"# warm-up: {args.warmup:g} s per row", flush=True)
        for row in selected:
            warm = measure(row, stack, tokens, wrk, args, seconds=args.warmup, record=False)
            row.results.append(warm)  # the estimate for the next token pool; dropped below
            _check(row, warm, warmup=True)
        for row in selected:
            row.results.clear()
        for round_no in range(args.rounds):
            order = selected if round_no % 2 == 0 else list(reversed(selected))
            for row in order:
                result = measure(row, stack, tokens, wrk, args, seconds=args.duration, record=True)
                _check(row, result, warmup=False)
                print(
                    f"  round {round_no + 1} {row.key:<16} {result['rps']:>9,.0f} req/s "
                    f"p50 {result['p50_us'] / 1000:.2f} ms p99 {result['p99_us'] / 1000:.2f} ms",
                    flush=True,
                )
    table = render(selected, args)
    print()
    print(table)
    (workdir / "results.json").write_text(json.dumps([{"key": r.key, "results": r.results} for r in selected]))
    (workdir / "table.md").write_text(table + "\n")
    return 0


def _check(row: Row, result: dict[str, Any], *, warmup: bool) -> None:
    """A row whose requests were not all answered 200 measures something else: say so loudly."""
    errors = {k: result[k] for k in ("connect", "read", "write", "status", "timeout") if result[k]}
    cache = result.get("cache")
    if cache and cache["deny"]:
        errors["denied"] = cache["deny"]
    if errors:
        print(f"  !! {row.key}{' (warm-up)' if warmup else ''}: errors {errors}", flush=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(rows: list[Row], args: argparse.Namespace) -> str:
    by_key = {r.key: r for r in rows}

    def ratio(row: Row, other_key: str | None, figure: str = "rps") -> float | None:
        """The median over rounds of ``row``'s ``figure`` divided by the other row's in the same round."""
        other = by_key.get(other_key) if other_key else None
        if other is None or not other.results:
            return None
        return _median([a[figure] / b[figure] for a, b in zip(row.results, other.results, strict=False)])

    lines = [
        f"wrk -t{args.threads} -c{args.connections}, {args.duration:g} s per row, {args.rounds} round(s), "
        f"median of rounds (spread = min-max req/s); ratios are medians of per-round ratios to the floor "
        f"given the same requests",
        "",
        "| row | req/s | spread | p50 ms | p99 ms | authz CPU µs/req | cache hits | x floor req/s | x floor p99 "
        "| x floor without credential | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        rps = [r["rps"] for r in row.results]
        p50 = _median([r["p50_us"] / 1000 for r in row.results])
        p99 = _median([r["p99_us"] / 1000 for r in row.results])
        cpu = [r["authz_cpu_s"] / r["requests"] * 1e6 for r in row.results if r.get("authz_cpu_s") is not None]
        hits = [r["cache"] for r in row.results if r.get("cache")]
        total = sum(c["hit"] + c["miss"] for c in hits)
        hit_share = f"{sum(c['hit'] for c in hits) / total:.0%}" if total else ""
        ratio_rps = ratio_p99 = verdict = ""
        r_rps, r_p99 = ratio(row, row.floor), ratio(row, row.floor, "p99_us")
        if r_rps is not None and r_p99 is not None:
            ratio_rps, ratio_p99 = f"{r_rps:.2f}", f"{r_p99:.2f}"
            if row.target is not None:
                verdict = f"{row.target}: {'met' if row.target.met(r_rps, r_p99) else 'MISSED'}"
        r_bare = ratio(row, row.bare_floor)
        ratio_bare = f"{r_bare:.2f}" if r_bare is not None else ""
        r_beside = ratio(row, row.beside)
        if r_beside is not None:
            verdict = f"{r_beside:.2f}x {row.beside} req/s"
        bad = sum(r["non_2xx"] + r["connect"] + r["read"] + r["timeout"] for r in row.results)
        title = row.title + (f" ({bad:.0f} errors!)" if bad else "")
        cpu_cell = f"{_median(cpu):.0f}" if cpu else ""
        lines.append(
            f"| {title} | {_median(rps):,.0f} | {min(rps):,.0f}-{max(rps):,.0f} | {p50:.2f} | {p99:.2f} "
            f"| {cpu_cell} | {hit_share} | {ratio_rps} | {ratio_p99} | {ratio_bare} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per row and round (10)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unrecorded load per row first (2)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all rows; medians are reported (3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--workers", type=int, default=1, help="gateway-authz --workers (1)")
    parser.add_argument(
        "--rows",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=None,
        help="comma-separated row keys (default: all): " + ", ".join(r.key for r in ROWS),
    )
    parser.add_argument("--workdir", default=None, help="where configs, token files and logs go (a new temp dir)")
    parser.add_argument("--profile", action="store_true", help="run gateway-authz under py-spy (if installed)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so that every process is stopped
    unknown = set(args.rows or ()) - {r.key for r in ROWS}
    if unknown:
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}")
    with contextlib.suppress(KeyboardInterrupt):
        return run(args)
    return 130


if __name__ == "__main__":
    sys.exit(main())
