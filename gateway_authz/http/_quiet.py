"""What aiohttp's connection handler may log: one redacted line per refused request, never a traceback.

aiohttp logs a request its parser refuses (a control byte in a header, a line too long) with the parser's
exception, whose message quotes the offending header line: ``ServiceBusAuthorization: SharedAccessSignature …``
and its traceback landed on standard error. The runners are given this logger instead (aiohttp's documented
``logger`` argument of ``AppRunner``/``Server``): the record keeps aiohttp's logger name and level, loses
``exc_info``, and says only the exception's type and the first line of its message, redacted.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from ..core.redaction import redact

__all__ = ["quiet_server_logger"]

_MAX_SUMMARY = 200


class _QuietAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A ``LoggerAdapter`` that turns ``exc_info`` into a one-line, redacted summary appended to the message."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        exc_info = kwargs.pop("exc_info", None)
        kwargs.pop("stack_info", None)
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
            exc = exc_info[1]
        if exc is not None:
            msg = f"{msg} ({_summary(exc)})"
        return msg, kwargs


def _summary(exc: BaseException) -> str:
    """The exception's type and the first line of what it says, without the bytes a parser quotes after it."""
    text = str(getattr(exc, "message", "") or exc)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return redact(f"{type(exc).__name__}: {first}"[:_MAX_SUMMARY])


def quiet_server_logger() -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """aiohttp's ``aiohttp.server`` logger, writing refusals without tracebacks or quoted request bytes."""
    return _QuietAdapter(logging.getLogger("aiohttp.server"), {})
