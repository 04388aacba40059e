"""Gateway-layer attacks (security-cases.md §1C, G1-G9) through real Envoy (HTTP and gRPC ext_authz) and NGINX.

Every request goes client -> gateway -> gateway-authz -> echo upstream, with the gateways running the configs
shipped in ``k8s/``. What each test holds to:

- a bad request always ends in a deny: any refusal status from the gateway itself (400, 414, 431...) or the
  service's 401/403, never the upstream's 200 and never a 5xx caused by the service failing;
- where the gateways disagree (limits, parsers), each still denies, and the same request gets the same decision
  through every gateway wherever the service decides;
- whatever the service allows, the upstream receives as the very resource that was authorized: read the way
  common upstreams read paths (percent-decoded once, dot segments resolved, ``;params`` dropped, ``\\`` as ``/``,
  case-insensitive), an allowed path never lands on an entity the credential does not cover.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from . import _procs
from ._hardening import (
    HOST,
    Verdict,
    assert_denied,
    assert_service_healthy,
    raw_request,
    request_head,
    verdict,
)
from ._procs import AuditLog, AuthzProcess
from .conftest import GATEWAY_FIXTURES, GATEWAYS, Echo, Gateway, SasConfig

pytestmark = pytest.mark.integration

KIB = 1024
# Statuses a gateway or the service may refuse with. 5xx are handled separately: they must be the gateway's own.
REFUSALS = frozenset({400, 401, 403, 413, 414, 431, 494})


@pytest.fixture(scope="module")
def authz_options() -> dict[str, Any]:
    """The service also serves gRPC, for the ``envoy-grpc`` column."""
    return {"grpc": True}


@pytest.fixture(scope="module", autouse=True)
def _service_survives_the_module(authz_service: AuthzProcess) -> Iterator[None]:
    """After every attack in this module the service is still up, healthy, and never hit an internal error."""
    yield
    assert_service_healthy(authz_service)


@pytest.fixture(scope="module")
def all_gateways(request: pytest.FixtureRequest) -> list[Gateway]:
    """Every gateway column at once, for the tests that compare decisions across gateways."""
    return [request.getfixturevalue(GATEWAY_FIXTURES[name]) for name in GATEWAYS]


# Where each NGINX access log stood before the latest request, so a check reads only what that request caused.
# (The shipped error log is at crit, so the authorizer's status is read from the auth check's own access-log line.)
_ACCESS_LOG_MARK: dict[str, int] = {}


def _access_log(gateway: Gateway) -> Path | None:
    return next((p for p in gateway.proc.extra_logs if p.name == "nginx-access.log"), None)


def _mark_access_log(gateway: Gateway) -> None:
    log = _access_log(gateway)
    _ACCESS_LOG_MARK[gateway.name] = log.stat().st_size if log is not None and log.exists() else 0


def _sentinel(gateway: Gateway) -> Callable[[], str]:
    """A request the service always decides (anonymous Send on /public), to flush the audit log up to here."""

    def send() -> str:
        response, request_id = gateway.request("POST", "/public/sentinel")
        assert response.status == 200, f"sentinel: {response}"
        return request_id

    return send


def _send(gateway: Gateway, audit: AuditLog, method: str, target: str, headers: list[tuple[str, str]]) -> Verdict:
    _mark_access_log(gateway)
    response, request_id = gateway.request(method, target, headers)
    return verdict(gateway.name, audit, response, request_id, sentinel=_sentinel(gateway))


def _send_raw(gateway: Gateway, audit: AuditLog, head: bytes) -> Verdict:
    """``head`` must carry ``x-request-id: {rid}`` as a placeholder; it is filled with a fresh id here."""
    request_id = f"it-raw-{gateway.name}-{uuid.uuid4()}"
    _mark_access_log(gateway)
    response = raw_request(gateway.port, head.replace(b"{rid}", request_id.encode()))
    return verdict(gateway.name, audit, response, request_id, sentinel=_sentinel(gateway))


def _nginx_says_service_refused_head(gateway: Gateway) -> bool:
    """Since the latest request, NGINX logged that the service answered with aiohttp's 400 (a parser refusal)."""
    log = _access_log(gateway)
    assert log is not None
    with log.open("rb") as handle:
        handle.seek(_ACCESS_LOG_MARK.get(gateway.name, 0))
        return any(
            b"/_gateway_authz HTTP/1.1" in line and b" upstream=400 " in line for line in handle.read().splitlines()
        )


