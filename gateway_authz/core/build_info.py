"""``gateway_authz_build_info{version, python, aiohttp} 1`` and prometheus-client's process and platform
collectors, registered on an app's own registry (contract §10)."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector

__all__ = ["register_build_info"]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def register_build_info(registry: CollectorRegistry) -> None:
    info = Gauge(
        "gateway_authz_build_info",
        "Always 1; the labels say which gateway-authz, Python and aiohttp are running.",
        ["version", "python", "aiohttp"],
        registry=registry,
    )
    info.labels(_version("gateway-authz"), platform.python_version(), _version("aiohttp")).set(1)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
