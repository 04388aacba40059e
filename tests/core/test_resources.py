"""Resources: the canonical form of request paths and token ``sr`` URIs, and the prefix cases P1-P17.

Specifications for :mod:`gateway_authz.core.resources`. The rule under test sits on the hybrid connection ``orders``
(``sb://contoso.servicebus.windows.net/orders``); parse-level cases go through ``parse_sr`` /
``canonical_segments`` / ``canonical_host``, scope cases through ``DecisionService.decide`` with SDK-minted tokens
whose ``sr`` (before the SDK's own encoding) is the one listed in security-cases.md §1B.
"""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from gateway_authz.core.errors import InvalidCredential, NotPermitted
from gateway_authz.core.model import Decision
from gateway_authz.core.resources import (
    MAX_TARGET_LENGTH,
    ResourceIndex,
    ResourcePath,
    canonical_host,
    canonical_segments,
    parse_sr,
    split_target,
)
from tests._factories import (
    HOST,
    NOW,
    ORDERS_SEND,
    ORDERS_SEND_KEY,
    OTHER_HOST,
    ROOT,
    ROOT_PRIMARY,
    assert_decision,
    harness,
    make_request,
    make_settings,
    sdk_token,
)

H = HOST


async def decide_sr(
    resource: str,
    path: str = "/orders",
    *,
    key_name: str = ROOT,
    key: str = ROOT_PRIMARY,
    host: str = HOST,
    action: str | None = None,
    method: str = "POST",
) -> Decision:
    """Decide ``path`` on ``host`` for an SDK-minted token whose (decoded) sr is ``resource``."""
    token = sdk_token(resource, key_name, key, NOW + 3600)
    return await harness().decide(make_request(path, host=host, method=method, sba=token, action=action))


def sr_refusal(decoded_sr: str) -> str:
    with pytest.raises(InvalidCredential) as info:
        parse_sr(decoded_sr)
    return info.value.reason


def segments_refused(path: str) -> None:
    with pytest.raises((ValueError, UnicodeDecodeError)):
        canonical_segments(path)


# --------------------------------------------------------------------------------------------------------------
# P1-P3: whole-segment prefix, trailing slash
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/orders", "/orders/", "/orders/foo", "/orders/foo/bar", "/$hc/orders"])
@pytest.mark.parametrize(
    ("key_name", "key"), [(ROOT, ROOT_PRIMARY), (ORDERS_SEND, ORDERS_SEND_KEY)], ids=["namespace-rule", "entity-rule"]
)
async def test_P1_sr_hc_covers_hc_and_below(path: str, key_name: str, key: str) -> None:
    """A token for ``…/orders`` allows ``/orders`` and every path below it, with a namespace or the entity's rule."""
    assert_decision(await decide_sr(f"sb://{H}/orders", path, key_name=key_name, key=key), 200, "allowed")


@pytest.mark.parametrize("path", ["/orders2", "/ordersx/foo", "/order", "/orders-x", "/orders.x", "/eu/orders"])
@pytest.mark.parametrize(
    ("key_name", "key"), [(ROOT, ROOT_PRIMARY), (ORDERS_SEND, ORDERS_SEND_KEY)], ids=["namespace-rule", "entity-rule"]
)
async def test_P2_sr_hc_does_not_cover_hc2(path: str, key_name: str, key: str) -> None:
    """``…/orders`` never covers ``/orders2`` or ``/ordersx/foo``: the prefix is compared by whole segments."""
    assert_decision(await decide_sr(f"sb://{H}/orders", path, key_name=key_name, key=key), 403, "token_scope")


def test_P2_covers_is_by_whole_segments() -> None:
    """ResourcePath.covers: ``/hc`` covers ``/hc`` and ``/hc/x`` only, on the same host."""
    hc = ResourcePath(H, ("hc",))
    assert hc.covers(ResourcePath(H, ("hc",))) and hc.covers(ResourcePath(H, ("hc", "x")))
    assert not hc.covers(ResourcePath(H, ("hc2",)))
    assert not hc.covers(ResourcePath(H, ()))
    assert not hc.covers(ResourcePath(OTHER_HOST, ("hc",)))
    assert ResourcePath(H, ()).covers(ResourcePath(H, ("anything", "below")))


