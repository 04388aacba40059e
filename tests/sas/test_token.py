"""SAS tokens: known-answer vectors, SDK-minted tokens, and the parsing / signature cases S1-S9, S11, S12.

Specifications for :mod:`gateway_authz.sas.token`. Each security case of ``security-cases.md`` §1B has a test
whose name carries its id; where the design makes a choice the test name says which. Known answers come from
``tests/vectors/sas_kat.json`` (vendored; see ``tests/vectors/README.md``); SDK tokens are minted at test time by
``azure-servicebus``'s own ``generate_sas_token``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import re
import string
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_to_bytes

import pytest

from gateway_authz.core.errors import AuthzError, InvalidCredential
from gateway_authz.core.model import Right
from gateway_authz.core.resources import parse_sr
from gateway_authz.core.settings import AuthorizationRule
from gateway_authz.sas.policy import CompiledPolicy
from gateway_authz.sas.token import MAX_EXPIRY, MAX_SAS_LENGTH, RuleKeys, SasToken, parse_sas, sign_sas, verify_sas
from tests._factories import (
    HOST,
    NOW,
    ORDERS_LISTEN_RULE,
    ORDERS_SEND,
    ORDERS_SEND_KEY,
    ORDERS_SEND_RULE,
    ROOT,
    ROOT_PRIMARY,
    ROOT_RULE,
    ROOT_SECONDARY,
    SEND_ONLY,
    SEND_ONLY_KEY,
    assemble,
    assert_decision,
    contoso,
    fields,
    hand_token,
    harness,
    hc,
    load_vectors,
    make_request,
    make_settings,
    mint,
    replace_field,
    sdk_token,
    signature,
    uri,
)

SKEW = 300
ALL = frozenset(Right)


def parse_refusal(value: str) -> str:
    """The reason code :func:`parse_sas` refuses ``value`` with (it must refuse it)."""
    with pytest.raises(InvalidCredential) as info:
        parse_sas(value)
    return info.value.reason


def verify(token: SasToken, *rules: AuthorizationRule, now: float = NOW, skew: int = SKEW, **kw: Any) -> Any:
    return verify_sas(token, [RuleKeys(r) for r in rules], now=now, clock_skew=skew, **kw)


def verify_refusal(token: SasToken, *rules: AuthorizationRule, now: float = NOW, **kw: Any) -> str:
    with pytest.raises(InvalidCredential) as info:
        verify(token, *rules, now=now, **kw)
    return info.value.reason


def _token_with_plus_and_slash() -> str:
    """A valid token whose base64 signature holds both ``+`` and ``/`` (so alphabet variants differ)."""
    for offset in range(1000):
        token = mint("/orders", expiry=NOW + 3600 + offset)
        sig = unquote(dict(fields(token))["sig"])
        if "+" in sig and "/" in sig:
            return token
    raise AssertionError("no such token in 1000 tries")  # pragma: no cover


VALID = mint("/orders")
BODY = VALID.removeprefix("SharedAccessSignature ")
PLUS_SLASH = _token_with_plus_and_slash()
PLUS_SLASH_SIG = unquote(dict(fields(PLUS_SLASH))["sig"])


# --------------------------------------------------------------------------------------------------------------
# Known-answer vectors (tests/vectors/sas_kat.json)
# --------------------------------------------------------------------------------------------------------------

KAT_VECTORS: list[Any] = load_vectors("sas_kat.json")["vectors"]
# Vectors whose HMAC is right but whose resource must be refused (the note in the file says why).
_RESOURCE_REFUSED = {"negative-double-encoded-sr"}


@pytest.mark.parametrize("vector", KAT_VECTORS, ids=lambda v: v["name"])
def test_kat_vector(vector: Any) -> None:
    """Every shared SAS vector: valid ones verify under the UTF-8 key at an injected now, negative ones are refused."""
    rule = AuthorizationRule(vector["keyName"], vector["key"], None, ALL)
    se = vector["se"]
    raw = dict(fields(vector["token"]))
    if "raw_sr" in vector:
        assert raw["sr"] == vector["raw_sr"]
    if "signature" in vector:
        assert unquote(raw["sig"]) == vector["signature"]
    string_to_sign = f"{raw['sr']}\n{se}".encode()
    signed_by_rule = hmac.new(vector["key"].encode(), string_to_sign, hashlib.sha256).digest()
    # The file's own claim about the HMAC, checked independently of the code under test.
    assert (signed_by_rule == base64.b64decode(unquote(raw["sig"]))) is vector["signatureValid"]

    if vector["name"] in _RESOURCE_REFUSED:
        assert RuleKeys(rule).match(string_to_sign, signed_by_rule) == "primary"  # the signature is fine...
        assert parse_refusal(vector["token"]) == "malformed_token"  # ...the resource is not a URI
        return
    token = parse_sas(vector["token"])
    assert token.raw_sr == raw["sr"] and token.raw_se == str(se) and token.expiry == se
    assert token.key_name == vector["keyName"]
    assert token.resource == parse_sr(vector["resource"])
    if vector["signatureValid"]:
        verified = verify(token, rule, now=se - 60)
        assert (verified.rule, verified.key_slot) == (rule, "primary")
        assert verify_refusal(token, rule, now=se + SKEW) == "expired"
    else:
        assert verify_refusal(token, rule, now=se - 60) == "bad_signature"


@pytest.mark.parametrize(
    "vector",
    [v for v in KAT_VECTORS if v["name"].startswith("sdk-python")],
    ids=lambda v: v["name"],
)
def test_kat_sdk_vectors_are_reproduced_by_sign_sas(vector: Any) -> None:
    """``sign_sas`` reproduces the SDK-minted vectors byte for byte."""
    assert sign_sas(vector["resource"], vector["keyName"], vector["key"], vector["se"]) == vector["token"]


# --------------------------------------------------------------------------------------------------------------
# Tokens minted at test time by the official SDK (and by hand, for the spellings other SDKs use)
# --------------------------------------------------------------------------------------------------------------

_EXPIRY = NOW + 3600
_NODE_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves unescaped


def _lowercase_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _node_token(resource: str) -> str:
    """As azure-relay-node's createRelayToken builds it: encodeURIComponent for sr and sig, skn unencoded."""
    raw_sr = quote(resource, safe=_NODE_SAFE)
    sig = quote(signature(raw_sr, str(_EXPIRY), ROOT_PRIMARY), safe=_NODE_SAFE)
    return f"SharedAccessSignature sr={raw_sr}&sig={sig}&se={_EXPIRY}&skn={ROOT}"


