"""gateway_authz.entra.jwt: the pure bearer-JWT verifier, one named test per JWT attack class of security-cases §1A."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway_authz.core.errors import CannotVerify, InvalidCredential
from gateway_authz.core.settings import Issuer
from gateway_authz.entra.issuers import IssuerRegistry
from gateway_authz.entra.jwk import KeySet, parse_jwk_set
from gateway_authz.entra.jwt import (
    MAX_TOKEN_BYTES,
    VerifiedJwt,
    bearer_token,
    looks_like_jwt,
    parse_jws,
    verify_jwt,
)
from tests.oidc_provider import RELAY_AUDIENCE, TENANT, V1_TEMPLATE, V2_TEMPLATE, SigningKey, azure_claims, b64u

NOW = 1_700_000_000.0
OID = "0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d"
GROUP = "5e1b7f1a-8c3e-4d7a-9b2c-7d6e5f4a3b2c"
OTHER_TENANT = "11111111-2222-3333-4444-555555555555"
AUDIENCES = (RELAY_AUDIENCE, RELAY_AUDIENCE + "/")
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_PRIME = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF


def issuer(template: str = V2_TEMPLATE, **changes: Any) -> Issuer:
    fields: dict[str, Any] = {
        "issuer": template,
        "tenants": (TENANT,),
        "audiences": AUDIENCES,
        "algorithms": ("RS256", "ES256"),
        **changes,
    }
    return Issuer(**fields)


@dataclass
class Env:
    """An issuer registry and the key set of each issuer, as the pure verifier sees them."""

    registry: IssuerRegistry
    keysets: dict[str, KeySet]
    rsa: SigningKey
    ec: SigningKey

    def verify(self, token: str, *, now: float = NOW, leeway: int = 60) -> VerifiedJwt:
        return verify_jwt(token, self.registry, lambda i: self.keysets.get(i.issuer), now=now, leeway=leeway)

    def refused(self, token: str, *, now: float = NOW, leeway: int = 60) -> str:
        with pytest.raises(InvalidCredential) as info:
            self.verify(token, now=now, leeway=leeway)
        return info.value.reason

    def claims(self, *, drop: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
        claims = azure_claims(now=NOW, oid=OID, groups=[GROUP], tenant=TENANT)
        claims.update(changes)
        for name in drop:
            claims.pop(name, None)
        return claims

    def token(self, key: SigningKey | None = None, *, header: dict[str, Any] | None = None, **changes: Any) -> str:
        key = key or self.rsa
        return key.compact({"typ": "JWT", "alg": key.alg, "kid": key.kid, **(header or {})}, self.claims(**changes))


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey]:
    return SigningKey.rsa(kid="rsa-1"), SigningKey.ec(kid="ec-1")


@pytest.fixture
def env(keys: tuple[SigningKey, SigningKey]) -> Env:
    rsa_key, ec_key = keys
    keyset = parse_jwk_set({"keys": [rsa_key.public_jwk(), ec_key.public_jwk()]})
    v1 = issuer(V1_TEMPLATE, algorithms=("RS256",))
    return Env(IssuerRegistry([issuer(), v1]), {V2_TEMPLATE: keyset, V1_TEMPLATE: keyset}, rsa_key, ec_key)


def text_token(key: SigningKey, header: str, payload: str) -> str:
    """A token over the exact header and payload text, signed by ``key``."""
    return key.compact(header, payload)


def raw_token(header: bytes, payload: bytes, signature: bytes = b"sig") -> str:
    return f"{b64u(header)}.{b64u(payload)}.{b64u(signature)}"


# -- the happy paths ----------------------------------------------------------------------------------------------


def test_v2_token_verifies_with_every_field(env: Env) -> None:
    """A v2 Entra ID token yields issuer, tenant, oid, groups, expiry, version and the client app id."""
    claims = env.claims(azp="app-v2")
    token = env.rsa.compact({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, claims)
    verified = env.verify(token)
    assert verified == VerifiedJwt(
        issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
        tenant=TENANT,
        oid=OID,
        groups=(GROUP,),
        groups_overage=False,
        expires_at=claims["exp"],
        version="2.0",
        audience=RELAY_AUDIENCE,
        subject=claims["sub"],
        app_id="app-v2",
        key_id="rsa-1",
        algorithm="RS256",
    )


def test_v1_token_verifies(env: Env) -> None:
    """A v1 token (sts.windows.net issuer, appid) verifies against the v1 issuer entry."""
    claims = azure_claims(version="1.0", now=NOW, oid=OID, appid="app-v1", audience=RELAY_AUDIENCE + "/")
    verified = env.verify(env.rsa.compact({"alg": "RS256", "kid": "rsa-1"}, claims))
    assert (verified.issuer, verified.version, verified.app_id) == (
        f"https://sts.windows.net/{TENANT}/",
        "1.0",
        "app-v1",
    )
    assert verified.audience == RELAY_AUDIENCE + "/"


def test_es256_token_verifies(env: Env) -> None:
    """An ES256 token signed by the issuer's P-256 key verifies."""
    assert env.verify(env.token(env.ec)).algorithm == "ES256"


