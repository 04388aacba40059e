"""A bounded soak through Envoy (HTTP ext_authz) and NGINX: valid, invalid and anonymous requests from several
concurrent clients, every answer checked.

Holds to: zero wrong decisions (status, whether the upstream was reached, the identity it was handed), zero 5xx
from the service, one audit line per request sent, and the service's resident memory flat once warm.

``GATEWAY_AUTHZ_SOAK_SECONDS`` sets the duration (default 20 s in the test suite; minutes for a real soak). The
volume per class and gateway and the memory figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from yarl import URL

from ._hardening import HOST, assert_service_healthy, rss_kib
from ._procs import AuditLog, AuthzProcess
from .conftest import Gateway, SasConfig, new_key

pytestmark = pytest.mark.integration

SOAK_SECONDS = float(os.environ.get("GATEWAY_AUTHZ_SOAK_SECONDS", "20"))
CLIENTS = 8
TOKEN_POOL = 64  # distinct valid tokens, so that the decision cache sees misses as well as hits
# Memory: after warm-up, resident memory may grow by at most this much (allocator noise, lazily built caches).
RSS_GROWTH_LIMIT_KIB = 8 * 1024
RSS_GROWTH_LIMIT_RATIO = 0.10


@dataclass(frozen=True)
class Kind:
    """One class of request in the mix and the answer it must get."""

    name: str
    method: str
    target: Callable[[int], str]
    headers: Callable[[int], dict[str, str]]
    status: int
    principal: str | None = None  # for an allow: x-authz-principal at the upstream ("" = anonymous)
    right: str | None = None


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    by_gateway: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    server_errors: int = 0


def _kinds(config: SasConfig) -> list[Kind]:
    pool = [config.mint("OrdersSend", "/orders", ttl=3600 + i).token for i in range(TOKEN_POOL)]
    root = config.mint("RootManageSharedAccessKey", "/").token
    query = config.mint("OrdersSend", "/orders").query_value
    forged = config.mint("OrdersSend", "/orders", key=new_key()).token
    expired = config.mint("OrdersSend", "/orders", ttl=-3600).token

    def sba(token: str) -> Callable[[int], dict[str, str]]:
        return lambda _n: {"ServiceBusAuthorization": token}

    return [
        Kind(
            "valid-entity-token",
            "GET",
            lambda n: f"/orders/items?n={n}",
            lambda n: {"ServiceBusAuthorization": pool[n % TOKEN_POOL]},
            200,
            "OrdersSend",
            "Send",
        ),
        Kind(
            "valid-root-listen",
            "GET",
            lambda n: f"/orders?sb-hc-action=listen&n={n}",
            sba(root),
            200,
            "RootManageSharedAccessKey",
            "Listen",
        ),
        Kind(
            "valid-query-token",
            "GET",
            lambda n: f"/orders?sb-hc-action=connect&sb-hc-token={query}",
            lambda _n: {},
            200,
            "OrdersSend",
            "Send",
        ),
        Kind("anonymous-allowed", "POST", lambda n: f"/public/inbox?n={n}", lambda _n: {}, 200, "", "Send"),
        Kind("anonymous-denied", "GET", lambda n: f"/orders?n={n}", lambda _n: {}, 401),
        Kind("forged-signature", "GET", lambda n: "/orders", sba(forged), 401),
        Kind("expired", "GET", lambda n: "/orders", sba(expired), 401),
        Kind("garbage-credential", "GET", lambda n: "/orders", lambda n: {"Authorization": f"Bearer x{n}"}, 401),
        Kind(
            "wrong-entity",
            "GET",
            lambda n: f"/invoices?n={n}",
            lambda n: {"ServiceBusAuthorization": pool[n % TOKEN_POOL]},
            403,
        ),
    ]


async def _check(kind: Kind, response: aiohttp.ClientResponse) -> str | None:
    """What is wrong with this answer, or None."""
    body = await response.read()
    reached = response.headers.get("x-echo-upstream") == "1"
    if response.status != kind.status:
        return f"{kind.name}: HTTP {response.status}, expected {kind.status}: {body[:200]!r}"
    if kind.status != 200:
        return f"{kind.name}: a deny reached the upstream" if reached else None
    if not reached:
        return f"{kind.name}: allowed but not answered by the upstream"
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    if seen.get("x-authz-principal", "") != kind.principal or seen.get("x-authz-right") != kind.right:
        return f"{kind.name}: upstream was told {seen.get('x-authz-principal')!r}/{seen.get('x-authz-right')!r}"
    if "servicebusauthorization" in seen:
        return f"{kind.name}: the credential reached the upstream"
    return None


async def _client(
    client_id: int,
    session: aiohttp.ClientSession,
    gateways: list[Gateway],
    kinds: list[Kind],
    prefix: str,
    deadline: float,
    tally: Tally,
) -> None:
    for n in itertools.count(client_id * 1_000_000):
        if time.monotonic() >= deadline:
            return
        kind = kinds[n % len(kinds)]
        gateway = gateways[(n // len(kinds)) % len(gateways)]
        headers = {"Host": HOST, "x-request-id": f"{prefix}-{gateway.name}-{n}", **kind.headers(n)}
        url = URL(f"http://127.0.0.1:{gateway.port}{kind.target(n)}", encoded=True)
        tally.sent[kind.name] += 1
        tally.by_gateway[gateway.name] += 1
        try:
            async with session.request(kind.method, url, headers=headers) as response:
                if response.status >= 500:
                    tally.server_errors += 1
                problem = await _check(kind, response)
        except (TimeoutError, aiohttp.ClientError) as exc:
            problem = f"{kind.name} via {gateway.name}: {type(exc).__name__}: {exc}"
        if problem is not None:
            tally.wrong.append(f"{gateway.name}: {problem}")


async def test_soak_through_envoy_and_nginx(
    sas_config: SasConfig,
    authz_service: AuthzProcess,
    audit: AuditLog,
    envoy_http_gateway: Gateway,
    nginx_gateway: Gateway,
) -> None:
    """Mixed traffic for GATEWAY_AUTHZ_SOAK_SECONDS: no wrong decision or service 5xx, one audit line each, flat RSS."""
    kinds = _kinds(sas_config)
    gateways = [envoy_http_gateway, nginx_gateway]
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    pid = authz_service.proc.pid
    tally = Tally()
    warmup = min(5.0, max(2.0, SOAK_SECONDS * 0.1))
    started = time.monotonic()
    deadline = started + warmup + SOAK_SECONDS
    rss: list[tuple[float, int]] = [(0.0, rss_kib(pid))]

    async def sample_memory() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            rss.append((time.monotonic() - started, rss_kib(pid)))

    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=CLIENTS * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False) as session:
        sampler = asyncio.create_task(sample_memory())
        await asyncio.gather(
            *(_client(i, session, gateways, kinds, prefix, deadline, tally) for i in range(CLIENTS)),
        )
        await sampler
    elapsed = time.monotonic() - started
    rss.append((elapsed, rss_kib(pid)))

    sent = sum(tally.sent.values())
    audited: list[dict[str, Any]] = []
    settle_until = time.monotonic() + 10  # the service writes its lines at most one loop iteration late
    while len(audited) < sent and time.monotonic() < settle_until:
        audited = [e for e in audit.events() if str(e.get("request_id", "")).startswith(prefix)]
        if len(audited) < sent:
            await asyncio.sleep(0.2)
    statuses = Counter(int(e["status"]) for e in audited)
    after_warmup = [kib for at, kib in rss if at >= warmup]
    start_kib, end_kib = after_warmup[0], rss[-1][1]
    middle_kib = after_warmup[len(after_warmup) // 2]
    print(
        f"\nsoak: {sent} requests in {elapsed:.1f}s ({sent / elapsed:.0f}/s) from {CLIENTS} clients;"
        f" per gateway {dict(tally.by_gateway)}"
        f"\n  per class {dict(tally.sent)}"
        f"\n  audit lines {len(audited)}, service statuses {dict(statuses)}"
        f"\n  RSS (KiB) before {rss[0][1]}, after {warmup:.0f}s warm-up {start_kib}, middle {middle_kib}, end {end_kib}"
        f" (growth {end_kib - start_kib:+d} KiB)"
    )
    assert tally.wrong == [], f"{len(tally.wrong)} wrong answers, e.g. {tally.wrong[:10]}"
    assert tally.server_errors == 0
    assert not [s for s in statuses if s >= 500], f"the service answered 5xx: {statuses}"
    assert len(audited) == sent, f"{sent} requests sent, {len(audited)} audit lines"
    assert len({e["request_id"] for e in audited}) == sent, "a request was audited twice"
    limit = max(RSS_GROWTH_LIMIT_KIB, int(start_kib * RSS_GROWTH_LIMIT_RATIO))
    assert end_kib - start_kib <= limit, f"RSS grew {end_kib - start_kib} KiB after warm-up (limit {limit}): {rss}"
    assert sent >= 100 * SOAK_SECONDS, f"too little volume for a soak: {sent} requests"
    assert_service_healthy(authz_service)
