"""Project Wycheproof vectors through our own JWK ingest and JWS verification path (security-cases §2.1).

Files are vendored under ``tests/vectors/wycheproof`` (Apache-2.0; source and revision in ``tests/vectors/README.md``).

- ``ecdsa_secp256r1_sha256_p1363_test.json``: every group key (``publicKeyJwk``, or built from ``wx``/``wy``)
  through :func:`parse_jwk`, every (msg, sig) through :func:`verify_signature` as ES256.
- ``rsa_signature_2048_sha256_test.json``: ``keyJwk`` through :func:`parse_jwk`, every case as RS256.
- ``json_web_signature_test.json``: the group key through :func:`parse_jwk`, the token through
  :func:`parse_jws` and :func:`verify_signature` with every asymmetric algorithm allowed (the key's own ``alg``
  still binds). Symmetric (``oct``/HS*) keys are refused by policy, so their "valid" cases must be refused too.
  Eight labels are disputed (PyJWT and joserfc disagree with exactly these): :data:`DISPUTED` runs them and asserts
  our verdict, a refusal, with the reason. tcId 357,
  the "valid" twin of 367/370, runs: its HS256 key is refused by policy like every other symmetric key.
- ``json_web_key_test.json``: each key set through :func:`parse_jwk_set`, the token's kid looked up in it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from gateway_authz.core.errors import InvalidCredential
from gateway_authz.entra.jwk import SUPPORTED_ALGORITHMS, JwkError, VerificationKey, parse_jwk, parse_jwk_set
from gateway_authz.entra.jwt import Jws, parse_jws, verify_signature
from tests._factories import load_vectors
from tests.oidc_provider import b64u

# Wycheproof's JWS labels we dispute (security-cases.md §0.2: PyJWT and joserfc disagree with the same eight). They
# are not skipped: each is run, and we assert our own documented verdict, which is to refuse the token.
DISPUTED: dict[int, str] = {
    346: "RFC 7520 fig. 20: the JWK says alg PS256 but the token is PS384; we bind alg to the JWK (label disputed)",
    347: "RFC 7520 fig. 27: the JWK alg 'ES521' is not a registered algorithm; we refuse the key (label disputed)",
    350: "RFC 7520 fig. 20 with key_ops: JWK alg PS256 vs a PS384 token, as tcId 346 (label disputed)",
    351: "RFC 7520 fig. 27 with key_ops: JWK alg 'ES521', as tcId 347 (label disputed)",
    367: "byte-identical to tcId 357 (labelled valid) yet labelled invalid (C2SP/wycheproof#236)",
    370: "byte-identical to tcId 357 (labelled valid) yet labelled invalid (C2SP/wycheproof#236)",
    372: "'?' inside a base64url segment, labelled valid; strict base64url (RFC 7515 §2) refuses it",
    373: "'?' inside a base64url segment, labelled valid; strict base64url (RFC 7515 §2) refuses it",
}


@cache
def _load(name: str) -> dict[str, Any]:
    """One vendored Wycheproof file (tests/vectors/wycheproof; sources and license in tests/vectors/README.md)."""
    data: dict[str, Any] = load_vectors(f"wycheproof/{name}")
    return data


def _cases(name: str) -> list[Any]:
    """One pytest param per test case, carrying its group; disputed labels get an id that says so."""
    data = _load(name)
    disputed = DISPUTED if name == "json_web_signature_test.json" else {}
    return [
        pytest.param(group, case, id=f"{case['tcId']}-disputed" if case["tcId"] in disputed else str(case["tcId"]))
        for group in data["testGroups"]
        for case in group["tests"]
    ]


def _with_kid(jwk: dict[str, Any]) -> dict[str, Any]:
    """Wycheproof keys often lack ``kid``, which our ingest requires; the kid plays no part in these checks."""
    return {**jwk, "kid": jwk.get("kid") or "wycheproof"}


def _raw_check(key: VerificationKey, alg: str, msg: bytes, sig: bytes) -> bool:
    jws = Jws(header={"alg": alg}, alg=alg, kid=None, payload=b"", signing_input=msg, signature=sig)
    try:
        verify_signature(jws, key, {alg})
    except InvalidCredential:
        return False
    return True


def _expect(case: dict[str, Any], accepted: bool) -> None:
    if case["result"] == "acceptable":
        return
    assert accepted == (case["result"] == "valid"), f"tcId {case['tcId']} ({case['comment']}): {case['result']}"


def _p256_jwk(group: dict[str, Any]) -> dict[str, Any]:
    if "publicKeyJwk" in group:
        return dict(group["publicKeyJwk"])
    key = group["publicKey"]
    x, y = (b64u(int(key[name], 16).to_bytes(32, "big")) for name in ("wx", "wy"))
    return {"kty": "EC", "crv": "P-256", "x": x, "y": y}


@pytest.mark.parametrize(("group", "case"), _cases("ecdsa_secp256r1_sha256_p1363_test.json"))
def test_wycheproof_es256_p1363(group: Any, case: Any) -> None:
    """Wycheproof ECDSA P-256/SHA-256 in JWS (P1363) form: verdicts match through our ES256 path."""
    key = parse_jwk(_with_kid(_p256_jwk(group)))
    _expect(case, _raw_check(key, "ES256", bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])))


@pytest.mark.parametrize(("group", "case"), _cases("rsa_signature_2048_sha256_test.json"))
def test_wycheproof_rs256(group: Any, case: Any) -> None:
    """Wycheproof RSA PKCS#1 v1.5 2048/SHA-256: verdicts match through our RS256 path."""
    key = parse_jwk(_with_kid(group["keyJwk"]))
    _expect(case, _raw_check(key, "RS256", bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])))