@pytest.mark.parametrize(
    ("extra", "drop"),
    [({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {}}}, ("groups",)), ({"hasgroups": True}, ())],
    ids=["claim_names", "hasgroups"],
)
def test_groups_overage_means_no_groups(env: Env, extra: dict[str, Any], drop: tuple[str, ...]) -> None:
    """A groups overage (``_claim_names.groups`` or ``hasgroups``) yields no groups and says so."""
    verified = env.verify(env.token(drop=drop, **extra))
    assert (verified.groups, verified.groups_overage) == ((), True)


def test_oid_is_required_for_rbac(env: Env) -> None:
    """A token without a GUID ``oid`` cannot be mapped to role assignments and is refused."""
    assert env.refused(env.token(drop=("oid",))) == "invalid_claims"
    assert env.refused(env.token(oid="not-a-guid")) == "invalid_claims"


def test_keys_unavailable_is_cannot_verify(env: Env) -> None:
    """No key set for the issuer at all is a 503, not a 401: the service could not check."""
    env.keysets.clear()
    with pytest.raises(CannotVerify) as info:
        env.verify(env.token())
    assert info.value.reason == "keys_unavailable"


# -- J1 alg none --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", None, "Z2FyYmFnZQ"], ids=["empty", "absent", "garbage"])
def test_j1_alg_none_is_refused(env: Env, alg: str, signature: str | None) -> None:
    """J1: ``alg: none`` in any spelling, with an empty, absent or garbage signature, is refused."""
    head = f"{b64u(json.dumps({'alg': alg, 'kid': 'rsa-1'}).encode())}.{b64u(json.dumps(env.claims()).encode())}"
    token = head if signature is None else f"{head}.{signature}"
    assert env.refused(token) in {"disallowed_alg", "malformed_token"}


# -- J2 algorithm confusion ---------------------------------------------------------------------------------------


def _public_encodings(key: SigningKey) -> dict[str, bytes]:
    public = key.private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    encodings = {
        "pem_spki": pem,
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "openssh": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "jwk_json": json.dumps(key.public_jwk()).encode(),
        "bom_pem": b"\xef\xbb\xbf" + pem,
    }
    if isinstance(public, ec.EllipticCurvePublicKey):
        encodings["x962"] = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:
        encodings["pkcs1_pem"] = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return encodings


@pytest.mark.parametrize("which", ["rsa", "ec"])
def test_j2_hs256_with_the_public_key_as_secret_is_refused(env: Env, which: str) -> None:
    """J2: HS256 tokens MACed with the issuer's public key in every encoding are refused before any key use."""
    key = env.rsa if which == "rsa" else env.ec
    for name, secret in _public_encodings(key).items():
        head = (
            f"{b64u(json.dumps({'alg': 'HS256', 'kid': key.kid}).encode())}.{b64u(json.dumps(env.claims()).encode())}"
        )
        mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
        assert env.refused(f"{head}.{b64u(mac)}") == "disallowed_alg", name


@pytest.mark.parametrize("alg", ["HS256", "none", "RS1", "EdDSA", ""])
def test_j2_config_refuses_symmetric_or_unknown_algorithms(alg: str) -> None:
    """J2: an issuer configured with HS*, none or an unknown algorithm is refused when the registry is built."""
    with pytest.raises(ValueError, match="algorithms"):
        IssuerRegistry([issuer(algorithms=("RS256", alg))])


# -- J3 alg/key mismatch in asymmetric families ---------------------------------------------------------------------


def test_j3_rs256_token_against_a_ps256_only_key(env: Env) -> None:
    """J3: a key published with ``alg: PS256`` never verifies an RS256 token."""
    jwk = {**env.rsa.public_jwk(), "alg": "PS256"}
    env.keysets[V2_TEMPLATE] = parse_jwk_set({"keys": [jwk]})
    assert env.refused(env.token()) == "disallowed_alg"


