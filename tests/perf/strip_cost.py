"""What removing ``sb-hc-token`` in the gateway costs: the shipped configs against the same configs without it.

    python tests/perf/strip_cost.py [--seconds 5] [--rounds 2]

One run, side by side, on loopback: gateway-authz (one process) and the echo upstream, then per row Envoy HTTP
mode or NGINX in front of them, driven by ``wrk -t1 -c16`` with ``GET /orders?sb-hc-action=connect&sb-hc-token=…``
(one valid token, so every check is a cached allow). Rows alternate round by round so drift hits both alike.

- ``envoy-shipped``: the shipped ``envoy-http.yaml`` (the Lua filter strips the token; the header_mutation filter
  drops a client's ``x-authz-decision-id``);
- ``envoy-no-strip``: the same without those two filters (the token reaches the application);
- ``nginx-shipped``: the shipped ``nginx.conf`` (``proxy_pass`` of ``$request_uri`` minus the token);
- ``nginx-no-strip``: the same with ``proxy_pass http://app;`` (the token reaches the application).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import yaml  # noqa: E402

from tests.integration import _procs  # noqa: E402
from tests.perf import _fixtures as fx  # noqa: E402


def _no_strip_envoy(config: dict[str, Any]) -> None:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [f for f in hcm["http_filters"] if not f["name"].startswith("gateway_authz.")]


def _no_strip_nginx(conf: str) -> str:
    conf, count = re.subn(r"proxy_pass http://app\$authz_upstream_uri;", "proxy_pass http://app;", conf)
    assert count == 1
    return conf


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its children (NGINX's workers are its children; Envoy is one process)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(c) for c in children.read_text().split()]
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _wrk(port: int, target: str, seconds: int) -> float:
    url = f"http://127.0.0.1:{port}{target}"
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{seconds}s", "-H", f"Host: {fx.HOST}", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert non_2xx is None, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="strip-cost-"))
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump(fx.config()))
    target = f"/orders?sb-hc-action=connect&sb-hc-token={quote(fx.sas_token(), safe='')}"
    started: list[_procs.ManagedProcess] = []
    try:
        service = _procs.start_authz(config_path, work)
        started.append(service.proc)
        echo, echo_port = _procs.start_echo(work)
        started.append(echo)
        clusters = {"app": echo_port, "gateway_authz": service.port}
        rows: dict[str, int] = {}
        pids: dict[str, int] = {}
        for name, mutate in (("envoy-shipped", None), ("envoy-no-strip", _no_strip_envoy)):
            proc, port, _ = _procs.start_envoy("envoy-http.yaml", work, clusters=clusters, name=name, mutate=mutate)
            started.append(proc)
            rows[name], pids[name] = port, proc.pid
        upstreams = {"app": echo_port, "gateway_authz": service.port}
        for name, text_mutate in (("nginx-shipped", None), ("nginx-no-strip", _no_strip_nginx)):
            proc, port = _procs.start_nginx(work, upstreams=upstreams, name=name, mutate=text_mutate)
            started.append(proc)
            rows[name], pids[name] = port, proc.pid
        for port in rows.values():  # warm up, and check that every row allows
            assert _procs.request(port, "GET", target, [("Host", fx.HOST)]).status == 200
            _wrk(port, target, 1)
        results: dict[str, list[float]] = {name: [] for name in rows}
        cpu: dict[str, float] = dict.fromkeys(rows, 0.0)
        done: dict[str, float] = dict.fromkeys(rows, 0.0)
        for _ in range(args.rounds):
            for name, port in rows.items():
                before = _cpu_seconds(pids[name])
                rate = _wrk(port, target, args.seconds)
                cpu[name] += _cpu_seconds(pids[name]) - before
                done[name] += rate * args.seconds
                results[name].append(rate)
        print(
            f"| row | req/s ({args.rounds} rounds of {args.seconds}s, wrk -t1 -c16) | mean | ratio to no-strip "
            "| gateway CPU µs/request | ratio |"
        )
        print("|---|---|---:|---:|---:|---:|")
        for name, values in results.items():
            mean = sum(values) / len(values)
            base_name = name.split("-")[0] + "-no-strip"
            base = sum(results[base_name]) / len(results[base_name])
            per = cpu[name] / done[name] * 1e6
            base_per = cpu[base_name] / done[base_name] * 1e6
            print(
                f"| {name} | {', '.join(f'{v:,.0f}' for v in values)} | {mean:,.0f} | {mean / base:.2f} "
                f"| {per:.0f} | {per / base_per:.2f} |"
            )
    finally:
        for proc in reversed(started):
            proc.stop()


if __name__ == "__main__":
    main()