@pytest.mark.parametrize(
    ("sr_path", "request_path"),
    [("/orders/", "/orders"), ("/orders", "/orders/"), ("/orders/", "/orders/"), ("/orders/", "/orders/x")],
)
async def test_P3_design_trailing_slash_is_tolerated_both_ways(sr_path: str, request_path: str) -> None:
    """Design: a trailing slash is dropped on both sides, so ``…/orders/`` and ``…/orders`` are the same scope."""
    assert_decision(await decide_sr(f"http://{H}{sr_path}", request_path), 200, "allowed")


def test_P3_one_trailing_slash_only() -> None:
    """Exactly one trailing slash is dropped; ``//`` at the end is an empty segment and refused."""
    assert canonical_segments("/orders/") == canonical_segments("/orders") == ("orders",)
    segments_refused("/orders//")


# --------------------------------------------------------------------------------------------------------------
# P4-P7: dot segments, encoded separators, bad encodings, double encoding
# --------------------------------------------------------------------------------------------------------------

P4_SR = [
    f"http://{H}/orders/../other",
    f"http://{H}/orders/../orders2",
    f"http://{H}/orders/./x",
    f"http://{H}/./orders",
    f"http://{H}/..",
    f"http://{H}/orders/..",
]


@pytest.mark.parametrize("resource", P4_SR)
async def test_P4_dot_segments_in_sr_are_refused(resource: str) -> None:
    """An sr with ``.`` or ``..`` segments is refused (401), never normalised into another entity."""
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/other"), 401, "malformed_token")


@pytest.mark.parametrize("path", ["/orders/../orders2", "/orders/./x", "/./orders", "/..", "/orders/.."])
async def test_P4_dot_segments_in_request_path_are_refused(path: str) -> None:
    """A request path with dot segments is a 403 ``malformed_request`` before any credential is read."""
    segments_refused(path)
    assert_decision(await decide_sr(f"sb://{H}/", path), 403, "malformed_request")


P5_SR = {
    "encoded-slash-dotdot": f"http://{H}/orders%2F..%2Forders2",
    "encoded-slash-lower": f"http://{H}/orders%2fx",
    "encoded-slash-upper": f"http://{H}/orders%2Fx",
    "encoded-backslash": f"http://{H}/orders%5C..%5Corders2",
    "encoded-backslash-lower": f"http://{H}/orders%5cx",
}


@pytest.mark.parametrize("resource", P5_SR.values(), ids=P5_SR.keys())
async def test_P5_encoded_slash_inside_an_sr_segment_is_refused(resource: str) -> None:
    """``%2F`` (``%252F`` in the token) inside a segment never becomes ``/``: the sr is refused (401)."""
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/orders2"), 401, "malformed_token")


@pytest.mark.parametrize("path", ["/orders%2F..%2Forders2", "/orders%2fx", "/orders%5Cx", "/orders%5c..%5corders2"])
async def test_P5_encoded_slash_inside_a_request_segment_is_refused(path: str) -> None:
    """A request segment holding ``%2F`` or ``%5C`` is a 403 ``malformed_request``."""
    segments_refused(path)
    assert_decision(await decide_sr(f"sb://{H}/", path), 403, "malformed_request")


@pytest.mark.parametrize(
    "path", ["/orders%252Fx", "/public/%252e%252e/orders", "/orders%255Cx", "/orders/%252E", "/orders/%25252e"]
)
def test_P5_double_encoded_request_segment_is_refused(path: str) -> None:
    """``%252F``, ``%252e`` or ``%255C`` (an escape left after one decoding) is refused: a twice-decoding upstream
    would read a separator or a dot segment where we read data."""
    segments_refused(path)


def test_P5_other_escapes_left_after_one_decoding_stay_data() -> None:
    """An escape of anything but a dot, a slash, a backslash or a percent sign, left after one decoding, is data."""
    assert canonical_segments("/orders%2541x") == ("orders%41x",)