def test_j3_es256_header_with_a_p384_key(env: Env) -> None:
    """J3: an ES256 header signed with a P-384 key is refused: P-384 fits ES384 only."""
    p384 = SigningKey.ec(kid="p384", curve=ec.SECP384R1(), alg="ES384")
    env.keysets[V2_TEMPLATE] = parse_jwk_set({"keys": [p384.public_jwk()]})
    token = p384.compact({"alg": "ES256", "kid": "p384"}, env.claims())
    assert env.refused(token) == "disallowed_alg"


def test_j3_es512_against_an_es521_jwk(env: Env) -> None:
    """J3: a P-521 JWK labelled with the unregistered ``ES521`` is refused at ingest, so its kid is unknown."""
    p521 = SigningKey.ec(kid="p521", curve=ec.SECP521R1(), alg="ES512")
    keyset = parse_jwk_set({"keys": [p521.public_jwk(alg="ES521")]})
    env.registry = IssuerRegistry([issuer(algorithms=("ES512",))])
    env.keysets[V2_TEMPLATE] = keyset
    assert keyset.rejected == (("p521", "alg does not fit the key"),)
    assert env.refused(env.token(p521)) == "unknown_kid"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "RS512"])
def test_j3_ps512_key_receiving_other_rsa_algorithms(env: Env, alg: str) -> None:
    """J3: a key bound to PS512 refuses RS256, PS256 and RS512 tokens even when the issuer allows them all."""
    env.registry = IssuerRegistry([issuer(algorithms=("RS256", "PS256", "RS512", "PS512"))])
    env.keysets[V2_TEMPLATE] = parse_jwk_set({"keys": [{**env.rsa.public_jwk(), "alg": "PS512"}]})
    token = env.rsa.compact({"alg": alg, "kid": "rsa-1"}, env.claims())
    assert env.refused(token) == "disallowed_alg"


@pytest.mark.parametrize(("alg", "kid"), [("RS256", "ec-1"), ("ES256", "rsa-1")])
def test_j3_algorithm_family_must_fit_the_key_type(env: Env, alg: str, kid: str) -> None:
    """J3: an RSA algorithm never selects an EC key and vice versa."""
    head = f"{b64u(json.dumps({'alg': alg, 'kid': kid}).encode())}.{b64u(json.dumps(env.claims()).encode())}"
    assert env.refused(f"{head}.{b64u(b'x' * 64)}") == "disallowed_alg"


def test_j3_algorithm_the_issuer_does_not_allow(env: Env) -> None:
    """J3: PS256 fits an RSA key, but the issuer allows RS256 and ES256 only."""
    assert env.refused(env.token(header={"alg": "PS256"})) == "disallowed_alg"


# -- J4 kid injection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "/dev/null", "", "x' UNION SELECT '1';--", "|sleep 10", "k" * 10_000, "\u0000", "a\r\nb"],
    ids=["traversal", "devnull", "empty", "sqli", "shell", "10kb", "nul", "crlf"],
)
def test_j4_kid_is_only_an_opaque_lookup_key(env: Env, kid: str) -> None:
    """J4: hostile kid strings only ever miss the key-set lookup; the reason detail escapes them."""
    token = env.token(header={"kid": kid})
    with pytest.raises(InvalidCredential) as info:
        env.verify(token)
    assert info.value.reason == "unknown_kid"
    assert "\r" not in info.value.detail and "\x00" not in info.value.detail and len(info.value.detail) < 300


@pytest.mark.parametrize("kid", [123, None, [], {}, True], ids=["int", "null", "list", "object", "bool"])
def test_j4_non_string_kid_is_malformed(env: Env, kid: Any) -> None:
    """J4: a kid that is not a string (or is missing) makes the token malformed."""
    assert env.refused(env.token(header={"kid": kid})) == "malformed_token"


# -- J5 (pure part; the no-fetch assertion is in test_jwks.py) -------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://evil.test/jwks"},
        {"x5u": "https://evil.test/cert.pem"},
        {"jku": "http://169.254.169.254/latest/meta-data/"},
        {"jku": "https://login.microsoftonline.com@evil.test/keys"},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
    ],
    ids=["jku", "x5u", "ssrf", "prefix_trick", "x5c"],
)
def test_j5_key_location_headers_are_ignored(env: Env, header: dict[str, Any]) -> None:
    """J5: ``jku``/``x5u``/``x5c`` never change which key verifies: a legit token still verifies by kid."""
    assert env.verify(env.token(header=header)).oid == OID


