"""The typed, problem-collecting walk over the raw YAML tree that :mod:`gateway_authz.config.loader` builds on.

Every accessor either returns a checked value or records a :class:`ConfigProblem` at the value's location and
returns ``None`` (or the default), so that one pass over a broken file reports every problem, not only the
first. Messages may show a *non-secret* value to help the operator; key material never reaches a message (the
secret accessors in :mod:`gateway_authz.config._secrets` never pass their values here).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Collection, Iterable
from typing import TypeVar

from ..core.errors import ConfigProblem

__all__ = ["GUID_PATTERN", "Reader", "at", "index", "plain", "show"]

_N = TypeVar("_N", int, float)

GUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SHOW_MAX = 60
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def at(location: str, key: str) -> str:
    """The location of property ``key`` inside ``location`` (``cache`` + ``configTtlSeconds``)."""
    return f"{location}.{key}" if location else key


def index(location: str, i: int) -> str:
    """The location of item ``i`` of the list at ``location`` (``namespaces[0]``)."""
    return f"{location}[{i}]"


def plain(value: object, max_length: int) -> bool:
    """Whether ``value`` is what :meth:`Reader.string` accepts without a pattern: a non-empty string of at most
    ``max_length`` characters, no control characters. For fast paths that fall back to the checks that report."""
    return type(value) is str and 0 < len(value) <= max_length and not _CONTROL.search(value)


def show(value: object) -> str:
    """A short, single-line rendering of a non-secret value for a message; long values are cut."""
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _type_name(value: object) -> str:
    """The YAML-ish name of a value's type, so messages talk about what the operator wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Reader:
    """Collects every problem while the loader walks the raw tree; the accessors never raise."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []
        self._missing: set[str] = set()

    def add(self, location: str, message: str) -> None:
        """Record one problem, unless the property there is already reported missing (nothing more to say)."""
        if location not in self._missing:
            self.problems.append(ConfigProblem(location, message))

    def mapping(
        self,
        value: object,
        location: str,
        *,
        required: Collection[str] = (),
        optional: Collection[str] = (),
    ) -> dict[str, object] | None:
        """A mapping with only the named properties; unknown and missing ones are problems.

        A required property that is present but ``null`` counts as missing. The schema is strict because a
        misspelt key (``requireClientAuthorization``) silently falling back to a default is a security bug.
        """
        if not isinstance(value, dict):
            self.add(location, f"must be a mapping, not {_type_name(value)}")
            return None
        result: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.add(location, f"property names must be strings, not {_type_name(key)} {show(key)}")
            elif key not in required and key not in optional:
                self.add(at(location, _label(key)), "unknown property")
            else:
                result[key] = item
        for key in required:
            if result.get(key) is None:
                self.add(at(location, key), "is required")
                self._missing.add(at(location, key))
        return result

    def items(
        self, value: object, location: str, *, required: bool = False, max_items: int | None = None
    ) -> list[tuple[str, object]]:
        """The items of a list with their locations; absent or ``null`` is empty unless ``required``."""
        if value is None:
            if required:
                self.add(location, "is required")
            return []
        if not isinstance(value, list):
            self.add(location, f"must be a list, not {_type_name(value)}")
            return []
        if required and not value:
            self.add(location, "must not be empty")
        if max_items is not None and len(value) > max_items:
            self.add(location, f"has {len(value)} items; at most {max_items} are allowed")
        return [(index(location, i), item) for i, item in enumerate(value)]

    def string(
        self,
        value: object,
        location: str,
        *,
        max_length: int = 1024,
        pattern: re.Pattern[str] | None = None,
        rule: str = "",
    ) -> str | None:
        """A non-empty string of at most ``max_length`` characters, matching ``pattern`` when one is given."""
        if not isinstance(value, str):
            self.add(location, f"must be a string, not {_type_name(value)}")
            return None
        if not value:
            self.add(location, "must not be empty")
            return None
        if len(value) > max_length:
            self.add(location, f"is {len(value)} characters long; at most {max_length} are allowed")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.add(location, f"{show(value)} is not valid: {rule}" if rule else f"{show(value)} is not valid")
            return None
        if pattern is None and _CONTROL.search(value):
            self.add(location, "must not contain control characters")
            return None
        return value

    def choice(self, value: object, location: str, allowed: Iterable[str], *, what: str) -> str | None:
        """One of ``allowed`` (compared as written, case-sensitive, like ARM enums)."""
        options = list(allowed)
        if isinstance(value, str) and value in options:
            return value
        names = ", ".join(options)
        self.add(location, f"{show(value)} is not a valid {what}; use one of {names}")
        return None

    def boolean(self, value: object, location: str, *, default: bool) -> bool:
        """``true`` or ``false``; absent or ``null`` is ``default``. The string ``"yes"`` is not a boolean."""
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(location, f"must be true or false, not {_type_name(value)}")
            return default
        return value

    def integer(self, value: object, location: str, *, minimum: int, maximum: int | None = None) -> int | None:
        """An integer within bounds. ``true`` is not ``1`` here, whatever Python thinks."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(location, f"must be an integer, not {_type_name(value)}")
            return None
        return self._bounded(value, location, minimum=minimum, maximum=maximum, exclusive=False)

    def seconds(self, value: object, location: str, *, minimum: float, exclusive: bool) -> float | None:
        """A finite number of seconds (integer or decimal) above ``minimum``; NaN, infinity, bools rejected."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(location, f"must be a number of seconds, not {_type_name(value)}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.add(location, "must be a finite number")
            return None
        return self._bounded(value, location, minimum=minimum, maximum=None, exclusive=exclusive)

    def _bounded(
        self, value: _N, location: str, *, minimum: float, maximum: float | None, exclusive: bool
    ) -> _N | None:
        if exclusive and value <= minimum:
            self.add(location, f"must be greater than {minimum:g}, not {value}")
            return None
        if value < minimum or (maximum is not None and value > maximum):
            span = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
            self.add(location, f"must be {span}, not {value}")
            return None
        return value

    def guid(self, value: object, location: str) -> str | None:
        """A GUID in the 8-4-4-4-12 form, returned lower-case (Entra ids compare case-insensitively)."""
        text = self.string(value, location, max_length=36, pattern=GUID_PATTERN, rule="must be a GUID")
        return sys.intern(text.lower()) if text is not None else None  # shared: ids repeat across assignments

    def unique(self, location: str, key: str, seen: dict[str, str], *, what: str) -> bool:
        """Record ``key`` (already case-folded); a repeat is a problem that names the first location."""
        first = seen.get(key)
        if first is not None:
            self.add(location, f"duplicate {what}; it is already used at {first}")
            return False
        seen[key] = location
        return True


def _label(key: str) -> str:
    """A property name as it may appear in a location; odd names are quoted so the location stays readable."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,59}", key):
        return key
    return f"[{show(key)}]"