P6_SR = {
    "encoded-dotdot": f"http://{H}/%2e%2e/other",
    "encoded-dotdot-upper": f"http://{H}/%2E%2E/other",
    "encoded-dotdot-inside": f"http://{H}/orders/%2e%2e/x",
    "encoded-dot": f"http://{H}/orders/%2e/x",
    "mixed-dotdot": f"http://{H}/orders/.%2e/x",
    "overlong-utf8-dots": f"http://{H}/orders/%C0%AE%C0%AE/x",
    "invalid-utf8": f"http://{H}/orders/%FF",
    "lone-surrogate-utf8": f"http://{H}/orders/%ED%A0%80",
    "encoded-nul": f"http://{H}/orders%00",
    "encoded-crlf": f"http://{H}/orders%0d%0a",
    "encoded-del": f"http://{H}/orders%7F",
    "raw-nul": f"http://{H}/orders\x00",
    "raw-crlf": f"http://{H}/orders\r\nx",
    "raw-tab": f"http://{H}/ord\ters",
    "bad-percent": f"http://{H}/orders%zz",
    "truncated-percent": f"http://{H}/orders%2",
}


@pytest.mark.parametrize("resource", P6_SR.values(), ids=P6_SR.keys())
async def test_P6_encoded_dots_bad_utf8_and_controls_in_sr_are_refused(resource: str) -> None:
    """Encoded dot segments, overlong/invalid UTF-8 (strict decoding), NUL, CR/LF and bad escapes: refused (401)."""
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/orders"), 401, "malformed_token")


P6_PATHS = {
    "encoded-dotdot": "/%2e%2e/orders2",
    "encoded-dotdot-inside": "/orders/%2e%2e/x",
    "overlong-utf8-dots": "/orders/%C0%AE%C0%AE/x",
    "invalid-utf8": "/orders/%FF",
    "encoded-nul": "/orders%00",
    "encoded-crlf": "/orders%0d%0a",
    "raw-nul": "/orders\x00",
    "raw-space": "/orders x",
    "raw-fragment": "/orders#x",
    "bad-percent": "/orders%zz",
    "empty-segment": "/orders//x",
    "not-absolute": "orders",
}


@pytest.mark.parametrize("path", P6_PATHS.values(), ids=P6_PATHS.keys())
async def test_P6_the_same_inputs_in_a_request_path_are_refused(path: str) -> None:
    """The request path goes through the same canonicaliser: each of those inputs is a 403 ``malformed_request``."""
    segments_refused(path)
    assert_decision(await decide_sr(f"sb://{H}/", path), 403, "malformed_request")


async def test_P7_sr_double_encoded_as_a_whole_is_refused() -> None:
    """An sr percent-encoded twice (``http%253A%252F%252F…``, signed over that) is not a URI after one decode: 401."""
    resource = quote_plus(f"http://{H}/orders/")
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/orders"), 401, "malformed_token")


# --------------------------------------------------------------------------------------------------------------
# P8-P11: host case, path case, schemes, ports
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sr_host", ["CONTOSO.SERVICEBUS.WINDOWS.NET", "Contoso.ServiceBus.Windows.NET"])
@pytest.mark.parametrize("request_host", [H, "CONTOSO.servicebus.WINDOWS.net"])
async def test_P8_design_host_is_case_insensitive(sr_host: str, request_host: str) -> None:
    """Design: host names compare case-insensitively, in the sr and in the request's Host."""
    assert_decision(await decide_sr(f"http://{sr_host}/orders", "/orders", host=request_host), 200, "allowed")


@pytest.mark.parametrize(
    ("sr_path", "request_path"),
    [("/ORDERS", "/orders"), ("/orders", "/ORDERS"), ("/Orders/Sub", "/orders/sub/x"), ("/ORDERS", "/$HC/Orders")],
)
@pytest.mark.parametrize(
    ("key_name", "key"), [(ROOT, ROOT_PRIMARY), (ORDERS_SEND, ORDERS_SEND_KEY)], ids=["namespace-rule", "entity-rule"]
)
async def test_P9_design_path_is_case_insensitive(sr_path: str, request_path: str, key_name: str, key: str) -> None:
    """Design: entity names (and so path segments) compare case-insensitively, as ARM names do."""
    decision = await decide_sr(f"sb://{H}{sr_path}", request_path, key_name=key_name, key=key)
    assert_decision(decision, 200, "allowed")
    assert decision.entity == "orders"


