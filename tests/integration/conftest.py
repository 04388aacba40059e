"""Fixtures for the integration tests: gateway-authz behind real Envoy and NGINX, an echo upstream, SAS tokens.

Everything runs on loopback; each fixture stops what it started. The pieces, all module-scoped so one module
shares one set of processes:

- ``sas_config``        a test namespace written to a YAML file (``SasConfig``), with helpers to mint tokens with
                        the Azure SDK and to rotate keys in the file.
- ``authz_config_path`` the file the service runs on; defaults to ``sas_config.path``. Override it in a module
                        (a fixture of the same name) to run the service on another config (JWT, multi-namespace).
- ``authz_options``     keyword arguments for ``_procs.start_authz`` (``grpc=True`` for the gRPC column).
- ``authz_service``     the running service (``_procs.AuthzProcess``: ports, log paths, config path).
- ``audit``             ``_procs.AuditLog`` over the service's stdout.
- ``echo_upstream``     the echo application (``Echo``: port, process).
- ``envoy_http_gateway`` / ``envoy_grpc_gateway`` / ``nginx_gateway``   a ``Gateway`` each, running the shipped
                        configs from ``gateway_authz/gateways`` (the gRPC one needs ``authz_options``
                        ``{"grpc": True}``).
- ``gateway``           parametrized over ``GATEWAYS``; add a column by adding a name and a fixture to
                        ``GATEWAY_FIXTURES``.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._sas_sdk import MintedToken, mint_sas

from . import _procs
from ._procs import AuditLog, AuthzProcess, ManagedProcess, Response

# The gateway columns of every scenario table; every column must give identical outcomes. A module using them
# starts the service with ``authz_options`` ``{"grpc": True}`` (the envoy-grpc column needs the gRPC port).
GATEWAYS: tuple[str, ...] = ("envoy-http", "envoy-grpc", "nginx")
GATEWAY_FIXTURES: dict[str, str] = {
    "envoy-http": "envoy_http_gateway",
    "envoy-grpc": "envoy_grpc_gateway",
    "nginx": "nginx_gateway",
}


# --------------------------------------------------------------------------------------------------- failure logs


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of every live process's logs to a failing integration test's report."""
    report = yield
    if report.failed:
        for proc in _procs.live_processes():
            report.sections.append((f"process {proc.name}", proc.describe(lines=40)))
    return report


# --------------------------------------------------------------------------------------------------- config


def new_key() -> str:
    """A 256-bit key, base64 (44 characters), like the keys Azure issues."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class SasConfig:
    """The test namespace as a config file the service reads, plus token minting and key rotation.

    Every key ever written and every token minted are remembered, so a test can assert none of them reaches a log.
    """

    path: Path
    data: dict[str, Any]
    host: str = "contoso.servicebus.windows.net"
    minted: list[MintedToken] = field(default_factory=list)
    retired_keys: list[str] = field(default_factory=list)

    # -- reading
    def _rules(self) -> list[dict[str, Any]]:
        (ns,) = self.data["namespaces"]
        rules = list(ns["authorizationRules"])
        for kind in ("hybridConnections", "wcfRelays"):
            for entity in ns.get(kind, []):
                rules.extend(entity["authorizationRules"])
        return rules

    def rule(self, key_name: str) -> dict[str, Any]:
        for rule in self._rules():
            if rule["keyName"] == key_name:
                return rule
        raise KeyError(key_name)

    def key(self, key_name: str, slot: str = "primary") -> str:
        return str(self.rule(key_name)[f"{slot}Key"])

    def all_keys(self) -> list[str]:
        keys = [r[k] for r in self._rules() for k in ("primaryKey", "secondaryKey") if r.get(k)]
        return keys + self.retired_keys

    def url(self, path: str = "/", scheme: str = "sb") -> str:
        return f"{scheme}://{self.host}{path}"

    # -- tokens
    def mint(
        self,
        key_name: str,
        path: str = "/",
        *,
        slot: str = "primary",
        ttl: int = 3600,
        key: str | None = None,
        scheme: str = "sb",
    ) -> MintedToken:
        """A token for ``scheme://host<path>`` signed by the Azure SDK with the rule's key (or ``key``)."""
        token = mint_sas(
            self.url(path, scheme), key_name, key if key is not None else self.key(key_name, slot), ttl=ttl
        )
        self.minted.append(token)
        return token

    # -- writing
    def write(self) -> None:
        """Replace the file atomically (a reader never sees half a file) with a fresh mtime."""
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.data, sort_keys=False))
        os.replace(tmp, self.path)

    def set_keys(self, key_name: str, primary: str, secondary: str) -> None:
        rule = self.rule(key_name)
        for old in (rule["primaryKey"], rule["secondaryKey"]):
            if old not in (primary, secondary):
                self.retired_keys.append(old)
        rule["primaryKey"], rule["secondaryKey"] = primary, secondary
        self.write()


def _rule(key_name: str, rights: Sequence[str]) -> dict[str, Any]:
    return {"keyName": key_name, "primaryKey": new_key(), "secondaryKey": new_key(), "rights": list(rights)}


def sas_namespace_config(config_ttl_seconds: float = 1) -> dict[str, Any]:
    """The namespace every SAS scenario runs against (rule names are what the scenario table refers to)."""
    return {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": ["contoso.servicebus.windows.net"],
                "authorizationRules": [
                    _rule("RootManageSharedAccessKey", ["Manage", "Listen", "Send"]),
                    _rule("NamespaceSend", ["Send"]),
                    _rule("Rotating", ["Listen", "Send"]),
                ],
                "hybridConnections": [
                    {
                        "name": "orders",
                        "requiresClientAuthorization": True,
                        "authorizationRules": [_rule("OrdersSend", ["Send"]), _rule("OrdersListen", ["Listen"])],
                    },
                    {
                        "name": "invoices",
                        "requiresClientAuthorization": True,
                        "authorizationRules": [_rule("InvoicesSend", ["Send"])],
                    },
                    {
                        "name": "public",
                        "requiresClientAuthorization": False,
                        "authorizationRules": [],
                    },
                ],
            }
        ],
        "sas": {"clockSkewSeconds": 30},
        "cache": {"configTtlSeconds": config_ttl_seconds, "decisionTtlSeconds": 60},
    }


