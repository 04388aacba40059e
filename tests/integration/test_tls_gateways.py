"""Issue 18.5: TLS as users run it. The shipped TLS variants (``envoy-http-tls.yaml``, ``envoy-grpc-tls.yaml``,
``nginx-tls.conf``) terminate TLS; the tests drive them with a throw-away CA (``_tls.py``), the harness putting the
test certificate where the config reads the Secret's ``tls.crt`` / ``tls.key``.

Through TLS: an allow reaches the application with ``x-forwarded-proto: https`` and without the credential, a deny
comes back as the service's answer, a ``wss://`` WebSocket is authorized and echoes, and plain HTTP on the TLS
port is never served.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import _procs, _ws
from ._leaks import secret_forms
from ._tls import TlsMaterial, make_tls_material
from .conftest import SasConfig

pytestmark = pytest.mark.integration

HOST = "contoso.servicebus.windows.net"
VARIANTS = ("envoy-http-tls", "envoy-grpc-tls", "nginx-tls")


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    return {"grpc": True}


@pytest.fixture(scope="module")
def tls(integration_dir: Path) -> TlsMaterial:
    return make_tls_material(integration_dir / "tls")


@pytest.fixture(scope="module")
def app(integration_dir: Path) -> Iterator[int]:
    proc, port = _procs.start_echo(integration_dir, script=_procs.WS_ECHO_SCRIPT, name="ws-echo")
    with _procs.stopping(proc):
        yield port


@pytest.fixture(scope="module", params=VARIANTS)
def tls_port(
    request: pytest.FixtureRequest, authz_service: Any, app: int, tls: TlsMaterial, integration_dir: Path
) -> Iterator[int]:
    variant = request.param
    if variant == "nginx-tls":
        proc, port = _procs.start_nginx(
            integration_dir,
            upstreams={"app": app, "gateway_authz": authz_service.port},
            name=variant,
            config="nginx-tls.conf",
            tls_dir=tls.directory,
        )
    else:
        cluster, authz = (
            ("gateway_authz_grpc", authz_service.grpc_port)
            if "grpc" in variant
            else ("gateway_authz", authz_service.port)
        )
        proc, port, _ = _procs.start_envoy(
            f"{variant}.yaml",
            integration_dir,
            clusters={"app": app, cluster: authz},
            name=variant,
            tls_dir=tls.directory,
        )
    with _procs.stopping(proc):
        yield port


def _https(port: int, tls: TlsMaterial, method: str, target: str, headers: list[tuple[str, str]]) -> _procs.Response:
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tls.client_context())
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in [("Host", HOST), *headers]:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return _procs.Response(response.status, tuple(response.getheaders()), response.read())
    finally:
        conn.close()


def test_allow_over_tls_reaches_the_app_as_https_without_the_credential(
    tls_port: int, tls: TlsMaterial, sas_config: SasConfig
) -> None:
    token = sas_config.mint("OrdersSend", "/orders", scheme="https")
    response = _https(tls_port, tls, "GET", f"/orders?b=2&sb-hc-token={token.query_value}&a=1", [])
    assert response.status == 200, str(response)
    seen = response.upstream
    assert seen is not None
    assert seen.path_qs == "/orders?b=2&a=1"
    assert seen.header_all("x-forwarded-proto") == ["https"]
    assert seen.header_all("x-authz-principal") == ["OrdersSend"]
    everything = json.dumps(response.json()).lower()
    assert not [f for f in secret_forms(token.token) if f in everything]


def test_deny_over_tls_is_the_services_answer(tls_port: int, tls: TlsMaterial) -> None:
    response = _https(tls_port, tls, "GET", "/orders", [])
    assert response.status == 401, str(response)
    assert response.upstream is None
    assert response.header("www-authenticate") and response.json()["reason"]


def test_wss_websocket_is_authorized_and_echoes(tls_port: int, tls: TlsMaterial, sas_config: SasConfig) -> None:
    token = sas_config.mint("OrdersListen", "/orders")
    target = f"/orders?sb-hc-action=listen&sb-hc-token={token.query_value}"
    context = tls.client_context()
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        assert _ws.handshake(sock, target, [("Host", HOST)]) == 101
        _ws.send_text(sock, "over tls")
        assert _ws.receive_text(sock) == "over tls"
    with (
        socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        assert _ws.handshake(sock, target.replace(token.query_value, "x"), [("Host", HOST)]) == 401


def test_plain_http_on_the_tls_port_is_never_served(tls_port: int) -> None:
    head = f"GET /public HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as sock:
        sock.sendall(head)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert b"x-echo-upstream" not in data.lower()
    assert not data.startswith(b"HTTP/1.1 200"), data[:200]


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_port: int) -> None:
    context = ssl.create_default_context()  # the system CAs: not the throw-away CA
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", tls_port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=HOST),
    ):
        pass