def test_j5_attacker_embedded_jwk_is_not_used(env: Env) -> None:
    """J5: a token signed by the attacker's key, embedding that key as ``jwk`` under a legit kid, is refused."""
    attacker = SigningKey.rsa(kid="rsa-1")
    token = attacker.compact({"alg": "RS256", "kid": "rsa-1", "jwk": attacker.public_jwk()}, env.claims())
    assert env.refused(token) == "bad_signature"


# -- J6 crit ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"crit": ["exp"]}, "unsupported_crit"),
        ({"crit": []}, "unsupported_crit"),
        ({"crit": "b64"}, "unsupported_crit"),
        ({"crit": [1]}, "unsupported_crit"),
        ({"crit": ["x-unknown"], "x-unknown": 1}, "unsupported_crit"),
        ({"crit": ["absent"]}, "unsupported_crit"),
        ({"b64": False, "crit": ["b64"]}, "unsupported_crit"),
        ({"b64": False}, "malformed_token"),
    ],
    ids=["registered", "empty", "not_list", "non_string", "unknown", "absent", "b64_crit", "b64_alone"],
)
def test_j6_crit_is_always_refused(env: Env, extra: dict[str, Any], reason: str) -> None:
    """J6: any ``crit``, and any ``b64``, is refused even on a correctly signed token."""
    assert env.refused(env.token(header=extra)) == reason


# -- J7 time claims -----------------------------------------------------------------------------------------------

L = 60


@pytest.mark.parametrize(
    ("changes", "leeway", "expected"),
    [
        ({"exp": NOW - L - 1}, L, "expired"),
        ({"exp": NOW - L}, L, "expired"),
        ({"exp": NOW - L + 1}, L, None),
        ({"exp": NOW}, 0, "expired"),
        ({"exp": NOW + 1}, 0, None),
        ({"nbf": NOW}, L, None),
        ({"nbf": NOW + L}, L, None),
        ({"nbf": NOW + L + 1}, L, "not_yet_valid"),
        ({"nbf": NOW + 1}, 0, "not_yet_valid"),
        ({"iat": NOW + L}, L, None),
        ({"iat": NOW + L + 1}, L, "not_yet_valid"),
        ({"exp": 1.9e9}, L, None),
    ],
    ids=[
        "exp_now-L-1",
        "exp_now-L_exclusive",
        "exp_now-L+1",
        "exp_now_no_leeway",
        "exp_now+1_no_leeway",
        "nbf_now",
        "nbf_now+L",
        "nbf_now+L+1",
        "nbf_now+1_no_leeway",
        "iat_now+L",
        "iat_future",
        "exp_float",
    ],
)
def test_j7_time_boundaries(env: Env, changes: dict[str, Any], leeway: int, expected: str | None) -> None:
    """J7: ``exp`` is exclusive, ``nbf`` and ``iat`` tolerate exactly the leeway, at an injected ``now``."""
    token = env.token(**changes)
    if expected is None:
        assert env.verify(token, leeway=leeway).oid == OID
    else:
        assert env.refused(token, leeway=leeway) == expected


def test_j7_exp_is_required(env: Env) -> None:
    """J7: a token without ``exp`` never verifies."""
    assert env.refused(env.token(drop=("exp",))) == "invalid_claims"


@pytest.mark.parametrize(
    "value",
    ["1999999999", " 1999999999 ", "1_999_999_999", "١٩٩٩٩٩٩٩٩٩", True, None, [], {}, -1, 2**64, 253_402_300_800],
    ids=[
        "string",
        "spaces",
        "underscores",
        "arabic",
        "true",
        "null",
        "list",
        "object",
        "negative",
        "2^64",
        "year_10000",
    ],
)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_j7_time_claims_must_be_bounded_numbers(env: Env, claim: str, value: Any) -> None:
    """J7: strings (in any digits), booleans, null, containers and out-of-range numbers are not times."""
    assert env.refused(env.token(**{claim: value})) == "invalid_claims"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "9" * 5000])
def test_j7_non_finite_or_huge_json_numbers_are_malformed(env: Env, literal: str) -> None:
    """J7: NaN, Infinity, 1e400 (overflow to inf) and 5000-digit integers fail at JSON decoding."""
    payload = json.dumps(env.claims(exp=1), separators=(",", ":")).replace('"exp":1,', f'"exp":{literal},')
    assert literal in payload
    assert env.refused(text_token(env.rsa, '{"alg":"RS256","kid":"rsa-1"}', payload)) == "malformed_token"


