"""Where a secret could hide in a log: every spelling of a token, its signature and a key, searched in any case.

A secret is looked for raw, percent-encoded once and percent-encoded twice (a gateway or a client may encode a
query value again), and each of those lower- and upper-cased, so ``%2B`` and ``%2b`` are both caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

__all__ = ["Leak", "find_leaks", "secret_forms"]


def _encodings(value: str) -> set[str]:
    once = quote(value, safe="")
    return {value, once, quote(once, safe="")}


def secret_forms(*secrets: str) -> tuple[str, ...]:
    """Every spelling to search for, lower-cased (the search lower-cases the haystack too)."""
    forms: set[str] = set()
    for secret in secrets:
        for plain in {secret, unquote(secret)}:
            forms |= {form.lower() for form in _encodings(plain)}
    return tuple(sorted(forms, key=len, reverse=True))


@dataclass(frozen=True)
class Leak:
    where: str
    form: str
    line: str

    def __str__(self) -> str:
        """Where, and the line with the secret blanked out: a failure report must not print it either."""
        masked = re.sub(re.escape(self.form), "<SECRET>", self.line, flags=re.IGNORECASE)
        return f"{self.where}: {masked[:300]!r}"


def find_leaks(logs: Iterable[Path], forms: Sequence[str]) -> list[Leak]:
    """Every line of every file in ``logs`` holding any of ``forms`` (case-insensitive)."""
    found: list[Leak] = []
    for path in logs:
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            low = line.lower()
            found.extend(Leak(path.name, form, line) for form in forms if form in low)
    return found