SPELLINGS = {
    "sdk-sb": lambda: sdk_token(f"sb://{HOST}/orders", ROOT, ROOT_PRIMARY, _EXPIRY),
    "sdk-http-trailing-slash": lambda: sdk_token(f"http://{HOST}/orders/", ROOT, ROOT_PRIMARY, _EXPIRY),
    "sdk-https": lambda: sdk_token(f"https://{HOST}/orders", ROOT, ROOT_PRIMARY, _EXPIRY),
    "sdk-https-port-443": lambda: sdk_token(f"https://{HOST}:443/orders", ROOT, ROOT_PRIMARY, _EXPIRY),
    "sdk-wss-hc-prefix": lambda: sdk_token(f"wss://{HOST}/$hc/orders", ROOT, ROOT_PRIMARY, _EXPIRY),
    "sdk-namespace-root": lambda: sdk_token(f"sb://{HOST}/", ROOT, ROOT_PRIMARY, _EXPIRY),
    "sdk-entity-rule": lambda: sdk_token(f"sb://{HOST}/orders", ORDERS_SEND, ORDERS_SEND_KEY, _EXPIRY),
    "dotnet-httputility-lowercase-hex": lambda: hand_token(
        _lowercase_escapes(quote_plus(f"http://{HOST}/orders/")), se=_EXPIRY
    ),
    "node-encodeURIComponent-port-443": lambda: _node_token(f"http://{HOST}:443/orders"),
    "sdk-secondary-key": lambda: sdk_token(f"sb://{HOST}/orders", ROOT, ROOT_SECONDARY, _EXPIRY),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_sdk_minted_token_spellings_are_accepted(spelling: str) -> None:
    """Every SDK spelling of sr (sb, http + slash, https, :443, lowercase hex, Node) allows the request."""
    token = SPELLINGS[spelling]()
    h = harness()
    decision = await h.decide(make_request("/orders", sba=token))
    assert_decision(decision, 200, "allowed")
    assert (decision.auth, decision.right) == ("sas", Right.SEND)
    assert decision.principal in (ROOT, ORDERS_SEND)
    # The same token also parses and verifies directly.
    parsed = parse_sas(token)
    assert parsed.resource.host == HOST and parsed.resource.segments in ((), ("orders",))


@pytest.mark.parametrize(
    "resource",
    [
        f"sb://{HOST}/orders",
        f"http://{HOST}/orders/",
        f"https://{HOST}:443/eu/orders",
        f"sb://{HOST}",
        f"http://{HOST}/orders/a b/~x(1)!*'",
        f"http://{HOST}/caf\u00e9",
    ],
)
@pytest.mark.parametrize("key_name", [ROOT, ORDERS_SEND, "Rule.Name_1-x"])
@pytest.mark.parametrize("expiry", [1, 1_700_000_000, MAX_EXPIRY])
def test_sign_sas_equals_sdk_generate_sas_token_byte_for_byte(resource: str, key_name: str, expiry: int) -> None:
    """``sign_sas`` output is the SDK's ``generate_sas_token`` output, byte for byte (Azure-legal key names)."""
    assert sign_sas(resource, key_name, ROOT_PRIMARY, expiry) == sdk_token(resource, key_name, ROOT_PRIMARY, expiry)


def test_sign_sas_round_trips_through_parse_and_verify() -> None:
    """What ``sign_sas`` emits, ``parse_sas`` + ``verify_sas`` accept (the CLI's tokens work against the service)."""
    token = parse_sas(sign_sas(uri("/orders"), ROOT, ROOT_PRIMARY, NOW + 60))
    assert verify(token, ROOT_RULE).key_slot == "primary"


# --------------------------------------------------------------------------------------------------------------
# S1-S8: parsing and format
# --------------------------------------------------------------------------------------------------------------

S1_CASES = {
    "lowercase-scheme-word": "sharedaccesssignature " + BODY,
    "uppercase-scheme-word": "SHAREDACCESSSIGNATURE " + BODY,
    "tab-separator": "SharedAccessSignature\t" + BODY,
    "two-spaces": "SharedAccessSignature  " + BODY,
    "leading-space": " SharedAccessSignature " + BODY,
    "newline-separator": "SharedAccessSignature\n" + BODY,
    "crlf-separator": "SharedAccessSignature\r\n" + BODY,
    "scheme-word-alone": "SharedAccessSignature",
    "scheme-word-and-space-only": "SharedAccessSignature ",
    "no-separator": "SharedAccessSignature" + BODY,
    "trailing-space": VALID + " ",
    "trailing-newline": VALID + "\n",
    "space-inside-fields": VALID.replace("&sig=", "& sig="),
    "nbsp-separator": "SharedAccessSignature\u00a0" + BODY,
    "bearer-word": "Bearer " + BODY,
}


@pytest.mark.parametrize("value", S1_CASES.values(), ids=S1_CASES.keys())
def test_S1_scheme_word_is_exactly_SharedAccessSignature_and_one_space(value: str) -> None:
    """Only ``SharedAccessSignature`` + one space + fields parses: case, tabs, extra spaces, newlines refused."""
    assert parse_refusal(value) == "malformed_token"


@pytest.mark.parametrize("value", S1_CASES.values(), ids=S1_CASES.keys())
async def test_S1_scheme_word_variants_are_denied_401_by_the_service(value: str) -> None:
    """Through the service, a token with a wrong scheme word is a 401, never an allow."""
    decision = await harness().decide(make_request("/orders", sba=value))
    assert decision.status == 401 and not decision.allowed
    assert decision.reason in ("malformed_token", "unsupported_credential")


def _drop(name: str) -> str:
    return assemble((n, v) for n, v in fields(VALID) if n != name)


S2_CASES = {
    **{f"missing-{name}": _drop(name) for name in ("sr", "sig", "se", "skn")},
    **{f"empty-{name}": replace_field(VALID, name, "") for name in ("sr", "sig", "se", "skn")},
    "sr-only": assemble([fields(VALID)[0]]),
    "trailing-ampersand": VALID + "&",
    "leading-ampersand": "SharedAccessSignature &" + BODY,
    "double-ampersand": VALID.replace("&sig=", "&&sig="),
    "field-without-equals": VALID + "&foo",
    "equals-value-without-name": VALID + "&=value",
    "bare-equals": VALID + "&=",
}


@pytest.mark.parametrize("value", S2_CASES.values(), ids=S2_CASES.keys())
def test_S2_missing_or_empty_fields_are_refused(value: str) -> None:
    """sr, sig, se, skn are each required and non-empty; stray ``&``, ``&&``, ``=value``, ``foo`` refused."""
    assert parse_refusal(value) == "malformed_token"


async def test_S2_missing_field_is_401_through_the_service() -> None:
    """A token missing its signature is a 401 ``malformed_token``."""
    assert_decision(await harness().decide(make_request("/orders", sba=_drop("sig"))), 401, "malformed_token")


_OTHER = dict(fields(mint("/orders2", expiry=NOW + 7200)))
S3_CASES = {
    "sr-twice": VALID + f"&sr={_OTHER['sr']}",
    "sr-twice-same-value": VALID + f"&sr={dict(fields(VALID))['sr']}",
    "se-twice": VALID + "&se=9999999999",
    "sig-twice": VALID + f"&sig={_OTHER['sig']}",
    "skn-twice": VALID + f"&skn={SEND_ONLY}",
    "sr-and-SR": VALID + f"&SR={_OTHER['sr']}",
    "Sig-and-sig": VALID + f"&Sig={_OTHER['sig']}",
    "duplicate-first": f"SharedAccessSignature sr={_OTHER['sr']}&" + BODY,
}


@pytest.mark.parametrize("value", S3_CASES.values(), ids=S3_CASES.keys())
def test_S3_duplicate_fields_are_refused(value: str) -> None:
    """A field given twice (or in two cases) is refused, so signature and scope checks cannot read different copies."""
    assert parse_refusal(value) == "malformed_token"


@pytest.mark.parametrize("value", S3_CASES.values(), ids=S3_CASES.keys())
async def test_S3_duplicate_fields_are_401_through_the_service(value: str) -> None:
    """Through the service a duplicated field is a 401, whichever copy would have verified."""
    assert_decision(await harness().decide(make_request("/orders", sba=value)), 401, "malformed_token")


S4_CASES = {
    "SR": VALID.replace("SharedAccessSignature sr=", "SharedAccessSignature SR="),
    "Sig": VALID.replace("&sig=", "&Sig="),
    "SE": VALID.replace("&se=", "&SE="),
    "SKN": VALID.replace("&skn=", "&SKN="),
    "extra-foo": VALID + "&foo=bar",
    "extra-st": VALID + "&st=1699990000",
    "extra-sp": VALID + "&sp=rwdl",
    "extra-sv": VALID + "&sv=2020-01-01",
    "extra-skn-variant": VALID + "&sk=RootManageSharedAccessKey",
}


@pytest.mark.parametrize("value", S4_CASES.values(), ids=S4_CASES.keys())
def test_S4_design_field_names_are_exact_lowercase_and_unknown_fields_are_refused(value: str) -> None:
    """Design: field names are exact lower case (SR, Sig refused); unknown fields (foo, st, sp) are refused."""
    assert parse_refusal(value) == "malformed_token"


def test_S4_fields_in_any_order_are_accepted() -> None:
    """Field order is not significant (the docs' order sig, se, skn, sr parses like the SDKs' sr, sig, se, skn)."""
    raw = dict(fields(VALID))
    reordered = assemble([("sig", raw["sig"]), ("se", raw["se"]), ("skn", raw["skn"]), ("sr", raw["sr"])])
    assert verify(parse_sas(reordered), ROOT_RULE).key_slot == "primary"


S5_REFUSED = {
    "semicolon-separators": "SharedAccessSignature " + BODY.replace("&", ";"),
    "semicolon-and-ampersand": VALID.replace("&skn=", ";skn="),
    "raw-ampersand-in-sr": VALID.replace("%2Forders", "%2Forders&x"),
    "raw-space-in-sr": VALID.replace("%2Forders", "%2Ford ers"),
    "encoded-ampersand-separators": "SharedAccessSignature " + BODY.replace("&", "%26"),
}


@pytest.mark.parametrize("value", S5_REFUSED.values(), ids=S5_REFUSED.keys())
def test_S5_only_ampersand_separates_fields(value: str) -> None:
    """``;`` and ``%26`` do not separate fields; a raw ``&`` or space inside sr breaks the token."""
    assert parse_refusal(value) == "malformed_token"


def test_S5_encoded_ampersand_inside_sr_stays_data() -> None:
    """``%26`` inside sr decodes to a literal ``&`` in a path segment; it never smuggles a second skn."""
    token = parse_sas(sdk_token(uri("/orders&skn=SendOnly"), ROOT, ROOT_PRIMARY, NOW + 60))
    assert token.resource.segments == ("orders&skn=sendonly",)
    assert token.key_name == ROOT


def test_S5_plus_in_sr_is_a_literal_plus_and_a_space_must_be_escaped_twice() -> None:
    """Design: sr is percent-decoded, not form-decoded: ``+`` stays ``+``; the URI itself must escape a space."""
    assert parse_sas(hand_token(quote(uri("/a+b"), safe="+"))).resource.segments == ("a+b",)
    assert parse_sas(hand_token(quote(uri("/a%20b"), safe=""))).resource.segments == ("a b",)
    assert parse_refusal(hand_token(quote(uri("/a b"), safe=""))) == "malformed_token"


S6_REFUSED = {
    "negative": "-1",
    "plus-sign": "+1700000000",
    "leading-space-encoded": "%201700000000",
    "fraction": "1700000000.5",
    "exponent": "1e10",
    "leading-zeros": "0001700000000",
    "hex": "0x65",
    "percent-encoded-digit": "%31700000000",
    "arabic-indic-raw": "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
    "arabic-indic-encoded": quote("\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660"),
    "full-width-raw": "\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10",
    "underscores": "1_700_000_000",
    "twenty-digits": "99999999999999999999",
    "beyond-year-9999": str(MAX_EXPIRY + 1),
    "two-to-the-62": str(2**62),
    "trailing-newline-encoded": "1700000000%0A",
    "empty": "",
}


@pytest.mark.parametrize("value", S6_REFUSED.values(), ids=S6_REFUSED.keys())
def test_S6_se_is_ascii_digits_only_and_bounded(value: str) -> None:
    """se is ``0|[1-9][0-9]{0,11}`` in ASCII, at most year 9999: no sign, space, _, non-ASCII digit, float."""
    assert parse_refusal(replace_field(VALID, "se", value)) == "malformed_token"


def test_S6_five_thousand_digit_se_is_refused_by_the_length_cap() -> None:
    """A 5000-digit se never reaches ``int()``: the token is over the length cap."""
    assert parse_refusal(replace_field(VALID, "se", "9" * 5000)) == "token_too_large"


@pytest.mark.parametrize("value", ["0", "1", "1700000000", str(MAX_EXPIRY)])
def test_S6_plain_se_values_parse(value: str) -> None:
    """Plain ASCII se values from 0 up to the year-9999 bound parse, and the raw text is what gets signed."""
    token = parse_sas(hand_token(quote_plus(uri("/orders")), se=value))
    assert (token.raw_se, token.expiry) == (value, int(value))
    assert token.string_to_sign.endswith(f"\n{value}".encode())


S7_CASES = {
    "now-skew-1": (NOW - SKEW - 1, "expired"),
    "now-skew (boundary: expired)": (NOW - SKEW, "expired"),
    "now-skew+1": (NOW - SKEW + 1, None),
    "now (within skew)": (NOW, None),
    "now+1": (NOW + 1, None),
    "year-9999 (no not-before)": (MAX_EXPIRY, None),
    "zero": (0, "expired"),
}


@pytest.mark.parametrize(("se", "refusal"), S7_CASES.values(), ids=S7_CASES.keys())
def test_S7_expiry_window_is_se_plus_clock_skew_exclusive(se: int, refusal: str | None) -> None:
    """A token is valid while ``now < se + clockSkew``; a far-future se is valid at once (SAS has no not-before)."""
    token = parse_sas(hand_token(quote_plus(uri("/orders")), se=se))
    if refusal is None:
        assert verify(token, ROOT_RULE).key_slot == "primary"
    else:
        assert verify_refusal(token, ROOT_RULE) == refusal


def test_S7_design_se_beyond_year_9999_is_refused_as_malformed() -> None:
    """Design: se above 253402300799 (e.g. 2**62) is refused at parse time, before any date arithmetic."""
    assert parse_refusal(hand_token(quote_plus(uri("/orders")), se=2**62)) == "malformed_token"


@pytest.mark.parametrize(("ahead", "refusal"), [(3600 + SKEW, None), (3601 + SKEW, "lifetime_too_long")])
def test_S7_max_token_lifetime_caps_far_future_tokens(ahead: int, refusal: str | None) -> None:
    """With ``sas.maxTokenLifetimeSeconds`` set, se further ahead than that (plus the skew) is refused."""
    token = parse_sas(hand_token(quote_plus(uri("/orders")), se=NOW + ahead))
    if refusal is None:
        assert verify(token, ROOT_RULE, max_lifetime=3600).key_slot == "primary"
    else:
        assert verify_refusal(token, ROOT_RULE, max_lifetime=3600) == refusal


def test_S7_expiry_is_checked_only_after_the_signature() -> None:
    """An expired token with a bad signature is ``bad_signature``: expiry is never reported for a forgery."""
    token = parse_sas(hand_token(quote_plus(uri("/orders")), key="not-the-key", se=NOW - 10_000))
    assert verify_refusal(token, ROOT_RULE) == "bad_signature"


async def test_S7_expired_token_is_401_expired_through_the_service() -> None:
    """Through the service an expired, correctly signed token is a 401 ``expired``."""
    token = mint("/orders", expiry=NOW - SKEW)
    assert_decision(await harness().decide(make_request("/orders", sba=token)), 401, "expired")


def _with_sig(raw_sig: str) -> str:
    return replace_field(PLUS_SLASH, "sig", raw_sig)


_B64_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"


def _non_canonical(sig: str) -> str:
    """The same 32 bytes with one of the two unused low bits of the last base64 character set."""
    last = _B64_ALPHABET.index(sig[42])
    return sig[:42] + _B64_ALPHABET[last ^ 1] + "="


S8_REFUSED = {
    "no-padding-43-chars": quote(PLUS_SLASH_SIG.rstrip("="), safe=""),
    "url-safe-alphabet": quote(PLUS_SLASH_SIG.replace("+", "-").replace("/", "_"), safe=""),
    "form-decoded-plus-as-space": quote(PLUS_SLASH_SIG.replace("+", " "), safe=""),
    "whitespace-inside": quote(PLUS_SLASH_SIG[:10] + " " + PLUS_SLASH_SIG[10:], safe=""),
    "newline-inside": quote(PLUS_SLASH_SIG[:10] + "\n" + PLUS_SLASH_SIG[10:], safe=""),
    "31-bytes": quote(base64.b64encode(base64.b64decode(PLUS_SLASH_SIG)[:31]).decode(), safe=""),
    "33-bytes": quote(base64.b64encode(base64.b64decode(PLUS_SLASH_SIG) + b"\0").decode(), safe=""),
    "non-ascii-raw": "\u00e9" + quote(PLUS_SLASH_SIG[1:], safe=""),
    "non-ascii-encoded": "%C3%A9" + quote(PLUS_SLASH_SIG[1:], safe=""),
    "hex-digest": base64.b64decode(PLUS_SLASH_SIG).hex(),
    "double-encoded": quote(quote(PLUS_SLASH_SIG, safe=""), safe=""),
    "extra-padding": quote(PLUS_SLASH_SIG + "=", safe=""),
    "non-canonical-trailing-bits": quote(_non_canonical(PLUS_SLASH_SIG), safe=""),
}


@pytest.mark.parametrize("raw_sig", S8_REFUSED.values(), ids=S8_REFUSED.keys())
def test_S8_sig_is_strict_padded_standard_base64_of_exactly_32_bytes(raw_sig: str) -> None:
    """sig must percent-decode to canonical, padded, standard base64 of exactly 32 bytes; nothing else."""
    assert parse_refusal(_with_sig(raw_sig)) == "malformed_token"


@pytest.mark.parametrize(
    "raw_sig",
    [
        quote(PLUS_SLASH_SIG, safe=""),  # %2B, %2F, %3D as the SDKs send them
        _lowercase_escapes(quote(PLUS_SLASH_SIG, safe="")),
        PLUS_SLASH_SIG,  # unencoded: '+' is a literal plus (no form decoding), '/' and '=' as themselves
    ],
    ids=["uppercase-escapes", "lowercase-escapes", "raw-base64"],
)
def test_S8_sig_percent_escapes_decode_case_insensitively_and_raw_plus_is_a_plus(raw_sig: str) -> None:
    """Design: sig is percent-decoded (``%2b`` = ``%2B``), not form-decoded: a raw ``+`` is a plus."""
    assert verify(parse_sas(_with_sig(raw_sig)), ROOT_RULE).key_slot == "primary"


# --------------------------------------------------------------------------------------------------------------
# S9: signature comparison, and the Wycheproof HMAC-SHA256 corpus through RuleKeys' primitive
# --------------------------------------------------------------------------------------------------------------

_MESSAGE = b"sb%3A%2F%2Fcontoso.servicebus.windows.net%2Forders\n1800003600"
_GOOD_TAG = hmac.new(ROOT_PRIMARY.encode(), _MESSAGE, hashlib.sha256).digest()


def test_S9_comparator_is_hmac_compare_digest_on_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """RuleKeys.match compares with ``hmac.compare_digest`` and only ever hands it two 32-byte ``bytes``."""
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    keys = RuleKeys(ROOT_RULE)
    assert keys.match(_MESSAGE, bytes(32)) is None
    assert keys.match(_MESSAGE, _GOOD_TAG) == "primary"
    assert calls, "RuleKeys.match did not call hmac.compare_digest"
    for a, b in calls:
        assert type(a) is bytes and type(b) is bytes
        assert len(a) == 32


def _flip(tag: bytes, index: int, bit: int = 0) -> bytes:
    changed = bytearray(tag)
    changed[index] ^= 1 << bit
    return bytes(changed)


S9_TAGS = {
    "first-byte-low-bit": _flip(_GOOD_TAG, 0),
    "first-byte-high-bit": _flip(_GOOD_TAG, 0, 7),
    "last-byte-low-bit": _flip(_GOOD_TAG, 31),
    "last-byte-high-bit": _flip(_GOOD_TAG, 31, 7),
    "all-zero": bytes(32),
    "all-ones": b"\xff" * 32,
    "truncated-16-bytes": _GOOD_TAG[:16],
    "truncated-31-bytes": _GOOD_TAG[:31],
    "extended-33-bytes": _GOOD_TAG + b"\0",
    "empty": b"",
    "secondary-key-tag-for-primary-only-rule": hmac.new(ROOT_SECONDARY.encode(), _MESSAGE, hashlib.sha256).digest(),
}


@pytest.mark.parametrize("tag", S9_TAGS.values(), ids=S9_TAGS.keys())
def test_S9_modified_zero_and_truncated_tags_are_refused(tag: bytes) -> None:
    """One flipped bit at the first or last byte, an all-zero tag and a truncated 16-byte tag never match."""
    primary_only = AuthorizationRule(ROOT, ROOT_PRIMARY, None, ALL)
    assert RuleKeys(primary_only).match(_MESSAGE, tag) is None
    assert RuleKeys(primary_only).match(_MESSAGE, _GOOD_TAG) == "primary"


@pytest.mark.parametrize("index", [0, 31])
def test_S9_flipped_signature_byte_in_a_real_token_is_bad_signature(index: int) -> None:
    """A real token whose first or last signature byte is changed is refused with ``bad_signature``."""
    sig = bytearray(base64.b64decode(PLUS_SLASH_SIG))
    sig[index] ^= 0x01
    token = parse_sas(_with_sig(quote(base64.b64encode(bytes(sig)).decode(), safe="")))
    assert verify_refusal(token, ROOT_RULE) == "bad_signature"


_WYCHEPROOF: Any = load_vectors("wycheproof/hmac_sha256_test.json")


def _wycheproof_cases(tag_bits: int) -> list[Any]:
    return [
        pytest.param(test, id=f"tc{test['tcId']}-key{group['keySize']}-tag{group['tagSize']}")
        for group in _WYCHEPROOF["testGroups"]
        if group["tagSize"] == tag_bits
        for test in group["tests"]
    ]


def _raw_key_rule_keys(key: bytes) -> RuleKeys:
    """RuleKeys over a raw byte key.

    Why an adapter: Wycheproof keys are arbitrary bytes, while a rule's key is a *string* whose UTF-8 bytes are the
    HMAC key, and most Wycheproof keys are not valid UTF-8. The adapter builds the prepared HMAC the constructor
    would build from those bytes, so the corpus runs through RuleKeys' own ``match`` (copy, update,
    ``hmac.compare_digest``). Keys that do decode as UTF-8 go through the real constructor as well.
    """
    keys = object.__new__(RuleKeys)
    keys.rule = ROOT_RULE
    keys._macs = (("primary", hmac.new(key, digestmod=hashlib.sha256)),)
    return keys


@pytest.mark.parametrize("case", _wycheproof_cases(256))
def test_S9_wycheproof_hmac_sha256_full_tags_through_rule_keys(case: Any) -> None:
    """Wycheproof HMAC-SHA256 (256-bit tags): RuleKeys.match accepts exactly the tags labelled valid."""
    key, msg, tag = (bytes.fromhex(case[k]) for k in ("key", "msg", "tag"))
    expected = "primary" if case["result"] == "valid" else None
    assert _raw_key_rule_keys(key).match(msg, tag) == expected
    try:
        key_string = key.decode("utf-8")
    except UnicodeDecodeError:
        return
    rule = AuthorizationRule("wycheproof", key_string, None, ALL)
    assert RuleKeys(rule).match(msg, tag) == expected


@pytest.mark.parametrize("case", _wycheproof_cases(128))
def test_S9_wycheproof_truncated_128_bit_tags_are_always_refused(case: Any) -> None:
    """Wycheproof 128-bit (truncated) tags, even those valid for truncated HMAC, never match a SAS rule."""
    key, msg, tag = (bytes.fromhex(case[k]) for k in ("key", "msg", "tag"))
    assert _raw_key_rule_keys(key).match(msg, tag) is None


def test_S9_wycheproof_corpus_size() -> None:
    """The full-tag corpus is the 87 cases security-cases.md §2.1 counts (the file was not swapped or cut)."""
    assert len(_wycheproof_cases(256)) == 87


# --------------------------------------------------------------------------------------------------------------
# S11, S12: key slots, rotation, key convention
# --------------------------------------------------------------------------------------------------------------


def test_S11_primary_then_secondary_key_both_verify_with_their_slot() -> None:
    """Primary and secondary keys both verify, and the slot that matched is reported."""
    for key, slot in ((ROOT_PRIMARY, "primary"), (ROOT_SECONDARY, "secondary")):
        token = parse_sas(mint("/orders", key=key))
        assert verify(token, ROOT_RULE).key_slot == slot


@pytest.mark.parametrize("secondary", ["", None], ids=["empty-string", "absent"])
def test_S11_empty_or_absent_secondary_key_is_never_an_hmac_key(secondary: str | None) -> None:
    """A token signed with the empty key ``""`` is refused when the rule's secondary key is empty or absent."""
    primary = "k" * 44
    rule = AuthorizationRule(SEND_ONLY, primary, secondary, frozenset({Right.SEND}))
    forged = parse_sas(hand_token(quote_plus(uri("/orders")), SEND_ONLY, ""))
    assert verify_refusal(forged, rule) == "bad_signature"
    assert RuleKeys(rule).match(forged.string_to_sign, forged.signature) is None
    genuine = parse_sas(hand_token(quote_plus(uri("/orders")), SEND_ONLY, primary))
    assert verify(genuine, rule).key_slot == "primary"


def test_S11_old_primary_after_regeneration_is_refused() -> None:
    """After the primary key is regenerated, tokens signed with the old primary are refused."""
    token = parse_sas(mint("/orders"))
    regenerated = AuthorizationRule(ROOT, "n" * 44, ROOT_SECONDARY, ALL)
    assert verify_refusal(token, regenerated) == "bad_signature"


def test_S11_rotation_old_primary_as_new_secondary_keeps_working() -> None:
    """Azure's rotation (primary copied to secondary, new primary) keeps old tokens valid via the secondary slot."""
    token = parse_sas(mint("/orders"))
    rotated = AuthorizationRule(ROOT, "n" * 44, ROOT_PRIMARY, ALL)
    assert verify(token, rotated).key_slot == "secondary"


async def test_S11_secondary_key_allow_is_audited_with_key_slot_secondary() -> None:
    """Through the service a secondary-key token is allowed and its audit line says ``key_slot: secondary``."""
    h = harness()
    decision = await h.decide(make_request("/orders", sba=mint("/orders", key=ROOT_SECONDARY)))
    assert_decision(decision, 200, "allowed")
    (event,) = h.events()
    assert (event["key_name"], event["key_slot"]) == (ROOT, "secondary")
    slots = h.metrics.registry.get_sample_value(
        "gateway_authz_sas_key_slot_total", {"namespace": "contoso", "key_name": ROOT, "slot": "secondary"}
    )
    assert slots == 1


async def test_S11_rule_removed_from_config_is_unknown_key_name() -> None:
    """A rule that is no longer configured (the 'disabled rule' case) refuses even a correctly signed token."""
    without_send_only = contoso(rules=(ROOT_RULE,), entities=(hc("orders", ORDERS_SEND_RULE, ORDERS_LISTEN_RULE),))
    h = harness(make_settings(namespaces=(without_send_only,)))
    token = mint("/orders", SEND_ONLY, SEND_ONLY_KEY)
    assert_decision(await h.decide(make_request("/orders", sba=token)), 401, "unknown_key_name")


def test_S12_iot_key_convention_signature_is_refused() -> None:
    """A token signed IoT-style (HMAC keyed with the base64-*decoded* key) does not verify for a Relay rule."""
    raw_sr = quote_plus(uri("/orders"))
    iot = hand_token(raw_sr, ROOT, base64.b64decode(ROOT_PRIMARY))
    assert verify_refusal(parse_sas(iot), ROOT_RULE) == "bad_signature"
    relay = hand_token(raw_sr, ROOT, ROOT_PRIMARY)
    assert verify(parse_sas(relay), ROOT_RULE).key_slot == "primary"


def test_S12_escape_case_of_sr_is_part_of_what_is_signed() -> None:
    """The HMAC covers sr exactly as sent: a signature over ``%2f`` does not verify a token spelling ``%2F``."""
    upper = quote_plus(uri("/orders"))
    lower = _lowercase_escapes(upper)
    sig_over_lower = quote(signature(lower, str(NOW + 60), ROOT_PRIMARY), safe="")
    token = f"SharedAccessSignature sr={upper}&sig={sig_over_lower}&se={NOW + 60}&skn={ROOT}"
    assert verify_refusal(parse_sas(token), ROOT_RULE) == "bad_signature"


# --------------------------------------------------------------------------------------------------------------
# Length caps and other parser properties
# --------------------------------------------------------------------------------------------------------------


def test_token_over_the_length_cap_is_refused_before_parsing() -> None:
    """A token longer than MAX_SAS_LENGTH is ``token_too_large`` whatever it holds."""
    long_sr = quote_plus(uri("/orders/" + "a" * MAX_SAS_LENGTH))
    assert parse_refusal(hand_token(long_sr)) == "token_too_large"


def test_verify_with_no_candidate_rules_is_unknown_key_name() -> None:
    """With no rule of that name in the token's scope, verification says ``unknown_key_name``."""
    assert verify_refusal(parse_sas(VALID)) == "unknown_key_name"


def test_verify_tries_each_candidate_rule_in_turn() -> None:
    """An entity rule and a namespace rule of the same name are both tried; the one whose key signed wins."""
    entity_rule = AuthorizationRule(ROOT, "e" * 44, None, frozenset({Right.SEND}))
    verified = verify(parse_sas(VALID), entity_rule, ROOT_RULE)
    assert verified.rule is ROOT_RULE


# --------------------------------------------------------------------------------------------------------------
# Every single-byte change to a valid token (issue 7's property, run exhaustively rather than sampled)
# --------------------------------------------------------------------------------------------------------------

_REPLACEMENTS = [chr(c) for c in range(0x20, 0x7F)] + ["\t", "\n", "\x00", "\x7f", "\u00e9", "\u0661"]


def _escape_case_twins(token: str) -> set[tuple[int, str]]:
    """(position, byte) pairs that only change the letter case of a ``%XX`` escape inside sig or skn.

    Those two fields are percent-decoded before use (and are not part of the string to sign), so ``%2F`` and
    ``%2f`` are the same token; inside sr the escape case is signed and every change must fail.
    """
    twins: set[tuple[int, str]] = set()
    for match in re.finditer(r"[&\s](sig|skn)=([^&]*)", token):
        start = match.start(2)
        for escape in re.finditer(r"%[0-9A-Fa-f]{2}", match.group(2)):
            for offset in (1, 2):
                i = start + escape.start() + offset
                if token[i].isalpha():
                    twins.add((i, token[i].swapcase()))
    return twins


def test_any_single_byte_change_to_a_valid_token_is_refused() -> None:
    """Every one-character substitution in a valid token is refused, except the hex case of a sig/skn escape."""
    policy = CompiledPolicy(make_settings())
    resolved = policy.resolve(HOST, "/orders")
    rights = (Right.SEND,)
    assert policy.authorize_sas(parse_sas(PLUS_SLASH), resolved, rights, now=NOW).key_slot == "primary"
    twins = _escape_case_twins(PLUS_SLASH)
    assert twins, "the fixture token should have escapes in its signature"
    accepted = []
    for i, original in enumerate(PLUS_SLASH):
        for replacement in _REPLACEMENTS:
            if replacement == original:
                continue
            mutated = PLUS_SLASH[:i] + replacement + PLUS_SLASH[i + 1 :]
            try:
                policy.authorize_sas(parse_sas(mutated), resolved, rights, now=NOW)
            except AuthzError:
                continue
            accepted.append((i, replacement))
    assert set(accepted) == twins


# --------------------------------------------------------------------------------------------------------------
# The fast paths of parse_sas (fields in SDK order, the common sig escapes, sr already seen) against the plain
# parser they stand in for: the same token, or the same refusal with the same detail, for every input.
# --------------------------------------------------------------------------------------------------------------


def _reference_parse_sas(value: str) -> tuple[str, str, Any, bytes, int, str]:
    """The straightforward parser (split into a map, decode every field, canonicalise sr), as it was written first."""
    if len(value) > MAX_SAS_LENGTH:
        raise InvalidCredential("token_too_large", f"SAS token longer than {MAX_SAS_LENGTH} characters")
    if not value.startswith("SharedAccessSignature "):
        raise InvalidCredential("malformed_token", "not a SharedAccessSignature token")
    body = value[len("SharedAccessSignature ") :]
    if not re.fullmatch(r"[\x21-\x7e]+", body):
        raise InvalidCredential("malformed_token", "token holds whitespace, control or non-ASCII characters")
    found: dict[str, str] = {}
    for part in body.split("&"):
        name, sep, field_value = part.partition("=")
        if not sep or not field_value:
            raise InvalidCredential("malformed_token", "empty field or field without a value")
        if name not in ("sr", "sig", "se", "skn"):
            raise InvalidCredential("malformed_token", "unknown field")
        if name in found:
            raise InvalidCredential("malformed_token", "repeated field")
        found[name] = field_value
    if len(found) != 4:
        raise InvalidCredential("malformed_token", "missing field")
    raw_se = found["se"]
    if not re.fullmatch(r"0|[1-9][0-9]{0,11}", raw_se) or int(raw_se) > MAX_EXPIRY:
        raise InvalidCredential("malformed_token", "se is not a plain non-negative number of seconds")
    try:
        sig_text = unquote_to_bytes(found["sig"]).decode("ascii")
        key_name = unquote_to_bytes(found["skn"]).decode("utf-8")
        decoded_sr = unquote_to_bytes(found["sr"]).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidCredential("malformed_token", "field is not valid UTF-8 after percent-decoding") from None
    if not re.fullmatch(r"[A-Za-z0-9+/]{43}=", sig_text):
        raise InvalidCredential("malformed_token", "sig is not a base64 HMAC-SHA256")
    if not 0 < len(key_name) <= 256:
        raise InvalidCredential("malformed_token", "skn is empty or too long")
    try:
        sig = base64.b64decode(sig_text, validate=True)
    except binascii.Error:
        raise InvalidCredential("malformed_token", "sig is not base64") from None
    if base64.b64encode(sig) != sig_text.encode():
        raise InvalidCredential("malformed_token", "sig is not canonical base64")
    return found["sr"], raw_se, parse_sr(decoded_sr), sig, int(raw_se), key_name


def _outcome(parse: Any, value: str) -> tuple[object, ...]:
    try:
        token = parse(value)
    except InvalidCredential as error:
        return ("refused", error.reason, error.detail)
    if isinstance(token, SasToken):
        token = (token.raw_sr, token.raw_se, token.resource, token.signature, token.expiry, token.key_name)
    return ("parsed", *token)


def _sig_spellings(sig: str) -> list[str]:
    """One base64 signature spelled every way a client or an attacker might percent-encode it."""
    upper = quote(sig, safe="")
    return [
        upper,
        sig,
        _lowercase_escapes(upper),
        upper.replace("%2F", "%2f", 1),
        "".join(f"%{ord(c):02X}" for c in sig),  # every character escaped, letters too
        upper.replace("%", "%25", 1),  # an escaped percent sign: decodes to "%2B…", not base64
        upper + "%",
        "%" + upper,
        upper.replace("%2B", "%2", 1) if "%2B" in upper else upper[:-3] + "%3",
        upper[:-3] + "%C3%A9",  # non-ASCII after decoding
        upper[:-3] + "%FF",  # not UTF-8 at all
        upper[:-3],  # unpadded
        upper[:-3] + "%3D%3D",
        quote(_non_canonical(sig), safe=""),  # unused low bits set
    ]


_SDK_ORDER = ("sr", "sig", "se", "skn")


def _differential_corpus() -> list[str]:
    seed = mint("/orders")
    base = dict(fields(seed))
    plus_slash = dict(fields(PLUS_SLASH))
    values = [seed, PLUS_SLASH]
    for source in (base, plus_slash):
        for raw_sig in _sig_spellings(unquote(source["sig"])):
            values.append(assemble((n, raw_sig if n == "sig" else source[n]) for n in _SDK_ORDER))
    for raw_sr in (
        base["sr"],
        _lowercase_escapes(base["sr"]),
        base["sr"] + "%2F",
        base["sr"] + "%2F..",
        base["sr"] + "%FF",  # invalid UTF-8: refused, and never remembered
        base["sr"] + "%2Fx%3Fq",
        quote(f"ftp://{HOST}/orders", safe=""),
        "sb://" + HOST + "/orders",  # unencoded
    ):
        values.append(assemble((n, raw_sr if n == "sr" else base[n]) for n in _SDK_ORDER))
        # the same sr a second time, now with a broken sig or skn: the remembered sr must change nothing
        values.append(assemble((n, {"sr": raw_sr, "sig": "%FF" + base["sig"][3:]}.get(n, base[n])) for n in _SDK_ORDER))
        values.append(assemble((n, {"sr": raw_sr, "skn": "%C3"}.get(n, base[n])) for n in _SDK_ORDER))
    for raw_skn in ("Root%20Manage", "%52oot", "r" * 257, "%", "a%2", "%C3%A9"):
        values.append(assemble((n, raw_skn if n == "skn" else base[n]) for n in _SDK_ORDER))
    for raw_se in ("0", "00", "1e9", "-1", str(MAX_EXPIRY), str(MAX_EXPIRY + 1), "9" * 13, "%31"):
        values.append(assemble((n, raw_se if n == "se" else base[n]) for n in _SDK_ORDER))
    for order in itertools.permutations(_SDK_ORDER):
        values.append(assemble((n, base[n]) for n in order))
    in_order = [(n, base[n]) for n in _SDK_ORDER]
    values += [
        assemble(in_order[:3]),
        assemble([*in_order, ("se", base["se"])]),
        assemble([*in_order, ("x", "1")]),
        assemble([*in_order[:1], ("sr", base["sr"]), *in_order[1:]]),
        assemble([("SR", base["sr"]), *in_order[1:]]),
        assemble([(n, v + "=" if n == "sr" else v) for n, v in in_order]),
        assemble([(n, "" if n == "skn" else v) for n, v in in_order]),
        seed + "&",
        "&" + seed,
        seed.replace("&sig=", "&&sig="),
        seed.replace("&sig=", "&sig"),
        seed.replace(" ", "  "),
        seed.lower(),
        seed + " ",
        seed + "\u00e9",
    ]
    return values


def test_parse_sas_fast_paths_give_exactly_what_the_plain_parser_gives() -> None:
    """Same token or same refusal (reason and detail) as the plain parser, twice over: the second pass finds every
    sr already remembered."""
    corpus = _differential_corpus()
    for _ in range(2):
        for value in corpus:
            assert _outcome(parse_sas, value) == _outcome(_reference_parse_sas, value), value
