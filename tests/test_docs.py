"""The documentation holds together: every relative link resolves inside the repository, and the README stays short.

Checked: README.md, CHANGELOG.md and every docs/*.md. A link is an inline link or image (``[text](target)``) or a
reference definition (``[label]: target``) outside code blocks and code spans. Links with a scheme (``https:``,
``mailto:``) are not followed. A relative target must name an existing file or folder inside the repository; a
``#fragment`` on a Markdown file must name one of its headings, as GitHub spells heading anchors.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT_BYTES = 16_384

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def _documents() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "CHANGELOG.md"]
    found += sorted((ROOT / "docs").glob("*.md"))
    return found


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks, with code spans and comments blanked."""
    text = _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)
            continue
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        lines.append((number, _CODE_SPAN.sub("", line)))
    return lines


def _links(path: Path) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        found += [(number, m.group(1)) for m in _INLINE_LINK.finditer(line)]
        reference = _REFERENCE.match(line)
        if reference:
            found.append((number, reference.group(1)))
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


@cache
def _anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        heading = _HEADING.match(line)
        if not heading:
            continue
        slug = _slug(heading.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(anchors)


def _problem(document: Path, target: str) -> str | None:
    """Why ``target``, linked from ``document``, does not resolve; None when it does."""
    if not target or _SCHEME.match(target):
        return None
    location, _, fragment = target.partition("#")
    resolved = (document.parent / location).resolve() if location else document
    if not resolved.is_relative_to(ROOT):
        return "points outside the repository"
    if not resolved.exists():
        return "no such file or folder"
    if fragment and resolved.suffix == ".md" and fragment.lower() not in _anchors(resolved):
        return f"{resolved.relative_to(ROOT)} has no heading #{fragment}"
    return None


@pytest.mark.parametrize("document", _documents(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(document: Path) -> None:
    """Each relative link in the document names an existing file or folder (and heading) in the repository."""
    assert document.is_file(), f"{document.relative_to(ROOT)} is missing"
    broken = [
        f"{document.relative_to(ROOT)}:{number}: {target}: {problem}"
        for number, target in _links(document)
        if (problem := _problem(document, target)) is not None
    ]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_stays_short() -> None:
    """The README is a page to read, not a diary: under 16 KiB; the long material lives in docs/."""
    size = (ROOT / "README.md").stat().st_size
    assert size < README_LIMIT_BYTES, f"README.md is {size} bytes; move detail to docs/ (limit {README_LIMIT_BYTES})"


def test_the_link_checker_sees_links_and_skips_code() -> None:
    """The checker finds inline, image and reference links, and ignores code blocks, code spans and comments."""
    text = "\n".join(
        [
            'See [a](docs/a.md#part), ![b](img/b.png "title") and [c][ref].',
            "`[not](a-link.md)` <!-- [nor](this.md) -->",
            "```sh",
            "[inside](a-fence.md)",
            "```",
            "[ref]: <k8s/service/>",
            "[web](https://example.com/x.md)",
        ]
    )
    lines = _prose_lines(text)
    found = [m.group(1) for _, line in lines for m in _INLINE_LINK.finditer(line)]
    found += [m.group(1) for _, line in lines if (m := _REFERENCE.match(line))]
    assert found == ["docs/a.md#part", "img/b.png", "https://example.com/x.md", "k8s/service/"]
    assert _problem(ROOT / "README.md", "https://example.com/x.md") is None
    assert _problem(ROOT / "README.md", "../outside.md") == "points outside the repository"
    assert _slug("Per-route settings (gRPC `context_extensions`)") == "per-route-settings-grpc-context_extensions"
