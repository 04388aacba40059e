"""Fuzzing in the default test run: every harness of ``tests/fuzz/`` for a bounded number of hypothesis examples.

Deterministic by default (``derandomize=True``, no example database), so CI replays the same inputs each run and
a failure reproduces anywhere. ``GATEWAY_AUTHZ_FUZZ_SCALE=10`` multiplies the examples;
``GATEWAY_AUTHZ_FUZZ_RANDOM=1`` draws fresh inputs on every run (fuzzing by hand). The run's closing summary prints
how many iterations each harness ran (``tests/conftest.py``); the pure parsers run :data:`BATCH` seeded byte-level
mutants per hypothesis example, which is where most of their iterations come from.

Every harness asserts the same three things: only the documented domain errors escape (the table in
:mod:`fuzz.targets`), whatever is accepted is well-formed, and the decision service never allows what garbage asks.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway_authz.core.errors import InvalidCredential
from gateway_authz.core.model import AuthzRequest, headers_from_pairs
from gateway_authz.sas.token import parse_sas
from tests.fuzz import strategies as s
from tests.fuzz import targets
from tests.fuzz.world import HOST, SIGNERS, World

SCALE = float(os.environ.get("GATEWAY_AUTHZ_FUZZ_SCALE", "1"))
RANDOM = os.environ.get("GATEWAY_AUTHZ_FUZZ_RANDOM") == "1"
BATCH = 25


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=not RANDOM,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    made = World()
    yield made
    targets.ALLOWS.update(made.allows)  # for the run's closing summary (tests/conftest.py)


# -- SAS and resources -------------------------------------------------------------------------------------------


def batch(harness: Callable[[Any], object], value: Any, seed: int, size: int = BATCH) -> None:
    """``harness`` on ``value`` and on ``size`` seeded mutants of it (1-3 byte edits or dictionary splices)."""
    harness(value)
    rng = random.Random(seed)
    mutate = targets.mutate if isinstance(value, bytes) else targets.mutate_text
    for _ in range(size):
        harness(mutate(value, rng, rng.randint(1, 3)))


@fuzz(150)
@given(s.SAS_VALUES, s.SEEDS)
def test_fuzz_parse_sas(value: str, seed: int) -> None:
    """parse_sas + verify_sas: only InvalidCredential; a token that verifies was genuinely signed."""
    batch(targets.sas_token, value, seed)


@fuzz(150)
@given(st.sampled_from(s.VALID_SAS), s.SEEDS)
def test_fuzz_parse_sas_mutants_of_valid_tokens(base: str, seed: int) -> None:
    """Valid tokens (every rule, spelling, key slot) and 2 x BATCH seeded mutants of each."""
    batch(targets.sas_token, base, seed, 2 * BATCH)


@fuzz(150)
@given(s.SR_VALUES, s.SEEDS)
def test_fuzz_parse_sr(value: str, seed: int) -> None:
    """parse_sr: only InvalidCredential; an accepted sr is canonical and the same under every scheme alias."""
    batch(targets.sr, value, seed)


@fuzz(150)
@given(s.PATH_VALUES, s.SEEDS)
def test_fuzz_canonical_segments(value: str, seed: int) -> None:
    """canonical_segments: only ValueError; an accepted path is a fixed point with no ambiguous segment."""
    batch(targets.path_segments, value, seed)


@fuzz(100)
@given(s.TARGETS, s.SEEDS)
def test_fuzz_split_target(value: str, seed: int) -> None:
    """split_target: only NotPermitted; an accepted target splits into an origin-form path and its query."""
    batch(targets.request_target, value, seed)


@fuzz(150)
@given(s.QUERY_VALUES, s.SEEDS)
def test_fuzz_parse_query(value: str, seed: int) -> None:
    """parse_query: only InvalidCredential/NotPermitted; agrees with a reference reading of the query."""
    batch(targets.query, value, seed)


@fuzz(150)
@given(s.HEADERS, s.QUERY_VALUES, s.SEEDS)
def test_fuzz_find_credential(headers: list[tuple[str, str]], query: str, seed: int) -> None:
    """find_credential: only InvalidCredential; the carrier found follows Relay's precedence."""
    batch(lambda q: targets.credential(headers, q), query, seed, BATCH // 3)
    rng = random.Random(seed)
    for _ in range(BATCH // 3 if headers else 0):
        i = rng.randrange(len(headers))
        edited = [*headers[:i], (headers[i][0], targets.mutate_text(headers[i][1], rng)), *headers[i + 1 :]]
        targets.credential(edited, query)


# -- JWT, JWK, JWKS ----------------------------------------------------------------------------------------------


@fuzz(200)
@given(s.JWT_VALUES, s.SEEDS)
def test_fuzz_jwt_bearer_and_verify(value: str, seed: int) -> None:
    """bearer_token + verify_jwt with fixed keys: only InvalidCredential/CannotVerify; PyJWS agrees on signatures."""
    batch(targets.jwt_credential, value, seed, BATCH // 3)


@fuzz(100)
@given(s.JWT_HEADERS, s.JWT_PAYLOADS, st.sampled_from(["RS256", "ES256"]))
def test_fuzz_jwt_weird_tokens_with_valid_signatures(header: bytes, payload: bytes, alg: str) -> None:
    """Genuinely signed tokens over fuzzed headers and claims: the claim gates alone decide, correctly."""
    targets.jwt_signed(header, payload, alg)


@fuzz(200)
@given(s.JWK_OBJECTS)
def test_fuzz_parse_jwk(value: Any) -> None:
    """parse_jwk: only JwkError; an accepted key is public, for signatures, and bound to a fitting alg."""
    targets.jwk_object(value)


@fuzz(150)
@given(s.JWK_DOCUMENTS, s.SEEDS)
def test_fuzz_jwks_document(data: bytes, seed: int) -> None:
    """decode_json + parse_jwk_set over bytes: only JwkError; the set holds only usable, unambiguous keys."""
    batch(targets.jwk_document, data, seed, BATCH // 3)


def test_fuzz_jwks_fetch_and_verify() -> None:
    """JwksCache.verify over fuzzed discovery and key documents: a token verifies only under the real key."""
    with asyncio.Runner() as runner:

        @fuzz(100)
        @given(s.DISCOVERY_DOCUMENTS, s.KEY_DOCUMENTS)
        def run(discovery: bytes, keys: bytes) -> None:
            runner.run(targets.jwks_fetched(discovery, keys))

        run()


# -- gRPC, configuration, the service ------------------------------------------------------------------------------


@fuzz(200)
@given(s.CHECK_REQUESTS)
def test_fuzz_check_request_fields(world: World, message: Any) -> None:
    """Random-field CheckRequests: translation raises only NotPermitted; the servicer never errs or lets garbage in."""
    targets.check_request(world, message)


@fuzz(150)
@given(s.CHECK_REQUEST_BYTES, s.SEEDS)
def test_fuzz_check_request_bytes(world: World, data: bytes, seed: int) -> None:
    """CheckRequests parsed from random and mutated bytes, through the same harness."""
    batch(lambda d: targets.check_request_bytes(world, d), data, seed, BATCH // 3)


@fuzz(100)
@given(s.CONFIG_BYTES, s.SEEDS)
def test_fuzz_config_loader(data: bytes, seed: int) -> None:
    """parse_settings over fuzzed YAML: only ConfigError; whatever loads compiles into a serving runtime."""
    batch(targets.config, data, seed, 2)


@fuzz(300)
@given(s.AUTHZ_REQUESTS, s.SEEDS)
def test_fuzz_decision_service(world: World, request: AuthzRequest, seed: int) -> None:
    """DecisionService.decide over arbitrary requests: never raises, denies with 401/403, allows only when earned."""
    targets.service_request(world, request)
    rng = random.Random(seed)
    for _ in range(4):  # the same request with its target or one credential header value mutated
        headers = [(name, value) for name, values in request.headers.items() for value in values]
        if headers and rng.random() < 0.7:
            i = rng.randrange(len(headers))
            headers[i] = (headers[i][0], targets.mutate_text(headers[i][1], rng, rng.randint(1, 3)))
            mutant = request._replace(headers=headers_from_pairs(headers))
        else:
            mutant = request._replace(target=targets.mutate_text(request.target, rng, rng.randint(1, 3)))
        targets.service_request(world, mutant)


@fuzz(120)
@given(s.HTTP_REQUESTS)
def test_fuzz_http_adapters(world: World, args: tuple[str, str, str, list[tuple[str, str]]]) -> None:
    """The Envoy HTTP, NGINX and forward-auth handlers: 200 only for an earned allow, else 401/403 with the body."""
    targets.http_request(world, *args)


_GARBAGE_CREDENTIALS = st.one_of(
    s.ANY_TEXT,
    s.JWT_VALUES.filter(lambda v: not any(token in v for token in s.VALID_JWT)),  # mutants never verify
    s.SAS_STRUCTURED.filter(lambda v: not _genuine_sas(v)),  # fields of valid tokens may reassemble into one
)


def _genuine_sas(value: str) -> bool:
    try:
        token = parse_sas(value)
    except InvalidCredential:
        return False
    return any(targets.genuine(token, (rule.primary_key, rule.secondary_key)) for _, _, rule in SIGNERS)


@fuzz(200)
@given(
    st.sampled_from(list(s.PATHS[1:])),
    st.sampled_from(["ServiceBusAuthorization", "Authorization", "sb-hc-token"]),
    _GARBAGE_CREDENTIALS,
)
def test_fuzz_zero_allows_from_garbage(world: World, path: str, carrier: str, credential: str) -> None:
    """A request whose only credential is garbage is never allowed, on any configured path, in any carrier."""
    if carrier == "sb-hc-token":
        request = AuthzRequest("envoy-http", "POST", HOST, f"{path}?sb-hc-token={quote(credential)}", {})
    else:
        request = AuthzRequest("envoy-http", "POST", HOST, path, headers_from_pairs([(carrier, credential)]))
    targets.COUNTS["decide.garbage"] += 1
    decision = world.check(request)
    assert not decision.allowed or decision.auth == "anonymous", decision
