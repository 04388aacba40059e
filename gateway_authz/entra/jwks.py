"""The signing-key cache: one key store per issuer, fed by an injected fetcher, never wiped by a failure.

- Keys come from the issuer's ``discoveryUrl`` (its ``issuer`` must match the configured one, its
  ``jwks_uri`` is then fetched), its ``jwksUri``, or an inline ``jwks`` (never fetched).
- Fetching goes through a :class:`JwksFetcher`; :class:`HttpJwksFetcher` uses the app's aiohttp session with
  a timeout, a body cap read incrementally, and no redirects. URLs must be ``https`` unless the host is
  loopback or the issuer has ``allowInsecureHttp``; userinfo is refused.
- A key set is kept for ``jwksTtlSeconds``; :meth:`JwksCache.run_refresher` renews it in the background at
  three quarters of that; a lookup past the TTL refreshes first.
- An unknown ``kid`` triggers at most one fetch per issuer per ``jwksRefreshCooldownSeconds``, and every
  concurrent miss awaits that same fetch (single flight). Failed fetches are retried at most once per cooldown.
- When a fetch fails, the last good keys keep serving; :meth:`JwksCache.status` says they are stale.

Clocks are injected (monotonic seconds for TTLs); the token's own ``exp`` is judged against the wall-clock
``now`` the caller passes to :meth:`JwksCache.verify`. Nothing here logs key material or tokens; ops events
go to an optional ``on_event(name, fields)`` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import aiohttp
from yarl import URL

from ..core.settings import Identity, Issuer, Settings
from .issuers import TENANT_PLACEHOLDER, IssuerRegistry
from .jwk import JwkError, KeySet, decode_json, parse_jwk_set
from .jwt import VerifiedJwt, bearer_token, complete_jwt, precheck_jwt

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "EventSink",
    "HttpJwksFetcher",
    "IssuerStatus",
    "JwksCache",
    "JwksFetchError",
    "JwksFetcher",
    "check_fetch_url",
]

MAX_DOCUMENT_BYTES: Final = 256 * 1024
REFRESH_AHEAD: Final = 0.75  # background refresh once a key set has lived this share of its TTL

Clock = Callable[[], float]
EventSink = Callable[[str, Mapping[str, object]], None]
Source = Literal["inline", "discovery", "jwks_uri", "none"]


class JwksFetchError(Exception):
    """A discovery or key document could not be had; the message is safe to log."""


class JwksFetcher(Protocol):
    """The one I/O seam: the body of a successful GET, or :class:`JwksFetchError`."""

    async def fetch(self, url: str) -> bytes: ...


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str, *, allow_insecure_http: bool = False) -> None:
    """Raise :class:`JwksFetchError` unless ``url`` is an absolute https URL (or http where allowed)."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise JwksFetchError("invalid URL") from None
    if not parsed.absolute or not parsed.host or parsed.user is not None or parsed.password is not None:
        raise JwksFetchError("URL must be absolute, with a host and no userinfo")
    if parsed.scheme == "https":
        return
    if parsed.scheme == "http" and (allow_insecure_http or _is_loopback(parsed.host)):
        return
    raise JwksFetchError(f"scheme {parsed.scheme!r} refused (https required)")


