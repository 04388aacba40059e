"""Reading a configuration directory in a child process, so that the serving process only merges what changed.

A tick of a large directory ``stat``s every file (a thousand files cost milliseconds of Python), and a changed
file must be read, hashed and parsed. Done on a thread of the serving process, all of that competes with the
event loop for the GIL, and the decisions in flight wait: p99 goes up with every tick. Here a child process does it
(an :class:`~._files.EstateLoader` of its own) and answers each tick with the order of the files and the
:class:`~._fragment.FileRead` of only those whose contents changed since its last answer. The serving process
keeps every file's read, swaps in the changed ones, and merges (:mod:`._estate`): the same whole-or-nothing
configuration as the in-process loader, with the same problems, for a fraction of the work on its side.

The child starts on the first tick, knowing what the serving process already read (file digests), so it sends
nothing that is already known; it is restarted when it dies or does not answer in time, and stopped by
:meth:`WorkerLoader.close`. Messages are pickles over a pipe to a process this one started, never from outside.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import pickle
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any

from ..core.errors import ConfigError, ConfigProblem
from ..core.settings import Settings
from ._estate import EstateMerger
from ._files import EstateLoader, EstateState
from ._fragment import FileRead

__all__ = ["WorkerLoader"]

_ANSWER_SECONDS = 120.0  # a tick that takes longer than this (a hung volume) restarts the child
_NICENESS = 10  # added to the reader's; the serving process keeps its own


class WorkerLoader:
    """A loader (``path`` → :class:`Settings`) whose files are read and parsed in a child process."""

    def __init__(
        self,
        *,
        start: Settings | None = None,
        environ: Mapping[str, str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        self._environ = dict(environ) if environ is not None else None
        self._allow_missing = allow_missing_keys
        self._reads: dict[str, FileRead] = {}
        self._merger = EstateMerger()
        self._last: tuple[str, tuple[str, ...], Settings | ConfigError] | None = None
        self._seed: EstateState | None = None  # for the first child: the files as the first load found them
        state = start.extras.get("estate") if start is not None else None
        if isinstance(state, EstateState) and start is not None:
            self._reads = {name: known.read for name, known in state.known}
            self._merger = state.merger
            self._last = (state.path, tuple(name for name, _ in state.known), start)
            self._seed = state.identities()
        self._process: Any = None
        self._conn: Connection | None = None
        self._fresh = True

    def __call__(self, path: str) -> Settings:
        answer = self._ask(path)
        if answer[0] == "error":
            raise ConfigError(answer[1])
        _, directory, order, changed = answer
        self._reads.update(changed)
        for name in set(self._reads) - set(order):
            del self._reads[name]
        last = self._last
        if last is not None and last[0] == path and last[1] == order and not changed:
            if isinstance(last[2], ConfigError):
                raise last[2]
            return last[2]
        files = [(name, self._reads[name]) for name in order]
        try:
            settings = self._merger.merge(files, directory=directory, source=path)
        except ConfigError as exc:
            self._last = (path, order, exc)
            raise
        self._last = (path, order, settings)
        return settings

    def prepare(self) -> None:
        """Start the child now (it takes a second or so to import), rather than on the first tick."""
        if self._process is None or not self._process.is_alive():
            self._start()

    def _ask(self, path: str) -> tuple[Any, ...]:
        self.prepare()
        assert self._conn is not None
        known = {name: read.digest for name, read in self._reads.items()} if self._fresh else None
        self._fresh = False
        try:
            self._conn.send_bytes(pickle.dumps((path, known)))
            if not self._conn.poll(_ANSWER_SECONDS):
                self.close()
                raise ConfigError([ConfigProblem("", f"reading {path} took longer than {_ANSWER_SECONDS:g} s")])
            # an unnamed socket pair to a child this process spawned: nothing else can write to it
            answer: tuple[Any, ...] = pickle.loads(self._conn.recv_bytes())  # noqa: S301
        except (EOFError, OSError):
            self.close()
            raise ConfigError(
                [ConfigProblem("", "the configuration reader process stopped; it is restarted")]
            ) from None
        return answer

    def _start(self) -> None:
        self.close()
        context = multiprocessing.get_context("spawn")  # never fork a process that may hold gRPC or event loops
        parent, child = context.Pipe()
        seed, self._seed = self._seed, None  # a restarted child reads every file again
        self._process = context.Process(
            target=_child_main,
            args=(child, self._environ, seed, self._allow_missing),
            name="gateway-authz-config-reader",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        self._fresh = True  # the child is told what is already known, so it does not send it again

    def close(self) -> None:
        """Stop the child (if any); the next call starts a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.terminate()
            self._process.join(timeout=5)
            self._process = None


def _child_main(
    conn: Connection, environ: dict[str, str] | None, seed: EstateState | None, allow_missing_keys: bool
) -> None:
    """The child: answer each request (path, digests the parent knows or None) until the pipe closes."""
    # Ctrl-C reaches the whole process group: the parent decides when this child stops (pipe closed, terminate).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Reading is background work: where CPUs are few (a 2-core node, a CPU limit) the decisions come first. A tick
    # still finishes in milliseconds on an idle CPU; under load it waits for one rather than taking it.
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)
    loader = EstateLoader(environ=environ, known=seed, allow_missing_keys=allow_missing_keys)
    sent: dict[str, str] = {}
    while True:
        try:
            path, known = pickle.loads(conn.recv_bytes())  # noqa: S301  # from the parent that spawned us
        except (EOFError, OSError):
            return
        if known is not None:
            sent = dict(known)
        try:
            directory, files = loader.read(path)
        except ConfigError as exc:
            conn.send_bytes(_dumps(("error", list(exc.problems))))
            continue
        except Exception as exc:  # anything else is this tick's problem; the child keeps answering
            conn.send_bytes(_dumps(("error", [ConfigProblem("", f"{type(exc).__name__}: {exc}")])))
            continue
        changed = {name: known_file.read for name, known_file in files if sent.get(name) != known_file.read.digest}
        sent = {name: known_file.read.digest for name, known_file in files}
        order = tuple(name for name, _ in files)
        conn.send_bytes(_dumps(("ok", directory, order, changed)))


class _Pickler(pickle.Pickler):
    """Pickles read-only mappings (inline JWKS) as what they wrap; they unpickle as a read-only mapping again."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is MappingProxyType:
            return _read_only, (dict(obj),)
        return NotImplemented


def _read_only(mapping: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(mapping)


def _dumps(value: object) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()