def _assert_gateway_5xx_is_fail_closed(gateway: Gateway, v: Verdict) -> None:
    """A 5xx must be the gateway failing closed, never the service crashing or answering 5xx itself."""
    assert v.upstream is None, f"5xx after reaching the upstream: {v}"
    if v.decisions:
        # Envoy answers 500 when an allow's x-authz-* headers would push the request past its header-count limit
        # (ext_authz.request_header_limits_reached): the service allowed, Envoy refused to forward.
        assert gateway.name.startswith("envoy") and v.decisions[0]["decision"] == "allow", str(v)
    elif gateway.name == "nginx":
        assert v.status == 500 and _nginx_says_service_refused_head(gateway), str(v)
    else:
        pytest.fail(f"5xx from Envoy without a decision: {v}")


# --------------------------------------------------------------------------------------------------- G1


def _padded(token: str, total: int) -> str:
    """A genuine token with filler appended so that the whole value is ``total`` characters long."""
    return token + "x" * max(0, total - len(token))


@pytest.mark.parametrize("kib", [8, 16, 17, 59, 61])
@pytest.mark.parametrize("carrier", ["ServiceBusAuthorization", "Authorization"])
def test_G1_oversized_credential_header_is_denied(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog, carrier: str, kib: int
) -> None:
    """An 8-61 KiB credential header (a valid token plus filler) is denied at some hop; the upstream never sees it."""
    token = sas_config.mint("RootManageSharedAccessKey", "/").token
    v = _send(gateway, audit, "GET", "/orders", [(carrier, _padded(token, kib * KIB))])
    assert_denied(v, statuses=REFUSALS)
    if v.decisions:
        assert v.decisions[0]["status"] == 401, str(v)


@pytest.mark.parametrize("kib", [9, 17, 61])
def test_G1_long_query_token_is_denied(gateway: Gateway, sas_config: SasConfig, audit: AuditLog, kib: int) -> None:
    """A 9/17/61 KiB ``sb-hc-token`` (a valid token plus filler) is denied; the upstream never sees it."""
    token = sas_config.mint("RootManageSharedAccessKey", "/").token
    target = "/orders?sb-hc-action=connect&sb-hc-token=" + quote(_padded(token, kib * KIB), safe="")
    v = _send(gateway, audit, "GET", target, [])
    assert_denied(v, statuses=REFUSALS)


def test_G1_nine_kib_request_line_is_denied(gateway: Gateway, audit: AuditLog) -> None:
    """A 9 KiB path on a protected entity, without credential, is denied (a long path is no way around auth)."""
    v = _send(gateway, audit, "GET", "/orders/" + "a" * (9 * KIB), [])
    assert_denied(v, statuses=REFUSALS)


def test_G1_just_under_the_limits_a_valid_token_still_works(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog
) -> None:
    """Control: a valid token next to 6 KiB of other headers is allowed, so the denials above are about size."""
    minted = sas_config.mint("OrdersSend", "/orders")
    v = _send(gateway, audit, "GET", "/orders", [("ServiceBusAuthorization", minted.token), ("x-pad", "p" * 6 * KIB)])
    assert v.allowed, str(v)
    assert v.upstream is not None and v.upstream.header_all("x-authz-principal") == ["OrdersSend"]


# --------------------------------------------------------------------------------------------------- G2


def _filler_headers(total: int, fixed: int) -> list[tuple[str, str]]:
    """Enough ``x-fill-N`` headers that the request carries ``total`` header lines (``fixed`` others are sent)."""
    return [(f"x-fill-{i}", "v") for i in range(max(0, total - fixed))]


