"""ARM scopes, compared the way Azure compares them for role assignments.

An assignment at scope S applies to S and everything under it by whole segments, ASCII-case-insensitively, a
trailing slash ignored, so subscription, resource-group, namespace and entity scopes all work. Entity names may
contain ``/``, so an entity scope (``…/namespaces/ns/hybridConnections/<name>``) applies to that very entity only:
an assignment on ``eu`` never reaches a sibling entity called ``eu/orders``.
"""

from __future__ import annotations

import difflib
import string
import sys
from collections.abc import Collection, Iterable
from types import MappingProxyType
from typing import Final

__all__ = ["ScopeIndex", "covers", "fold", "scope_covers", "scope_segments"]

_ASCII_LOWER: Final = MappingProxyType(str.maketrans(string.ascii_uppercase, string.ascii_lowercase))
_ENTITY_TYPES: Final = frozenset({"hybridconnections", "wcfrelays"})


def fold(value: str) -> str:
    """ASCII-only case folding: ARM ids and permission strings are case-insensitive, and ASCII."""
    return value.translate(_ASCII_LOWER)


def scope_segments(scope: str) -> tuple[str, ...]:
    """``scope`` folded and split into its non-empty segments: the form every comparison here works on."""
    return tuple(segment for segment in fold(scope).split("/") if segment)


def _entity_scope(segments: tuple[str, ...]) -> bool:
    """Whether ``segments`` name a Relay entity (``…/providers/microsoft.relay/namespaces/ns/<type>/<name…>``)."""
    for i in range(len(segments) - 5):
        if segments[i : i + 3] == ("providers", "microsoft.relay", "namespaces") and segments[i + 4] in _ENTITY_TYPES:
            return True
    return False


def scope_covers(scope: str, resource: str) -> bool:
    """Whether an assignment at ``scope`` applies to the ARM resource ``resource`` (see the module notes)."""
    return covers(scope_segments(scope), scope_segments(resource))


def covers(scope: tuple[str, ...], resource: tuple[str, ...]) -> bool:
    """:func:`scope_covers` on segments from :func:`scope_segments`."""
    if _entity_scope(scope):
        return scope == resource
    return resource[: len(scope)] == scope


class ScopeIndex:
    """Many ARM resources, to ask of each of many scopes whether it covers any of them, and which one was meant.

    :func:`scope_covers` against every resource costs resources times scopes: for an estate of 10,000 namespaces
    and 100,000 role assignments that never finishes. Here a question costs one lookup per segment: a non-entity
    scope covers some resource exactly when its segments are a prefix of that resource's, an entity scope only
    when they are equal.
    """

    def __init__(self, resources: Iterable[str]) -> None:
        # Held as long as the configuration (the reload's warnings ask it again): at 10,000 namespaces and 110,000
        # resources, segments not interned and an empty set per resource made it 115 MiB; now some 20.
        self._spelling: dict[tuple[str, ...], str] = {}  # every resource
        self._children: dict[tuple[str, ...], set[str]] = {}  # every proper prefix of a resource -> next segments
        for resource in resources:
            segments = tuple(map(sys.intern, scope_segments(resource)))
            self._spelling.setdefault(segments, resource)
            for end in range(len(segments) - 1, -1, -1):
                known = segments[:end] in self._children
                self._children.setdefault(segments[:end], set()).add(segments[end])
                if known:  # its own prefixes are there already
                    break

    def any_covered_by(self, scope: str) -> bool:
        segments = scope_segments(scope)
        if _entity_scope(segments):
            return segments in self._spelling
        return segments in self._children or segments in self._spelling

    def nearest(self, scope: str) -> str | None:
        """The resource ``scope`` most likely meant, segment by segment (a typo, another resource group), or None.

        Each segment is matched among the resources' segments at that depth under the path chosen so far, so the
        cost is the depth times the names at one level, never the whole estate.
        """
        path: tuple[str, ...] = ()
        for segment in scope_segments(scope):
            children = self._children.get(path)
            if not children:
                break
            chosen = segment if segment in children else _closest(segment, children)
            if chosen is None:
                return None
            path += (chosen,)
        return self._spelling.get(path)


def _closest(segment: str, candidates: Collection[str]) -> str | None:
    close = difflib.get_close_matches(segment, sorted(candidates), n=1, cutoff=0.6)
    return close[0] if close else None
