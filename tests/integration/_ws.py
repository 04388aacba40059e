"""A minimal synchronous WebSocket client over any socket (plain or TLS), for tests: handshake, text frames.

Only what the tests need (RFC 6455): a masked text frame out, an unmasked text or close frame in.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct

__all__ = ["handshake", "receive_text", "send_text"]


def handshake(sock: socket.socket | ssl.SSLSocket, target: str, headers: list[tuple[str, str]]) -> int:
    """Send the upgrade request; returns the answer's status (101 when the socket is now a WebSocket)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {target} HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"]
    lines += [f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{name}: {value}" for name, value in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during the handshake after {head!r}")
        head += chunk
    return int(head.split(b" ", 2)[1])


def send_text(sock: socket.socket | ssl.SSLSocket, text: str) -> None:
    payload = text.encode()
    assert len(payload) < 126
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)


def _exactly(sock: socket.socket | ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed mid-frame")
        data += chunk
    return data


def receive_text(sock: socket.socket | ssl.SSLSocket) -> str:
    """The next text frame's payload (a close frame raises ``ConnectionError``)."""
    first, second = _exactly(sock, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", _exactly(sock, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", _exactly(sock, 8))
    payload = _exactly(sock, length)
    if first & 0x0F == 0x8:
        raise ConnectionError("close frame")
    assert first & 0x0F == 0x1, f"not a text frame: {first:#x}"
    return payload.decode()
