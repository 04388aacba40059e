"""Decisions never stall on config work (issue 17, point 3): cached SAS load while one file changes every second.

    python -m tests.perf.reload_load                               # 1,000 namespaces, 3 rounds of 5 s per run
    python -m tests.perf.reload_load --namespaces 1000 --duration 5 --rounds 3

Serves a 1,000-namespace configuration directory (as ``tests.perf.estate`` writes it, plus the benchmark namespace
of ``_fixtures`` and ``configTtlSeconds: 1``) and drives cached SAS decisions with ``wrk`` (the ``wrk/bench.lua``
script of ``bench.py``), straight at the service's ``/ext_authz`` and through Envoy (the shipped ``envoy-http``
config). Each target runs twice per round, side by side: once quiet, once while a writer replaces one file every
second (written to a temporary file and renamed over the old, as a ConfigMap update is): a namespace file with a new
key and a role-assignment file of 2,000 granting one principal more, in turns (``--change``), so that every tick of
the service finds one changed file and compiles a new runtime. The order alternates between
rounds. Printed: requests/s and p99 of each run, the medians of the per-round ratios (changing / quiet), and how
many reloads the service applied during the changing runs (it must be about one per second, or nothing was
measured; a changing run waits for the last write's reload before it is counted, so that no quiet run sees
one). Goal: requests/s ratio at least 0.9 and p99 ratio at most 1.2, direct and through Envoy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration import _procs
from tests.perf import _fixtures as fx
from tests.perf import bench, estate

SETTLE_SECONDS = 2.0  # configTtlSeconds (1) and a margin: a tick picks up the writer's last file within it


class Writer:
    """Replaces one file every ``period`` seconds (a different one each time), up to ``writes`` times, until stopped.

    ``change``: ``namespaces`` (a namespace file with a new key), ``assignments`` (a role-assignment file of 2,000
    granting one principal more) or ``both``, in turns. The files are rendered before the run: rendering 2,000
    assignments as indented JSON takes tens of milliseconds of CPU, which would be the harness's cost, not the
    service's (the kubelet only copies bytes).
    """

    def __init__(
        self, directory: Path, namespaces: int, assignments: int, change: str, writes: int, period: float = 1.0
    ) -> None:
        self._directory, self._period = directory, period
        rows = estate.assignment_rows(namespaces, assignments)
        self._texts: list[tuple[str, str]] = []
        for n in range(writes):
            generation = time.time_ns() + n  # never a repeat of earlier bytes: every write is a change to apply
            if change == "namespaces" or (change == "both" and n % 2 == 0):
                i = (n * 7919) % namespaces
                name = f"{estate.namespace_name(i)}.yaml"
                document = estate.namespace_document(i, generation=generation)
            else:
                j = (n * 7) % estate.assignment_files(rows)
                name, document = estate.assignment_file(j), estate.assignment_document(rows, j, generation)
            self._texts.append((name, estate.render(document, "json")))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.writes = 0

    def __enter__(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._period) and self.writes < len(self._texts):
            name, text = self._texts[self.writes]
            temporary = self._directory / f".{name}.tmp"
            temporary.write_text(text)
            os.replace(temporary, self._directory / name)
            self.writes += 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


def reloads(admin_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("gateway_authz_config_reloads_total{") and 'result="changed"' in line
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=1000)
    parser.add_argument("--assignments", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (5)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--change",
        choices=("namespaces", "assignments", "both"),
        default="both",
        help="which files the writer replaces: namespace files, role-assignment files, or both in turns (both)",
    )
    args = parser.parse_args(argv)
    wrk = bench.find_wrk()
    with tempfile.TemporaryDirectory(prefix="reload-load-") as tmp:
        workdir = Path(tmp)
        config = workdir / "config"
        config.mkdir()
        estate.write_estate(config, args.namespaces, args.assignments, fx.JwtSigner().jwks, "json")
        base = fx.config()
        (config / "contoso.yaml").write_text(json.dumps({"namespaces": base["namespaces"]}))
        (config / "settings.yaml").write_text(json.dumps({"cache": {"configTtlSeconds": 1}, "sas": base["sas"]}))
        token_file = workdir / "token.txt"
        token_file.write_text(fx.sas_token() + "\n")
        echo, echo_port = _procs.start_echo(workdir)
        service = _procs.start_authz(config, workdir, timeout=120)
        envoy, envoy_port, _admin = _procs.start_envoy(
            "envoy-http.yaml", workdir, clusters={"app": echo_port, "gateway_authz": service.port}, name="envoy"
        )
        try:
            targets = {"direct": (service.port, "/ext_authz"), "envoy": (envoy_port, "")}
            print(
                f"# {fx.machine()}; {args.namespaces} namespaces, {args.assignments} role assignments; "
                f"changing {args.change}; wrk -c{args.connections}, {args.duration:g} s"
            )
            ratios: dict[str, list[tuple[float, float, float]]] = {name: [] for name in targets}
            for round_ in range(args.rounds):
                for name, (port, prefix) in targets.items():
                    runs: dict[str, dict[str, float]] = {}
                    order = ("quiet", "changing") if round_ % 2 == 0 else ("changing", "quiet")
                    for mode in order:
                        before = reloads(service.admin_port)
                        pids = [service.proc.pid, *children(service.proc.pid)]
                        cpu_before = [cpu_seconds(p) for p in pids]
                        if mode == "changing":
                            writes = int(args.duration) + 1
                            writer = Writer(config, args.namespaces, args.assignments, args.change, writes)
                            with writer:
                                result = _wrk(wrk, port, prefix, token_file, args)
                            time.sleep(SETTLE_SECONDS)  # the last write's reload lands here, not in a quiet run
                        else:
                            result = _wrk(wrk, port, prefix, token_file, args)
                        result["reloads"] = reloads(service.admin_port) - before
                        spent = [cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True)]
                        result["cpu_us"] = spent[0] / result["requests"] * 1e6
                        result["reader_cpu"] = sum(spent[1:]) / args.duration
                        runs[mode] = result
                        print(
                            f"round {round_ + 1} {name:>6} {mode:>8}: {result['rps']:>9,.0f} req/s  "
                            f"p99 {result['p99_us'] / 1000:6.2f} ms  service CPU {result['cpu_us']:5.1f} µs/req  "
                            f"reader CPU {result['reader_cpu'] * 100:4.1f}%  reloads {result['reloads']:.0f}",
                            flush=True,
                        )
                    q, c = runs["quiet"], runs["changing"]
                    ratios[name].append((c["rps"] / q["rps"], c["p99_us"] / q["p99_us"], c["cpu_us"] / q["cpu_us"]))
            for name, pairs in ratios.items():
                rps = statistics.median(p[0] for p in pairs)
                p99 = statistics.median(p[1] for p in pairs)
                cpu = statistics.median(p[2] for p in pairs)
                verdict = "met" if rps >= 0.9 and p99 <= 1.2 else "NOT met"
                print(f"{name:>6}: service CPU per request, changing/quiet {cpu:.3f}")
                print(
                    f"{name:>6}: changing/quiet req/s {rps:.3f} (goal >= 0.9), p99 {p99:.3f} (goal <= 1.2): {verdict}"
                )
        finally:
            for proc in (envoy, service.proc, echo):
                proc.stop()
    return 0


def _wrk(wrk: str, port: int, prefix: str, token_file: Path, args: argparse.Namespace) -> dict[str, float]:
    return bench.run_wrk(
        wrk,
        port,
        token_file,
        "ServiceBusAuthorization",
        path_prefix=prefix,
        seconds=args.duration,
        connections=args.connections,
        threads=1,
    )


if __name__ == "__main__":
    raise SystemExit(main())