@pytest.mark.parametrize("count", [99, 100, 101, 500])
def test_G2_many_headers_without_credential_are_denied(gateway: Gateway, audit: AuditLog, count: int) -> None:
    """99/100/101/500 header lines and no credential: denied by the service or refused by the gateway."""
    v = _send(gateway, audit, "POST", "/orders", _filler_headers(count, 2))  # + Host, x-request-id
    if v.status >= 500:
        _assert_gateway_5xx_is_fail_closed(gateway, v)
    else:
        assert_denied(v, statuses=REFUSALS)


@pytest.mark.parametrize("count", [99, 100, 101, 500])
def test_G2_many_headers_with_a_valid_token_never_give_a_wrong_decision(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog, count: int
) -> None:
    """99/100/101/500 header lines with a valid token: allowed as that token's rule, or refused; never misread."""
    minted = sas_config.mint("OrdersSend", "/orders")
    v = _send(gateway, audit, "GET", "/orders", [("ServiceBusAuthorization", minted.token), *_filler_headers(count, 3)])
    if v.allowed:
        assert v.upstream is not None and v.upstream.header_all("x-authz-principal") == ["OrdersSend"], str(v)
        assert v.upstream.header_all("servicebusauthorization") == []
    elif v.status >= 500:
        _assert_gateway_5xx_is_fail_closed(gateway, v)
    else:
        assert v.status in REFUSALS and not v.decisions, f"a valid token was denied by the service: {v}"


def test_G2_two_hundred_cookie_headers(gateway: Gateway, audit: AuditLog) -> None:
    """200 ``cookie`` lines on a protected entity without credential: a deny at some hop."""
    v = _send(gateway, audit, "POST", "/orders", [("cookie", f"c{i}=1") for i in range(200)])
    if v.status >= 500:
        _assert_gateway_5xx_is_fail_closed(gateway, v)
    else:
        assert_denied(v, statuses=REFUSALS)


# --------------------------------------------------------------------------------------------------- G3

BAD_BYTES = {
    "ff": b"\xff",
    "fe-ff": b"\xfe\xff",
    "obs-text-e9": b"\xe9",
    "utf8-e-acute": "é".encode(),
    "nul": b"\x00",
    "bare-cr": b"\r",
    "ctl-01": b"\x01",
    "del-7f": b"\x7f",
    "tab": b"\t",
}


@pytest.mark.parametrize("case", list(BAD_BYTES))
@pytest.mark.parametrize("carrier", ["ServiceBusAuthorization", "Authorization"])
def test_G3_non_utf8_and_control_bytes_in_the_credential_are_denied(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog, carrier: str, case: str
) -> None:
    """One character of a valid token's signature replaced by raw bytes (non-UTF-8, NUL, CR, CTL): denied."""
    token = sas_config.mint("OrdersSend", "/orders").token.encode()
    at = token.index(b"sig=") + 10  # inside the signature: whatever a hop does with the byte, the token is broken
    value = token[:at] + BAD_BYTES[case] + token[at + 1 :]
    v = _send_raw(gateway, audit, request_head("GET", "/orders", [(carrier, value), ("x-request-id", "{rid}")]))
    if v.status >= 500:
        _assert_gateway_5xx_is_fail_closed(gateway, v)
    else:
        assert_denied(v, statuses=REFUSALS)


@pytest.mark.parametrize(
    ("where", "target", "host"),
    [
        ("path", b"/public/\xff", HOST.encode()),
        ("path-ctl", b"/public/a\x01b", HOST.encode()),
        ("host", b"/public", HOST.encode() + b"\xff"),
    ],
)
def test_G3_raw_bytes_in_path_or_host_never_allow(
    gateway: Gateway, audit: AuditLog, where: str, target: bytes, host: bytes
) -> None:
    """Raw non-UTF-8 / control bytes in the path or Host of an anonymous-Send entity: refused, never allowed."""
    v = _send_raw(gateway, audit, request_head("POST", target, [("x-request-id", "{rid}")], host=host))
    if v.status >= 500:
        _assert_gateway_5xx_is_fail_closed(gateway, v)
    else:
        assert_denied(v, statuses=REFUSALS)


