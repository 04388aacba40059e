"""The configuration in use, and how it changes without a restart.

The source is looked at every ``cache.configTtlSeconds`` (and on SIGHUP): a file on a worker thread, a directory
(contract §5) by a child process (:mod:`._worker`); either way only files whose identity changed are read again and
only changed bytes are parsed (:mod:`._files`). When what it resolves to (the files and every ``{env:}``/``{file:}``
secret) differs from what is serving, a new :class:`Runtime` is compiled on that worker thread, reusing every
namespace and role assignment that did not change, and swapped in whole on the event loop, which also drops the
decision cache. A file that fails to load keeps the last good configuration serving; the failure is logged,
counted, and shown by readiness.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.errors import ConfigError
from ..core.metrics import Metrics
from ..core.settings import Settings
from ..decision.runtime import Runtime
from ._files import EstateLoader
from ._worker import WorkerLoader
from .warnings import ConfigLint, ConfigWarning, log_warnings

__all__ = ["ConfigHolder", "Loader"]

Loader = Callable[[str], Settings]
_T = TypeVar("_T")
_RELOAD_SWITCH_INTERVAL = 0.0005  # seconds; see ConfigHolder._off_the_loop


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A changed configuration compiled off the loop, with its warnings, ready to swap in."""

    runtime: Runtime
    warnings: list[ConfigWarning]


def _default_loader(path: str, settings: Settings) -> Loader:
    # The service's own loads: key material not there yet is unavailable (503, unready), never a failed reload.
    if os.path.isdir(path):
        return WorkerLoader(start=settings, allow_missing_keys=True)
    return EstateLoader(start=settings, allow_missing_keys=True)


class ConfigHolder:
    """Holds the serving :class:`Runtime`; :meth:`reload` swaps in a changed file, :meth:`watch` polls it."""

    def __init__(
        self,
        path: str,
        settings: Settings,
        *,
        loader: Loader | None = None,
        metrics: Metrics,
        ops_log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        # By default a loader that starts from what loaded ``settings`` read: a tick re-reads changed files only. A
        # directory is read in a child process (see _worker), so the event loop's process only merges what changed.
        self._loader = loader or _default_loader(path, settings)
        self._metrics = metrics
        self._log = ops_log
        self._clock = clock
        self.runtime = Runtime.build(settings, clock=clock)
        self.last_error: str | None = None
        self.on_change: list[Callable[[Settings], None]] = []  # run before a new configuration starts serving
        self._reloading = asyncio.Lock()
        self._pending: set[asyncio.Task[bool]] = set()
        metrics.config_loaded(self.runtime.loaded_at)
        self._lint = ConfigLint()  # keeps what it checked, so that a reload checks only what changed
        log_warnings(ops_log, self._lint(settings))

    def reload(self) -> bool:
        """Re-read the file; returns whether a new configuration is now serving. Never raises."""
        return self._commit(self._prepare())

    async def reload_in_thread(self) -> bool:
        """:meth:`reload`, with the files read and the new runtime compiled on a worker thread.

        Reading can take as long as the volume under it (a ConfigMap, a secrets mount), and parsing and compiling
        grow with what changed; on the event loop either would hold up every decision meanwhile. Only the swap
        (and the ``on_change`` hooks) happen on the loop, and reloads run one at a time.
        """
        async with self._reloading:
            return self._commit(await self._off_the_loop(self._prepare))

    @staticmethod
    async def _off_the_loop(work: Callable[[], _T]) -> _T:
        """``work()`` on a worker thread, handing the GIL back to the event loop every 0.5 ms meanwhile.

        A thread running Python holds the GIL until the interpreter asks it to let go, every 5 ms by default: the
        loop, with decisions ready, would wait that long again and again while a changed role-assignment file is
        compiled (some 25 ms). Only while the reload's thread runs is the interval shorter.
        """
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, _RELOAD_SWITCH_INTERVAL))
        try:
            return await asyncio.to_thread(work)
        finally:
            sys.setswitchinterval(interval)

    def reload_soon(self) -> None:
        """Start :meth:`reload_in_thread` and return at once: for a signal handler, which cannot wait."""
        task = asyncio.get_running_loop().create_task(self.reload_in_thread())
        self._pending.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._pending.discard)

    def _prepare(self) -> _Prepared | list[str] | None:
        """What the source now holds, compiled: a runtime to swap in, ``None`` if unchanged, or what is wrong.

        Never raises and changes nothing that serves (only the lint's memory of what it checked): safe off the loop.
        """
        try:
            settings = self._loader(self.path)
        except ConfigError as exc:
            return [str(p) for p in exc.problems]
        except Exception as exc:  # unreadable, half-written, anything: the last good config keeps serving
            return [f"{type(exc).__name__}: {exc}"]
        serving = self.runtime
        if settings.fingerprint == serving.settings.fingerprint:
            return None
        try:
            runtime = Runtime.build(settings, clock=self._clock, previous=serving)
            lost = set(runtime.missing_keys) - set(serving.missing_keys)
            if lost:  # a key that was serving went missing (a Secret emptied): keep the one that works
                return sorted(lost)
            return _Prepared(runtime, self._lint(settings))
        except Exception as exc:  # a config the loader passed but a component refuses: keep the last good one
            return [f"{type(exc).__name__}: {exc}"]

    def _commit(self, prepared: _Prepared | list[str] | None) -> bool:
        """Swap in ``prepared`` if it is a new runtime; log and count either way."""
        if isinstance(prepared, list):
            self._failed(prepared)
            return False
        self.last_error = None
        self._metrics.config_last_reload_ok.set(1)
        if prepared is None:
            self._metrics.config_reloads.labels("unchanged").inc()
            return False
        settings = prepared.runtime.settings
        try:
            for hook in self.on_change:
                hook(settings)
        except Exception as exc:  # a component refuses the new configuration: keep the last good one
            self._failed([f"{type(exc).__name__}: {exc}"])
            return False
        self.runtime = prepared.runtime
        self._metrics.config_reloads.labels("changed").inc()
        self._metrics.config_loaded(self.runtime.loaded_at)
        self._log.info("config.reloaded", path=self.path, fingerprint=settings.fingerprint[:12])
        log_warnings(self._log, prepared.warnings)
        return True

    def _failed(self, problems: list[str]) -> None:
        self.last_error = "; ".join(problems)[:2000]
        self._metrics.config_reloads.labels("failed").inc()
        self._metrics.config_last_reload_ok.set(0)
        self._log.error("config.reload_failed", path=self.path, problems=problems[:50], keeping="last good config")

    async def watch(self) -> None:
        """Reload every ``configTtlSeconds`` until cancelled."""
        prepare = getattr(self._loader, "prepare", None)
        if callable(prepare):
            prepare()  # a reader process starts importing now, to be ready for the first tick
        try:
            while True:
                await asyncio.sleep(self.runtime.settings.cache.config_ttl_seconds)
                await self.reload_in_thread()
        finally:
            self.close()

    def close(self) -> None:
        """Stop what the loader runs beside this process (the directory reader's child process), if anything."""
        close = getattr(self._loader, "close", None)
        if callable(close):
            close()
