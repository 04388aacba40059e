"""gateway_authz.entra.jwk: JWK ingest (security-cases J16, J17 member handling) and strict JSON/base64url."""

from __future__ import annotations

import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway_authz.entra.jwk import (
    RSA_ALGORITHMS,
    JwkError,
    b64url_decode,
    decode_json,
    parse_jwk,
    parse_jwk_set,
)
from tests.oidc_provider import SigningKey, b64u


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey.rsa(kid="rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey.ec(kid="ec-1")


def uint(value: int) -> str:
    return b64u(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def roca_like_modulus(bits: int = 2048) -> int:
    """An odd number with the ROCA fingerprint: a power of 65537 modulo every prime up to 167 (built by CRT)."""
    primes = [p for p in range(3, 168) if all(p % q for q in range(2, p))]
    modulus, residue = 1, 0
    for p in primes:
        target = pow(65537, 7, p)  # any power of the generator
        while residue % p != target:
            residue += modulus
        modulus *= p
    step = 2 * modulus
    n = residue + step * ((1 << (bits - 1)) // step + 1)
    return n if n % 2 else n + modulus  # keep the residues, make it odd


def refusal(jwk: Any) -> str:
    with pytest.raises(JwkError) as info:
        parse_jwk(jwk)
    return str(info.value)


def test_rsa_key_fits_every_rsa_algorithm_unless_pinned(rsa_key: SigningKey) -> None:
    """An RSA key without ``alg`` may verify RS* and PS*; with ``alg`` it verifies that one algorithm only."""
    jwk = rsa_key.public_jwk()
    del jwk["alg"]
    assert parse_jwk(jwk).algorithms == RSA_ALGORITHMS
    assert parse_jwk(rsa_key.public_jwk()).algorithms == {"RS256"}


@pytest.mark.parametrize(
    ("curve", "alg"), [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")]
)
def test_ec_curve_fixes_the_algorithm(curve: ec.EllipticCurve, alg: str) -> None:
    """P-256 verifies ES256 only, P-384 ES384 only, P-521 ES512 only."""
    jwk = SigningKey.ec(kid="k", curve=curve, alg=alg).public_jwk()
    del jwk["alg"]
    assert parse_jwk(jwk).algorithms == {alg}


def test_j16_rsa_1024_refused(rsa_key: SigningKey) -> None:
    """J16: RSA keys under 2048 bits are refused at ingest."""
    small = SigningKey.rsa(kid="small", bits=1024)
    assert "1024 bits" in refusal(small.public_jwk())


def test_j16_rsa_16384_refused(rsa_key: SigningKey) -> None:
    """J16/J11: a 16384-bit modulus (CPU per verify) is refused at ingest."""
    assert "16384 bits" in refusal({**rsa_key.public_jwk(), "n": uint((1 << 16383) | 1)})


@pytest.mark.parametrize("e", [1, 2, 65536], ids=["one", "two", "even"])
def test_j16_bad_public_exponent_refused(rsa_key: SigningKey, e: int) -> None:
    """J16: ``e = 1`` and even exponents are refused."""
    assert "exponent" in refusal({**rsa_key.public_jwk(), "e": uint(e)})


def test_j16_roca_fingerprint_refused(rsa_key: SigningKey) -> None:
    """J16: a modulus with the ROCA fingerprint (CVE-2017-15361) is refused; real keys pass."""
    assert "ROCA" in refusal({**rsa_key.public_jwk(), "n": uint(roca_like_modulus())})
    assert parse_jwk(rsa_key.public_jwk()).kid == "rsa-1"


def test_j16_modulus_with_leading_zero_byte_is_tolerated(rsa_key: SigningKey) -> None:
    """J16: a modulus encoded with a leading zero byte is the same number; it is accepted."""
    n = b64url_decode(rsa_key.public_jwk()["n"])
    assert parse_jwk({**rsa_key.public_jwk(), "n": b64u(b"\x00" + n)}).kid == "rsa-1"


def test_j16_ec_point_off_the_curve_refused(ec_key: SigningKey) -> None:
    """J16: an EC point that is not on its curve is refused (invalid-curve attacks)."""
    jwk = ec_key.public_jwk()
    y = bytearray(b64url_decode(jwk["y"]))
    y[-1] ^= 1
    assert "not on the curve" in refusal({**jwk, "y": b64u(bytes(y))})


def test_j16_ec_wrong_curve_refused(ec_key: SigningKey) -> None:
    """J16: P-256 coordinates labelled P-384, and curves we do not support, are refused."""
    assert "wrong length" in refusal({**ec_key.public_jwk(), "crv": "P-384", "alg": "ES384"})
    assert "curve" in refusal({**ec_key.public_jwk(), "crv": "secp256k1"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "symmetric"),
        ({"d": "AQAB"}, "private"),
        ({"p": "AQAB"}, "private"),
        ({"use": "enc"}, "use"),
        ({"key_ops": ["encrypt"]}, "key_ops"),
        ({"key_ops": "verify"}, "key_ops"),
        ({"alg": "HS256"}, "alg"),
        ({"alg": "RSA-OAEP"}, "alg"),
        ({"alg": "ES256"}, "alg"),
        ({"kty": "OKP", "crv": "Ed25519"}, "kty"),
        ({"kid": ""}, "kid"),
        ({"kid": 7}, "kid"),
        ({"kid": "k" * 257}, "kid"),
        ({"issuer": 1}, "issuer"),
        ({"n": "a+b/"}, "base64url"),
        ({"n": ""}, "n missing"),
    ],
    ids=[
        "oct",
        "private_d",
        "private_p",
        "use_enc",
        "key_ops_encrypt",
        "key_ops_string",
        "hs_alg",
        "enc_alg",
        "ec_alg_on_rsa",
        "okp",
        "empty_kid",
        "int_kid",
        "long_kid",
        "issuer_type",
        "bad_base64",
        "empty_n",
    ],
)
def test_j16_unusable_rsa_members_refused(rsa_key: SigningKey, changes: dict[str, Any], message: str) -> None:
    """J16: symmetric or private keys, wrong use/key_ops/alg, unusable kids and bad encodings are refused."""
    assert message in refusal({**rsa_key.public_jwk(), **changes})


def test_j16_private_ec_key_refused(ec_key: SigningKey) -> None:
    """J16: an EC key carrying ``d`` is refused, and the refusal never repeats the private scalar."""
    private = ec_key.private_jwk()
    message = refusal(private)
    assert "private" in message and private["d"] not in message


def test_j16_key_ops_with_verify_is_fine(ec_key: SigningKey) -> None:
    """J16: ``key_ops: ["verify"]`` (or with ``sign`` beside it) is a usable verification key."""
    assert parse_jwk({**ec_key.public_jwk(), "key_ops": ["sign", "verify"]}).kid == "ec-1"


def test_j16_duplicate_kid_is_ambiguous(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    """J16: two members with one kid make that kid ambiguous: it resolves to no key at all."""
    keyset = parse_jwk_set({"keys": [rsa_key.public_jwk(), {**ec_key.public_jwk(), "kid": "rsa-1"}]})
    assert keyset.get("rsa-1") is None
    assert keyset.knows("rsa-1") and "rsa-1" in keyset.ambiguous
    assert ("rsa-1", "duplicate kid") in keyset.rejected


def test_j16_duplicate_kid_with_a_refused_twin_is_still_ambiguous(rsa_key: SigningKey) -> None:
    """J16: a kid shared with a refused (private) member is ambiguous too: the issuer's intent is unclear."""
    twin = SigningKey.rsa(kid="rsa-1").private_jwk()
    keyset = parse_jwk_set({"keys": [rsa_key.public_jwk(), twin]})
    assert keyset.get("rsa-1") is None and len(keyset) == 0


def test_j17_bad_members_are_skipped_not_fatal(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    """J17: malformed, unknown-kty and refused members are skipped (RFC 7517 §5); good members still serve."""
    members: list[Any] = [
        "not an object",
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {**rsa_key.public_jwk(), "kid": "weak", "n": uint((1 << 1023) | 1)},
        rsa_key.public_jwk(),
        ec_key.public_jwk(),
    ]
    keyset = parse_jwk_set({"keys": members})
    assert sorted(keyset.keys) == ["ec-1", "rsa-1"]
    assert [label for label, _ in keyset.rejected] == ["#0", "ed", "hmac", "weak"]


@pytest.mark.parametrize(
    "document",
    [[], "keys", {"keys": "x"}, {"keys": {"a": 1}}, {"no": []}, None],
    ids=["array", "string", "keys_string", "keys_object", "no_keys", "null"],
)
def test_j17_not_a_key_set(document: Any) -> None:
    """J17: a document that is not an object with a ``keys`` list is refused as a whole."""
    with pytest.raises(JwkError):
        parse_jwk_set(document)


def test_inline_key_set_may_use_tuples(rsa_key: SigningKey) -> None:
    """A config loader that freezes lists into tuples still yields a usable inline key set."""
    assert len(parse_jwk_set({"keys": (rsa_key.public_jwk(),)})) == 1


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"b":1,"b":1}}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e400}',
        b'{"a":' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'\xef\xbb\xbf{"a":1}',
        '{"a":1}'.encode("utf-16"),
        b'{"a":"\xff"}',
        b'{"a":"\\udc00"}',
        b'{"\\ud800":1}',
        b"",
    ],
    ids=[
        "duplicate",
        "nested_duplicate",
        "nan",
        "inf",
        "neg_inf",
        "overflow",
        "5000_digits",
        "deep",
        "bom",
        "utf16",
        "bad_utf8",
        "lone_low_surrogate",
        "surrogate_key",
        "empty",
    ],
)
def test_decode_json_is_strict(data: bytes) -> None:
    """Strict JSON: every lax or dangerous input raises the one :class:`JwkError`."""
    with pytest.raises(JwkError):
        decode_json(data)


