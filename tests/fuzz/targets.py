"""One harness per parser of untrusted input. Each takes plain values (so hypothesis and atheris can both drive
it), lets only the documented domain errors pass, checks what must hold when the input *is* accepted, and counts
its iterations in :data:`COUNTS`.

A harness fails by raising: ``AssertionError`` for a broken property, or whatever unexpected exception escaped
the code under test (a crash). The documented errors are:

=====================  ==========================================================================================
parse_sas              InvalidCredential                       parse_sr         InvalidCredential
canonical_segments     ValueError (UnicodeDecodeError is one)  split_target     NotPermitted
parse_query            InvalidCredential, NotPermitted         find_credential  InvalidCredential
JWT (bearer + verify)  InvalidCredential, CannotVerify          JWK / JWKS       JwkError (a ValueError)
CheckRequest           NotPermitted (translation); protobuf DecodeError from ParseFromString (the gRPC layer's)
config                 ConfigError                             DecisionService  nothing: never raises
=====================  ==========================================================================================
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus, unquote_to_bytes

import jwt as pyjwt
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from envoy.service.auth.v3 import external_auth_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2
from multidict import CIMultiDict

from gateway_authz.adapters import envoy_http, forward_auth, nginx
from gateway_authz.adapters._envoy_grpc_wire import check_request_to_authz, decision_to_check_response
from gateway_authz.adapters.envoy_grpc import AuthorizationServicer
from gateway_authz.config.loader import parse_settings
from gateway_authz.core.appkeys import FAST_PATH, SERVICE
from gateway_authz.core.credentials import FoundCredential, QueryFacts, find_credential, parse_query
from gateway_authz.core.errors import CannotVerify, ConfigError, InvalidCredential, NotPermitted
from gateway_authz.core.model import AuthzRequest, headers_from_pairs
from gateway_authz.core.resources import ResourcePath, canonical_host, canonical_segments, parse_sr, split_target
from gateway_authz.core.settings import Identity, Issuer
from gateway_authz.decision.runtime import Runtime
from gateway_authz.entra.jwk import (
    _PRIVATE_MEMBERS,
    SUPPORTED_ALGORITHMS,
    JwkError,
    KeySet,
    VerificationKey,
    decode_json,
    parse_jwk,
    parse_jwk_set,
)
from gateway_authz.entra.jwks import JwksCache, JwksFetchError
from gateway_authz.entra.jwt import MAX_TOKEN_BYTES, VerifiedJwt, bearer_token, verify_jwt
from gateway_authz.entra.rbac import RbacPolicy
from gateway_authz.http.app import decision_handler, fast_decision_handler
from gateway_authz.http.fastpath import PreparedAnswer
from gateway_authz.sas.token import MAX_EXPIRY, MAX_SAS_LENGTH, SAS_PREFIX, RuleKeys, SasToken, parse_sas, verify_sas

from . import world as w

COUNTS: collections.Counter[str] = collections.Counter()
ALLOWS: collections.Counter[str] = collections.Counter()  # earned allows the fuzz worlds checked, by kind
"""Harness name -> iterations run in this process (printed by ``tests/test_fuzz.py`` for the README figures)."""

RULE_KEYS = tuple((host, entity, RuleKeys(rule)) for host, entity, rule in w.SIGNERS)
_NO_SUCH_DIR = Path("/nonexistent/gateway-authz-fuzz")  # {file:} keys in fuzzed configs resolve to nothing here
ENVIRON = {"SEND_KEY": w.fake_key("env send")}  # the one {env:} key the valid fuzz config names
_SR_ALIASES = ("sb", "http", "https", "ws", "wss", "HTTP", "Sb")


def rejoin(segments: Iterable[str]) -> str:
    """A canonical resource's segments written back as a raw path, every segment percent-encoded."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def genuine(token: SasToken, keys: Iterable[str | None]) -> bool:
    """Whether one of ``keys`` really signed ``token`` (recomputed here, not by the code under test)."""
    return any(
        hmac.compare_digest(hmac.new(k.encode(), token.string_to_sign, hashlib.sha256).digest(), token.signature)
        for k in keys
        if k
    )


