"""``gateway_authz_build_info`` and prometheus-client's process and platform collectors on ``/metrics`` (§10)."""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client.parser import text_string_to_metric_families

from gateway_authz.core.buildinfo import BuildInfo, build_info, package_version
from gateway_authz.core.metrics import Metrics


def _families() -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(Metrics().render().decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_version_comes_from_the_installed_metadata() -> None:
    assert package_version() == metadata.version("gateway-authz")
    info = build_info()
    assert (info.python, info.aiohttp) == (platform.python_version(), metadata.version("aiohttp"))


def test_build_info_is_exported_with_version_python_and_aiohttp() -> None:
    ((labels, value),) = _families()["gateway_authz_build_info"]
    assert value == 1.0 and labels == build_info().labels()


def test_build_info_takes_an_injected_build() -> None:
    fake = BuildInfo(version="9.9.9", python="3.99.0", aiohttp="0.0.1")
    text = Metrics(build=fake).render().decode()
    assert 'gateway_authz_build_info{aiohttp="0.0.1",python="3.99.0",version="9.9.9"} 1.0' in text


def test_process_and_platform_collectors_are_exported() -> None:
    families = _families()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_start_time_seconds"):
        assert name in families, name
    ((labels, _value),) = families["python_info"]
    assert labels["version"] == platform.python_version()


def test_two_apps_in_one_process_each_export_them() -> None:
    """Collectors shared by registries must not collide: two Metrics (two apps) both render."""
    assert b"process_open_fds" in Metrics().render() and b"process_open_fds" in Metrics().render()