class HttpJwksFetcher:
    """GET with the app's session: total timeout, no redirects, at most ``max_bytes`` read incrementally."""

    def __init__(
        self, session: aiohttp.ClientSession, *, timeout: float = 5.0, max_bytes: int = MAX_DOCUMENT_BYTES
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_bytes = max_bytes

    async def fetch(self, url: str) -> bytes:
        """The body of a 200 answer; a redirect, another status, an oversized body or a timeout is an error."""
        check_fetch_url(url, allow_insecure_http=True)  # the per-issuer scheme policy is the cache's
        try:
            async with self._session.get(
                url, allow_redirects=False, timeout=self._timeout, headers={"Accept": "application/json"}
            ) as response:
                if 300 <= response.status < 400:
                    raise JwksFetchError(f"redirect refused (HTTP {response.status})")
                if response.status != 200:
                    raise JwksFetchError(f"HTTP {response.status}")
                if (response.content_length or 0) > self._max_bytes:
                    raise JwksFetchError("body over the size cap")
                body = bytearray()
                async for chunk in response.content.iter_chunked(16 * 1024):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise JwksFetchError("body over the size cap")
                return bytes(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise JwksFetchError(f"fetch failed ({type(exc).__name__})") from None


@dataclass(frozen=True, slots=True)
class IssuerStatus:
    """Readiness facts for one issuer; ``last_success`` and ages are on the cache's monotonic clock."""

    issuer: str
    source: Source
    loaded: bool
    stale: bool
    key_count: int
    age_seconds: float | None
    last_success: float | None
    last_error: str
    fetches: int
    failures: int


def _source(issuer: Issuer) -> Source:
    if issuer.jwks is not None:
        return "inline"
    if issuer.discovery_url:
        return "discovery"
    return "jwks_uri" if issuer.jwks_uri else "none"


class _IssuerKeys:
    """The key store of one issuer: last good set, single in-flight fetch, cooldown bookkeeping."""

    def __init__(
        self, issuer: Issuer, fetcher: JwksFetcher, clock: Clock, ttl: float, cooldown: float, emit: EventSink
    ) -> None:
        self.issuer = issuer
        self.source = _source(issuer)
        self._fetcher, self._clock, self._emit = fetcher, clock, emit
        self.ttl, self.cooldown = ttl, cooldown
        self.keyset: KeySet | None = None
        self.loaded_at: float | None = None
        self.last_attempt: float | None = None
        self.last_error = ""
        self.fetches = self.failures = 0
        self.inflight: asyncio.Task[None] | None = None
        if issuer.jwks is not None:
            try:
                self.keyset = parse_jwk_set(issuer.jwks)
            except JwkError as exc:
                raise ValueError(f"issuer {issuer.issuer}: inline jwks: {exc}") from None
            self.loaded_at = clock()

    def _may_fetch(self, now: float) -> bool:
        if self.source in ("inline", "none"):
            return False
        if self.inflight is not None:
            return True
        return self.last_attempt is None or now - self.last_attempt >= self.cooldown

    def _expired(self, now: float) -> bool:
        return self.loaded_at is None or now - self.loaded_at >= self.ttl

    async def keys_for(self, kid: str) -> KeySet | None:
        now = self._clock()
        keyset = self.keyset
        wanted = keyset is None or not keyset.knows(kid) or self._expired(now)
        if wanted and self._may_fetch(now):
            await self.refresh()
        return self.keyset

    def due(self, now: float) -> bool:
        if not self._may_fetch(now) or self.inflight is not None:
            return False
        return self.loaded_at is None or now - self.loaded_at >= self.ttl * REFRESH_AHEAD

    async def refresh(self) -> None:
        """Join the fetch in flight or start one; waiters' cancellation never cancels the fetch."""
        task = self.inflight
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch())
            self.inflight = task
        await asyncio.shield(task)

    async def _fetch(self) -> None:
        self.last_attempt = self._clock()
        self.fetches += 1
        name = self.issuer.issuer
        try:
            keyset = await self._load()
        except Exception as exc:  # whatever went wrong, the last good keys stay
            self.failures += 1
            self.last_error = str(exc) if isinstance(exc, JwksFetchError | JwkError) else type(exc).__name__
            self._emit("jwks.fetch_failed", {"issuer": name, "error": self.last_error, "kept_keys": self._count()})
        else:
            self.keyset, self.loaded_at, self.last_error = keyset, self._clock(), ""
            self._emit("jwks.refreshed", {"issuer": name, "keys": len(keyset), "skipped": len(keyset.rejected)})
            for kid, why in keyset.rejected:
                self._emit("jwks.key_skipped", {"issuer": name, "kid": kid[:64], "reason": why})
        finally:
            self.inflight = None

    async def _get_json(self, url: str) -> object:
        check_fetch_url(url, allow_insecure_http=self.issuer.allow_insecure_http)
        return decode_json(await self._fetcher.fetch(url))

    def _issuer_matches(self, published: object) -> bool:
        configured = self.issuer.issuer
        if published == configured:
            return True
        return TENANT_PLACEHOLDER in configured and any(
            published == configured.replace(TENANT_PLACEHOLDER, tenant)
            for tenant in set(self.issuer.tenants) | {t.lower() for t in self.issuer.tenants}
        )

    async def _load(self) -> KeySet:
        url = self.issuer.jwks_uri
        if self.issuer.discovery_url:
            document = await self._get_json(self.issuer.discovery_url)
            if not isinstance(document, dict):
                raise JwksFetchError("discovery document is not a JSON object")
            if not self._issuer_matches(document.get("issuer")):
                raise JwksFetchError("discovery document names another issuer")
            url = document.get("jwks_uri")
            if not isinstance(url, str):
                raise JwksFetchError("discovery document has no jwks_uri")
        if url is None:
            raise JwksFetchError("issuer has no key source")
        keyset = parse_jwk_set(await self._get_json(url))
        if not keyset.keys:
            raise JwksFetchError("key set holds no usable key")
        return keyset

    def _count(self) -> int:
        return len(self.keyset) if self.keyset is not None else 0

    def status(self) -> IssuerStatus:
        now = self._clock()
        age = None if self.loaded_at is None else now - self.loaded_at
        loaded = self.keyset is not None
        stale = loaded and self.source != "inline" and (bool(self.last_error) or self._expired(now))
        return IssuerStatus(
            self.issuer.issuer, self.source, loaded, stale, self._count(), age, self.loaded_at,
            self.last_error, self.fetches, self.failures,
        )  # fmt: skip

    def cancel(self) -> None:
        if self.inflight is not None:
            self.inflight.cancel()


def _ignore_event(name: str, fields: Mapping[str, object]) -> None:
    """The default event sink: ops events are optional."""


class JwksCache:
    """Key stores for every configured issuer, and the one entry point :meth:`verify` for bearer JWTs."""

    def __init__(
        self,
        identity: Identity,
        fetcher: JwksFetcher,
        *,
        ttl_seconds: float = 3600,
        cooldown_seconds: float = 30,
        clock: Clock = time.monotonic,
        on_event: EventSink | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._fetcher, self._clock, self._sleep = fetcher, clock, sleep
        self._sink = on_event or _ignore_event
        self._task: asyncio.Task[None] | None = None
        self._stores: dict[str, _IssuerKeys] = {}
        self.update(identity, ttl_seconds=ttl_seconds, cooldown_seconds=cooldown_seconds)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        fetcher: JwksFetcher,
        *,
        clock: Clock = time.monotonic,
        on_event: EventSink | None = None,
    ) -> JwksCache:
        """A cache for ``settings.identity`` with the TTL and cooldown of ``settings.cache``."""
        return cls(
            settings.identity,
            fetcher,
            ttl_seconds=settings.cache.jwks_ttl_seconds,
            cooldown_seconds=settings.cache.jwks_refresh_cooldown_seconds,
            clock=clock,
            on_event=on_event,
        )

    def update(self, identity: Identity, *, ttl_seconds: float, cooldown_seconds: float) -> None:
        """Apply a reloaded config: unchanged issuers keep their keys, others start afresh.

        Raises ``ValueError`` (and changes nothing) when the identity settings cannot be used.
        """
        if ttl_seconds <= 0 or cooldown_seconds < 0:
            raise ValueError("jwks TTL must be positive and the cooldown not negative")
        registry = IssuerRegistry(identity.issuers)
        stores: dict[str, _IssuerKeys] = {}
        for issuer in identity.issuers:
            old = self._stores.get(issuer.issuer)
            if old is not None and old.issuer == issuer:
                old.ttl, old.cooldown = ttl_seconds, cooldown_seconds
                stores[issuer.issuer] = old
            else:
                stores[issuer.issuer] = _IssuerKeys(
                    issuer, self._fetcher, self._clock, ttl_seconds, cooldown_seconds, self._emit
                )
        for name, store in self._stores.items():
            if stores.get(name) is not store:
                store.cancel()
        self._identity, self._registry, self._stores = identity, registry, stores
        self._tick = max(1.0, min(cooldown_seconds, ttl_seconds * (1 - REFRESH_AHEAD) / 2))

    def _emit(self, name: str, fields: Mapping[str, object]) -> None:
        with contextlib.suppress(Exception):  # an ops log that fails must not break key handling
            self._sink(name, fields)

    @property
    def registry(self) -> IssuerRegistry:
        """The issuer index used by :meth:`verify`."""
        return self._registry

    async def keys_for(self, issuer: Issuer, kid: str) -> KeySet | None:
        """The issuer's key set, refreshed first when it is missing, expired, or lacks ``kid`` (cooldown)."""
        store = self._stores.get(issuer.issuer)
        return None if store is None else await store.keys_for(kid)

    def current_keys(self, issuer: Issuer) -> KeySet | None:
        """The issuer's key set as it is now, never fetched: for an explanation, which must change nothing."""
        store = self._stores.get(issuer.issuer)
        return None if store is None else store.keyset

    @property
    def leeway_seconds(self) -> int:
        return self._identity.leeway_seconds

    async def verify(self, credential: str, *, now: float) -> VerifiedJwt:
        """Verify ``Bearer <jwt>`` or a bare JWT at wall-clock ``now``; raises the errors of :mod:`.jwt`."""
        pending = precheck_jwt(bearer_token(credential), self._registry, now=now, leeway=self._identity.leeway_seconds)
        return complete_jwt(pending, await self.keys_for(pending.issuer.config, pending.kid))

    async def refresh_due(self) -> None:
        """One refresher pass: fetch for every issuer that has no keys or is near its TTL (cooldown allowing)."""
        now = self._clock()
        due = [store.refresh() for store in self._stores.values() if store.due(now)]
        if due:
            await asyncio.gather(*due)

    async def run_refresher(self) -> None:
        """Refresh forever; run it as a task (see :meth:`start`) or inside an aiohttp ``cleanup_ctx``."""
        while True:
            await self.refresh_due()
            await self._sleep(self._tick)

    def start(self) -> None:
        """Start the background refresher; its first pass loads every issuer's keys."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run_refresher())

    async def stop(self) -> None:
        """Stop the refresher and any fetch in flight."""
        task, self._task = self._task, None
        for store in self._stores.values():
            store.cancel()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def status(self) -> tuple[IssuerStatus, ...]:
        """Per issuer: loaded, stale, key count, age, last error, fetch and failure counts."""
        return tuple(store.status() for store in self._stores.values())

    def ready(self) -> bool:
        """Whether every issuer has usable keys (possibly stale: stale keys still verify)."""
        return all(store.keyset is not None for store in self._stores.values())
