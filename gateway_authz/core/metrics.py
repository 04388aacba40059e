"""Prometheus metrics, each registry owned by one app (no process-global collectors).

The families counted on every decision (decisions, latency, cache lookups, key slots) are tallies: plain
integers behind a custom collector, read into Prometheus families when scraped. prometheus_client's own
``Counter.inc`` and ``Histogram.observe`` take a lock and walk the buckets in Python, which the decision-path
profile showed at several microseconds per request; the tallies cost a dict lookup and an addition. They are
only ever updated from the event loop's thread (HTTP and gRPC handlers both run on it), so no lock is needed.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .build_info import register_build_info

__all__ = ["Metrics", "TallyCounter", "TallyHistogram"]

_Child = TypeVar("_Child")

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("_bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, i.e. the smallest bucket whose `le` holds it
        self.counts[bisect.bisect_left(self._bounds, value)] += 1
        self.total += value


class _Tally(Generic[_Child]):
    """A metric family whose children are kept by label values, each made once by ``new_child``."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], new_child: Callable[[], _Child]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._new_child = new_child
        self._children: dict[tuple[str, ...], _Child] = {}

    def labels(self, *values: str) -> _Child:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{self.name}: expected string values for {self.labelnames}, got {values!r}")
            child = self._children[values] = self._new_child()
        return child


class TallyCounter(_Tally[_CounterChild]):
    """A counter family, exposed as ``<name>_total``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, documentation, labelnames, _CounterChild)

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        return family


class TallyHistogram(_Tally[_HistogramChild]):
    """A histogram family with fixed buckets, exposed as ``<name>_bucket``, ``_sum`` and ``_count``."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        bounds = tuple(sorted(buckets))
        super().__init__(name, documentation, labelnames, lambda: _HistogramChild(bounds))
        self._bounds = bounds

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), child.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
            family.add_metric(values, buckets, child.total)
        return family


class _TallyCollector(Collector):
    def __init__(self, tallies: Sequence[TallyCounter | TallyHistogram]) -> None:
        self._tallies = tuple(tallies)

    def collect(self) -> Iterator[Metric]:
        for tally in self._tallies:
            yield tally.collect()


class Metrics:
    """The service's collectors; ``render()`` gives the Prometheus text exposition."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._clock = clock
        r = self.registry
        self.decisions = TallyCounter(
            "gateway_authz_decisions",
            "Decisions made, by outcome, reason code, gateway, credential type and dry-run.",
            ["decision", "reason", "gateway", "auth", "dry_run"],
        )
        self.latency = TallyHistogram(
            "gateway_authz_decision_seconds",
            "Time to reach a decision inside the service.",
            ["gateway"],
            _LATENCY_BUCKETS,
        )
        self.cache = TallyCounter(
            "gateway_authz_decision_cache", "Decision cache lookups by result (hit or miss).", ["result"]
        )
        self.sas_key_slot = TallyCounter(
            "gateway_authz_sas_key_slot",
            "SAS tokens verified, by namespace, rule and key slot (primary or secondary).",
            ["namespace", "key_name", "slot"],
        )
        r.register(_TallyCollector((self.decisions, self.latency, self.cache, self.sas_key_slot)))
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
        self.ready = Gauge(
            "gateway_authz_ready",
            "1 when every key the configuration references is loaded, 0 while one is missing (/readyz answers 503).",
            registry=r,
        )
        self.ready.set(1)
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
        register_build_info(r)

    def config_loaded(self, when: float) -> None:
        """Record that a configuration loaded at wall-clock ``when`` is now in use."""
        self._loaded_at = when
        self.config_loaded_at.set(when)

    def jwks_fetched(self, issuer: str, *, ok: bool) -> None:
        """Count one JWKS or discovery fetch for ``issuer`` (the configured issuer string, not a token's)."""
        self.jwks_fetches.labels(issuer, "ok" if ok else "failed").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