def test_P9_case_folding_is_ascii_only() -> None:
    """Only ASCII letters fold: the Kelvin sign (U+212A) and other non-ASCII letters keep their identity."""
    assert canonical_segments("/%E2%84%AAiosk") == ("\u212aiosk",)
    assert canonical_segments("/%E2%84%AAiosk") != canonical_segments("/kiosk")
    assert canonical_segments("/%CE%A3") != canonical_segments("/%CF%83")  # capital and small sigma


@pytest.mark.parametrize("scheme", ["sb", "http", "https", "ws", "wss", "HTTP", "Sb", "WSS"])
async def test_P10_sb_http_https_ws_wss_are_the_same_resource(scheme: str) -> None:
    """sb, http, https, ws and wss (any case) name the same resource: Relay normalises them all to http."""
    assert parse_sr(f"{scheme}://{H}/orders") == ResourcePath(H, ("orders",))
    assert_decision(await decide_sr(f"{scheme}://{H}/orders", "/orders"), 200, "allowed")


P10_REFUSED = {
    "amqps": f"amqps://{H}/orders",
    "file": f"file://{H}/orders",
    "javascript": "javascript:alert(1)//",
    "ftp": f"ftp://{H}/orders",
    "no-scheme-authority": f"//{H}/orders",
    "no-scheme": f"{H}/orders",
    "single-slash": f"http:/{H}/orders",
    "no-slashes": f"http:{H}/orders",
    "scheme-with-space": f"http ://{H}/orders",
    "empty-host": "http:///orders",
    "empty": "",
}


@pytest.mark.parametrize("resource", P10_REFUSED.values(), ids=P10_REFUSED.keys())
def test_P10_other_schemes_and_scheme_less_sr_are_refused(resource: str) -> None:
    """amqps, file, javascript, a scheme-less ``//host/hc`` and other shapes are not a Relay resource: refused."""
    assert sr_refusal(resource) == "malformed_token"


@pytest.mark.parametrize("resource", ["amqps", "file", "no-scheme-authority"])
async def test_P10_other_schemes_are_401_through_the_service(resource: str) -> None:
    """Through the service, a correctly signed token with such an sr is a 401 ``malformed_token``."""
    assert_decision(await decide_sr(P10_REFUSED[resource], "/orders"), 401, "malformed_token")


@pytest.mark.parametrize("port", ["443", "80", "9354", "5671", "65535", "1"])
async def test_P11_valid_ports_are_dropped(port: str) -> None:
    """Any valid port in sr is dropped (Relay sets Port = -1), so ``:443``, ``:80``, ``:9354`` name the same host."""
    assert parse_sr(f"https://{H}:{port}/orders") == ResourcePath(H, ("orders",))
    assert_decision(await decide_sr(f"https://{H}:{port}/orders", "/orders"), 200, "allowed")


@pytest.mark.parametrize("port", ["0", "65536", "", "-1", "+443", "443a", "99999", "0x1bb", "443:443", "١٢"])
def test_P11_invalid_ports_are_refused(port: str) -> None:
    """``:0``, ``:65536``, a bare ``:``, signs, letters, non-ASCII digits: refused."""
    assert sr_refusal(f"https://{H}:{port}/orders") == "malformed_token"
    with pytest.raises(ValueError):
        canonical_host(f"{H}:{port}")


@pytest.mark.parametrize("host", [f"{H}:443", f"{H}:80", f"{H}:8080"])
async def test_P11_request_host_port_is_dropped(host: str) -> None:
    """The request's Host port is dropped the same way."""
    assert_decision(await decide_sr(f"sb://{H}/orders", "/orders", host=host), 200, "allowed")