def test_j7_leeway_is_capped(env: Env) -> None:
    """J7: a huge leeway is capped at five minutes, so a long-expired token stays expired; negative means none."""
    assert env.refused(env.token(exp=NOW - 301), leeway=10**9) == "expired"
    assert env.verify(env.token(exp=NOW - 299), leeway=10**9).oid == OID
    assert env.refused(env.token(exp=NOW), leeway=-100) == "expired"


# -- J8 iss -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iss", "reason"),
    [
        (None, "unknown_issuer"),
        ("https://evil.test/", "unknown_issuer"),
        ("https://login.microsoftonline.com/", "unknown_issuer"),
        (f"https://login.microsoftonline.com/{TENANT}/v2.0/", "unknown_issuer"),
        (f"HTTPS://LOGIN.MICROSOFTONLINE.COM/{TENANT}/v2.0", "unknown_issuer"),
        (f"https://sts.windows.net/{TENANT}", "unknown_issuer"),
        (f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0", "unknown_issuer"),
        (123, "unknown_issuer"),
    ],
    ids=["missing", "wrong", "partial", "trailing_slash", "case", "v1_no_slash", "iss_tid_mismatch", "not_string"],
)
def test_j8_iss_must_match_exactly(env: Env, iss: Any, reason: str) -> None:
    """J8: a missing, foreign, partial, re-cased or re-slashed ``iss`` (or one not filled from ``tid``) is refused."""
    token = env.token(drop=("iss",)) if iss is None else env.token(iss=iss)
    assert env.refused(token) == reason


def test_j8_tenant_must_be_allowed(env: Env) -> None:
    """J8: a consistent ``iss``/``tid`` pair for a tenant not in the issuer's tenants is refused."""
    token = env.token(tid=OTHER_TENANT, iss=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0")
    assert env.refused(token) == "wrong_tenant"


def test_j8_literal_issuer_still_checks_tid(env: Env) -> None:
    """J8: a non-template issuer with tenants requires a GUID ``tid`` among them."""
    literal = f"https://login.microsoftonline.com/{TENANT}/v2.0"
    env.registry = IssuerRegistry([issuer(literal)])
    env.keysets[literal] = env.keysets[V2_TEMPLATE]
    assert env.verify(env.token()).tenant == TENANT
    assert env.refused(env.token(drop=("tid",))) == "wrong_tenant"
    assert env.refused(env.token(tid="not-a-guid")) == "wrong_tenant"


def test_j8_key_is_looked_up_in_the_issuers_own_set_only(env: Env) -> None:
    """J8: a v1 token whose kid exists only in the v2 issuer's key set is refused: keys are chosen after ``iss``."""
    env.keysets[V1_TEMPLATE] = parse_jwk_set({"keys": [env.ec.public_jwk()]})
    claims = azure_claims(version="1.0", now=NOW, oid=OID)
    assert env.refused(env.rsa.compact({"alg": "RS256", "kid": "rsa-1"}, claims)) == "unknown_kid"


def test_j8_key_bound_to_another_issuer_is_refused(env: Env) -> None:
    """J8: a key whose ``issuer`` property names the v2 issuer cannot verify a v1 token from a shared set."""
    keyset = parse_jwk_set({"keys": [env.rsa.public_jwk(issuer=V2_TEMPLATE)]})
    env.keysets = {V2_TEMPLATE: keyset, V1_TEMPLATE: keyset}
    assert env.verify(env.token()).oid == OID
    claims = azure_claims(version="1.0", now=NOW, oid=OID)
    assert env.refused(env.rsa.compact({"alg": "RS256", "kid": "rsa-1"}, claims)) == "unknown_kid"


@pytest.mark.parametrize(
    ("issuers", "match"),
    [
        ([issuer(tenants=())], "needs tenants"),
        ([issuer(), issuer()], "twice"),
        ([issuer("https://a.test/"), issuer("https://a.test/")], "ambiguous"),
        ([issuer(audiences=())], "audience"),
        ([issuer(tenants=("tenant-name",))], "GUIDs"),
        ([issuer("https://{tenantid}/{tenantid}")], "ambiguous"),
    ],
    ids=[
        "template_without_tenants",
        "duplicate_template",
        "duplicate_literal",
        "no_audience",
        "bad_tenant",
        "two_slots",
    ],
)
def test_j8_registry_refuses_unsafe_issuer_settings(issuers: list[Issuer], match: str) -> None:
    """J8: settings that would accept any tenant, nothing, or an ambiguous issuer are refused at construction."""
    with pytest.raises(ValueError, match=match):
        IssuerRegistry(issuers)


# -- J9 aud -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aud", "accepted"),
    [
        (RELAY_AUDIENCE, True),
        (RELAY_AUDIENCE + "/", True),
        (["other", RELAY_AUDIENCE], True),
        (None, False),
        ("other", False),
        (["other"], False),
        ([], False),
        ("", False),
        (123, False),
        ([1, RELAY_AUDIENCE], False),
        ({"aud": RELAY_AUDIENCE}, False),
        ("https://RELAY.azure.net", False),
        ("00000000-aaaa-bbbb-cccc-000000000000", False),
    ],
    ids=[
        "exact",
        "slash_form",
        "list_with_ours",
        "missing",
        "wrong",
        "list_without_ours",
        "empty_list",
        "empty",
        "int",
        "mixed_list",
        "object",
        "case",
        "id_token_client_id",
    ],
)
def test_j9_audience(env: Env, aud: Any, accepted: bool) -> None:
    """J9: one of ``aud`` must be a configured audience, and every member must be a string."""
    token = env.token(drop=("aud",)) if aud is None else env.token(aud=aud)
    if accepted:
        assert env.verify(token).oid == OID
    else:
        assert env.refused(token) == "wrong_audience"