def _jws_outcome(jwk: Any, token: str) -> str:
    try:
        key = parse_jwk(_with_kid(jwk) if isinstance(jwk, dict) else jwk)
    except JwkError:
        return "key_refused"
    try:
        verify_signature(parse_jws(token), key, SUPPORTED_ALGORITHMS)
    except InvalidCredential as error:
        return error.reason
    return "accepted"


@pytest.mark.parametrize(("group", "case"), _cases("json_web_signature_test.json"))
def test_wycheproof_json_web_signature(group: Any, case: Any) -> None:
    """Wycheproof JWS: valid tokens verify, invalid ones never do; symmetric keys are refused by policy."""
    jwk = group.get("public") or group.get("private")
    outcome = _jws_outcome(jwk, case["jws"])
    if case["tcId"] in DISPUTED:  # the label is wrong (see DISPUTED); our verdict is to refuse
        assert outcome != "accepted", f"tcId {case['tcId']}: {DISPUTED[case['tcId']]}"
        return
    if isinstance(jwk, dict) and jwk.get("kty") == "oct":
        assert outcome != "accepted", f"tcId {case['tcId']}: an HMAC key must never verify"
        return
    _expect(case, outcome == "accepted")


# The base64 group uses an HS256 key, which policy refuses; its encodings are still judged by the parser:
# a structurally valid token gets as far as the algorithm check, a badly encoded one never does.
BASE64_VALID = (358, 359, 376, 377)
BASE64_INVALID = (360, 361, 362, 363, 364, 365, 366, 368, 369, 371, 374, 375)


@pytest.mark.parametrize("tc_id", BASE64_VALID + BASE64_INVALID)
def test_wycheproof_jws_base64_group_through_the_parser(tc_id: int) -> None:
    """Wycheproof JWS base64 cases: canonical encodings parse, spaces/junk/non-canonical bits do not."""
    data = _load("json_web_signature_test.json")
    assert data is not None
    case = next(c for g in data["testGroups"] for c in g["tests"] if c["tcId"] == tc_id)
    with pytest.raises(InvalidCredential) as info:
        parse_jws(case["jws"])
    expected = "disallowed_alg" if tc_id in BASE64_VALID else "malformed_token"
    assert (info.value.reason, case["result"]) == (expected, "valid" if tc_id in BASE64_VALID else "invalid")


def _keyset_accepts(document: Any, token: str) -> bool:
    try:
        keyset = parse_jwk_set(document)
        jws = parse_jws(token)
        key = keyset.get(jws.kid or "")
        if key is None:
            return False
        verify_signature(jws, key, SUPPORTED_ALGORITHMS)
    except (JwkError, InvalidCredential):
        return False
    return True


@pytest.mark.parametrize(("group", "case"), _cases("json_web_key_test.json"))
def test_wycheproof_json_web_key(group: Any, case: Any) -> None:
    """Wycheproof JWK sets: weak, mixed, ambiguous and misused keys never verify; the good RS256 set does."""
    document = group.get("public") or group.get("private")
    accepted = _keyset_accepts(document, case["jws"])
    if any(member.get("kty") == "oct" for member in document["keys"]):
        assert not accepted, f"tcId {case['tcId']}: an HMAC key must never verify"
        return
    _expect(case, accepted)
