"""A configuration directory served for real (contract §5): mounted the way Kubernetes mounts ConfigMaps, a one-file
key rotation by a ``..data`` swap applied within ``configTtlSeconds`` + 1 s while every other namespace keeps
serving, and a broken file that keeps the whole last good estate (ready, with the file and location in ``/readyz``)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway_authz.sas.token import sign_sas
from tests.config.test_directory import KEY_A, KEY_B, kubernetes_mount, namespace

from . import _procs
from ._procs import AuthzProcess

pytestmark = pytest.mark.integration

CONFIG_TTL = 1.0
FILES = 12


def host(i: int) -> str:
    return f"estate{i:03d}.servicebus.windows.net"


def files(rotated: int | None = None, broken: int | None = None) -> dict[str, object]:
    result: dict[str, object] = {
        f"ns{i:03d}.yaml": {"namespaces": [namespace(f"estate{i:03d}", key=KEY_B if i == rotated else KEY_A)]}
        for i in range(FILES)
    }
    result["settings.yaml"] = {"cache": {"configTtlSeconds": CONFIG_TTL}}
    if broken is not None:
        result[f"ns{broken:03d}.yaml"] = "namespaces: [\n"
    return result


def status(service: AuthzProcess, i: int, key: str) -> int:
    token = sign_sas(f"sb://{host(i)}/orders", "Root", key, int(time.time()) + 600)
    return _procs.sas_check_status(service, token, host=host(i))


def readyz(service: AuthzProcess) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{service.admin_port}/readyz", timeout=5) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Path, AuthzProcess]]:
    config = tmp_path / "config"
    config.mkdir()
    kubernetes_mount(config, "2026_12_03_08_00_00.000000001", files())
    service = _procs.start_authz(config, tmp_path, name="authz-directory")
    try:
        yield config, service
    finally:
        assert service.proc.stop() == 0


def test_every_file_serves_and_a_data_swap_rotates_one_key_in_time(mounted: tuple[Path, AuthzProcess]) -> None:
    config, service = mounted
    assert [status(service, i, KEY_A) for i in range(FILES)] == [200] * FILES
    kubernetes_mount(config, "2026_12_03_08_01_00.000000002", files(rotated=5))
    written = time.monotonic()
    _procs.wait_until(
        lambda: status(service, 5, KEY_B) == 200, timeout=CONFIG_TTL + 5, what="rotation", procs=[service.proc]
    )
    took = time.monotonic() - written
    print(f"one-file key rotation applied {took:.2f} s after the ..data swap")
    assert took <= CONFIG_TTL + 1.0
    assert status(service, 5, KEY_A) == 401
    assert [status(service, i, KEY_A) for i in range(FILES) if i != 5] == [200] * (FILES - 1)


def test_a_broken_file_keeps_the_whole_last_good_estate(mounted: tuple[Path, AuthzProcess]) -> None:
    config, service = mounted
    kubernetes_mount(config, "2026_12_03_08_02_00.000000003", files(rotated=3, broken=7))
    _procs.wait_until(
        lambda: readyz(service)[1]["config"]["last_reload_error"] is not None,
        timeout=CONFIG_TTL + 5,
        what="the reload failure",
        procs=[service.proc],
    )
    code, body = readyz(service)
    assert code == 200 and body["status"] == "degraded"
    assert body["config"]["last_reload_error"].startswith("ns007.yaml: line ")
    # nothing of the broken generation serves: not even the rotation in another, valid file
    assert status(service, 3, KEY_A) == 200 and status(service, 3, KEY_B) == 401
    assert [status(service, i, KEY_A) for i in range(FILES)] == [200] * FILES
    kubernetes_mount(config, "2026_12_03_08_03_00.000000004", files(rotated=3))
    _procs.wait_until(
        lambda: status(service, 3, KEY_B) == 200, timeout=CONFIG_TTL + 5, what="the fix", procs=[service.proc]
    )
    assert readyz(service)[1]["config"]["last_reload_error"] is None
