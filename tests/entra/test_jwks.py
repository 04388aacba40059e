"""gateway_authz.entra.jwks: the key cache against a real OIDC provider on loopback, and against fakes for timing.

TTLs and cooldowns run on an injected monotonic :class:`FakeClock`; token lifetimes on the real wall clock. No test
waits for a timer to fire: time moves only when a test advances the fake clock.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway_authz.core.errors import CannotVerify, InvalidCredential
from gateway_authz.core.settings import Identity, Issuer
from gateway_authz.entra.jwks import HttpJwksFetcher, JwksCache, JwksFetchError, check_fetch_url
from tests.oidc_provider import RELAY_AUDIENCE, TENANT, V1_TEMPLATE, V2_TEMPLATE, Behaviour, OidcProvider, SigningKey

TTL = 3600.0
COOLDOWN = 30.0
AUDIENCES = (RELAY_AUDIENCE, RELAY_AUDIENCE + "/")


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeFetcher:
    """Serves fixed bodies by URL and records every URL asked for; an optional gate holds fetches in flight."""

    def __init__(self, bodies: dict[str, Any] | None = None) -> None:
        self.bodies: dict[str, Any] = bodies or {}
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        body = self.bodies.get(url)
        if body is None:
            raise JwksFetchError("HTTP 404")
        if isinstance(body, Exception):
            raise body
        return body if isinstance(body, bytes) else json.dumps(body).encode()


class RefusingFetcher:
    """A fetcher for configurations that must never fetch: it records the attempt and refuses."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        raise AssertionError(f"unexpected outbound fetch of {url}")


@pytest.fixture(scope="module")
def provider_keys() -> list[SigningKey]:
    return [SigningKey.rsa(kid="rsa-a"), SigningKey.ec(kid="ec-a")]


@pytest.fixture
async def idp(provider_keys: list[SigningKey]) -> AsyncIterator[OidcProvider]:
    async with OidcProvider(keys=list(provider_keys)) as provider:
        yield provider


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def v2_issuer(**changes: Any) -> Issuer:
    fields: dict[str, Any] = {
        "issuer": V2_TEMPLATE,
        "tenants": (TENANT,),
        "audiences": AUDIENCES,
        "algorithms": ("RS256", "ES256"),
        **changes,
    }
    return Issuer(**fields)


def make_cache(fetcher: Any, clock: FakeClock, *issuers: Issuer, events: list[Any] | None = None) -> JwksCache:
    identity = Identity(leeway_seconds=60, issuers=issuers)
    sink = (lambda name, fields: events.append((name, dict(fields)))) if events is not None else None
    return JwksCache(identity, fetcher, ttl_seconds=TTL, cooldown_seconds=COOLDOWN, clock=clock, on_event=sink)


def http_cache(idp: OidcProvider, session: aiohttp.ClientSession, clock: FakeClock, **changes: Any) -> JwksCache:
    changes.setdefault("discovery_url", idp.discovery_url())
    return make_cache(HttpJwksFetcher(session, timeout=0.5), clock, v2_issuer(**changes))


async def refused(cache: JwksCache, token: str) -> str:
    with pytest.raises(InvalidCredential) as info:
        await cache.verify(token, now=time.time())
    return info.value.reason


# -- loading ------------------------------------------------------------------------------------------------------


