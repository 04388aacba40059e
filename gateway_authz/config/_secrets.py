"""Key values of authorization rules: a literal string, ``{env: NAME}`` or ``{file: PATH}``.

Keys are resolved once, at load, so a missing variable or an unreadable file stops the config from loading
instead of failing requests later. Every resolved value is remembered (with its location) so that the config
fingerprint changes when a secret file does. No message here ever contains a key: only locations, variable
names and paths.

With ``allow_missing`` (what ``serve`` uses), key material that is merely not there *yet* does not stop the
load: a ``{file:}`` that is absent or empty, or an ``{env:}`` variable that is set but empty (an empty
Kubernetes Secret, a Secret not created yet). The key becomes ``""`` and its reference is listed in
``missing``, so the service starts unready, answers the decisions that need it with 503, and, since the
reference takes part in the fingerprint, reloads by itself once the key appears. Anything else (an unreadable
file, a key with whitespace, an unset variable) is still a config error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from ._reader import Reader, at, show

__all__ = ["MAX_KEY_LENGTH", "MAX_SECRET_FILE_BYTES", "Secrets"]

MAX_KEY_LENGTH = 256
MAX_SECRET_FILE_BYTES = 64 * 1024
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BAD_KEY_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class _Missing(Exception):
    """Key material not there yet; the message names the reference (never a key)."""


class Secrets:
    """Resolves keys against an environment and a base directory, remembering each for the fingerprint."""

    def __init__(
        self, reader: Reader, environ: Mapping[str, str], base_dir: Path, *, allow_missing: bool = False
    ) -> None:
        self._reader = reader
        self._environ = environ
        self._base_dir = base_dir
        self._allow_missing = allow_missing
        self.resolved: list[tuple[str, str]] = []
        self.missing: dict[str, str] = {}  # location -> "location: what is missing"
        # Every secret file asked for, with the identity (device, inode, size, mtime) of what was read, or None
        # when it could not be opened: a reload re-reads the config file when one of them is no longer that file.
        self.files: list[tuple[Path, tuple[int, int, int, int] | None]] = []

    def missing_under(self, location: str) -> tuple[str, ...]:
        """The missing key references at or below ``location`` (a rule's location: both its keys)."""
        inside = location + "."
        return tuple(why for where, why in self.missing.items() if where == location or where.startswith(inside))

    def key(self, value: object, location: str) -> str | None:
        """The key at ``location``; ``None`` (after recording why) when it cannot be had or is unusable.

        A missing or ``null`` key is reported by the caller's schema check, so it is simply ``None`` here.
        """
        if value is None:
            return None
        if isinstance(value, str):
            resolved: str | None = value
        elif isinstance(value, dict):
            try:
                resolved = self._reference(value, location)
            except _Missing as missing:
                self.missing[location] = f"{location}: {missing}"
                self.resolved.append((location, f"\x00missing: {missing}"))  # the key's arrival changes the fingerprint
                return ""
        else:
            self._reader.add(location, "must be a key string, {env: NAME} or {file: PATH}")
            return None
        if resolved is None or not self._usable(resolved, location):
            return None
        self.resolved.append((location, resolved))
        return resolved

    def _reference(self, value: dict[object, object], location: str) -> str | None:
        """Follow an ``{env: NAME}`` or ``{file: PATH}`` reference."""
        if len(value) != 1 or not ({"env", "file"} & value.keys()):
            names = ", ".join(show(k) for k in value)
            self._reader.add(location, f"must hold exactly one of env or file, not {names or 'nothing'}")
            return None
        if "env" in value:
            return self._from_env(value["env"], location)
        return self._from_file(value["file"], location)

    def _from_env(self, name: object, location: str) -> str | None:
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            self._reader.add(at(location, "env"), "must be an environment variable name")
            return None
        text = self._environ.get(name)
        if text is None:
            self._reader.add(location, f"environment variable {name} is not set")
            return None
        if not text and self._allow_missing:
            raise _Missing(f"environment variable {name} is empty")
        return text

    def _from_file(self, name: object, location: str) -> str | None:
        """Read a secret file (relative paths from the config's directory) and strip one trailing newline.

        Exactly one newline goes, because ``echo key > file`` adds one and Kubernetes secret files have none;
        any other whitespace is left in place and then rejected, since it is almost always a copy-paste slip.
        """
        if not isinstance(name, str) or not name or "\x00" in name:
            self._reader.add(at(location, "file"), "must be a file path")
            return None
        path = self._base_dir / name
        try:
            with path.open("rb") as handle:
                seen = os.fstat(handle.fileno())
                self.files.append((path, (seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns)))
                data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        except FileNotFoundError:
            self.files.append((path, None))  # watched: its arrival is a change a reload must see
            if self._allow_missing:
                raise _Missing(f"secret file {name} is missing") from None
            self._reader.add(location, f"cannot read secret file {name}: No such file or directory")
            return None
        except OSError as exc:
            if not self.files or self.files[-1][0] is not path:
                self.files.append((path, None))
            self._reader.add(location, f"cannot read secret file {name}: {exc.strerror or type(exc).__name__}")
            return None
        if len(data) > MAX_SECRET_FILE_BYTES:
            self._reader.add(location, f"secret file {name} is larger than {MAX_SECRET_FILE_BYTES} bytes")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self._reader.add(location, f"secret file {name} is not UTF-8 text")
            return None
        text = text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")
        if not text and self._allow_missing:
            raise _Missing(f"secret file {name} is empty")
        return text

    def literal(self, key: str, location: str) -> bool:
        """Record a literal key that is clean as written (a fast path; ``False``: use :meth:`key`, which reports)."""
        clean = 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and not _BAD_KEY_CHARS.search(key)
        if clean and key == key.strip():
            self.resolved.append((location, key))
            return True
        return False

    def _usable(self, key: str, location: str) -> bool:
        """Reject keys that cannot be right: empty, over-long, control characters or outer whitespace."""
        if not key:
            self._reader.add(location, "must not be empty")
            return False
        if len(key) > MAX_KEY_LENGTH:
            self._reader.add(location, f"is longer than {MAX_KEY_LENGTH} characters")
            return False
        try:
            key.encode("utf-8")  # the HMAC key is the key's UTF-8 bytes; undecodable env bytes arrive as surrogates
        except UnicodeEncodeError:
            self._reader.add(location, "must be valid UTF-8 text")
            return False
        if _BAD_KEY_CHARS.search(key) or key != key.strip():
            self._reader.add(location, "must not contain control characters or leading or trailing whitespace")
            return False
        return True