@pytest.mark.parametrize("host", [f"{H}:0", f"{H}:", f"{H}:65536", f"{H}:x"])
async def test_P11_request_host_with_bad_port_is_refused(host: str) -> None:
    """A request Host with an invalid port is a 403 ``malformed_request``."""
    assert_decision(await decide_sr(f"sb://{H}/orders", "/orders", host=host), 403, "malformed_request")


# --------------------------------------------------------------------------------------------------------------
# P12-P15: query/fragment, userinfo, hosts, backslashes and other equivalences
# --------------------------------------------------------------------------------------------------------------

P12_SR = [
    f"http://{H}/orders?x=1",
    f"http://{H}/orders#f",
    f"http://{H}/orders?",
    f"http://{H}/orders#",
    f"http://{H}?x=/orders",
    f"http://{H}/orders/?sb-hc-action=listen",
]


@pytest.mark.parametrize("resource", P12_SR)
async def test_P12_query_or_fragment_in_sr_is_refused(resource: str) -> None:
    """An sr with a query or a fragment is refused rather than stripped."""
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/orders"), 401, "malformed_token")


P13_SR = [
    f"http://evil@{H}/orders",
    f"http://{H}@evil.test/orders",
    f"http://user:pass@{H}/orders",
    f"http://@{H}/orders",
    f"http://{H}%40evil.test/orders",
]


@pytest.mark.parametrize("resource", P13_SR)
async def test_P13_userinfo_in_sr_is_refused(resource: str) -> None:
    """Userinfo (``evil@host``, ``host@evil.test``) is URL-parser confusion: refused (401)."""
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/orders"), 401, "malformed_token")


@pytest.mark.parametrize("host", [f"evil@{H}", f"{H}@evil.test"])
async def test_P13_userinfo_in_request_host_is_refused(host: str) -> None:
    """A Host header carrying userinfo is a 403 ``malformed_request``."""
    assert_decision(await decide_sr(f"sb://{H}/orders", "/orders", host=host), 403, "malformed_request")


P14_NON_ASCII = {
    "cyrillic-dze": "conto\u0455o.servicebus.windows.net",
    "full-width-dots": "contoso\u3002servicebus\u3002windows\u3002net",
    "kelvin-sign": "\u212a.servicebus.windows.net",
    "trailing-ideographic-space": f"{H}\u3000",
    "leading-nbsp": f"\u00a0{H}",
    "latin-small-dotless-i": "\u0131.servicebus.windows.net",
    "trailing-control": f"{H}\x1f",
    "leading-newline": f"\n{H}",
}


@pytest.mark.parametrize("host", P14_NON_ASCII.values(), ids=P14_NON_ASCII.keys())
def test_P14_design_non_ascii_hosts_are_refused(host: str) -> None:
    """Design: a host with any non-ASCII or control character is refused, never folded or stripped into ASCII."""
    with pytest.raises(ValueError):
        canonical_host(host)
    assert sr_refusal(f"http://{host}/orders") == "malformed_token"


@pytest.mark.parametrize("host", ["trailing-ideographic-space", "leading-nbsp", "cyrillic-dze"])
async def test_P14_non_ascii_host_in_sr_is_401_and_in_host_header_is_403(host: str) -> None:
    """Through the service: such an sr is a 401 ``malformed_token``; such a Host is a 403 ``malformed_request``."""
    spelled = P14_NON_ASCII[host]
    assert_decision(await decide_sr(f"http://{spelled}/orders", "/orders"), 401, "malformed_token")
    assert_decision(await decide_sr(f"sb://{H}/orders", "/orders", host=spelled), 403, "malformed_request")


async def test_P14_punycode_host_is_another_host() -> None:
    """A punycode ``xn--`` host is a well-formed but different host: the token does not cover the request (403)."""
    resource = "http://xn--contoso-9n1b.servicebus.windows.net/orders"
    assert parse_sr(resource).host == "xn--contoso-9n1b.servicebus.windows.net"
    assert_decision(await decide_sr(resource, "/orders"), 403, "token_scope")