def check_canonical(resource: ResourcePath) -> None:
    """A canonical resource is a fixed point of the canonicaliser and holds nothing ambiguous."""
    assert canonical_host(resource.host) == resource.host, resource
    for segment in resource.segments:
        assert segment not in ("", ".", ".."), resource
        assert not re.search(r"[\x00-\x1f\x7f/\\A-Z]", segment), resource
    assert resource.segments[:1] != ("$hc",), f"a canonical path never starts with $hc: {resource}"
    assert canonical_segments(rejoin(resource.segments)) == resource.segments, resource
    assert parse_sr(f"sb://{resource.host}{rejoin(resource.segments)}") == resource


# -- SAS ---------------------------------------------------------------------------------------------------------


def sas_token(value: str) -> None:
    """parse_sas, then verify_sas against every rule of the world: a success must be a genuine signature."""
    COUNTS["parse_sas"] += 1
    try:
        token = parse_sas(value)
    except InvalidCredential:
        return
    assert value.startswith(SAS_PREFIX) and len(value) <= MAX_SAS_LENGTH
    assert len(token.signature) == 32 and 0 <= token.expiry <= MAX_EXPIRY and token.raw_se == str(token.expiry)
    assert 0 < len(token.key_name) <= 256
    check_canonical(token.resource)
    for _host, _entity, keys in RULE_KEYS:
        try:
            verified = verify_sas(token, [keys], now=w.NOW, clock_skew=300)
        except InvalidCredential:
            continue
        assert genuine(token, (verified.rule.primary_key, verified.rule.secondary_key)), "forged signature verified"
        assert token.expiry + 300 > w.NOW


def sr(value: str) -> None:
    """parse_sr over a decoded resource URI; an accepted one is canonical and scheme-alias invariant."""
    COUNTS["parse_sr"] += 1
    try:
        resource = parse_sr(value)
    except InvalidCredential:
        return
    check_canonical(resource)
    _scheme, sep, rest = value.partition("://")
    assert sep
    for alias in _SR_ALIASES:
        assert parse_sr(f"{alias}://{rest}") == resource, (alias, value)


def path_segments(value: str) -> None:
    """canonical_segments: only ValueError; an accepted path canonicalises to a fixed point."""
    COUNTS["canonical_segments"] += 1
    try:
        segments = canonical_segments(value)
    except ValueError:
        return
    check_canonical(ResourcePath(w.HOST, segments))


def request_target(value: str) -> None:
    """split_target: only NotPermitted; an accepted target splits into an origin-form path and its query."""
    COUNTS["split_target"] += 1
    try:
        path, query = split_target(value)
    except NotPermitted:
        return
    assert path.startswith("/") and "?" not in path
    assert value == (f"{path}?{query}" if "?" in value else path)


def query(value: str) -> QueryFacts | None:
    """parse_query against a reference reading: one literal sb-hc-token at most, no disguised spelling of it."""
    COUNTS["parse_query"] += 1
    try:
        facts = parse_query(value)
    except (InvalidCredential, NotPermitted):
        return None
    pairs = [pair.partition("=") for pair in value.split("&")] if value else []
    literal = [raw for name, _, raw in pairs if name == "sb-hc-token"]
    assert len(literal) <= 1
    assert facts.token == (unquote_plus(literal[0], errors="strict") if literal else None)
    actions = [raw for name, _, raw in pairs if name == "sb-hc-action"]
    assert len(actions) <= 1 and (facts.action_right is None) == (not actions)
    for name, _, _ in pairs:
        try:
            decoded = unquote_to_bytes(name).decode("utf-8").lower()
        except UnicodeDecodeError:
            continue
        if decoded in ("sb-hc-token", "sb-hc-action"):
            assert name == decoded, f"disguised {decoded} spelling {name!r} was accepted"
    return facts


def credential(headers: Iterable[tuple[str, str]], query_string: str) -> FoundCredential | None:
    """find_credential: only InvalidCredential; what it finds follows Relay's precedence and is well-shaped."""
    COUNTS["find_credential"] += 1
    request = AuthzRequest("envoy-http", "POST", w.HOST, "/orders", headers_from_pairs(headers))
    try:
        facts = parse_query(query_string)
        found = find_credential(request, facts)
    except (InvalidCredential, NotPermitted):
        return None
    sba, authorization = request.header("servicebusauthorization"), request.header("authorization")
    if found is None:
        assert facts.token is None and not sba and not authorization
        return None
    expected = "query" if facts.token is not None else ("servicebusauthorization" if sba else "authorization")
    assert found.carrier == expected, (found.carrier, expected)
    assert len(found.value) <= 16 * 1024
    if found.kind == "sas":
        assert found.value.startswith(SAS_PREFIX)
    else:
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*", found.value), found.value
    return found


