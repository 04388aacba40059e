"""Memory under hostile denies: does the service stay bounded when every request is a deny with a unique long path?

    python -m tests.perf.hostile                         # 10,000 denies with unique 50 KB paths
    python -m tests.perf.hostile --requests 2000 --path-bytes 50000

Starts ``python -m gateway_authz serve`` on loopback (audit log to /dev/null), warms it up with ordinary
requests, reads its resident set size, sends ``--requests`` denied requests through the Envoy HTTP endpoint
(``/ext_authz/orders/<unique>…``, a 50 KB path each), cycling through three kinds of deny (a forged signature,
401; a valid Send token asking to listen, 403; no credential, 401; a path longer than the 16 KB target limit is
a 403 ``malformed_request`` whatever it carries), and reads the RSS again. Prints the figures
and exits 1 when the growth exceeds ``--limit-mib`` (issue 18: 32 MiB). Every deny is checked to be one.
Not part of the test run (``tests/perf`` is outside pytest's collection).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # `python tests/perf/hostile.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf import _fixtures as fx

MIB = 1024 * 1024


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(config: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    port, admin = _free_port(), _free_port()
    argv = [sys.executable, "-m", "gateway_authz", "serve", "--config", str(config)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin)]
    env = dict(os.environ, PYTHONPATH=str(fx.REPO_ROOT))
    stderr = (workdir / "stderr.log").open("wb")
    proc = subprocess.Popen(argv, cwd=fx.REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
            if r.status == 200:
                return proc, port, admin
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the service did not become ready: {(workdir / 'stderr.log').read_text()[-2000:]}")


def _deny_kinds() -> list[tuple[str, list[tuple[str, str]], int]]:
    token = fx.sas_token()
    forged = token.replace("&sig=", "&sig=AAAA", 1)
    return [
        ("", [("ServiceBusAuthorization", forged)], 401),
        ("?sb-hc-action=listen", [("ServiceBusAuthorization", token)], 403),
        ("", [], 401),
    ]


def _forged_tokens(count: int) -> list[str]:
    """``count`` distinct tokens that each fail verification (bad signature): each a cache entry of its own."""
    return [token.replace("&sig=", "&sig=AAAA", 1) for token in fx.unique_sas_tokens(count)]


def _drive(port: int, count: int, path_bytes: int, *, offset: int, forged: list[str] | None = None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    kinds = _deny_kinds()
    filler = "a" * max(0, path_bytes - 40)
    try:
        for i in range(count):
            query, headers, status = kinds[i % len(kinds)]
            target = f"/ext_authz/orders/{offset + i:010d}{filler}{query}"
            if forged is not None:
                query, headers, status = "", [("ServiceBusAuthorization", forged[i])], 401
                target = "/ext_authz/orders"
            conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", fx.HOST)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            answer = conn.getresponse()
            answer.read()
            # a path past the service's 16 KB target limit is refused as malformed (403) before its credential
            if answer.status != status and not (path_bytes > 16 * 1024 and answer.status == 403):
                raise AssertionError(f"request {i}: expected a {status} deny, got {answer.status}")
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--path-bytes", type=int, default=50_000)
    parser.add_argument("--limit-mib", type=float, default=32.0)
    parser.add_argument(
        "--unique-tokens",
        action="store_true",
        help="instead of unique paths: one path, a distinct forged token per request (the negative cache's worst)",
    )
    args = parser.parse_args(argv)
    forged = _forged_tokens(args.requests) if args.unique_tokens else None
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        workdir = Path(tmp)
        config = workdir / "config.json"
        config.write_text(json.dumps(fx.config()))
        proc, port, _admin = _start(config, workdir)
        try:
            _drive(port, 300, 200, offset=10**9)  # warm-up: short paths, every code path loaded
            time.sleep(0.5)
            before = fx.rss_bytes(proc.pid)
            started = time.monotonic()
            _drive(port, args.requests, args.path_bytes, offset=0, forged=forged)
            elapsed = time.monotonic() - started
            time.sleep(0.5)
            after = fx.rss_bytes(proc.pid)
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    growth = (after - before) / MIB
    print(fx.machine())
    print(f"repository: {fx.REPO_ROOT}")
    what = "distinct forged tokens" if forged else f"unique {args.path_bytes}-byte paths"
    print(f"{args.requests} denies, {what}, {elapsed:.1f} s")
    print(f"RSS before {before / MIB:.1f} MiB, after {after / MIB:.1f} MiB, growth {growth:.1f} MiB")
    print(f"limit {args.limit_mib:g} MiB: {'met' if growth <= args.limit_mib else 'NOT met'}")
    return 0 if growth <= args.limit_mib else 1


if __name__ == "__main__":
    sys.exit(main())