@pytest.fixture(scope="module")
def integration_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory per test module: configs, logs, pid files."""
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture(scope="module")
def sas_config(integration_dir: Path) -> SasConfig:
    config = SasConfig(path=integration_dir / "gateway-authz.yaml", data=sas_namespace_config())
    config.write()
    return config


@pytest.fixture(scope="module")
def authz_config_path(sas_config: SasConfig) -> Path:
    return sas_config.path


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    """Keyword arguments for ``_procs.start_authz``; override per module (``{"grpc": True}``)."""
    return {}


# --------------------------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Echo:
    port: int
    proc: ManagedProcess


@dataclass
class Gateway:
    """One gateway in front of the echo upstream. ``name`` is also the ``gateway`` value in the audit log.

    ``relays_deny_body``: the client sees the service's JSON deny body (every shipped config does).
    ``strips_query_token``: ``sb-hc-token`` is removed from the upstream query (every shipped config does).
    """

    name: str
    port: int
    proc: ManagedProcess
    relays_deny_body: bool
    strips_query_token: bool
    sent: list[str] = field(default_factory=list)  # every x-request-id sent through any gateway of the module

    def request(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        *,
        host: str = "contoso.servicebus.windows.net",
    ) -> tuple[Response, str]:
        """Send one request with a fresh ``x-request-id`` (unless given); returns (response, request id)."""
        headers = list(headers)
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            headers.insert(0, ("Host", host))
        request_id = next((v for k, v in headers if k.lower() == "x-request-id"), None)
        if request_id is None:
            request_id = f"it-{self.name}-{uuid.uuid4()}"
            headers.append(("x-request-id", request_id))
        self.sent.append(request_id)
        return _procs.request(self.port, method, target, headers, body), request_id


@pytest.fixture(scope="module")
def sent_request_ids() -> list[str]:
    """Every ``x-request-id`` the module's gateways sent: each must show up in exactly one audit line."""
    return []


@pytest.fixture(scope="module")
def echo_upstream(integration_dir: Path) -> Iterator[Echo]:
    proc, port = _procs.start_echo(integration_dir)
    with _procs.stopping(proc):
        yield Echo(port, proc)


@pytest.fixture(scope="module")
def authz_service(
    authz_config_path: Path, authz_options: dict[str, Any], integration_dir: Path
) -> Iterator[AuthzProcess]:
    """The service under test. On teardown it must exit 0 on SIGTERM (contract: clean shutdown)."""
    service = _procs.start_authz(authz_config_path, integration_dir, **authz_options)
    yield service
    code = service.proc.stop()
    if code != 0:
        pytest.fail(
            f"gateway-authz exited with {code} on SIGTERM (expected 0)\n{service.proc.describe()}", pytrace=False
        )


@pytest.fixture(scope="module")
def audit(authz_service: AuthzProcess) -> AuditLog:
    return AuditLog(authz_service.stdout_path)


@pytest.fixture(scope="module")
def envoy_http_gateway(
    authz_service: AuthzProcess, echo_upstream: Echo, integration_dir: Path, sent_request_ids: list[str]
) -> Iterator[Gateway]:
    proc, port, _admin = _procs.start_envoy(
        "envoy-http.yaml",
        integration_dir,
        clusters={"app": echo_upstream.port, "gateway_authz": authz_service.port},
    )
    with _procs.stopping(proc):
        yield Gateway("envoy-http", port, proc, relays_deny_body=True, strips_query_token=True, sent=sent_request_ids)


@pytest.fixture(scope="module")
def envoy_grpc_gateway(
    authz_service: AuthzProcess, echo_upstream: Echo, integration_dir: Path, sent_request_ids: list[str]
) -> Iterator[Gateway]:
    """Envoy in gRPC mode (``envoy-grpc.yaml``); the module must start the service with ``{"grpc": True}``."""
    if authz_service.grpc_port is None:
        pytest.fail("envoy_grpc_gateway needs the service's gRPC port: authz_options = {'grpc': True}", pytrace=False)
    proc, port, _admin = _procs.start_envoy(
        "envoy-grpc.yaml",
        integration_dir,
        clusters={"app": echo_upstream.port, "gateway_authz_grpc": authz_service.grpc_port},
    )
    with _procs.stopping(proc):
        yield Gateway("envoy-grpc", port, proc, relays_deny_body=True, strips_query_token=True, sent=sent_request_ids)


@pytest.fixture(scope="module")
def nginx_gateway(
    authz_service: AuthzProcess, echo_upstream: Echo, integration_dir: Path, sent_request_ids: list[str]
) -> Iterator[Gateway]:
    proc, port = _procs.start_nginx(
        integration_dir, upstreams={"app": echo_upstream.port, "gateway_authz": authz_service.port}
    )
    with _procs.stopping(proc):
        yield Gateway("nginx", port, proc, relays_deny_body=True, strips_query_token=True, sent=sent_request_ids)


@pytest.fixture(scope="module", params=GATEWAYS)
def gateway(request: pytest.FixtureRequest) -> Gateway:
    """Each gateway column in turn (module-scoped so the processes are shared by every scenario)."""
    gw: Gateway = request.getfixturevalue(GATEWAY_FIXTURES[request.param])
    return gw
