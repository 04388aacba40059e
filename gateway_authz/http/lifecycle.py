"""What ``serve`` says about itself: one ``service.start`` event once every listener is up, one ``service.stop``
once it has drained (operations log, JSON on standard error), and the one line a listener that cannot bind gives.
"""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Any

from aiohttp import web

from ..core.build_info import build_info

__all__ = ["ListenError", "listen", "start_event", "stop_event"]


class ListenError(Exception):
    """A listener could not bind; the message says it all: ``cannot listen on 127.0.0.1:8080: address in use``."""


_CAUSES = {
    errno.EADDRINUSE: "address in use",
    errno.EACCES: "permission denied",
    errno.EADDRNOTAVAIL: "address not available",
}


async def listen(site: web.TCPSite, host: str, port: int) -> None:
    """Start ``site``; a bind failure becomes :class:`ListenError` naming the address and the cause."""
    try:
        await site.start()
    except OSError as exc:
        cause = _CAUSES.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        raise ListenError(f"cannot listen on {host}:{port}: {cause}") from None


def start_event(
    *,
    listeners: dict[str, str],
    config_source: str,
    namespaces: int,
    missing_keys: int,
) -> dict[str, Any]:
    """The fields of ``service.start``: build, listeners, config, and which event loop runs (asyncio or uvloop)."""
    loop = type(asyncio.get_running_loop())
    info = build_info()
    return {
        "version": info.version,
        "python": info.python,
        "aiohttp": info.aiohttp,
        "pid": os.getpid(),
        "listeners": listeners,
        "config_source": config_source,
        "namespaces": namespaces,
        "missing_keys": missing_keys,
        "event_loop": loop.__module__.partition(".")[0],
    }


def stop_event(*, drained_seconds: float) -> dict[str, Any]:
    return {"pid": os.getpid(), "drained_seconds": round(drained_seconds, 3)}
