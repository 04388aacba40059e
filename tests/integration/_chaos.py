"""An upstream application that fails on request, for driving gateways into their failure paths.

It runs in a thread of the test process on a free loopback port and answers by path:

- ``.../reset``  reads the request, then resets the connection (``SO_LINGER`` 0: an RST, no answer);
- ``.../close``  reads the request, then closes the connection without a byte of answer;
- ``.../hang``   reads the request and never answers (until the gateway gives up, bounded by ``hang_seconds``);
- ``.../500``    answers ``500``;
- anything else answers ``200`` with a small body.

``down()`` closes the listening socket for the duration of a ``with`` block (connections are refused), then
listens again on the same port. ``stop()`` ends the thread and every connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

__all__ = ["ChaosUpstream"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nx-echo-upstream: chaos\r\n\r\nok"
_ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"


class ChaosUpstream:
    def __init__(self, *, hang_seconds: float = 10.0) -> None:
        self.hang_seconds = hang_seconds
        self._stopped = threading.Event()
        self._listening = threading.Event()
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="chaos-upstream", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.settimeout(0.1)
        return sock

    def _serve(self) -> None:
        while not self._stopped.is_set():
            listener = self._listener
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by down(): wait for the new listener
                time.sleep(0.02)
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(self.hang_seconds)
        with conn:
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
            line = head.split(b"\r\n", 1)[0]
            path = line.split(b" ")[1] if line.count(b" ") >= 2 else b"/"
            path = path.split(b"?", 1)[0]
            with contextlib.suppress(OSError):
                if path.endswith(b"/reset"):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif path.endswith(b"/close"):
                    pass
                elif path.endswith(b"/hang"):
                    deadline = time.monotonic() + self.hang_seconds
                    while time.monotonic() < deadline and not self._stopped.is_set():
                        conn.settimeout(0.1)
                        try:
                            if conn.recv(4096) == b"":
                                return  # the gateway gave up
                        except TimeoutError:
                            continue
                elif path.endswith(b"/500"):
                    conn.sendall(_ERROR)
                else:
                    conn.sendall(_OK)

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Connections are refused inside the block."""
        self._listener.close()
        try:
            yield
        finally:
            self._listener = self._listen(self.port)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(timeout=5)
