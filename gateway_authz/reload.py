"""The configuration in use, and how it changes without a restart.

The file is re-read every ``cache.configTtlSeconds`` (and on SIGHUP); when what it resolves to (the file and
every ``{env:}``/``{file:}`` secret) differs from what is serving, a new :class:`Runtime` is compiled and swapped
in whole, which also drops the decision cache. A file that fails to load keeps the last good configuration
serving; the failure is logged, counted, and shown by readiness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cache import DecisionCache
from .errors import ConfigError
from .metrics import Metrics
from .policy import CompiledPolicy
from .rbac import RbacPolicy
from .settings import Settings

__all__ = ["ConfigHolder", "Runtime"]

Loader = Callable[[str], Settings]


@dataclass(frozen=True, slots=True)
class Runtime:
    """One configuration compiled for serving, with the decision cache that belongs to it."""

    settings: Settings
    policy: CompiledPolicy
    rbac: RbacPolicy
    cache: DecisionCache
    loaded_at: float

    @classmethod
    def build(cls, settings: Settings, *, clock: Callable[[], float] = time.time) -> Runtime:
        cache = settings.cache
        return cls(
            settings=settings,
            policy=CompiledPolicy(settings),
            rbac=RbacPolicy.from_settings(settings),
            cache=DecisionCache(maxsize=cache.decision_max_entries, ttl=cache.decision_ttl_seconds, clock=clock),
            loaded_at=clock(),
        )


class ConfigHolder:
    """Holds the serving :class:`Runtime`; :meth:`reload` swaps in a changed file, :meth:`watch` polls it."""

    def __init__(
        self,
        path: str,
        settings: Settings,
        *,
        loader: Loader,
        metrics: Metrics,
        ops_log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._loader = loader
        self._metrics = metrics
        self._log = ops_log
        self._clock = clock
        self.runtime = Runtime.build(settings, clock=clock)
        self.last_error: str | None = None
        self.on_change: list[Callable[[Settings], None]] = []  # run before a new configuration starts serving
        metrics.config_loaded(self.runtime.loaded_at)

    def reload(self) -> bool:
        """Re-read the file; returns whether a new configuration is now serving. Never raises."""
        try:
            settings = self._loader(self.path)
        except ConfigError as exc:
            self._failed([str(p) for p in exc.problems])
            return False
        except Exception as exc:  # unreadable, half-written, anything: the last good config keeps serving
            self._failed([f"{type(exc).__name__}: {exc}"])
            return False
        self.last_error = None
        self._metrics.config_last_reload_ok.set(1)
        if settings.fingerprint == self.runtime.settings.fingerprint:
            self._metrics.config_reloads.labels("unchanged").inc()
            return False
        try:
            runtime = Runtime.build(settings, clock=self._clock)
            for hook in self.on_change:
                hook(settings)
        except Exception as exc:  # a config the loader passed but a component refuses: keep the last good one
            self._failed([f"{type(exc).__name__}: {exc}"])
            return False
        self.runtime = runtime
        self._metrics.config_reloads.labels("changed").inc()
        self._metrics.config_loaded(self.runtime.loaded_at)
        self._log.info("config.reloaded", path=self.path, fingerprint=settings.fingerprint[:12])
        return True

    def _failed(self, problems: list[str]) -> None:
        self.last_error = "; ".join(problems)[:2000]
        self._metrics.config_reloads.labels("failed").inc()
        self._metrics.config_last_reload_ok.set(0)
        self._log.error("config.reload_failed", path=self.path, problems=problems[:50], keeping="last good config")

    async def watch(self) -> None:
        """Reload every ``configTtlSeconds`` until cancelled."""
        while True:
            await asyncio.sleep(self.runtime.settings.cache.config_ttl_seconds)
            self.reload()
