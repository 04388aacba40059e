"""The version comes from one place: the installed distribution's metadata (pyproject.toml is its source)."""

from __future__ import annotations

import platform
from importlib import metadata

from gateway_authz.core.build_info import build_info, package_version
from gateway_authz.core.metrics import Metrics


def test_version_comes_from_the_installed_metadata() -> None:
    assert package_version() == metadata.version("gateway-authz")
    info = build_info()
    assert (info.version, info.python, info.aiohttp) == (
        package_version(),
        platform.python_version(),
        metadata.version("aiohttp"),
    )


def test_build_info_metric_carries_the_same_versions() -> None:
    info = build_info()
    line = f'gateway_authz_build_info{{aiohttp="{info.aiohttp}",python="{info.python}",version="{info.version}"}} 1.0'
    assert line in Metrics().render().decode().splitlines()