@pytest.mark.parametrize(("sr_host", "request_host"), [(f"{H}.", H), (H, f"{H}."), (f"{H}.", f"{H}.:443")])
async def test_P14_design_trailing_dot_is_the_same_host(sr_host: str, request_host: str) -> None:
    """Design: the fully-qualified spelling with a trailing dot names the same host, in the sr and in Host."""
    assert_decision(await decide_sr(f"http://{sr_host}/orders", "/orders", host=request_host), 200, "allowed")


def test_P14_only_one_trailing_dot() -> None:
    """Two trailing dots are not a host name."""
    with pytest.raises(ValueError):
        canonical_host(f"{H}..")


P15_SR = {
    "raw-backslash-dotdot": f"http://{H}/orders\\..\\orders2",
    "raw-backslash": f"http://{H}/orders\\x",
    "params-then-dotdot": f"http://{H}/orders;x=1/../orders2",
}


@pytest.mark.parametrize("resource", P15_SR.values(), ids=P15_SR.keys())
async def test_P15_backslashes_and_params_with_dot_segments_are_refused(resource: str) -> None:
    """A backslash (WHATWG reads it as ``/``) or ``;params`` followed by ``..`` in sr is refused (401)."""
    assert sr_refusal(resource) == "malformed_token"
    assert_decision(await decide_sr(resource, "/orders2"), 401, "malformed_token")


@pytest.mark.parametrize(
    ("sr_path", "request_path"),
    [
        ("/orders;x=1", "/orders"),  # ;params are part of the segment, not stripped
        ("/caf%C3%A9", "/cafe%CC%81"),  # NFC vs NFD
        ("/cafe%CC%81", "/caf%C3%A9"),
        ("/%E2%84%AA", "/k"),  # Kelvin sign vs ASCII k
    ],
)
async def test_P15_params_and_unicode_normal_forms_are_not_equivalent(sr_path: str, request_path: str) -> None:
    """``;params``, NFC vs NFD ``é`` and the Kelvin sign are distinct segments: no equivalence, so 403 token_scope."""
    assert_decision(await decide_sr(f"http://{H}{sr_path}", request_path), 403, "token_scope")


async def test_P15_a_request_path_with_params_naming_another_entity_is_400_not_token_scope() -> None:
    """``/orders;x=1`` is the namespace to us but ``orders`` to a servlet-style upstream: refused before any token."""
    assert_decision(await decide_sr(f"http://{H}/orders", "/orders;x=1"), 400, "ambiguous_path")


@pytest.mark.parametrize("path", ["/orders\\..\\orders2", "/orders%5C..%5Corders2", "/orders\\x"])
async def test_P15_backslashes_in_request_path_are_refused(path: str) -> None:
    """A raw or encoded backslash in the request path is a 403 ``malformed_request``."""
    assert_decision(await decide_sr(f"sb://{H}/", path), 403, "malformed_request")


# --------------------------------------------------------------------------------------------------------------
# P16, P17: namespace-root tokens, length caps
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [f"http://{H}/", f"sb://{H}", f"https://{H}:443/"])
@pytest.mark.parametrize("path", ["/orders", "/orders2/x", "/eu/orders", "/legacy/echo", "/not-an-entity", "/"])
async def test_P16_namespace_token_with_namespace_rule_covers_every_entity(sr: str, path: str) -> None:
    """A namespace-root sr signed by a namespace rule allows every entity of the namespace."""
    assert_decision(await decide_sr(sr, path), 200, "allowed")


@pytest.mark.parametrize("path", ["/orders", "/orders2"])
async def test_P16_namespace_token_with_entity_rule_is_refused(path: str) -> None:
    """A namespace-root sr signed by an entity rule is refused: the rule is not on the sr entity or a parent (S14)."""
    decision = await decide_sr(f"http://{H}/", path, key_name=ORDERS_SEND, key=ORDERS_SEND_KEY)
    assert_decision(decision, 403, "rule_scope")