# -- J10 duplicate and nested members -------------------------------------------------------------------------------


def test_j10_duplicate_header_member_is_refused(env: Env) -> None:
    """J10: ``{"alg":"none","alg":"RS256"}`` is refused even though the signature over that text is valid."""
    payload = json.dumps(env.claims())
    assert env.refused(text_token(env.rsa, '{"alg":"none","alg":"RS256","kid":"rsa-1"}', payload)) == "malformed_token"


def test_j10_duplicate_claim_is_refused(env: Env) -> None:
    """J10: two ``oid`` members (parser differential bait) make the payload malformed."""
    payload = json.dumps(env.claims())[:-1] + ',"oid":"ffffffff-ffff-ffff-ffff-ffffffffffff"}'
    assert env.refused(text_token(env.rsa, '{"alg":"RS256","kid":"rsa-1"}', payload)) == "malformed_token"


def test_j10_nested_jwt_is_never_unwrapped(env: Env) -> None:
    """J10: a ``cty: JWT`` token whose payload is an (unsigned) inner JWT is malformed, not unwrapped."""
    inner = raw_token(b'{"alg":"none"}', json.dumps(env.claims()).encode(), b"")
    token = env.rsa.compact({"alg": "RS256", "kid": "rsa-1", "cty": "JWT"}, json.dumps(inner))
    assert env.refused(token) == "malformed_token"


@pytest.mark.parametrize(
    "groups", ["admins", {"a": 1}, [GROUP, 7], [[GROUP]]], ids=["string", "object", "mixed", "nested"]
)
def test_j10_groups_must_be_a_list_of_strings(env: Env, groups: Any) -> None:
    """J10: ``groups`` in any shape other than a list of strings is refused rather than guessed at."""
    assert env.refused(env.token(groups=groups)) == "invalid_claims"


# -- J11 oversized input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [MAX_TOKEN_BYTES + 1, 64 * 1024, 1024 * 1024])
def test_j11_oversized_tokens_are_refused_before_decoding(env: Env, size: int) -> None:
    """J11: tokens over 16 KiB are refused by length alone, whether bare or behind ``Bearer``."""
    token = "a." + "b" * (size - 4) + ".c"
    assert env.refused(token) == "token_too_large"
    with pytest.raises(InvalidCredential) as info:
        bearer_token("Bearer " + token)
    assert info.value.reason == "token_too_large"


def test_j11_a_million_dots(env: Env) -> None:
    """J11: ``Bearer`` followed by a million periods costs one length check (CVE-2025-30204 class)."""
    with pytest.raises(InvalidCredential) as info:
        bearer_token("Bearer " + "." * 1_000_000)
    assert info.value.reason == "token_too_large"
    assert env.refused("." * 1_000_000) == "token_too_large"


@pytest.mark.parametrize("where", ["header", "payload"])
def test_j11_deep_nesting_is_malformed(env: Env, where: str) -> None:
    """J11: 5000-deep JSON arrays within the size cap end as ``malformed_token``, not a RecursionError."""
    deep = "[" * 5000 + "]" * 5000
    header = deep if where == "header" else '{"alg":"RS256","kid":"rsa-1"}'
    payload = deep if where == "payload" else json.dumps(env.claims())
    assert env.refused(text_token(env.rsa, header, payload)) == "malformed_token"


def test_j11_token_at_the_cap_is_judged_on_content(env: Env) -> None:
    """J11: exactly 16 KiB passes the size gate and fails on what it is."""
    token = "a." + "b" * (MAX_TOKEN_BYTES - 4) + ".c"
    assert env.refused(token) == "malformed_token"


