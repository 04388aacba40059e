"""An empty Secret never crash-loops the service (contract §7), shown with the real ``serve`` process.

The config references key files that do not exist yet (as when a Secret has not been created, or is empty). The
process must stay up: ``/healthz`` 200, ``/readyz`` 503 naming the missing reference, a check that needs the key a
503 deny. Writing the file (as kubelet does when the Secret is filled in) makes it ready by itself, within the
reload period, and the same check is then allowed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from gateway_authz.sas.token import sign_sas
from tests._factories import fake_key

from . import _procs

pytestmark = pytest.mark.integration

HOST = "contoso.servicebus.windows.net"
KEY = fake_key("orders send from the secret")


def _readyz(port: int) -> tuple[int, dict[str, object]]:
    response = _procs.request(port, "GET", "/readyz", timeout=2.0)
    return response.status, response.json()


def test_missing_key_file_starts_unready_and_becomes_ready_when_it_appears(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "orders-primary").write_text("")  # an empty Secret entry
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "namespaces": [
                    {
                        "name": "contoso",
                        "hosts": [HOST],
                        "authorizationRules": [],
                        "hybridConnections": [
                            {
                                "name": "orders",
                                "authorizationRules": [
                                    {
                                        "keyName": "orders-send",
                                        "primaryKey": {"file": str(secrets / "orders-primary")},
                                        "secondaryKey": {"file": str(secrets / "orders-secondary")},  # absent
                                        "rights": ["Send"],
                                    }
                                ],
                            }
                        ],
                    }
                ],
                "cache": {"configTtlSeconds": 0.2},
            }
        )
    )
    port, admin = _procs.free_port(), _procs.free_port()
    proc = _procs.ManagedProcess(
        "gateway-authz", _procs.serve_argv(config, port, admin), tmp_path, env=_procs.service_env()
    ).start()
    token = sign_sas(f"sb://{HOST}/orders", "orders-send", KEY, int(time.time()) + 3600)
    check = [("Host", HOST), ("ServiceBusAuthorization", token)]
    with _procs.stopping(proc):
        _procs.wait_until(lambda: _procs.port_open(admin), timeout=30, what="admin listener", procs=[proc])
        assert _procs.http_get_status(admin, "/healthz") == 200
        status, body = _readyz(admin)
        assert status == 503 and body["status"] == "unready", body
        missing = body["missing_keys"]
        assert isinstance(missing, list) and len(missing) == 2
        assert any(f"secret file {secrets / 'orders-primary'} is empty" in m for m in missing), missing
        assert any(f"secret file {secrets / 'orders-secondary'} is missing" in m for m in missing), missing
        denied = _procs.request(port, "POST", "/ext_authz/orders", check)
        assert denied.status == 503 and denied.json()["reason"] == "key_unavailable", denied

        for name in ("orders-primary", "orders-secondary"):  # kubelet writes the filled-in Secret
            (secrets / name).write_text(fake_key(name) if name.endswith("secondary") else KEY)
        _procs.wait_until(
            lambda: _readyz(admin)[0] == 200, timeout=10, what="ready after the key appeared", procs=[proc]
        )
        assert _procs.request(port, "POST", "/ext_authz/orders", check).status == 200
        assert proc.running()
    assert proc.popen is not None and proc.popen.returncode == 0
    starts = [json.loads(line) for line in proc.stderr_path.read_text().splitlines() if '"service.start"' in line]
    assert [s["missing_keys"] for s in starts] == [2]