def test_G3_raw_bytes_in_the_request_id_are_decided_and_audited(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog
) -> None:
    """A client ``x-request-id`` ending in a raw ``\\xff``: the valid token is allowed and the line is audited
    (the byte escaped), not a 5xx with the audit line lost; or the gateway refuses the bytes itself."""
    minted = sas_config.mint("OrdersSend", "/orders")
    request_id = f"it-raw-{gateway.name}-{uuid.uuid4()}"
    head = request_head(
        "GET", "/orders", [("ServiceBusAuthorization", minted.token), ("x-request-id", request_id.encode() + b"\xff")]
    )
    response = raw_request(gateway.port, head)
    marker = _sentinel(gateway)()
    assert audit.for_request(marker, timeout=5.0), "the sentinel was never audited"
    lines = [e for e in audit.events() if str(e.get("request_id", "")).startswith(request_id)]
    if response.upstream is None:
        assert response.status in REFUSALS and not lines, f"{gateway.name}: {response}"
        return
    assert response.upstream.header_all("x-authz-principal") == ["OrdersSend"], str(response)
    assert len(lines) == 1 and lines[0]["decision"] == "allow", lines
    assert lines[0]["request_id"] in (request_id + "\\xff", request_id + "!"), lines  # escaped / Envoy gRPC's "!"


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("SB_HC_TOKEN", "header"),
        ("ServiceBus_Authorization", "header"),
        ("sb_hc_token", "query"),
    ],
)
def test_G3_underscore_spellings_are_not_credentials(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog, name: str, how: str
) -> None:
    """A valid token under an underscore spelling of a carrier is no credential (401), through every gateway."""
    minted = sas_config.mint("OrdersSend", "/orders")
    if how == "header":
        v = _send(gateway, audit, "GET", "/orders", [(name, minted.token)])
    else:
        v = _send(gateway, audit, "GET", f"/orders?{name}={minted.query_value}", [])
    assert_denied(v, statuses=frozenset({401}))
    assert v.decisions and v.decisions[0]["reason"] == "missing_credential", str(v)


def test_G3_underscore_x_original_uri_does_not_move_the_request(gateway: Gateway, audit: AuditLog) -> None:
    """``X_Original_URI: /public/inbox`` on an anonymous POST to /orders is still a 401 for /orders."""
    v = _send(gateway, audit, "POST", "/orders", [("X_Original_URI", "/public/inbox")])
    assert_denied(v, statuses=frozenset({401}))
    assert v.decisions and v.decisions[0]["entity"] == "orders", str(v)


# --------------------------------------------------------------------------------------------------- G5

ENTITIES = ("orders", "invoices", "public")
ANONYMOUS_SEND = frozenset({"public"})

PATHS = [
    "/orders/../admin",
    "/orders/../invoices",
    "//orders",
    "/orders/./x",
    "/%2e%2e/",
    "/%2e%2e/orders",
    "/orders%2Fx",
    "/orders%2fx",
    "/ORDERS",
    "/Orders/X",
    "/orders;x",
    "/orders?x=/../admin",
    "/orders/",
    "/orders//x",
    "/public/../orders",
    "/public/./../orders",
    "/public/x/../../orders",
    "/public//../orders",
    "/public/..;/orders",
    "/public/..;jsessionid=1/orders",
    "/orders/..;/invoices",
    "/public/.;/x",
    "/public;x",
    "/public;/../orders",
    "/public/%2e%2e/orders",
    "/public/.%2E/orders",
    "/public/%2e%2e%3b/orders",
    "/public%2F..%2Forders",
    "/public/..%2f..%2forders",
    "/public\\..\\orders",
    "/public/%5c..%5corders",
    "/public/..%00/orders",
    "/public/%C0%AE%C0%AE/orders",
    "/public#/../orders",
    "/public/.../orders",
    "/$hc/orders",
    "/%24hc/orders",
    "/$hc/../orders",
]


def _segments(path: str) -> tuple[str, ...]:
    """Resolve a path as RFC 3986 does (dot segments), with empty segments merged and letters lower-cased."""
    out: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment.lower())
    if out and out[0] in ("$hc", "%24hc"):  # Relay's own prefix for the same entity, in either spelling
        out.pop(0)
    return tuple(out)