async def test_P17_64_KiB_sr_is_refused_by_the_length_cap() -> None:
    """A 64 KiB sr is refused before any parsing: 401 ``token_too_large``."""
    resource = f"http://{H}/orders/" + "a" * (64 * 1024)
    assert_decision(await decide_sr(resource, "/orders"), 401, "token_too_large")


async def test_P17_request_target_over_the_cap_is_refused() -> None:
    """A request target longer than MAX_TARGET_LENGTH is a 403 ``malformed_request``."""
    path = "/orders/" + "a" * MAX_TARGET_LENGTH
    assert_decision(await decide_sr(f"sb://{H}/", path), 403, "malformed_request")


# --------------------------------------------------------------------------------------------------------------
# Canonicaliser properties and entity resolution
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/", ()),
        ("/orders", ("orders",)),
        ("/$hc/orders", ("orders",)),
        ("/$HC/Orders/", ("orders",)),
        ("/orders/$hc", ("orders", "$hc")),  # only a leading $hc is the WebSocket prefix
        ("/%24hc/orders", ("orders",)),
        ("/eu/orders/x%20y", ("eu", "orders", "x y")),
        ("/a%2Bb/c+d", ("a+b", "c+d")),
    ],
)
def test_canonical_segments(path: str, segments: tuple[str, ...]) -> None:
    """Leading ``$hc`` and one trailing slash dropped; each segment decoded once and lower-cased."""
    assert canonical_segments(path) == segments


@pytest.mark.parametrize("path", ["/orders/x", "/$hc/Orders/A%20b/", "/eu/orders", "/"])
def test_canonicalisation_is_idempotent(path: str) -> None:
    """Canonical segments re-joined as a path canonicalise to themselves (no second decode changes them)."""
    from urllib.parse import quote

    once = canonical_segments(path)
    again = canonical_segments("/" + "/".join(quote(s, safe="") for s in once))
    assert again == once


def test_split_target() -> None:
    """split_target separates path and raw query and refuses non-origin-form targets."""
    assert split_target("/orders?a=1&b") == ("/orders", "a=1&b")
    assert split_target("/orders") == ("/orders", "")
    for bad in ("", "orders", "http://h/orders", "*"):
        with pytest.raises(NotPermitted) as info:
            split_target(bad)
        assert info.value.reason == "malformed_request"


@pytest.mark.parametrize(
    ("path", "entity"),
    [
        ("/orders", "orders"),
        ("/orders/x/y", "orders"),
        ("/orders/priority", "orders/priority"),
        ("/ORDERS/Priority/x", "orders/priority"),
        ("/orders2", "orders2"),
        ("/eu/orders/x", "eu/orders"),
        ("/eu", None),
        ("/eu/orders2", None),
        ("/legacy/echo", "legacy/echo"),
        ("/legacy", None),
        ("/$hc/public", "public"),
        ("/", None),
    ],
)
def test_entity_resolution_is_the_longest_whole_segment_prefix(path: str, entity: str | None) -> None:
    """The entity is the longest configured name that is a whole-segment prefix of the path; none = namespace."""
    index = ResourceIndex(make_settings().namespaces)
    resolved = index.resolve(H, path)
    assert resolved.namespace.name == "contoso"
    assert (resolved.entity.name if resolved.entity else None) == entity


@pytest.mark.parametrize(
    ("host", "reason"),
    [("unknown.servicebus.windows.net", "unknown_namespace"), ("", "malformed_request"), ("a b", "malformed_request")],
)
def test_unknown_or_bad_host_is_403(host: str, reason: str) -> None:
    """A host no namespace serves is 403 ``unknown_namespace``; an unparsable one is ``malformed_request``."""
    with pytest.raises(NotPermitted) as info:
        ResourceIndex(make_settings().namespaces).resolve(host, "/orders")
    assert info.value.reason == reason


def test_ipv6_literal_host_is_kept_as_written() -> None:
    """A bracketed IPv6 authority keeps its brackets (never a namespace) and its port is checked."""
    assert canonical_host("[::1]:8080") == "[::1]"
    for bad in ("[::1", "[::1]x", "[::1]:0"):
        with pytest.raises(ValueError):
            canonical_host(bad)
