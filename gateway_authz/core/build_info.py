"""``gateway_authz_build_info{version, python, aiohttp} 1`` and prometheus-client's process and platform
collectors, registered on an app's own registry (contract §10)."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector

__all__ = ["BuildInfo", "build_info", "package_version", "register_build_info"]


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def package_version() -> str:
    """gateway-authz's version from its installed metadata (pyproject is the one source): ``--version`` and logs."""
    return _version("gateway-authz")


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    python: str
    aiohttp: str


def build_info() -> BuildInfo:
    """This process's versions: gateway-authz, Python, aiohttp (the labels of ``gateway_authz_build_info``)."""
    return BuildInfo(package_version(), platform.python_version(), _version("aiohttp"))


def register_build_info(registry: CollectorRegistry) -> None:
    info = Gauge(
        "gateway_authz_build_info",
        "Always 1; the labels say which gateway-authz, Python and aiohttp are running.",
        ["version", "python", "aiohttp"],
        registry=registry,
    )
    build = build_info()
    info.labels(build.version, build.python, build.aiohttp).set(1)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
