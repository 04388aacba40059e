"""Issue 18, service side, through a real ``gateway-authz serve`` process and raw sockets.

A control byte in a credential header (``ServiceBusAuthorization: <token>\\x01``) makes aiohttp's parser refuse the
request. It used to log a traceback quoting the whole header line on standard error: now one redacted line at
``aiohttp.server``, no traceback, and the token nowhere in the process's output.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests._sas_sdk import MintedToken

from . import _procs
from .conftest import SasConfig

pytestmark = pytest.mark.integration


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` as it is and read until the service closes the connection (bounded by ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def leaks(text: bytes, minted: MintedToken) -> list[bytes]:
    lowered = text.lower()
    found = [form.encode() for form in minted.signature_forms if form.encode().lower() in lowered]
    if minted.token.encode().lower() in lowered:
        found.append(b"<whole token>")
    return found


def output_of(service: _procs.AuthzProcess) -> bytes:
    time.sleep(0.3)  # the audit sink flushes within 10 ms; stderr is unbuffered
    return service.stdout_path.read_bytes() + service.stderr_path.read_bytes()


@pytest.mark.parametrize("byte", [b"\x01", b"\x00", b"\x7f"], ids=["0x01", "nul", "del"])
@pytest.mark.parametrize("header", ["ServiceBusAuthorization", "Authorization"])
def test_control_byte_in_a_credential_header_is_refused_without_traceback_or_token_in_any_log(
    authz_service: _procs.AuthzProcess, sas_config: SasConfig, byte: bytes, header: str
) -> None:
    minted = sas_config.mint("RootManageSharedAccessKey", "/orders")
    head = f"POST /ext_authz/orders HTTP/1.1\r\nHost: {sas_config.host}\r\n{header}: ".encode()
    answer = raw_exchange(authz_service.port, head + minted.token.encode() + byte + b"\r\n\r\n")
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.0 400")), answer[:200]
    output = output_of(authz_service)
    assert b"Traceback" not in output
    assert leaks(output, minted) == [], output[-2000:]


def test_the_refusal_is_logged_as_one_line_at_aiohttp_server(
    authz_service: _procs.AuthzProcess, sas_config: SasConfig
) -> None:
    minted = sas_config.mint("RootManageSharedAccessKey", "/orders")
    before = authz_service.stderr_path.read_bytes()
    head = f"POST /ext_authz/orders HTTP/1.1\r\nHost: {sas_config.host}\r\nServiceBusAuthorization: ".encode()
    raw_exchange(authz_service.port, head + minted.token.encode() + b"\x01\r\n\r\n")
    time.sleep(0.3)
    added = authz_service.stderr_path.read_bytes()[len(before) :]
    lines = [line for line in added.splitlines() if line.strip()]
    assert len(lines) == 1 and b"BadHttpMessage" in lines[0], added


def test_the_same_token_without_the_byte_is_still_allowed(
    authz_service: _procs.AuthzProcess, sas_config: SasConfig
) -> None:
    minted = sas_config.mint("RootManageSharedAccessKey", "/orders")
    assert _procs.sas_check_status(authz_service, minted.token, host=sas_config.host) == 200


@pytest.mark.xfail(
    strict=True,
    reason="aiohttp's RequestHandler.handle_error writes the parser's message (quoting the header line) as the "
    "400 body; no public aiohttp option changes it (see docs/security-hardening.md)",
)
def test_the_400_body_does_not_echo_the_header(authz_service: _procs.AuthzProcess, sas_config: SasConfig) -> None:
    minted = sas_config.mint("RootManageSharedAccessKey", "/orders")
    head = f"POST /ext_authz/orders HTTP/1.1\r\nHost: {sas_config.host}\r\nServiceBusAuthorization: ".encode()
    answer = raw_exchange(authz_service.port, head + minted.token.encode() + b"\x01\r\n\r\n")
    assert leaks(answer, minted) == []
