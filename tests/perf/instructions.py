"""Instructions per request in the live servers, counted by valgrind: the benchmark figure noise cannot move.

    python -m tests.perf.instructions                   # floor, reference, gateway-authz (SAS hit and miss, JWT hit)
    python -m tests.perf.instructions --seconds 8 --rows floor,gateway-authz-miss

Req/s on a shared 2-core machine swings by a third whenever anything else runs; instruction counts do not.
Each authorizer of the benchmark (the floor and the reference of ``floors.py``, gateway-authz on the benchmark
configuration) runs under ``valgrind --tool=callgrind``; ``wrk -c1`` sends it the Envoy-shaped request of the
SAS cache-hit row straight to ``/ext_authz/orders`` (warm-up first, then the counters are zeroed), and the
instructions the whole process executed while the measured requests were served are divided by their number.
That counts the user-space work of everything in the process (parsing, the event loop, the decision, the audit
line, the answer), not kernel time or cache misses: a lower bound on the CPU a request costs, and a ratio to the
floor that is repeatable to within a fraction of a percent. Needs valgrind and wrk (Debian packages).

The miss row sends a token never seen before with every request: the warm-up and the measured run each cycle
through a file of their own with more distinct tokens than either can send.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml

from tests.integration import _procs
from tests.perf import _fixtures as fx
from tests.perf._gateways import FLOORS_SCRIPT

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk" / "bench.lua"
# row -> its title; the first is the floor the others are divided by
ROWS = {
    "floor": "do-nothing aiohttp web.Application, asyncio loop (the floor)",
    "reference": "do-nothing aiohttp web.Server on uvloop (reference)",
    "gateway-authz": "gateway-authz, SAS, decision cache hit",
    "gateway-authz-miss": "gateway-authz, SAS, unique tokens (miss)",
    "gateway-authz-jwt": "gateway-authz, JWT RS256, decision cache hit",
}
_UNIQUE_TOKENS = 40_000  # per file: more than wrk -c1 sends under valgrind in the warm-up or the measured run


def _argv(row: str, port: int, config: Path) -> list[str]:
    if row == "floor":
        return [sys.executable, str(FLOORS_SCRIPT), "--kind", "http", "--port", str(port)]
    if row == "reference":
        return [sys.executable, str(FLOORS_SCRIPT), "--kind", "http", "--port", str(port), "--uvloop", "--lowlevel"]
    return _procs.serve_argv(config, port, _procs.free_port())


def _wrk(port: int, tokens: Path, seconds: int, header: str) -> int:
    argv = ["wrk", "-t1", "-c1", f"-d{seconds}s", "-s", str(WRK_SCRIPT), "-H", f"Host: {fx.HOST}"]
    argv += ["-H", "x-forwarded-proto: http", "-H", "x-request-id: 0f8fad5b-d9cb-469f-a165-70867728950e"]
    argv += [f"http://127.0.0.1:{port}/ext_authz{fx.PATH}", "--", str(tokens), header, "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("BENCH-RESULT "))
    result = json.loads(line.removeprefix("BENCH-RESULT "))
    if result["status"]:
        raise RuntimeError(f"non-2xx answers: {result}")
    return int(result["requests"])


def _instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def measure(
    row: str, workdir: Path, config: Path, tokens: tuple[Path, Path], header: str, seconds: int
) -> tuple[int, int]:
    """(requests, instructions) while ``row`` served ``seconds`` of wrk -c1 under callgrind.

    ``tokens`` are the files of the warm-up and of the measured run (the same file for a repeated token), sent
    in the request header ``header``.
    """
    port = _procs.free_port()
    out = workdir / f"callgrind.{row}"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *_argv(row, port, config)]
    proc = _procs.ManagedProcess(row, argv, workdir, env=_procs.service_env({"PYTHONHASHSEED": "0"})).start()
    try:
        deadline = time.monotonic() + 180  # start-up under valgrind is slow
        while not _procs.port_open(port):
            if not proc.running() or time.monotonic() > deadline:
                raise RuntimeError(f"{row} did not start\n{proc.describe()}")
            time.sleep(0.5)
        _wrk(port, tokens[0], 3, header)  # warm-up: imports, first-request work, caches filled
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True, timeout=60)
        requests = _wrk(port, tokens[1], seconds, header)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True, timeout=60)
        return requests, _instructions(Path(f"{out}.1"))
    finally:
        proc.stop(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6, help="measured wrk run per row (default 6)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows; the floor always runs")
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep configs and callgrind dumps here (for callgrind_annotate), not in a temp dir",
    )
    args = parser.parse_args(argv)
    rows = {"floor", *args.rows.split(",")}
    if unknown := rows - set(ROWS):
        parser.error(f"unknown rows: {', '.join(sorted(unknown))}; known: {', '.join(ROWS)}")
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: this benchmark needs valgrind and wrk (apt-get install valgrind wrk)")
    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gateway-authz-instructions-")))
        signer = fx.JwtSigner()
        config = workdir / "authz.yaml"  # with the issuer (the SAS rows never consult it)
        config.write_text(yaml.safe_dump(fx.config(jwks=signer.jwks), sort_keys=False))
        fixed = workdir / "sas-fixed.txt"
        fixed.write_text(fx.sas_token() + "\n")
        jwt = workdir / "jwt-fixed.txt"
        jwt.write_text(f"Bearer {signer.token()}\n")
        unique = (workdir / "sas-unique-warm-up.txt", workdir / "sas-unique.txt")
        for number, path in enumerate(unique):
            start = int(time.time()) + 7200 + number * _UNIQUE_TOKENS
            path.write_text("".join(f"{token}\n" for token in fx.unique_sas_tokens(_UNIQUE_TOKENS, start=start)))
        print(f"# {fx.machine()}; wrk -t1 -c1, {args.seconds} s per row, under valgrind --tool=callgrind")
        print("| row | requests | instructions/request | x floor |")
        print("|---|---:|---:|---:|")
        floor = None
        # row -> (warm-up and measured token files, header); every other row sends the one SAS token
        sent = {
            "gateway-authz-miss": (unique, "ServiceBusAuthorization"),
            "gateway-authz-jwt": ((jwt, jwt), "Authorization"),
        }
        for row, title in ROWS.items():
            if row not in rows:
                continue
            tokens, header = sent.get(row, ((fixed, fixed), "ServiceBusAuthorization"))
            requests, instructions = measure(row, workdir, config, tokens, header, args.seconds)
            if row == "gateway-authz-miss" and requests >= _UNIQUE_TOKENS:
                raise RuntimeError(f"{requests} requests cycled through {_UNIQUE_TOKENS} tokens: not all misses")
            per_request = instructions / requests
            floor = floor or per_request
            print(f"| {title} | {requests:,} | {per_request:,.0f} | {per_request / floor:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
