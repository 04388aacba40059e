"""Issue 18: one redaction function, case-insensitive and encoding-aware, for every logged value a client controls.

The audit log's pre-filter looked for ``SharedAccessSignature`` case-sensitively while the pattern was not, so a
request id of ``SHAREDACCESSSIGNATURE SR=…&SIG=…`` was logged verbatim. Each case and each encoding (raw,
percent-encoded once, twice) is checked on the function and on the audit line fields a client writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

import pytest
from prometheus_client import generate_latest

from gateway_authz.core.redaction import REDACTED, has_secret_marker, redact
from gateway_authz.decision.audit import make_ops_logger
from tests._factories import HOST, harness, make_request, mint, secret_forms

TOKEN = mint("/orders")
SIG = dict(pair.split("=", 1) for pair in TOKEN.split(" ", 1)[1].split("&"))["sig"]
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJvaWQiOiJ4In0.c2lnbmF0dXJlLXBhcnQ"
SHARED_KEY = "SharedAccessKey=c2VjcmV0LWtleS1tYXRlcmlhbC0xMjM0NTY3ODkw"


def once(text: str) -> str:
    return quote(text, safe="")


def twice(text: str) -> str:
    return quote(quote(text, safe=""), safe="")


ENCODINGS: dict[str, Callable[[str], str]] = {"raw": lambda t: t, "once": once, "twice": twice}
CASES: dict[str, Callable[[str], str]] = {"as-is": lambda t: t, "upper": str.upper, "lower": str.lower}
SECRETS = {"sas": TOKEN, "jwt": f"Bearer {JWT}", "shared-key": f"Endpoint=sb://x/;SharedAccessKeyName=k;{SHARED_KEY}"}


def leaked(text: str, secret: str) -> bool:
    """Whether any spelling of ``secret``'s secret part (any case, raw or decoded) is still in ``text``."""
    if secret is TOKEN:
        core = SIG
    elif secret.startswith("Bearer"):
        core = JWT.split(".", 1)[1]
    else:
        core = SHARED_KEY.split("=", 1)[1]
    for candidate in (text, quote(text), text.replace("%25", "%")):
        lowered = candidate.lower()
        for form in (core, once(core), twice(core)):
            if form.lower() in lowered:
                return True
    return False


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("encoding", ENCODINGS.values(), ids=ENCODINGS.keys())
@pytest.mark.parametrize("secret", SECRETS.values(), ids=SECRETS.keys())
def test_redact_removes_every_secret_in_every_case_and_encoding(
    secret: str, encoding: Callable[[str], str], case: Callable[[str], str]
) -> None:
    text = "prefix " + encoding(case(secret)) + " suffix"
    out = redact(text)
    assert REDACTED in out
    assert not leaked(out, case(secret)), out


def test_redact_leaves_clean_text_alone_and_returns_it_itself() -> None:
    text = "/orders/x?a=1&b=%20two"
    assert redact(text) is text
    assert not has_secret_marker(text)


def test_upper_case_token_in_a_request_id_was_the_reported_leak() -> None:
    request_id = TOKEN.upper()
    assert request_id.startswith("SHAREDACCESSSIGNATURE SR=")
    assert SIG.upper() not in redact(request_id)


def test_letters_escaped_too_are_found_in_the_decoded_text() -> None:
    hidden = "".join(f"%{b:02X}" for b in b"sig=") + SIG
    out = redact("x " + hidden)
    assert SIG not in out and REDACTED in out


FIELDS = {
    "request_id": lambda secret: make_request("/orders", request_id=secret),
    "path-segment": lambda secret: make_request("/orders/" + secret),
    "query-value": lambda secret: make_request("/orders?a=" + secret),
    "host": lambda secret: make_request("/orders", host=secret),
    "method": lambda secret: make_request("/orders", method=secret),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
@pytest.mark.parametrize("encoding", ENCODINGS.values(), ids=ENCODINGS.keys())
@pytest.mark.parametrize("field", FIELDS.values(), ids=FIELDS.keys())
async def test_no_token_in_any_client_written_audit_field(
    field: Callable[[str], object], encoding: Callable[[str], str], case: Callable[[str], str]
) -> None:
    h = harness()
    secret = encoding(case(TOKEN))
    decision = await h.decide(field(secret))  # type: ignore[arg-type]
    assert not decision.allowed or decision.status == 200
    (line,) = h.audit
    for form in secret_forms(TOKEN):
        assert form.lower() not in line.decode().lower()
    assert not leaked(line.decode(), TOKEN), line
    json.loads(line)


async def test_audit_line_for_a_clean_request_is_unchanged_by_redaction() -> None:
    h = harness()
    await h.decide(make_request("/orders/x?a=1", request_id="req-1", sba=TOKEN))
    (event,) = h.events()
    assert (event["path"], event["request_id"], event["host"]) == ("/orders/x?a=1", "req-1", HOST)


def test_ops_log_fields_are_redacted_in_every_case() -> None:
    lines: list[bytes] = []
    make_ops_logger(lines.append).error("authz.test", detail=TOKEN.upper(), other=twice(TOKEN), raw=TOKEN.lower())
    (line,) = lines
    assert not leaked(line.decode(), TOKEN), line


async def test_metrics_labels_never_carry_client_input() -> None:
    """Whatever a client writes (path, host, method, request id, a forged key name), no label value holds it."""
    h = harness()
    marker = "clientjunk"
    forged = TOKEN.replace("skn=RootManageSharedAccessKey", f"skn={marker}")
    requests = [
        make_request(f"/{marker}", request_id=marker, sba=forged),
        make_request("/orders", host=f"{marker}.example", sba=TOKEN),
        make_request("/orders", method=marker.upper(), sba=TOKEN),
        make_request(f"/orders?{marker}={marker}", sba=TOKEN.upper()),
        make_request("/orders;x", sba=forged),
    ]
    for request in requests:
        await h.decide(request)
    exposition = generate_latest(h.metrics.registry)
    assert b"gateway_authz_decisions_total" in exposition
    assert marker.encode() not in exposition.lower()
    assert SIG.encode() not in exposition


@pytest.mark.parametrize("text", ["RootManageSharedAccessKey", "orders-send", "bad_signature", "/orders/design"])
def test_rule_names_and_reasons_are_not_taken_for_secrets(text: str) -> None:
    """The marker test must not fire on the rule every namespace has: the audit line's shortcut depends on it."""
    assert not has_secret_marker(text)
    assert redact(text) is text
