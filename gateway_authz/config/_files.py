"""Reading a configuration source (a file, or a directory of files) so that a reload costs what changed.

Each call of an :class:`EstateLoader` lists the source and ``stat``s every file and every ``{file:}`` secret it
referred to. A file whose identity (device, inode, size, mtime in ns) and secrets' identities are those of the last
read is not opened; one whose identity changed is read and hashed, and parsed only if its bytes (or a secret)
differ. When nothing changed the call returns the very :class:`Settings` it returned before, so the holder sees
the same fingerprint and compiles nothing.

Kubernetes updates a mounted ConfigMap or Secret by writing a new timestamped folder and renaming a temporary
symlink over ``..data``; the visible files are symlinks through ``..data``. A read that overlaps such a swap could
mix old and new files, so a read that found changes is checked before it is used: ``..data`` must point where it
pointed at the start, and every file (and secret) must still be the file that was read. Otherwise the read is
done again. The configuration is therefore always one whole generation of the directory.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ConfigError, ConfigProblem
from ..core.settings import Settings
from ._estate import EstateMerger
from ._fragment import FileIdentity, FileRead, read_fragment

__all__ = ["DEFAULT_MAX_FILE_BYTES", "MAX_FILE_BYTES_VARIABLE", "EstateLoader", "Parser", "max_file_bytes"]

MAX_FILE_BYTES_VARIABLE = "GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES"
DEFAULT_MAX_FILE_BYTES = 1024 * 1024  # a ConfigMap's limit
_MAX_FILE_BYTES_LIMIT = 1024 * 1024 * 1024
_SUFFIXES = (".yaml", ".yml", ".json")
_ATTEMPTS = 5  # reads overlapping a change before giving up for this tick
_DATA_LINK = "..data"
_RACY_NS = 2_000_000_000  # 2 s: coarser than any file system's timestamp granularity that matters here

# (bytes, base directory, single file?) -> the file's checked contents
Parser = Callable[[bytes, Path, bool], FileRead]


def max_file_bytes(environ: Mapping[str, str]) -> int:
    """The per-file cap from ``GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES`` (1 MiB when unset); raises ConfigError."""
    text = environ.get(MAX_FILE_BYTES_VARIABLE)
    if text is None or text == "":
        return DEFAULT_MAX_FILE_BYTES
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= _MAX_FILE_BYTES_LIMIT:
        problem = f"{MAX_FILE_BYTES_VARIABLE} must be a whole number of bytes between 1 and {_MAX_FILE_BYTES_LIMIT}"
        raise ConfigError([ConfigProblem("", problem)])
    return int(text)


def _identity(st: os.stat_result) -> FileIdentity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _stat_identity(path: str) -> FileIdentity | None:
    try:
        return _identity(os.stat(path))
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class _Known:
    """A file as last read: its identity, the hash of its bytes and what they were found to contain.

    ``read_at`` (ns) guards against a file written again within the file system's timestamp granularity: same
    inode, same size (a rotated key is as long as the old one) and the same coarse mtime would look unchanged. An
    identity whose mtime is within :data:`_RACY_NS` of the read is not trusted: the file (or the config file that
    names the secret) is read again until its mtime is safely older than the read ("racy git", the same cure).
    """

    identity: FileIdentity
    content: bytes
    read: FileRead
    read_at: int = 0

    def trusted(self, identity: FileIdentity | None) -> bool:
        return identity == self.identity and identity[3] < self.read_at - _RACY_NS

    def secrets_unchanged(self) -> bool:
        """Every secret is the file that was read (and not racy), and every missing one is still missing."""
        for path, identity in self.read.secret_files:
            now = _stat_identity(path)
            if identity is None:
                if now is not None:
                    return False
            elif now != identity or identity[3] >= self.read_at - _RACY_NS:
                return False
        return True

    def secrets_same(self) -> bool:
        """Every secret is still the file that was read (or still missing): identities only, for a stable read."""
        return all(_stat_identity(path) == identity for path, identity in self.read.secret_files)


class _Changed(Exception):
    """The source changed while it was being read: read it again."""


@dataclass(frozen=True, slots=True)
class EstateState:
    """What an :class:`EstateLoader` knew after a load, carried in ``Settings.extras`` so a reloader starts from it."""

    path: str
    known: tuple[tuple[str, _Known], ...]
    merger: EstateMerger = field(compare=False)

    def identities(self) -> EstateState:
        """This state less the parsed contents: what a reader needs to tell a changed file from an unchanged one
        (identity, hash, digest, secrets), small enough to hand to a child process."""
        light = tuple(
            (
                name,
                _Known(
                    k.identity,
                    k.content,
                    FileRead(None, k.read.problems, k.read.digest, k.read.secret_files),
                    k.read_at,
                ),
            )
            for name, k in self.known
        )
        return EstateState(self.path, light, EstateMerger())


class EstateLoader:
    """Loads a configuration file or directory; each later call re-reads and re-parses only what changed.

    ``parse`` is the seam that turns one file's bytes into a :class:`FileRead` (tests count its calls).
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        parse: Parser | None = None,
        start: Settings | None = None,
        known: EstateState | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        """``start``: the settings a load returned, to go on from; ``known``: only what files were (see
        :meth:`EstateState.identities`), for a reader that sends changes elsewhere and never merges itself;
        ``allow_missing_keys``: key material not there yet loads as unavailable (the service's own loads)."""
        self._environ = os.environ if environ is None else environ
        self._allow_missing = allow_missing_keys
        self._parse = parse or self._read_fragment
        self._known: dict[str, _Known] = {}
        self._merger = EstateMerger()
        self._last: tuple[str, tuple[tuple[str, _Known], ...], Settings | ConfigError] | None = None
        state = start.extras.get("estate") if start is not None else known
        if isinstance(state, EstateState):
            base = state.path if os.path.isdir(state.path) else str(Path(state.path).parent)
            self._known = {os.path.join(base, name): known for name, known in state.known}
            self._merger = state.merger
            if start is not None:
                self._last = (state.path, state.known, start)

    def _read_fragment(self, data: bytes, base_dir: Path, single: bool) -> FileRead:
        return read_fragment(
            data,
            base_dir=base_dir,
            environ=self._environ,
            max_bytes=max_file_bytes(self._environ),
            single=single,
            allow_missing=self._allow_missing,
        )

    def __call__(self, path: str) -> Settings:
        """The configuration at ``path``; raises :class:`ConfigError` listing every problem (``FILE: …``)."""
        directory, files = self.read(path)
        last = self._last
        if last is not None and last[0] == path and _same_files(last[1], files):
            if isinstance(last[2], ConfigError):
                raise last[2]
            return last[2]
        reads = [(name, known.read) for name, known in files]
        try:
            settings = self._merger.merge(reads, directory=directory, source=path)
        except ConfigError as exc:
            self._last = (path, files, exc)
            raise
        state = EstateState(path, files, self._merger)
        settings = _with_state(settings, state)
        self._last = (path, files, settings)
        return settings

    def read(self, path: str) -> tuple[bool, tuple[tuple[str, _Known], ...]]:
        """Whether ``path`` is a directory, and each of its files as it is now (re-read only where changed)."""
        source = Path(path)
        try:
            directory = stat.S_ISDIR(os.stat(source).st_mode)
        except OSError as exc:
            raise ConfigError(
                [ConfigProblem("", f"cannot read {source}: {exc.strerror or type(exc).__name__}")]
            ) from None
        max_file_bytes(self._environ)  # a bad cap is a problem even when no file is read this time
        for _ in range(_ATTEMPTS):
            try:
                files = self._read_all(source, directory)
            except _Changed:
                continue
            break
        else:
            raise ConfigError([ConfigProblem("", f"{source} kept changing while it was read; trying again later")])
        base = str(source if directory else source.parent)
        self._known = {os.path.join(base, name): known for name, known in files}
        return directory, files

    def _read_all(self, source: Path, directory: bool) -> tuple[tuple[str, _Known], ...]:
        """Every file of the source as it is now; raises :class:`_Changed` if the source moved under the read."""
        link = _data_link(source) if directory else None
        names = _listing(source) if directory else [source.name]
        base = str(source if directory else source.parent)
        result: list[tuple[str, _Known]] = []
        changed = False
        for name in names:
            path = os.path.join(base, name)  # strings, not Paths: this loop runs for every file on every tick
            known = self._known.get(path)
            identity = _stat_identity(path)
            if identity is None:
                raise _Changed  # listed a moment ago: removed since
            if known is not None and known.trusted(identity) and known.secrets_unchanged():
                result.append((name, known))
                continue
            changed = True
            result.append((name, self._read_one(path, base, known, single=not directory)))
        if changed or (self._last is not None and len(result) != len(self._last[1])):
            if link != (_data_link(source) if directory else None):
                raise _Changed
            for name, known in result:
                if _stat_identity(os.path.join(base, name)) != known.identity or not known.secrets_same():
                    raise _Changed
            if directory and _listing(source) != names:
                raise _Changed
        return tuple(result)

    def _read_one(self, path: str, base: str, known: _Known | None, *, single: bool) -> _Known:
        cap = max_file_bytes(self._environ)
        read_at = time.time_ns()
        try:
            with open(path, "rb") as handle:
                identity = _identity(os.fstat(handle.fileno()))
                data = handle.read(cap + 1)
        except FileNotFoundError:
            raise _Changed from None
        except OSError as exc:
            problem = ConfigProblem("", f"cannot read the file: {exc.strerror or type(exc).__name__}")
            return _Known((0, 0, -1, 0), b"", FileRead(None, (problem,), ""))
        content = hashlib.sha256(data).digest()
        if known is not None and known.content == content and known.secrets_unchanged():
            return _Known(identity, content, known.read, read_at)  # touched, not changed: nothing to parse
        return _Known(identity, content, self._parse(data, Path(base), single), read_at)