# -- JWT, JWK, JWKS ----------------------------------------------------------------------------------------------


def check_verified(token: str, verified: VerifiedJwt) -> None:
    """The verifier's result for ``token`` must be one the token's own text deserves (see ``world.jwt_oracle``)."""
    w.jwt_oracle(token, verified)


def jwt_credential(value: str) -> None:
    """bearer_token + verify_jwt with the world's fixed keys: only InvalidCredential / CannotVerify."""
    COUNTS["jwt_verify"] += 1
    try:
        token = bearer_token(value)
        verified = verify_jwt(token, w.REGISTRY, lambda _issuer: w.KEYSET, now=w.NOW, leeway=60)
    except InvalidCredential as error:
        if error.reason == "bad_signature":  # the differential: PyJWS must not accept what we called forged
            head = json.loads(pyjwt.utils.base64url_decode(token.split(".")[0]))
            assert not w._pyjws_accepts(token, head["alg"]), "PyJWS verifies a signature we refused"
        return
    except CannotVerify:
        return
    assert len(token) <= MAX_TOKEN_BYTES
    check_verified(token, verified)


def jwt_signed(header: bytes, payload: bytes, alg: str) -> None:
    """Weird tokens with *valid* signatures (Tink's idea): the claim and header gates alone must hold."""
    COUNTS["jwt_signed"] += 1
    jwt_credential(w.jwt_from_text(header, payload, alg))


def jwk_document(data: bytes) -> KeySet | None:
    """decode_json + parse_jwk_set over raw bytes: only JwkError; a key set holds only usable public keys."""
    COUNTS["jwks_document"] += 1
    try:
        keyset = parse_jwk_set(decode_json(data))
    except JwkError:
        return None
    check_keyset(keyset)
    return keyset


def check_keyset(keyset: KeySet) -> None:
    for kid, key in keyset.keys.items():
        assert isinstance(key, VerificationKey) and key.kid == kid and kid not in keyset.ambiguous
        assert key.algorithms and key.algorithms <= SUPPORTED_ALGORITHMS and key.kty in ("RSA", "EC")


def jwk_object(value: Any) -> None:
    """parse_jwk over any JSON value: only JwkError; an accepted key is public, for signing, fit for its alg."""
    COUNTS["jwk"] += 1
    try:
        key = parse_jwk(value)
    except JwkError:
        return
    assert isinstance(value, Mapping) and value["kty"] in ("RSA", "EC") and not (_PRIVATE_MEMBERS & value.keys())
    assert value.get("use") in (None, "sig") and key.kid == value["kid"]
    if value.get("alg") is not None:  # parse_jwk reads a JSON null alg (and use, key_ops) as absent: lenient
        assert key.algorithms == {value["alg"]}
    check_keyset(KeySet(keys={key.kid: key}))


class _ServedDocuments:
    """A fetcher serving fuzzed bytes: the discovery document at its URL, the key document anywhere else."""

    def __init__(self, discovery: bytes, keys: bytes) -> None:
        self.discovery, self.keys = discovery, keys

    async def fetch(self, url: str) -> bytes:
        body = self.discovery if url.endswith("/openid-configuration") else self.keys
        if body == b"!":
            raise JwksFetchError("HTTP 500")
        return body


DISCOVERY_URL = "https://login.microsoftonline.com/" + w.TENANT + "/v2.0/.well-known/openid-configuration"
FETCHED_ISSUER = Issuer(
    issuer=w.V2_TEMPLATE,
    tenants=(w.TENANT,),
    audiences=(w.AUDIENCE,),
    algorithms=("RS256",),
    discovery_url=DISCOVERY_URL,
)
VALID_RS256 = w.jwt_token("RS256")