def upstream_readings(path_qs: str) -> set[str]:
    """The entities an upstream might take ``path_qs`` for ("" is the namespace itself).

    Readings: the raw path; percent-decoded once; with servlet ``;params`` dropped before or after decoding;
    each with dot segments resolved, empty segments merged, ``\\`` as ``/`` and case folded.
    """
    path = path_qs.split("?", 1)[0].split("#", 1)[0]

    def strip_params(p: str) -> str:
        return re.sub(r";[^/]*", "", p)

    variants = {path, unquote(path), strip_params(path), strip_params(unquote(path)), unquote(strip_params(path))}
    readings = set()
    for variant in variants:
        segments = _segments(variant)
        readings.add(segments[0] if segments and segments[0] in ENTITIES else "")
    return readings


CREDENTIALS: dict[str, tuple[str, str] | None] = {
    "anonymous": None,
    "orders-send": ("OrdersSend", "/orders"),
    "namespace-root": ("RootManageSharedAccessKey", "/"),
}
# The entities a credential may reach (None: the whole namespace).
ENTITLED: dict[str, frozenset[str] | None] = {
    "anonymous": ANONYMOUS_SEND,
    "orders-send": frozenset({"orders"}),
    "namespace-root": None,
}


@pytest.mark.parametrize("credential", list(CREDENTIALS))
@pytest.mark.parametrize("path", PATHS)
def test_G5_path_normalisation_same_decision_and_never_another_resource(
    all_gateways: list[Gateway], sas_config: SasConfig, audit: AuditLog, path: str, credential: str
) -> None:
    """One request through every gateway: the service decides on the path the upstream gets, the same path gets the
    same decision whichever gateway passed it on, and an allow never reaches an entity the credential lacks.

    The gateways may hand the service different spellings: the shipped Envoy config normalises paths
    (``normalize_path``, ``merge_slashes``) for routing, the service and the upstream alike, while NGINX passes the
    raw ``$request_uri`` to both, which the service refuses when ambiguous.
    """
    rule = CREDENTIALS[credential]
    headers = [] if rule is None else [("ServiceBusAuthorization", sas_config.mint(*rule).token)]
    verdicts = [_send(gw, audit, "POST", path, headers) for gw in all_gateways]
    detail = "\n".join(map(str, verdicts))
    by_view: dict[str, set[tuple[bool, int | None]]] = {}
    for gw, v in zip(all_gateways, verdicts, strict=True):
        if v.decisions:
            by_view.setdefault(v.decisions[0]["path"], set()).add((v.allowed, v.service_status))
        if v.status >= 500:
            _assert_gateway_5xx_is_fail_closed(gw, v)
        if not v.allowed:
            assert_denied(v, statuses=REFUSALS)
            continue
        assert v.upstream is not None
        (event,) = v.decisions
        assert v.upstream.path_qs == event["path"], f"decided on {event['path']!r}, upstream got another path: {v}"
        entitled = ENTITLED[credential]
        if entitled is not None:
            readings = upstream_readings(v.upstream.path_qs)
            assert readings <= entitled, f"{credential} allowed {v.upstream.path_qs!r}, read as {readings}: {v}"
    split = {view: outcomes for view, outcomes in by_view.items() if len(outcomes) > 1}
    assert not split, f"the same path got different decisions through different gateways {split}:\n{detail}"


# --------------------------------------------------------------------------------------------------- G6

SPOOFS = [
    ("X-Original-URI", "/public/inbox"),
    ("X-Original-URI", "/orders"),
    ("X-Original-Method", "GET"),
    ("X-Original-Host", "other.example"),
    ("X-Original-URL", f"http://{HOST}/public/inbox"),
    ("X-Forwarded-Host", "other.example"),
    ("X-Forwarded-Uri", "/public/inbox"),
    ("X-Forwarded-Method", "GET"),
    ("X-Forwarded-Proto", "https"),
    ("X-Envoy-Original-Path", "/public/inbox"),
    ("X-Rewrite-URL", "/public/inbox"),
]
BASES = [  # (method, target, credential rule or None, expected status)
    ("POST", "/orders", None, 401),
    ("POST", "/public/inbox", None, 200),
    ("GET", "/invoices", ("OrdersSend", "/orders"), 403),
    ("GET", "/orders", ("OrdersSend", "/orders"), 200),
]


