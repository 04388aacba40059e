"""Issue 18 (optional): Microsoft's Hybrid Connections client, the ``hyco-https`` npm package, unmodified, through
the shipped TLS configs (``envoy-http-tls.yaml``, ``envoy-grpc-tls.yaml``, ``nginx-tls.conf``) with a throw-away CA.

A listener with a Listen rule opens its control channel (a ``wss://`` WebSocket, the token in the
``ServiceBusAuthorization`` header); one with a Send-only rule is refused. A sender's HTTPS request with a Send
rule reaches the application without the credential. The namespace answers on ``127.0.0.1`` here, which the
client puts in the token's audience and the ``Host`` header.

Needs ``node`` and ``npm`` and the npm registry: ``npm ci`` installs ``hyco-https`` and its dependencies, pinned
with their integrity hashes in ``tests/integration/hyco/package-lock.json``, into the test's scratch directory.
Without node or npm it skips loudly on a laptop and fails in CI (``.ci/run`` installs Debian's nodejs and npm).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _procs
from ._tls import TlsMaterial, make_tls_material
from .conftest import SasConfig, sas_namespace_config

pytestmark = pytest.mark.integration

CLIENT = Path(__file__).resolve().parent / "hyco_client.js"
HYCO_VERSION = "1.4.5"  # pinned, with every dependency, in hyco/package-lock.json
HYCO_LOCK = Path(__file__).resolve().parent / "hyco"


@pytest.fixture(scope="module")
def node_modules(integration_dir: Path) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        message = "HYCO CLIENT TEST NOT RUN: node/npm not found (apt-get install nodejs npm)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    prefix = integration_dir / "npm"
    prefix.mkdir(exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(HYCO_LOCK / name, prefix / name)
    install = subprocess.run(
        [npm, "ci", "--prefix", str(prefix), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert install.returncode == 0, f"npm ci (hyco-https {HYCO_VERSION}) failed:\n{install.stderr[-2000:]}"
    return prefix / "node_modules"


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


@pytest.fixture(scope="module")
def sas_config(integration_dir: Path) -> SasConfig:
    """The shared test namespace, also answering on 127.0.0.1 (where the client connects)."""
    data = sas_namespace_config()
    data["namespaces"][0]["hosts"].append("127.0.0.1")
    config = SasConfig(path=integration_dir / "gateway-authz.yaml", data=data)
    config.write()
    return config


@pytest.fixture(scope="module")
def tls(integration_dir: Path) -> TlsMaterial:
    return make_tls_material(integration_dir / "tls")


@pytest.fixture(scope="module")
def app(integration_dir: Path) -> Iterator[int]:
    proc, port = _procs.start_echo(integration_dir, script=_procs.WS_ECHO_SCRIPT, name="ws-echo")
    with _procs.stopping(proc):
        yield port


@pytest.fixture(scope="module", params=["envoy-http-tls", "envoy-grpc-tls", "nginx-tls"])
def envoy_tls(
    request: pytest.FixtureRequest, authz_service: Any, app: int, tls: TlsMaterial, integration_dir: Path
) -> Iterator[int]:
    if request.param == "nginx-tls":
        nginx, nginx_port = _procs.start_nginx(
            integration_dir,
            upstreams={"app": app, "gateway_authz": authz_service.port},
            name="hyco-nginx-tls",
            config="nginx-tls.conf",
            tls_dir=tls.directory,
        )
        with _procs.stopping(nginx):
            yield nginx_port
        return
    grpc = "grpc" in request.param
    cluster = "gateway_authz_grpc" if grpc else "gateway_authz"
    authz = authz_service.grpc_port if grpc else authz_service.port
    proc, port, _ = _procs.start_envoy(
        f"{request.param}.yaml",
        integration_dir,
        clusters={"app": app, cluster: authz},
        name=f"hyco-{request.param}",
        tls_dir=tls.directory,
    )
    with _procs.stopping(proc):
        yield port


def _run(node_modules: Path, tls: TlsMaterial, *args: str) -> str:
    env = {**os.environ, "NODE_PATH": str(node_modules), "NODE_EXTRA_CA_CERTS": str(tls.ca_file)}
    node = shutil.which("node")
    assert node
    done = subprocess.run([node, str(CLIENT), *args], capture_output=True, text=True, timeout=30, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output from the hyco client: {done.stderr[-2000:]}"
    return lines[-1]


def test_hyco_listener_with_listen_rule_listens(
    node_modules: Path, tls: TlsMaterial, envoy_tls: int, sas_config: SasConfig
) -> None:
    uri = f"wss://127.0.0.1:{envoy_tls}/$hc/orders?sb-hc-action=listen"
    assert _run(node_modules, tls, "listen", uri, "OrdersListen", sas_config.key("OrdersListen")) == "LISTENING"


def test_hyco_listener_with_send_only_rule_is_refused(
    node_modules: Path, tls: TlsMaterial, envoy_tls: int, sas_config: SasConfig
) -> None:
    uri = f"wss://127.0.0.1:{envoy_tls}/$hc/orders?sb-hc-action=listen"
    outcome = _run(node_modules, tls, "listen", uri, "OrdersSend", sas_config.key("OrdersSend"))
    assert outcome.startswith("ERROR") and "403" in outcome, outcome


def test_hyco_sender_reaches_the_app_without_the_credential(
    node_modules: Path, tls: TlsMaterial, envoy_tls: int, sas_config: SasConfig
) -> None:
    url = f"https://127.0.0.1:{envoy_tls}/orders?x=1"
    outcome = _run(node_modules, tls, "send", url, "OrdersSend", sas_config.key("OrdersSend"))
    status, _, body = outcome.removeprefix("STATUS ").partition(" ")
    assert status == "200", outcome
    seen = json.loads(body)
    assert seen["path_qs"] == "/orders?x=1" and seen["body"] == "payload from hyco"
    names = [name.lower() for name, _ in seen["headers"]]
    assert "servicebusauthorization" not in names
    assert ["x-authz-principal", "OrdersSend"] in [[n.lower(), v] for n, v in seen["headers"]]