async def jwks_fetched(discovery: bytes, keys: bytes) -> None:
    """JwksCache.verify with fuzzed discovery and key documents: only InvalidCredential / CannotVerify.

    A token can only verify when the served key set really publishes the world's RSA key under its kid.
    """
    COUNTS["jwks_fetch"] += 1
    events: list[str] = []
    cache = JwksCache(
        Identity(issuers=(FETCHED_ISSUER,)),
        _ServedDocuments(discovery, keys),
        clock=lambda: 0.0,
        on_event=lambda name, _fields: events.append(name),
    )
    try:
        verified = await cache.verify("Bearer " + VALID_RS256, now=w.NOW)
    except (InvalidCredential, CannotVerify):
        verified = None
    finally:
        status = cache.status()[0]
        await cache.stop()
    assert status.fetches == 1 and (status.failures == 1) == ("jwks.fetch_failed" in events)
    if verified is not None:
        published = json.loads(keys)["keys"]
        rsa = w.JWKS["keys"][0]
        assert any(isinstance(k, dict) and (k.get("kid"), k.get("n")) == ("rsa-1", rsa["n"]) for k in published)
        check_verified(VALID_RS256, verified)


# -- Envoy gRPC CheckRequest ----------------------------------------------------------------------------------------


class _ErrorLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_GRPC_ERRORS = _ErrorLogs()
logging.getLogger("gateway_authz.adapters.envoy_grpc").addHandler(_GRPC_ERRORS)


def check_request(world: w.World, message: Any) -> None:
    """Translate a CheckRequest (only NotPermitted), decide it, answer it; the servicer agrees, logs no error."""
    COUNTS["check_request"] += 1
    try:
        request: AuthzRequest | None = check_request_to_authz(message)
    except NotPermitted as error:
        assert error.reason == "malformed_request"
        request = None
    if request is not None:
        decision = world.check(request)
        response = decision_to_check_response(decision)
        assert (response.status.code == code_pb2.OK) is decision.allowed
        assert response.HasField("ok_response") is decision.allowed
    before = len(_GRPC_ERRORS.records)
    answer = w.drive(AuthorizationServicer(world.service).Check(message, None))
    assert len(_GRPC_ERRORS.records) == before, _GRPC_ERRORS.records[-1].getMessage()
    assert answer.status.code in (code_pb2.OK, code_pb2.UNAUTHENTICATED, code_pb2.PERMISSION_DENIED)
    if request is None:
        assert answer.status.code == code_pb2.PERMISSION_DENIED
    else:  # the decision may come from the cache now; the outcome may not change
        assert (answer.status.code == code_pb2.OK) is decision.allowed


def check_request_bytes(world: w.World, data: bytes) -> None:
    """Random bytes through ``CheckRequest.FromString`` (the gRPC layer's DecodeError is fine), then as above."""
    COUNTS["check_request_bytes"] += 1
    try:
        message = external_auth_pb2.CheckRequest.FromString(data)
    except DecodeError:
        return
    check_request(world, message)


# -- configuration ---------------------------------------------------------------------------------------------


def config(data: bytes) -> None:
    """parse_settings over any bytes: only ConfigError; whatever loads must also compile and serve."""
    COUNTS["config"] += 1
    try:
        settings = parse_settings(data, source="<fuzz>", base_dir=_NO_SUCH_DIR, environ=ENVIRON)
    except ConfigError as error:
        assert error.problems and all(isinstance(p.message, str) and p.message for p in error.problems)
        return
    Runtime.build(settings, clock=lambda: w.NOW)
    RbacPolicy.from_settings(settings)
    JwksCache.from_settings(settings, _ServedDocuments(b"!", b"!"))


# -- the decision service and the HTTP adapters ----------------------------------------------------------------


def service_request(world: w.World, request: AuthzRequest) -> None:
    """decide() never raises; a deny is 401/403; an allow is earned (World.explain_allow); a repeat answers alike."""
    COUNTS["decide"] += 1
    first = world.check(request)
    again = world.check(request)  # now through the decision cache and the request memo: the same answer
    assert (again.status, again.reason, again.auth, again.principal) == (
        first.status,
        first.reason,
        first.auth,
        first.principal,
    )


_ADAPTERS = {"envoy-http": envoy_http, "nginx": nginx, "forward-auth": forward_auth}


