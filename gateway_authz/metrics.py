"""Prometheus metrics, each registry owned by one app (no process-global collectors)."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The service's collectors; ``render()`` gives the Prometheus text exposition."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._clock = clock
        r = self.registry
        self.decisions = Counter(
            "gateway_authz_decisions",
            "Decisions made, by outcome, reason code, gateway, credential type and dry-run.",
            ["decision", "reason", "gateway", "auth", "dry_run"],
            registry=r,
        )
        self.latency = Histogram(
            "gateway_authz_decision_seconds",
            "Time to reach a decision inside the service.",
            ["gateway"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache = Counter(
            "gateway_authz_decision_cache", "Decision cache lookups by result (hit or miss).", ["result"], registry=r
        )
        self.sas_key_slot = Counter(
            "gateway_authz_sas_key_slot",
            "SAS tokens verified, by namespace, rule and key slot (primary or secondary).",
            ["namespace", "key_name", "slot"],
            registry=r,
        )
        self.config_reloads = Counter(
            "gateway_authz_config_reloads",
            "Configuration reload attempts by result (changed, unchanged, failed).",
            ["result"],
            registry=r,
        )
        self.config_loaded_at = Gauge(
            "gateway_authz_config_loaded_timestamp_seconds", "When the configuration in use was loaded.", registry=r
        )
        self.config_age = Gauge("gateway_authz_config_age_seconds", "Age of the configuration in use.", registry=r)
        self.config_last_reload_ok = Gauge(
            "gateway_authz_config_last_reload_success",
            "1 when the last reload attempt succeeded, 0 when it failed and the last good config is serving.",
            registry=r,
        )
        self.jwks_fetches = Counter(
            "gateway_authz_jwks_fetches",
            "JWKS and discovery fetches by issuer and result (ok or failed).",
            ["issuer", "result"],
            registry=r,
        )
        # Label sets known in advance exist from the start at 0, so rate() and absent() work before the first event.
        for result in ("hit", "miss"):
            self.cache.labels(result)
        for result in ("changed", "unchanged", "failed"):
            self.config_reloads.labels(result)
        self._loaded_at = clock()
        self.config_age.set_function(lambda: max(0.0, self._clock() - self._loaded_at))
        self.config_last_reload_ok.set(1)

    def config_loaded(self, when: float) -> None:
        """Record that a configuration loaded at wall-clock ``when`` is now in use."""
        self._loaded_at = when
        self.config_loaded_at.set(when)

    def jwks_fetched(self, issuer: str, *, ok: bool) -> None:
        """Count one JWKS or discovery fetch for ``issuer`` (the configured issuer string, not a token's)."""
        self.jwks_fetches.labels(issuer, "ok" if ok else "failed").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