def test_decode_json_reads_an_escaped_backslash_before_u_as_text() -> None:
    """``\\\\ud800`` is a backslash and the letters ``ud800``, not a surrogate: accepted, whatever the shortcut."""
    assert decode_json(b'{"a":"\\\\ud800","b":["\\u00e9"]}') == {"a": "\\ud800", "b": ["\u00e9"]}


def test_decode_json_accepts_ordinary_json() -> None:
    """Valid surrogate pairs, whitespace and finite floats decode normally."""
    value = decode_json(b'{ "a" : [1, 2.5, "\\ud83d\\ude00"],\n\t"b": null }')
    assert value == {"a": [1, 2.5, "\U0001f600"], "b": None}
    assert math.isfinite(value["a"][1])


@pytest.mark.parametrize("segment", ["AA=", "A", "a+b", "a/b", "a b", "AB", "é", "AAA?"])
def test_b64url_decode_is_strict(segment: str) -> None:
    """Padding, the standard alphabet, whitespace, impossible lengths and non-canonical bits are refused."""
    with pytest.raises(JwkError):
        b64url_decode(segment)


def test_b64url_decode_round_trips() -> None:
    """Canonical unpadded base64url decodes to its bytes."""
    assert b64url_decode("") == b""
    assert b64url_decode("AA") == b"\x00"
    assert b64url_decode(b64u(bytes(range(256)))) == bytes(range(256))
