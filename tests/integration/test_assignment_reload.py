"""Role assignments changed in a configuration directory, through real Envoy with Entra-shaped bearer tokens.

The estate's assignments are spread over several files, mounted the way Kubernetes mounts ConfigMaps. One file is
replaced by a ``..data`` swap: the principal it revokes is denied and the one it grants is allowed within
``configTtlSeconds`` + 1 s, while the principals of every other file keep their access. The service indexes only
the changed file's assignments (``RbacPolicy.from_settings(…, previous)``); this holds the result to what Azure
means by the assignments, end to end, tokens from a real OIDC provider and keys from its JWKS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.config.test_directory import kubernetes_mount

from . import _procs
from ._procs import AuthzProcess, ManagedProcess
from .test_jwt_gateways import AUDIENCE, Idp, _start_provider

pytestmark = pytest.mark.integration

CONFIG_TTL = 1.0
SUBSCRIPTION = "5d2b7c41-8e3f-4a9b-b0c1-d2e3f4a5b6c7"
FILES = 6  # assignment files; each grants Send on one namespace's 'orders' to its own principal


def scope(i: int) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Relay/namespaces/estate{i}"


def host(i: int) -> str:
    return f"estate{i}.servicebus.windows.net"


def principal(i: int, generation: int = 0) -> str:
    return f"a{generation}000000-0000-4000-8000-{i:012d}"


def assignment(who: str, i: int) -> dict[str, str]:
    return {
        "principalId": who,
        "principalType": "ServicePrincipal",
        "roleDefinitionName": "Azure Relay Sender",
        "scope": f"{scope(i)}/hybridConnections/orders",
    }


def files(provider: dict[str, Any], changed: int | None = None) -> dict[str, object]:
    """The estate; in file ``changed`` the assignment goes to the principal of generation 1 instead."""
    result: dict[str, object] = {
        f"ns{i}.yaml": {
            "namespaces": [
                {
                    "name": f"estate{i}",
                    "hosts": [host(i)],
                    "resourceId": scope(i),
                    "hybridConnections": [{"name": "orders", "requiresClientAuthorization": True}],
                }
            ]
        }
        for i in range(FILES)
    }
    for i in range(FILES):
        who = principal(i, 1 if i == changed else 0)
        result[f"role-assignments-{i}.yaml"] = {"roleAssignments": [assignment(who, i)]}
    issuer = {
        "issuer": provider["issuer_v1"],
        "tenants": [provider["tenant"]],
        "audiences": [AUDIENCE],
        "jwksUri": provider["jwks_uri"],
    }
    result["identity.yaml"] = {"identity": {"issuers": [issuer]}}
    result["settings.yaml"] = {"cache": {"configTtlSeconds": CONFIG_TTL}}
    return result


@dataclass
class Estate:
    config: Path
    idp: Idp
    service: AuthzProcess
    envoy_port: int

    def status(self, who: str, i: int) -> int:
        token = self.idp.mint(version="1.0", oid=who)
        headers = [("Host", host(i)), ("Authorization", f"Bearer {token}")]
        return _procs.request(self.envoy_port, "POST", "/orders", headers, b"x").status


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[Estate]:
    idp = _start_provider(tmp_path, tmp_path / "oidc-state")
    started: list[ManagedProcess] = [idp.proc]
    try:
        config = tmp_path / "config"
        config.mkdir()
        kubernetes_mount(config, "2026_12_04_08_00_00.000000001", files(idp.info))
        echo, echo_port = _procs.start_echo(tmp_path)
        started.append(echo)
        service = _procs.start_authz(config, tmp_path, name="authz-assignments")
        started.append(service.proc)
        envoy, envoy_port, _admin = _procs.start_envoy(
            "envoy-http.yaml", tmp_path, clusters={"app": echo_port, "gateway_authz": service.port}
        )
        started.append(envoy)
        yield Estate(config, idp, service, envoy_port)
    finally:
        for proc in reversed(started):
            proc.stop()


def test_a_changed_assignment_file_revokes_and_grants_in_time_and_nothing_else(estate: Estate) -> None:
    assert [estate.status(principal(i), i) for i in range(FILES)] == [200] * FILES
    assert estate.status(principal(3, 1), 3) == 403  # not assigned yet

    kubernetes_mount(estate.config, "2026_12_04_08_01_00.000000002", files(estate.idp.info, changed=3))
    written = time.monotonic()
    _procs.wait_until(
        lambda: estate.status(principal(3, 1), 3) == 200,
        timeout=CONFIG_TTL + 5,
        what="the new assignment",
        procs=[estate.service.proc],
    )
    took = time.monotonic() - written
    print(f"one assignment file applied {took:.2f} s after the ..data swap")
    assert took <= CONFIG_TTL + 1.0
    assert estate.status(principal(3), 3) == 403  # revoked: its assignment is gone with the old file
    assert [estate.status(principal(i), i) for i in range(FILES) if i != 3] == [200] * (FILES - 1)
    assert estate.status(principal(3, 1), 2) == 403  # the new grant is on estate3's 'orders' only

    kubernetes_mount(estate.config, "2026_12_04_08_02_00.000000003", files(estate.idp.info))
    _procs.wait_until(
        lambda: estate.status(principal(3), 3) == 200,
        timeout=CONFIG_TTL + 5,
        what="the assignment back",
        procs=[estate.service.proc],
    )
    assert estate.status(principal(3, 1), 3) == 403