def _listing(directory: Path) -> list[str]:
    """The config files directly in ``directory``: §5's names, in byte-wise order."""
    try:
        with os.scandir(directory) as entries:
            names = [
                entry.name
                for entry in entries
                if not entry.name.startswith(".") and entry.name.endswith(_SUFFIXES) and _is_file(entry)
            ]
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem("", f"cannot list {directory}: {exc.strerror or type(exc).__name__}")]
        ) from None
    return sorted(names, key=os.fsencode)


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()  # follows symlinks: a link through ..data to a regular file counts
    except OSError:
        return False


def _data_link(directory: Path) -> str | None:
    try:
        return os.readlink(directory / _DATA_LINK)
    except OSError:
        return None


def _same_files(left: tuple[tuple[str, _Known], ...], right: tuple[tuple[str, _Known], ...]) -> bool:
    """Whether two reads found the same files with the same contents (by identity of what was parsed)."""
    return len(left) == len(right) and all(
        a_name == b_name and a.read is b.read for (a_name, a), (b_name, b) in zip(left, right, strict=True)
    )


def _with_state(settings: Settings, state: EstateState) -> Settings:
    from dataclasses import replace
    from types import MappingProxyType

    return replace(settings, extras=MappingProxyType({**settings.extras, "estate": state}))
