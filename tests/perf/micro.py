"""In-process micro-benchmarks: microseconds per decision, next to the bare cryptographic primitives.

    python -m tests.perf.micro [--repeats 7] [--scale 1.0]

Each figure is the minimum over ``--repeats`` timed loops of many iterations (the minimum is the run least
disturbed by the rest of the machine), divided by the iterations. Decisions go through
``DecisionService.decide`` of a service built by ``create_app`` on the benchmark namespace (``_fixtures.py``),
with the audit log written to ``/dev/null`` line by line (one write per decision, as on standard output). The
"handler" row adds what the Envoy HTTP adapter does around it: reading the aiohttp request into the request
model and building the response. The "inline" row is what the decision listener does for a check on an idle
keep-alive connection (``listener.py``): aiohttp's parser on the request's bytes, the adapter, the decision and
the answer's bytes, with no aiohttp request, response or task. What a decision costs beyond its HMAC or RSA
verify is parsing, policy, cache, audit and metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import yaml

from tests.perf import _fixtures as fx


def _best(repeats: int, iterations: int, once: Callable[[int], float]) -> float:
    """Minimum over ``repeats`` of the seconds per iteration that ``once(iterations)`` reports."""
    return min(once(iterations) for _ in range(repeats)) / iterations


def _sync_loop(fn: Callable[[], object]) -> Callable[[int], float]:
    def once(n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            fn()
        return time.process_time() - started

    return once


def _async_loop(make: Callable[[int], Awaitable[object]]) -> Callable[[int], float]:
    """Times ``await make(i)`` for i in range(n) inside one running event loop."""

    async def body(n: int) -> float:
        started = time.process_time()
        for i in range(n):
            await make(i)
        return time.process_time() - started

    return lambda n: asyncio.run(body(n))


def _devnull_sink() -> Callable[[bytes], object]:
    out = open(os.devnull, "wb")  # noqa: SIM115 -- lives as long as the process

    def sink(line: bytes) -> None:
        out.write(line)
        out.flush()

    return sink


def build_app(jwt_signer: fx.JwtSigner | None, workdir: Path) -> Any:
    from gateway_authz.config.loader import load_settings
    from gateway_authz.http.app import create_app

    path = workdir / "micro.yaml"
    path.write_text(yaml.safe_dump(fx.config(jwks=jwt_signer.jwks if jwt_signer else None)))
    return create_app(load_settings(str(path)), audit_sink=_devnull_sink(), watch_config=False)


def envoy_request(credential_header: str, credential: str) -> Any:
    from gateway_authz.core.model import AuthzRequest, headers_from_pairs

    headers = [
        ("host", fx.HOST),
        (credential_header, credential),
        ("x-request-id", "0d8b9c36-5e2f-4f55-9b3b-6c1f0e9f3a11"),
        ("x-forwarded-proto", "http"),
        ("x-envoy-expected-rq-timeout-ms", "1000"),
        ("content-length", "0"),
    ]
    return AuthzRequest(
        gateway="envoy-http",
        method="GET",
        host=fx.HOST,
        target=fx.PATH,
        headers=headers_from_pairs(headers),
        scheme="http",
        request_id="0d8b9c36-5e2f-4f55-9b3b-6c1f0e9f3a11",
    )


def mocked_envoy_http(app: Any, credential_header: str, credential: str) -> Any:
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    headers = CIMultiDict(
        [
            ("Host", fx.HOST),
            (credential_header, credential),
            ("x-request-id", "0d8b9c36-5e2f-4f55-9b3b-6c1f0e9f3a11"),
            ("x-forwarded-proto", "http"),
            ("x-envoy-expected-rq-timeout-ms", "1000"),
            ("content-length", "0"),
        ]
    )
    return make_mocked_request("GET", "/ext_authz" + fx.PATH, headers=headers, app=app)


def envoy_http_bytes(credential_header: str, credential: str) -> bytes:
    """The check Envoy's HTTP ext_authz sends, as bytes on the wire."""
    lines = [
        f"GET /ext_authz{fx.PATH} HTTP/1.1",
        f"host: {fx.HOST}",
        f"{credential_header}: {credential}",
        "x-request-id: 0d8b9c36-5e2f-4f55-9b3b-6c1f0e9f3a11",
        "x-forwarded-proto: http",
        "x-envoy-expected-rq-timeout-ms: 1000",
        "content-length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _inline_loop(service: Any, request: bytes) -> Callable[[int], float]:
    """Times the decision listener's connection answering ``request`` inline as it arrives (listener.py), over a
    transport that keeps nothing: aiohttp's parser, the adapter, ``decide_now`` and the answer's bytes."""
    from aiohttp import web

    from gateway_authz.http.app import decision_adapter
    from gateway_authz.http.fastpath import _InlineServer

    class _Discard(asyncio.Transport):
        writes = 0

        def write(self, data: Any) -> None:
            self.writes += 1

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    async def not_inline(_request: web.BaseRequest) -> web.StreamResponse:
        raise AssertionError("the benchmark's check was not answered inline")

    async def body(n: int) -> float:
        server = _InlineServer(web.Server(not_inline), not_inline, service, decision_adapter)
        protocol = server()
        transport = _Discard()
        protocol.connection_made(transport)
        await asyncio.sleep(0)  # the connection's task starts on the next turn of the loop and waits for a request
        if protocol._waiter is None:
            raise AssertionError("the connection's task did not start")
        started = time.process_time()
        for _ in range(n):
            protocol.data_received(request)
        elapsed = time.process_time() - started
        protocol.connection_lost(None)
        if transport.writes != n:
            raise AssertionError(f"{transport.writes} of {n} checks answered inline")
        return elapsed

    return lambda n: asyncio.run(body(n))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="timed loops per figure; the minimum is reported")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every iteration count (0.1 for a smoke)")
    args = parser.parse_args(argv)

    from gateway_authz.adapters import envoy_http
    from gateway_authz.core.appkeys import SERVICE
    from gateway_authz.http.app import decision_handler, fast_decision_handler
    from tests.perf._gateways import jwt_wired

    def n(count: int) -> int:
        return max(10, int(count * args.scale))

    rows: list[tuple[str, float]] = []

    def report(name: str, seconds: float) -> None:
        rows.append((name, seconds * 1e6))
        print(f"  {name:<58} {seconds * 1e6:9.2f} µs", flush=True)

    print(f"# machine: {fx.machine()}")
    print(f"# min of {args.repeats} loops each")
    # -- primitives
    key = fx.ORDERS_KEY.encode()
    message = b"sb%3a%2f%2fcontoso.servicebus.windows.net%2forders\n1893456000"
    report(
        "HMAC-SHA256, one-shot hmac.new(...).digest()",
        _best(args.repeats, n(200_000), _sync_loop(lambda: hmac.new(key, message, hashlib.sha256).digest())),
    )
    prepared = hmac.new(key, digestmod=hashlib.sha256)

    def keyed() -> bytes:
        mac = prepared.copy()
        mac.update(message)
        return mac.digest()

    report("HMAC-SHA256, prepared key (copy+update+digest)", _best(args.repeats, n(200_000), _sync_loop(keyed)))
    wired = jwt_wired()
    signer = fx.JwtSigner()
    token = signer.token()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    head, payload, sig = token.split(".")
    import base64

    signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    signed = f"{head}.{payload}".encode()
    public = signer.public_key
    report(
        "RS256 verify (cryptography, RSA-2048)",
        _best(
            args.repeats,
            n(5_000),
            _sync_loop(lambda: public.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())),
        ),
    )
    # -- decisions
    with tempfile.TemporaryDirectory() as scratch:
        app = build_app(signer if wired else None, Path(scratch))
        service = app[SERVICE]
        hit = envoy_request("servicebusauthorization", fx.sas_token())
        report(
            "SAS, decision cache hit: DecisionService.decide",
            _best(args.repeats, n(50_000), _async_loop(lambda _i: service.decide(hit))),
        )
        per_repeat = n(10_000)
        tokens = iter(fx.unique_sas_tokens(per_repeat * (args.repeats + 1)))

        def miss_loop(count: int) -> float:
            requests = [envoy_request("servicebusauthorization", next(tokens)) for _ in range(count)]
            return _async_loop(lambda i: service.decide(requests[i]))(count)

        report("SAS, unique tokens (miss): DecisionService.decide", _best(args.repeats, per_repeat, miss_loop))
        mocked = mocked_envoy_http(app, "ServiceBusAuthorization", fx.sas_token())
        # what `serve` runs when a check is not inline
        handler = fast_decision_handler(app, decision_handler(envoy_http.to_authz_request))  # type: ignore[arg-type]
        report(
            "SAS, cache hit: Envoy HTTP handler (adapter + decide + answer)",
            _best(args.repeats, n(20_000), _async_loop(lambda _i: handler(mocked))),
        )
        report(
            "SAS, cache hit: inline answer (parse + adapter + decide + bytes)",
            _best(
                args.repeats,
                n(20_000),
                _inline_loop(service, envoy_http_bytes("ServiceBusAuthorization", fx.sas_token())),
            ),
        )
        if wired:
            bearer = envoy_request("authorization", f"Bearer {token}")
            report(
                "JWT RS256, decision cache hit: DecisionService.decide",
                _best(args.repeats, n(50_000), _async_loop(lambda _i: service.decide(bearer))),
            )
            jwt_count = n(1_000)
            jwts = iter([signer.token() for _ in range(jwt_count * (min(args.repeats, 3) + 1))])

            def jwt_miss(count: int) -> float:
                requests = [envoy_request("authorization", f"Bearer {next(jwts)}") for _ in range(count)]
                return _async_loop(lambda i: service.decide(requests[i]))(count)

            report(
                "JWT RS256, unique tokens (miss): DecisionService.decide",
                _best(min(args.repeats, 3), jwt_count, jwt_miss),
            )
        else:
            print("# JWT rows left out: JWT verification is not wired into the service yet")
    print()
    print("| operation | µs |")
    print("|---|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
