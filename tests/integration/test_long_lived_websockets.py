"""Issue 18.6: long-lived WebSockets through every shipped gateway.

A Relay listener's control channel is a WebSocket that stays open for hours and may be idle for minutes. The
shipped configs set the timeouts for upgraded connections deliberately (an hour of idleness; Envoy: no stream
longer than ``max_stream_duration``, so a socket is authorized again at least that often). Waiting an hour is not
a test, so each test runs the shipped config with its timeouts scaled down (an hour becomes ``IDLE`` seconds) and
every other timeout that could end an idle upgraded connection set to ``SHORT``, the stand-in for the gateway
default the shipped value replaces. An idle WebSocket must then survive past ``SHORT`` and be closed by the
shipped idle limit, so the value the config sets is the one that governs. The configs themselves must set each
of those values above the gateway's default (``test_shipped_timeouts_outlast_the_defaults``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway_authz import gateways

from . import _procs
from .conftest import SasConfig

pytestmark = pytest.mark.integration

HOST = "contoso.servicebus.windows.net"
SHORT = 1.0  # the stand-in for every gateway default the shipped values replace
IDLE = 3.0  # the shipped idle limit (an hour), scaled
LIFETIME = 6.0  # Envoy's shipped max_stream_duration (an hour), scaled


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


@pytest.fixture(scope="module")
def ws_upstream(integration_dir: Path) -> Iterator[int]:
    proc, port = _procs.start_echo(integration_dir, script=_procs.WS_ECHO_SCRIPT, name="ws-upstream")
    with _procs.stopping(proc):
        yield port


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _scaled_envoy(config: dict[str, Any]) -> None:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert (
        hcm["stream_idle_timeout"] == "3600s" and hcm["common_http_protocol_options"]["max_stream_duration"] == "3600s"
    )
    hcm["stream_idle_timeout"] = _seconds(IDLE)
    hcm["common_http_protocol_options"] = {"idle_timeout": _seconds(SHORT), "max_stream_duration": _seconds(LIFETIME)}
    hcm["request_headers_timeout"] = _seconds(SHORT)
    hcm["request_timeout"] = _seconds(SHORT)  # Envoy's default: none; must not touch an upgraded stream either
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "app":
            cluster["typed_extension_protocol_options"] = {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "common_http_protocol_options": {"idle_timeout": _seconds(SHORT)},
                    "explicit_http_config": {"http_protocol_options": {}},
                }
            }


def _scaled_nginx(conf: str) -> str:
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        conf, count = re.subn(rf"{directive} 3600s;", f"{directive} {IDLE:g}s;", conf)
        assert count == 1, f"the shipped nginx.conf changed: {directive}"
    short = f"{SHORT:g}s"
    extra = (
        f"send_timeout {short}; client_body_timeout {short}; keepalive_timeout {short}; client_header_timeout {short};"
    )
    return conf.replace("    server_tokens off;", f"    server_tokens off;\n    {extra}", 1)


@pytest.fixture(scope="module", params=["envoy-http", "envoy-grpc", "nginx"])
def ws_gateway(
    request: pytest.FixtureRequest, authz_service: Any, ws_upstream: int, integration_dir: Path
) -> Iterator[tuple[str, int]]:
    kind = request.param
    if kind == "nginx":
        proc, port = _procs.start_nginx(
            integration_dir,
            upstreams={"app": ws_upstream, "gateway_authz": authz_service.port},
            name="nginx-ws",
            mutate=_scaled_nginx,
        )
    else:
        cluster, authz = (
            ("gateway_authz_grpc", authz_service.grpc_port)
            if kind == "envoy-grpc"
            else ("gateway_authz", authz_service.port)
        )
        proc, port, _ = _procs.start_envoy(
            f"{kind}.yaml",
            integration_dir,
            clusters={"app": ws_upstream, cluster: authz},
            name=f"{kind}-ws",
            mutate=_scaled_envoy,
        )
    with _procs.stopping(proc):
        yield kind, port


async def _open(port: int, sas_config: SasConfig, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    token = sas_config.mint("OrdersListen", "/orders")
    url = f"http://127.0.0.1:{port}/orders?sb-hc-action=listen&sb-hc-token={token.query_value}"
    return await session.ws_connect(
        url, headers={"Host": HOST}, heartbeat=None, autoping=True, timeout=aiohttp.ClientWSTimeout(ws_close=2)
    )


async def _echo(ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
    await ws.send_str(text)
    message = await asyncio.wait_for(ws.receive(), timeout=5)
    assert message.type == aiohttp.WSMsgType.TEXT and message.data == text, message


async def _closed_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> float:
    """Wait (bounded) for the gateway to end the socket; returns when, in seconds from now."""
    start = time.monotonic()
    message = await asyncio.wait_for(ws.receive(), timeout=seconds)
    assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR), message
    return time.monotonic() - start


def test_idle_websocket_survives_past_the_default_and_ends_at_the_shipped_idle_limit(
    ws_gateway: tuple[str, int], sas_config: SasConfig
) -> None:
    kind, port = ws_gateway

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await _open(port, sas_config, session)
            await _echo(ws, "hello")
            await asyncio.sleep(SHORT * 2)  # idle, twice as long as every stand-in default
            await _echo(ws, "still here")  # survived
            idle_for = await _closed_within(ws, IDLE * 3)  # now idle until the shipped idle limit ends it
            assert IDLE * 0.8 <= idle_for <= IDLE * 2, f"{kind}: closed after {idle_for:.2f}s idle"
            await ws.close()

    asyncio.run(run())


def test_busy_websocket_outlives_the_idle_limit(ws_gateway: tuple[str, int], sas_config: SasConfig) -> None:
    """Traffic keeps it open: past the idle limit, one message every half second."""
    _kind, port = ws_gateway

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await _open(port, sas_config, session)
            deadline = time.monotonic() + IDLE * 1.5
            while time.monotonic() < deadline:
                await _echo(ws, "tick")
                await asyncio.sleep(0.5)
            await ws.close()

    asyncio.run(run())


# Envoy only: NGINX has no limit on a proxied connection's lifetime (docs/gateways.md).
@pytest.mark.parametrize("ws_gateway", ["envoy-http", "envoy-grpc"], indirect=True)
def test_envoy_ends_a_websocket_at_the_max_stream_duration(ws_gateway: tuple[str, int], sas_config: SasConfig) -> None:
    """Envoy: a busy socket still ends at max_stream_duration (then the client reconnects and is authorized again)."""
    kind, port = ws_gateway

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            ws = await _open(port, sas_config, session)
            opened = time.monotonic()
            with pytest.raises((AssertionError, ConnectionResetError, aiohttp.ClientError)):
                while time.monotonic() - opened < LIFETIME * 2:
                    await _echo(ws, "tick")
                    await asyncio.sleep(0.25)
            lived = time.monotonic() - opened
            assert LIFETIME * 0.9 <= lived <= LIFETIME * 1.5, f"{kind}: lived {lived:.2f}s"
            await ws.close()

    asyncio.run(run())


def test_shipped_timeouts_outlast_the_defaults() -> None:
    """The values the tests above scale down: each is set, and above the gateway's built-in default."""
    for name in ("envoy-http.yaml", "envoy-grpc.yaml"):
        config = yaml.safe_load(gateways.path(name).read_text())
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        assert hcm["stream_idle_timeout"] == "3600s"  # Envoy default 300 s
        assert hcm["common_http_protocol_options"]["max_stream_duration"] == "3600s"  # default none
        assert hcm["request_headers_timeout"] == "10s"
        assert all(r["route"]["timeout"] == "0s" for r in hcm["route_config"]["virtual_hosts"][0]["routes"])
    nginx = gateways.path("nginx.conf").read_text()
    location = nginx[nginx.index("location / {") :]
    location = location[: location.index("\n        }")]
    assert "proxy_read_timeout 3600s;" in location and "proxy_send_timeout 3600s;" in location  # defaults 60 s