# -- J12 base64url --------------------------------------------------------------------------------------------------


def _flip_unused_bits(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) ^ 1]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h, p, s: f"{h}.{p}.{s}==",
        lambda h, p, s: f"{h}=.{p}.{s}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}+{s[11:]}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}/{s[11:]}",
        lambda h, p, s: f"{h}.{p}.{s[:10]} {s[10:]}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}\n{s[10:]}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}\t{s[10:]}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}?{s[10:]}",
        lambda h, p, s: f"{h}.{p}#.{s}",
        lambda h, p, s: f"{h}.{p}.{s}{'A' * ((1 - len(s)) % 4)}",
        lambda h, p, s: f"{h}.{p}.{_flip_unused_bits(s)}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}é{s[11:]}",
        lambda h, p, s: f"{h}.{p}.{s[:10]}\x00{s[11:]}",
    ],
    ids=[
        "padding",
        "header_padding",
        "plus",
        "slash",
        "space",
        "newline",
        "tab",
        "question_mark",
        "hash",
        "len_mod_4_is_1",
        "non_canonical_bits",
        "non_ascii",
        "nul",
    ],
)
def test_j12_strict_base64url(env: Env, mutate: Callable[[str, str, str], str]) -> None:
    """J12: padding, the standard alphabet, whitespace, junk, bad lengths and non-canonical bits are refused."""
    head, payload, sig = env.token().split(".")
    assert env.refused(mutate(head, payload, sig)) == "malformed_token"


# -- J13 malformed JSON / text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        (b"[]", None),
        (b'"x"', None),
        (b"1", None),
        (b"null", None),
        (None, b"[]"),
        (None, b'"claims"'),
        (None, b"null"),
        (b'{"alg":"RS256","kid":"rsa-1","x":"\xff"}', None),
        (None, b'{"oid":"\xc0\xae"}'),
        (None, b'{"sub":"\\ud800","exp":1}'),
        (b'\xef\xbb\xbf{"alg":"RS256","kid":"rsa-1"}', None),
        ('{"alg":"RS256","kid":"rsa-1"}'.encode("utf-16"), None),
        (None, b'{"exp":1,}'),
        (None, b'{"exp":1 /* c */}'),
    ],
    ids=[
        "header_array",
        "header_string",
        "header_number",
        "header_null",
        "payload_array",
        "payload_string",
        "payload_null",
        "header_invalid_utf8",
        "payload_overlong_utf8",
        "lone_surrogate",
        "bom",
        "utf16",
        "trailing_comma",
        "comment",
    ],
)
def test_j13_malformed_json(env: Env, header: bytes | None, payload: bytes | None) -> None:
    """J13: non-object JSON, invalid UTF-8, lone surrogates, BOMs, UTF-16 and lax JSON are malformed."""
    header = header if header is not None else b'{"alg":"RS256","kid":"rsa-1"}'
    payload = payload if payload is not None else json.dumps(env.claims()).encode()
    signing_input = f"{b64u(header)}.{b64u(payload)}".encode()
    token = f"{signing_input.decode()}.{b64u(env.rsa.sign(signing_input))}"
    assert env.refused(token) == "malformed_token"


def test_j13_nul_inside_a_string_is_just_data(env: Env) -> None:
    """J13: ``\\u0000`` is valid JSON; inside ``sub`` it is data, never a terminator."""
    assert env.verify(env.token(sub="a\u0000b")).subject == "a\u0000b"


# -- J14 structure ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    ["h.p.", "h.p", "h.p.s.x", "h.p.s.", ".p.s", "h..s", "h.p.s.i.t", "json", "empty"],
)
def test_j14_structure(env: Env, shape: str) -> None:
    """J14: missing or extra parts, empty parts, a JWE shape or JSON serialization are malformed."""
    h, p, s = env.token().split(".")
    tokens = {
        "h.p.": f"{h}.{p}.",
        "h.p": f"{h}.{p}",
        "h.p.s.x": f"{h}.{p}.{s}.eA",
        "h.p.s.": f"{h}.{p}.{s}.",
        ".p.s": f".{p}.{s}",
        "h..s": f"{h}..{s}",
        "h.p.s.i.t": f"{h}.{p}.{s}.aXY.dGFn",
        "json": json.dumps({"payload": p, "signatures": [{"protected": h, "signature": s}]}),
        "empty": "",
    }
    assert env.refused(tokens[shape]) == "malformed_token"