def http_request(world: w.World, gateway: str, method: str, path: str, headers: list[tuple[str, str]]) -> None:
    """An HTTP check request as aiohttp hands it to an adapter: 200 only for an earned allow, else 401/403; and
    ``serve``'s router-less handler answers it exactly as the routed application would."""
    COUNTS["http_adapter"] += 1
    app = web.Application()
    app[SERVICE] = world.service
    app[FAST_PATH] = True
    try:
        mocked = make_mocked_request(method, path, headers=CIMultiDict(headers), app=app)
    except ValueError:
        return  # not a request line aiohttp's parser would ever produce
    adapter = _ADAPTERS[gateway]
    decision = world.check(adapter.to_authz_request(mocked))
    status, answer_headers, body = _answer_of(w.drive(decision_handler(adapter.to_authz_request)(mocked)))
    assert status in (200, 401, 403)
    assert (status == 200) is decision.allowed
    if status == 401:
        assert "www-authenticate" in answer_headers
    if status != 200:
        fields = json.loads(body)
        assert set(fields) == {"error", "reason", "decision_id"} and fields["reason"] == decision.reason
    # serve's router-less handler must answer exactly as the routed application (the reference read from its routes)
    path = mocked.rel_url.path_safe
    routed = _ROUTES.get(path) or (envoy_http if re.fullmatch(r"/ext_authz(/.*)?", path, re.DOTALL) else None)
    fast = w.drive(fast_decision_handler(app, _not_found)(mocked))
    if routed is None or mocked.headers.get("Expect"):
        assert fast.status == 404
        return
    expected = w.drive(decision_handler(routed.to_authz_request)(mocked))
    assert _answer_of(fast) == _answer_of(expected)


def _answer_of(response: web.StreamResponse) -> tuple[int, CIMultiDict[str], bytes]:
    """Status, headers and body of an answer, whether prepared bytes or an aiohttp ``web.Response``, with its
    decision id (which differs per answer) written ``<id>``."""
    if isinstance(response, PreparedAnswer):
        wire = response.wire
        return wire.status, CIMultiDict(wire.all_headers("<id>")), wire.body("<id>")
    assert isinstance(response, web.Response)
    headers = CIMultiDict(response.headers)
    decision_id = headers.get("x-authz-decision-id", "")
    body = bytes(response.body or b"")  # type: ignore[arg-type]
    if decision_id:
        headers["x-authz-decision-id"] = "<id>"
        body = body.replace(decision_id.encode(), b"<id>")
    return response.status, headers, body


_ROUTES = {"/auth": nginx, "/forward-auth": forward_auth}


async def _not_found(_request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(status=404)


# -- byte-level mutation, shared by hypothesis batches and atheris ------------------------------------------------

TOKENS = (
    b"&",
    b"=",
    b"%",
    b"%2F",
    b"%2f",
    b"%25",
    b"%00",
    b"%C0%AE",
    b"..",
    b"/",
    b"$hc/",
    b"sr=",
    b"sig=",
    b"se=",
    b"skn=",
    b"://",
    b"@",
    b"?",
    b"#",
    b":443",
    b"\\",
    b" ",
    b"+",
    b".",
    b"\xff",
    b"\x00",
    b"%3D",
    b"%2B",
)


def mutate(data: bytes, rng: random.Random, edits: int = 1) -> bytes:
    """``edits`` random edits: substitute, insert or delete one byte, or splice in a dictionary token."""
    buffer = bytearray(data)
    for _ in range(edits):
        op = rng.randrange(4) if buffer else 1
        if op == 0:
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
        elif op == 1:
            buffer.insert(rng.randrange(len(buffer) + 1), rng.randrange(256))
        elif op == 2:
            del buffer[rng.randrange(len(buffer))]
        else:
            at = rng.randrange(len(buffer) + 1)
            buffer[at:at] = rng.choice(TOKENS)
    return bytes(buffer)


def mutate_text(text: str, rng: random.Random, edits: int = 1) -> str:
    """:func:`mutate` over the Latin-1 bytes of ``text``: every byte value becomes one character."""
    return mutate(text.encode("latin-1", "replace"), rng, edits).decode("latin-1")
