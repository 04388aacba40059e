"""``http/_quiet.py``: what aiohttp's connection handler logs about a request it refused (issue 18)."""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine

from gateway_authz.http._quiet import quiet_server_logger
from tests._factories import mint, secret_forms

TOKEN = mint("/orders")


@pytest.mark.parametrize(
    "exc",
    [
        BadHttpMessage(f"Invalid header value char:\n\n  b'ServiceBusAuthorization: {TOKEN}\\x01'\n  ^"),
        BadStatusLine(f"GET /orders?sb-hc-token={quote(TOKEN, safe='')} HTTP/1.1\x01"),
        ValueError(f"unexpected {TOKEN.upper()}"),
    ],
    ids=["header-line", "request-line", "any-exception"],
)
def test_a_refusal_is_one_line_without_traceback_or_token(exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        quiet_server_logger().exception("Error handling request from %s", "127.0.0.1", exc_info=exc)
    (record,) = caplog.records
    assert record.name == "aiohttp.server" and record.levelno == logging.ERROR
    assert record.exc_info is None and record.exc_text is None
    text = caplog.text
    assert "Traceback" not in text and type(exc).__name__ in text
    for form in secret_forms(TOKEN):
        assert form.lower() not in text.lower(), form


def test_debug_records_lose_their_exception_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        quiet_server_logger().debug("Error handling request from %s", "127.0.0.1", exc_info=BadStatusLine(TOKEN))
    (record,) = caplog.records
    assert record.exc_info is None and "BadStatusLine" in record.getMessage()
    assert all(form not in caplog.text for form in secret_forms(TOKEN))