async def test_discovery_then_keys_then_verify(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """The discovery document leads to the JWKS; a v2 token verifies after exactly one fetch of each."""
    cache = http_cache(idp, session, FakeClock())
    verified = await cache.verify(idp.mint(oid="0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d"), now=time.time())
    assert verified.oid == "0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d"
    assert idp.requests == {f"/{TENANT}/v2.0/.well-known/openid-configuration": 1, "/keys": 1}
    (status,) = cache.status()
    assert (status.loaded, status.stale, status.key_count, status.source, status.last_error) == (
        True,
        False,
        2,
        "discovery",
        "",
    )


async def test_v1_discovery_and_token(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """A v1 issuer (sts.windows.net) with its v1 discovery document verifies v1 tokens, ES256 included."""
    issuer = v2_issuer(issuer=V1_TEMPLATE, discovery_url=idp.discovery_url("1.0"))
    cache = make_cache(HttpJwksFetcher(session), FakeClock(), issuer)
    verified = await cache.verify(idp.mint(version="1.0", kid="ec-a"), now=time.time())
    assert (verified.version, verified.algorithm) == ("1.0", "ES256")


async def test_common_discovery_document_with_template_issuer(
    idp: OidcProvider, session: aiohttp.ClientSession
) -> None:
    """The tenant-independent document publishes the ``{tenantid}`` template itself, which matches the config."""
    cache = http_cache(idp, session, FakeClock(), discovery_url=idp.discovery_url(tenant="common"))
    assert (await cache.verify(idp.mint(), now=time.time())).tenant == TENANT


async def test_discovery_naming_another_issuer_is_refused(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """A discovery document whose ``issuer`` is not the configured one yields no keys: 503, and status says why."""
    idp.discovery_issuer_override = "https://login.microsoftonline.com/evil/v2.0"
    cache = http_cache(idp, session, FakeClock())
    with pytest.raises(CannotVerify) as info:
        await cache.verify(idp.mint(), now=time.time())
    assert info.value.reason == "keys_unavailable"
    assert "another issuer" in cache.status()[0].last_error
    assert idp.requests["/keys"] == 0 and not cache.ready()


async def test_jwks_uri_without_discovery(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """A configured ``jwksUri`` is fetched directly."""
    cache = http_cache(idp, session, FakeClock(), discovery_url=None, jwks_uri=idp.jwks_uri)
    assert (await cache.verify(idp.mint(), now=time.time())).algorithm == "RS256"
    assert dict(idp.requests) == {"/keys": 1}


async def test_bearer_prefix_is_accepted(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """:meth:`JwksCache.verify` takes ``Bearer <jwt>`` as well as the bare token."""
    cache = http_cache(idp, session, FakeClock())
    assert (await cache.verify("Bearer " + idp.mint(), now=time.time())).version == "2.0"


# -- J5: header-named keys are never fetched -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://evil.test/jwks"},
        {"x5u": "https://evil.test/cert.pem"},
        {"jku": "http://169.254.169.254/latest/meta-data/"},
        {"jku": "https://idp.example.comZevil.test/jwks"},
        {"jku": "https://idp.example.com@evil.test/jwks"},
        {"jku": "https://idp.example.com%0d0aHost: evil.test"},
        {"jku": "https://idp.example.com.evil.test/"},
        {"jku": "https://evil.test/?https://idp.example.com"},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
    ],
    ids=["jku", "x5u", "ssrf", "prefix_Z", "userinfo", "crlf", "subdomain", "query", "jwk", "x5c"],
)
async def test_j5_key_location_headers_cause_no_fetch(provider_keys: list[SigningKey], header: dict[str, Any]) -> None:
    """J5: ``jku``/``x5u``/``jwk``/``x5c`` are ignored: zero outbound fetches, for legit and attacker tokens alike."""
    legit = provider_keys[0]
    fetcher = RefusingFetcher()
    cache = make_cache(fetcher, FakeClock(), v2_issuer(jwks={"keys": [legit.public_jwk()]}))
    idp = OidcProvider(keys=[legit])
    assert (await cache.verify(idp.mint(header=header), now=time.time())).key_id == "rsa-a"
    attacker = SigningKey.ec(kid="attacker")
    idp.add_key(attacker)
    assert await refused(cache, idp.mint(kid="attacker", header=header)) == "unknown_kid"
    assert fetcher.calls == []


async def test_j5_only_the_configured_url_is_ever_fetched(provider_keys: list[SigningKey]) -> None:
    """J5: with a ``jwksUri`` issuer, a jku-bearing token with an unknown kid refetches the configured URL only."""
    fetcher = FakeFetcher({"https://idp.test/keys": {"keys": [provider_keys[0].public_jwk()]}})
    clock = FakeClock()
    cache = make_cache(fetcher, clock, v2_issuer(jwks_uri="https://idp.test/keys"))
    idp = OidcProvider(keys=[provider_keys[0], SigningKey.ec(kid="attacker")])
    await cache.verify(idp.mint(), now=time.time())
    clock.advance(COOLDOWN)
    assert await refused(cache, idp.mint(kid="attacker", header={"jku": "https://evil.test/k"})) == "unknown_kid"
    assert fetcher.calls == ["https://idp.test/keys", "https://idp.test/keys"]


# -- rotation (J18 "a genuinely new kid", "the IdP drops a key") ------------------------------------------------------


async def test_rotation_new_kid_accepted_after_one_refetch(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """J18: after a rotation, a token with the new kid is accepted after exactly one more JWKS fetch."""
    clock = FakeClock()
    cache = http_cache(idp, session, clock)
    await cache.verify(idp.mint(), now=time.time())
    new = idp.rotate()
    clock.advance(COOLDOWN)
    assert (await cache.verify(idp.mint(), now=time.time())).key_id == new.kid
    assert idp.requests["/keys"] == 2


async def test_rotation_within_the_cooldown_waits_for_it(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """J18: a new kid seen within the cooldown of the last fetch is refused without a fetch, then accepted."""
    clock = FakeClock()
    cache = http_cache(idp, session, clock)
    await cache.verify(idp.mint(), now=time.time())
    idp.rotate()
    clock.advance(COOLDOWN - 1)
    assert await refused(cache, idp.mint()) == "unknown_kid"
    assert idp.requests["/keys"] == 1
    clock.advance(1)
    assert (await cache.verify(idp.mint(), now=time.time())).oid
    assert idp.requests["/keys"] == 2


async def test_removed_key_refused_after_ttl(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """J18: a key the IdP stopped publishing keeps working until the TTL, then is refused after one refetch."""
    clock = FakeClock()
    cache = http_cache(idp, session, clock)
    old_token = idp.mint(kid="rsa-a")
    await cache.verify(old_token, now=time.time())
    idp.unpublish("rsa-a")
    clock.advance(TTL - 1)
    assert (await cache.verify(old_token, now=time.time())).key_id == "rsa-a"
    assert idp.requests["/keys"] == 1
    clock.advance(1)
    assert await refused(cache, old_token) == "unknown_kid"
    assert idp.requests["/keys"] == 2
    assert await refused(cache, old_token) == "unknown_kid"
    assert idp.requests["/keys"] == 2


# -- J17: the issuer misbehaves -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (Behaviour.DOWN, "fetch failed"),
        (Behaviour.ERROR, "HTTP 503"),
        (Behaviour.GARBAGE, "invalid JSON"),
        (Behaviour.NOT_OBJECT, "not a JSON object"),
        (Behaviour.REDIRECT, "redirect refused"),
        (Behaviour.HUGE, "size cap"),
        (Behaviour.SLOW, "TimeoutError"),
        (Behaviour.DRIP, "TimeoutError"),
    ],
    ids=lambda v: v.value if isinstance(v, Behaviour) else None,
)
async def test_j17_issuer_failure_keeps_last_good_keys(
    idp: OidcProvider, session: aiohttp.ClientSession, behaviour: Behaviour, error: str
) -> None:
    """J17: when the issuer fails in any way, cached keys keep serving (stale), and status says why."""
    clock = FakeClock()
    cache = http_cache(idp, session, clock)
    token = idp.mint()
    await cache.verify(token, now=time.time())
    idp.behaviour, idp.slow_seconds = behaviour, 5.0
    clock.advance(TTL)
    assert (await cache.verify(token, now=time.time())).key_id == "rsa-a"
    (status,) = cache.status()
    assert (status.loaded, status.stale, status.failures, status.key_count) == (True, True, 1, 2)
    assert error in status.last_error
    assert cache.ready()


async def test_j17_never_loaded_means_cannot_verify(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """J17: with no good key set ever loaded, a token is answered 503 (never "no verification"), once per cooldown."""
    clock = FakeClock()
    idp.behaviour = Behaviour.ERROR
    cache = http_cache(idp, session, clock)
    for _ in range(3):
        with pytest.raises(CannotVerify):
            await cache.verify(idp.mint(), now=time.time())
    assert idp.requests[f"/{TENANT}/v2.0/.well-known/openid-configuration"] == 1
    idp.behaviour = Behaviour.OK
    clock.advance(COOLDOWN)
    assert (await cache.verify(idp.mint(), now=time.time())).oid
    assert cache.ready() and cache.status()[0].last_error == ""


@pytest.mark.parametrize(
    "body",
    [{"keys": []}, {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, {"keys": "x"}, b"\xff\xfe", [1]],
    ids=["empty", "only_symmetric", "keys_not_list", "not_utf8", "array"],
)
async def test_j17_unusable_key_sets_keep_the_last_good(provider_keys: list[SigningKey], body: Any) -> None:
    """J17: an empty, all-refused or malformed key set is a failed fetch: the previous keys stay."""
    url = "https://idp.test/keys"
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    clock = FakeClock()
    cache = make_cache(fetcher, clock, v2_issuer(jwks_uri=url))
    idp = OidcProvider(keys=[provider_keys[0]])
    await cache.verify(idp.mint(), now=time.time())
    fetcher.bodies[url] = body
    clock.advance(TTL)
    assert (await cache.verify(idp.mint(), now=time.time())).key_id == "rsa-a"
    assert cache.status()[0].stale and cache.status()[0].failures == 1


async def test_j17_bad_members_are_skipped_and_reported(provider_keys: list[SigningKey]) -> None:
    """J17: one malformed or unknown-kty member among good ones is skipped, and an ops event names it."""
    url = "https://idp.test/keys"
    members = [{"kty": "OKP", "crv": "Ed25519", "x": "AA", "kid": "ed"}, {"kid": 1}, provider_keys[0].public_jwk()]
    events: list[Any] = []
    cache = make_cache(FakeFetcher({url: {"keys": members}}), FakeClock(), v2_issuer(jwks_uri=url), events=events)
    await cache.refresh_due()
    assert cache.status()[0].key_count == 1
    assert [e[1]["kid"] for e in events if e[0] == "jwks.key_skipped"] == ["ed", "#1"]


@pytest.mark.parametrize(
    "jwks_uri",
    ["http://evil.example/keys", "file:///etc/passwd", "data:application/json,{}", "ftp://idp.test/keys", "keys"],
)
async def test_j17_discovered_jwks_uri_must_pass_the_url_policy(jwks_uri: str) -> None:
    """J17: a discovery document pointing at plain http, file:, data: or a relative URL is refused unfetched."""
    discovery = "https://idp.test/.well-known/openid-configuration"
    fetcher = FakeFetcher({discovery: {"issuer": V2_TEMPLATE, "jwks_uri": jwks_uri}})
    cache = make_cache(fetcher, FakeClock(), v2_issuer(discovery_url=discovery))
    await cache.refresh_due()
    assert fetcher.calls == [discovery]
    assert "refused" in cache.status()[0].last_error or "absolute" in cache.status()[0].last_error


@pytest.mark.parametrize(
    ("url", "insecure", "ok"),
    [
        ("https://login.microsoftonline.com/common/discovery/v2.0/keys", False, True),
        ("http://127.0.0.1:8080/keys", False, True),
        ("http://localhost/keys", False, True),
        ("http://[::1]:9/keys", False, True),
        ("http://idp.internal/keys", False, False),
        ("http://idp.internal/keys", True, True),
        ("http://127.0.0.1.evil.test/keys", False, False),
        ("https://user:pw@idp.test/keys", False, False),
        ("https://idp.test@evil.test/keys", False, False),
        ("file:///etc/passwd", True, False),
        ("data:,{}", True, False),
        ("/keys", True, False),
        ("gopher://idp.test/", True, False),
    ],
)
def test_fetch_url_policy(url: str, insecure: bool, ok: bool) -> None:
    """https only, except loopback or an explicit ``allowInsecureHttp``; never userinfo or other schemes."""
    if ok:
        check_fetch_url(url, allow_insecure_http=insecure)
    else:
        with pytest.raises(JwksFetchError):
            check_fetch_url(url, allow_insecure_http=insecure)


async def test_http_fetcher_caps_declared_length(idp: OidcProvider, session: aiohttp.ClientSession) -> None:
    """A body over the cap is refused even when announced by Content-Length, before reading it."""
    with pytest.raises(JwksFetchError, match="size cap"):
        await HttpJwksFetcher(session, max_bytes=100).fetch(idp.jwks_uri)


# -- J18: refetch storms ------------------------------------------------------------------------------------------


async def test_j18_flood_of_random_kids_one_fetch_per_cooldown(
    idp: OidcProvider, session: aiohttp.ClientSession
) -> None:
    """J18: 300 concurrent tokens with random kids cause one JWKS fetch per cooldown window, shared by all."""
    clock = FakeClock()
    cache = http_cache(idp, session, clock)
    await cache.verify(idp.mint(), now=time.time())
    attacker = SigningKey.ec(kid="attacker")

    def flood() -> list[str]:
        tokens = []
        for _ in range(300):
            attacker.kid = f"kid-{uuid.uuid4().hex}"
            idp.add_key(attacker, publish=False)
            tokens.append(idp.mint(kid=attacker.kid))
        return tokens

    async def refuse_all(tokens: list[str]) -> set[str]:
        results = await asyncio.gather(*(cache.verify(t, now=time.time()) for t in tokens), return_exceptions=True)
        return {r.reason for r in results if isinstance(r, InvalidCredential)} | {
            type(r).__name__ for r in results if not isinstance(r, InvalidCredential)
        }

    clock.advance(COOLDOWN)
    assert await refuse_all(flood()) == {"unknown_kid"}
    assert idp.requests["/keys"] == 2
    clock.advance(COOLDOWN - 1)
    assert await refuse_all(flood()) == {"unknown_kid"}
    assert idp.requests["/keys"] == 2
    clock.advance(1)
    assert await refuse_all(flood()) == {"unknown_kid"}
    assert idp.requests["/keys"] == 3


async def test_j18_concurrent_misses_share_one_fetch_in_flight(provider_keys: list[SigningKey]) -> None:
    """J18: misses arriving while a fetch is in flight wait for that fetch; none starts its own."""
    url = "https://idp.test/keys"
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    fetcher.gate = asyncio.Event()
    cache = make_cache(fetcher, FakeClock(), v2_issuer(jwks_uri=url))
    idp = OidcProvider(keys=[provider_keys[0]])
    waiters = [asyncio.create_task(cache.verify(idp.mint(), now=time.time())) for _ in range(50)]
    await fetcher.started.wait()
    await asyncio.sleep(0)
    assert fetcher.calls == [url]
    fetcher.gate.set()
    assert {v.key_id for v in await asyncio.gather(*waiters)} == {"rsa-a"}
    assert fetcher.calls == [url]


async def test_j18_a_cancelled_waiter_does_not_cancel_the_shared_fetch(provider_keys: list[SigningKey]) -> None:
    """J18: a client that goes away mid-fetch cancels only its own wait; the keys still arrive for everyone."""
    url = "https://idp.test/keys"
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    fetcher.gate = asyncio.Event()
    cache = make_cache(fetcher, FakeClock(), v2_issuer(jwks_uri=url))
    idp = OidcProvider(keys=[provider_keys[0]])
    first = asyncio.create_task(cache.verify(idp.mint(), now=time.time()))
    await fetcher.started.wait()
    first.cancel()
    second = asyncio.create_task(cache.verify(idp.mint(), now=time.time()))
    fetcher.gate.set()
    assert (await second).key_id == "rsa-a"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert fetcher.calls == [url] and cache.ready()


# -- the background refresher and the lifecycle ------------------------------------------------------------------------


async def test_refresher_renews_before_expiry(provider_keys: list[SigningKey]) -> None:
    """The refresher loads missing keys at once and renews them at three quarters of the TTL, not before."""
    url = "https://idp.test/keys"
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    clock = FakeClock()
    cache = make_cache(fetcher, clock, v2_issuer(jwks_uri=url))
    assert not cache.ready()
    await cache.refresh_due()
    assert len(fetcher.calls) == 1 and cache.ready()
    clock.advance(TTL * 0.5)
    await cache.refresh_due()
    assert len(fetcher.calls) == 1
    clock.advance(TTL * 0.25)
    await cache.refresh_due()
    assert len(fetcher.calls) == 2
    assert cache.status()[0].age_seconds == 0


async def test_refresher_retries_failures_once_per_cooldown(provider_keys: list[SigningKey]) -> None:
    """A failing issuer is retried by the refresher at most once per cooldown."""
    fetcher = FakeFetcher({})
    clock = FakeClock()
    cache = make_cache(fetcher, clock, v2_issuer(jwks_uri="https://idp.test/keys"))
    await cache.refresh_due()
    await cache.refresh_due()
    assert len(fetcher.calls) == 1
    clock.advance(COOLDOWN)
    await cache.refresh_due()
    assert len(fetcher.calls) == 2 and cache.status()[0].failures == 2


async def test_start_and_stop(provider_keys: list[SigningKey]) -> None:
    """``start()`` runs the refresher, whose first pass loads the keys; ``stop()`` ends it cleanly."""
    url = "https://idp.test/keys"
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    never = asyncio.Event()

    async def sleep_forever(seconds: float) -> None:
        await never.wait()

    identity = Identity(issuers=(v2_issuer(jwks_uri=url),))
    cache = JwksCache(identity, fetcher, clock=FakeClock(), sleep=sleep_forever)
    cache.start()
    await asyncio.wait_for(fetcher.started.wait(), timeout=5)
    await asyncio.sleep(0)
    assert cache.ready()
    await cache.stop()
    await cache.stop()


async def test_inline_keys_are_ready_without_fetching(provider_keys: list[SigningKey]) -> None:
    """Inline ``jwks`` are parsed at construction, never fetched, never stale."""
    fetcher = RefusingFetcher()
    cache = make_cache(fetcher, FakeClock(), v2_issuer(jwks={"keys": [provider_keys[1].public_jwk()]}))
    await cache.refresh_due()
    (status,) = cache.status()
    assert (cache.ready(), status.source, status.stale, status.key_count, fetcher.calls) == (
        True,
        "inline",
        False,
        1,
        [],
    )


def test_invalid_inline_keys_are_a_config_error() -> None:
    """An inline ``jwks`` that is not a key set is refused when the cache is built."""
    with pytest.raises(ValueError, match="inline jwks"):
        make_cache(RefusingFetcher(), FakeClock(), v2_issuer(jwks={"keys": "x"}))


async def test_update_keeps_unchanged_issuers(provider_keys: list[SigningKey]) -> None:
    """A config reload keeps the keys of unchanged issuers and starts changed or new ones afresh."""
    url = "https://idp.test/keys"
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    v2 = v2_issuer(jwks_uri=url)
    cache = make_cache(fetcher, FakeClock(), v2)
    await cache.refresh_due()
    v1 = v2_issuer(issuer=V1_TEMPLATE, jwks_uri=url)
    cache.update(Identity(issuers=(v2, v1)), ttl_seconds=TTL, cooldown_seconds=COOLDOWN)
    assert [s.loaded for s in cache.status()] == [True, False]
    cache.update(Identity(issuers=(v2_issuer(jwks_uri=url, audiences=("x",)),)), ttl_seconds=TTL, cooldown_seconds=1)
    assert [s.loaded for s in cache.status()] == [False]
    with pytest.raises(ValueError):
        cache.update(Identity(issuers=(v2_issuer(algorithms=("HS256",)),)), ttl_seconds=TTL, cooldown_seconds=1)
    assert [s.loaded for s in cache.status()] == [False]


async def test_events_never_carry_key_material(provider_keys: list[SigningKey]) -> None:
    """Ops events name issuers, kids and reasons, never key material, even for a published private key."""
    url = "https://idp.test/keys"
    private = SigningKey.rsa(kid="leaked").private_jwk()
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk(), private]}})
    events: list[Any] = []
    cache = make_cache(fetcher, FakeClock(), v2_issuer(jwks_uri=url), events=events)
    await cache.refresh_due()
    text = repr(events) + repr(cache.status())
    assert "leaked" in text
    for member in ("d", "p", "q", "n"):
        assert private[member] not in text


async def test_a_failing_event_sink_does_not_break_loading(provider_keys: list[SigningKey]) -> None:
    """An ops-log sink that raises is ignored: keys load regardless."""
    url = "https://idp.test/keys"

    def broken(name: str, fields: Any) -> None:
        raise RuntimeError("log pipe closed")

    identity = Identity(issuers=(v2_issuer(jwks_uri=url),))
    fetcher = FakeFetcher({url: {"keys": [provider_keys[0].public_jwk()]}})
    cache = JwksCache(identity, fetcher, clock=FakeClock(), on_event=broken)
    await cache.refresh_due()
    assert cache.ready()