@pytest.mark.parametrize(("spoof", "value"), SPOOFS, ids=[f"{n}={v}" for n, v in SPOOFS])
def test_G6_client_spoofed_context_headers_do_not_change_the_decision(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog, spoof: str, value: str
) -> None:
    """X-Original-*, X-Forwarded-*, X-Envoy-Original-Path... from the client change nothing, through every gateway."""
    for method, target, rule, expected in BASES:
        headers = [(spoof, value)]
        if rule is not None:
            headers.append(("ServiceBusAuthorization", sas_config.mint(*rule).token))
        v = _send(gateway, audit, method, target, headers)
        assert v.status == expected, f"{method} {target} with {spoof}: {value}: {v}"
        if expected == 200:
            assert v.upstream is not None and v.upstream.path_qs == target, str(v)
            (event,) = v.decisions
            assert event["path"] == target and event["host"].split(":")[0] == HOST, event
        else:
            assert_denied(v)


@pytest.mark.parametrize(
    ("name", "target", "host", "rule"),
    [
        ("other-authority-orders", "http://other.example/orders", HOST, ("OrdersSend", "/orders")),
        ("other-authority-public", "http://other.example/public/inbox", HOST, None),
        ("our-authority-other-host", f"http://{HOST}/orders", "other.example", ("OrdersSend", "/orders")),
        ("our-authority-sibling", f"http://{HOST}/invoices", "other.example", ("OrdersSend", "/orders")),
    ],
)
def test_G6_absolute_form_target_is_decided_as_the_upstream_receives_it(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog, name: str, target: str, host: str, rule: Any
) -> None:
    """``GET http://other/... `` with another Host: if allowed, the upstream got exactly the host and path decided."""
    headers: list[tuple[str, str]] = [("x-request-id", "{rid}")]
    if rule is not None:
        headers.append(("ServiceBusAuthorization", sas_config.mint(*rule).token))
    v = _send_raw(gateway, audit, request_head("POST", target, headers, host=host))
    if not v.allowed:
        assert_denied(v, statuses=REFUSALS)
        return
    assert v.upstream is not None
    (event,) = v.decisions
    seen_host = v.upstream.header_all("host")
    assert [h.split(":")[0].lower() for h in seen_host] == [event["host"].split(":")[0].lower()], str(v)
    assert event["host"].split(":")[0].lower() == HOST, str(v)
    assert v.upstream.path_qs == event["path"], str(v)
    if name == "our-authority-sibling":
        pytest.fail(f"a sibling entity was allowed: {v}")


# --------------------------------------------------------------------------------------------------- G7


def test_G7_service_not_running_every_gateway_fails_closed(
    echo_upstream: Echo, sas_config: SasConfig, integration_dir: Path
) -> None:
    """No service listening: Envoy (HTTP and gRPC) answers 503 (status_on_error), NGINX 500; nothing is allowed."""
    dead = _procs.free_port()  # nothing listens here
    envoy_http, http_port, _ = _procs.start_envoy(
        "envoy-http.yaml", integration_dir, clusters={"app": echo_upstream.port, "gateway_authz": dead}, name="dead-h"
    )
    envoy_grpc, grpc_port, _ = _procs.start_envoy(
        "envoy-grpc.yaml",
        integration_dir,
        clusters={"app": echo_upstream.port, "gateway_authz_grpc": dead},
        name="dead-g",
    )
    nginx, nginx_port = _procs.start_nginx(
        integration_dir, upstreams={"app": echo_upstream.port, "gateway_authz": dead}, name="dead-n"
    )
    with _procs.stopping(envoy_http, envoy_grpc, nginx):
        token = sas_config.mint("RootManageSharedAccessKey", "/").token
        for port, expected in ((http_port, 503), (grpc_port, 503), (nginx_port, 500)):
            for method, target, headers in (
                ("GET", "/orders", [("ServiceBusAuthorization", token)]),
                ("POST", "/public/inbox", []),
                ("GET", "/orders", []),
            ):
                response = _procs.request(port, method, target, [("Host", HOST), *headers])
                assert response.upstream is None, f"fail-open on :{port}: {response}"
                assert response.status == expected, f":{port} {method} {target}: {response}"