# -- J15 ECDSA special values ---------------------------------------------------------------------------------------


def _es256_parts(env: Env) -> tuple[str, int, int]:
    h, p, s = env.token(env.ec).split(".")
    raw = base64.urlsafe_b64decode(s + "==")
    return f"{h}.{p}", int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (P256_ORDER, 1),
        (1, P256_ORDER),
        (P256_ORDER - 1, P256_ORDER - 1),
        (P256_ORDER + 1, 1),
        (P256_PRIME, 1),
    ],
    ids=["0,0", "0,1", "1,0", "1,1", "n,1", "1,n", "n-1,n-1", "n+1,1", "p,1"],
)
def test_j15_psychic_and_out_of_range_signatures(env: Env, r: int, s: int) -> None:
    """J15: r or s of 0, 1, n-1, n, n+1 or p never verify (CVE-2022-21449 class)."""
    head, _, _ = _es256_parts(env)
    assert env.refused(f"{head}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}") == "bad_signature"


@pytest.mark.parametrize("size", [63, 65, 66, 0], ids=["63", "65", "66", "der"])
def test_j15_wrong_size_or_der_signatures(env: Env, size: int) -> None:
    """J15: an ES256 signature must be exactly 64 raw bytes; truncated, padded or DER forms fail."""
    head, r, s = _es256_parts(env)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if size == 0:
        assert isinstance(env.ec.private, ec.EllipticCurvePrivateKey)
        sig = env.ec.private.sign(head.encode(), ec.ECDSA(hashes.SHA256()))
        assert decode_dss_signature(sig)
    else:
        sig = (raw + b"\x00" * 2)[:size]
    assert env.refused(f"{head}.{b64u(sig)}") == "bad_signature"


def test_j15_high_s_signature_is_valid(env: Env) -> None:
    """J15: the high-S twin (n - s) is a valid ECDSA signature, so signatures must never identify a token."""
    head, r, s = _es256_parts(env)
    twin = f"{head}.{b64u(r.to_bytes(32, 'big') + (P256_ORDER - s).to_bytes(32, 'big'))}"
    assert env.verify(twin).oid == OID


def test_j15_all_zero_rsa_signature(env: Env) -> None:
    """J15: an all-zero RS256 signature of the right length is simply a bad signature."""
    h, p, _ = env.token().split(".")
    assert env.refused(f"{h}.{p}.{b64u(bytes(256))}") == "bad_signature"


# -- J19 bearer extraction ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["Bearer ", "bearer ", "BEARER ", "bEaReR ", ""])
def test_j19_bearer_forms_accepted(env: Env, prefix: str) -> None:
    """J19: ``Bearer`` in any case with one space, or a bare token as the Azure SDKs send it."""
    token = env.token()
    assert bearer_token(prefix + token) == token
    assert looks_like_jwt(prefix + token)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer-{t}",
        "Bearer  {t}",
        "Bearer\t{t}",
        " Bearer {t}",
        "Bearer {t} ",
        "Bearer {t},Bearer {t}",
        "{t}, {t}",
        "Basic {t}",
        "Bearer ",
        "SharedAccessSignature sr=a&sig=b&se=1&skn=c",
        "Bearer\u00a0{t}",
    ],
    ids=[
        "dash",
        "double_space",
        "tab",
        "leading_space",
        "trailing_space",
        "envoy_merged",
        "comma_joined",
        "basic",
        "empty",
        "sas",
        "nbsp",
    ],
)
def test_j19_other_forms_refused(env: Env, value: str) -> None:
    """J19: wrong schemes, extra whitespace and comma-merged duplicates never yield a verifiable token."""
    with pytest.raises(InvalidCredential) as info:
        env.verify(bearer_token(value.format(t=env.token())))
    assert info.value.reason == "malformed_token"


def test_j19_looks_like_jwt_tells_carriers_apart() -> None:
    """J19: SAS tokens and junk are not mistaken for JWTs; three dotted base64url segments are."""
    assert looks_like_jwt("a.b.c")
    assert not looks_like_jwt("SharedAccessSignature sr=a&sig=b")
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("a.b.c" + "d" * MAX_TOKEN_BYTES)


# -- the JWS layer --------------------------------------------------------------------------------------------------


def test_parse_jws_never_echoes_the_signature_in_repr(env: Env) -> None:
    """A parsed JWS prints its header and algorithm but never its payload or signature bytes."""
    token = env.token()
    text = repr(parse_jws(token))
    assert token.split(".")[2] not in text and "signature" not in text and "RS256" in text