# --------------------------------------------------------------------------------------------------- G8


def test_G8_decision_cache_never_serves_one_callers_allow_to_another(
    gateway: Gateway, sas_config: SasConfig, audit: AuditLog
) -> None:
    """Interleaved after a cached allow: other tokens, a one-character change, other paths, rights and carriers."""
    a = sas_config.mint("OrdersSend", "/orders").token
    root = sas_config.mint("RootManageSharedAccessKey", "/orders").token
    b_other_entity = sas_config.mint("InvoicesSend", "/invoices").token
    at = a.index("sig=") + 6
    a_tampered = a[:at] + ("A" if a[at] != "A" else "B") + a[at + 1 :]
    for _ in range(3):
        v = _send(gateway, audit, "GET", "/orders", [("ServiceBusAuthorization", a)])
        assert v.upstream is not None and v.upstream.header_all("x-authz-principal") == ["OrdersSend"], str(v)
        v = _send(gateway, audit, "GET", "/orders", [("ServiceBusAuthorization", root)])
        assert v.upstream is not None, str(v)
        assert v.upstream.header_all("x-authz-principal") == ["RootManageSharedAccessKey"], "got A's identity"
        assert _send(gateway, audit, "GET", "/orders", [("ServiceBusAuthorization", b_other_entity)]).status == 403
        assert _send(gateway, audit, "GET", "/orders", [("ServiceBusAuthorization", a_tampered)]).status == 401
        assert _send(gateway, audit, "GET", "/orders", []).status == 401
        assert _send(gateway, audit, "GET", "/invoices", [("ServiceBusAuthorization", a)]).status == 403
        listen = _send(gateway, audit, "GET", "/orders?sb-hc-action=listen", [("ServiceBusAuthorization", a)])
        assert listen.status == 403, str(listen)
        v = _send(gateway, audit, "GET", "/orders", [("Authorization", a)])
        assert v.upstream is not None and v.upstream.header_all("x-authz-principal") == ["OrdersSend"], str(v)


# --------------------------------------------------------------------------------------------------- G9


@pytest.mark.parametrize(
    ("case", "target", "rule", "tamper", "status", "reason"),
    [
        ("missing", "/orders", None, False, 401, "missing_credential"),
        ("malformed", "/orders", "garbage", False, 401, "unsupported_credential"),
        ("bad-signature", "/orders", ("OrdersSend", "/orders"), True, 401, None),
        ("not-permitted", "/invoices", ("OrdersSend", "/orders"), False, 403, None),
        ("listen-anonymous", "/public?sb-hc-action=listen", None, False, 401, None),
    ],
)
def test_G9_status_semantics(
    gateway: Gateway,
    sas_config: SasConfig,
    audit: AuditLog,
    case: str,
    target: str,
    rule: Any,
    tamper: bool,
    status: int,
    reason: str | None,
) -> None:
    """401 + WWW-Authenticate for no/bad credential, 403 without a challenge for a valid one that lacks the right."""
    headers: list[tuple[str, str]] = []
    if rule == "garbage":
        headers.append(("ServiceBusAuthorization", "definitely not a token"))
    elif rule is not None:
        token = sas_config.mint(*rule).token
        if tamper:
            at = token.index("sig=") + 6
            token = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
        headers.append(("ServiceBusAuthorization", token))
    v = _send(gateway, audit, "GET", target, headers)
    assert_denied(v, statuses=frozenset({status}))
    (event,) = v.decisions
    assert event["status"] == status, str(v)
    if reason is not None:
        assert event["reason"] == reason, str(v)
    challenge = v.response.header("www-authenticate")
    if status == 401:
        assert challenge and challenge.startswith("SharedAccessSignature"), str(v.response)
    else:
        assert challenge is None, f"a 403 must not challenge: {v.response}"
    assert v.response.header("x-authz-reason") == event["reason"], str(v.response)
    if gateway.relays_deny_body:
        assert v.response.json()["reason"] == event["reason"]
