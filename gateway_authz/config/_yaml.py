"""Config text to a plain tree, safely: safe loader, no silent duplicate keys, bounded aliases.

``yaml.safe_load`` alone has three traps for an authorization config. A repeated key (two ``primaryKey``
lines) silently keeps the last one; anchors and aliases can make a small file expand into billions of values
("billion laughs") that the validator would then walk; and deep nesting overflows the recursive composer. This
module closes all three and reports them as located problems. JSON is valid YAML, except that PyYAML refuses
tab indentation, so a document that YAML cannot read but that starts with ``{`` is tried as JSON as well.

Speed matters at estate scale (contract §5: thousands of files). libyaml's parser is used when PyYAML has it
(about four times the pure-Python one; it also caps nesting at 1,000 levels), and a document that is a JSON
object, after any leading comment lines, is read as JSON first: a hundred times faster again, and what
``gateway-authz config import`` writes. Where YAML 1.1 and JSON read the same text differently (``1e3`` is a
string to PyYAML, a number to JSON) the schema rejects both readings alike, so nothing changes meaning.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode

from ..core.errors import ConfigProblem
from ._reader import show

__all__ = ["MAX_EXPANDED_VALUES", "parse_tree"]

# Values the document may expand to once aliases are followed; a 1 MiB file written out has far fewer.
MAX_EXPANDED_VALUES = 1_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NOTHING = "the file holds no configuration"


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LEADING_COMMENTS = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\r?\n)*")


class _StrictLoader(_BaseLoader):  # type: ignore[misc]
    """``SafeLoader`` that records every duplicate mapping key (merge keys ``<<`` still override)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[ConfigProblem] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            if key in seen:
                mark = key_node.start_mark
                self.duplicates.append(ConfigProblem(_mark(mark.line, mark.column), f"duplicate property {show(key)}"))
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _mark(line: int, column: int) -> str:
    """A location in the text, for problems found before there is a tree to name a property path in."""
    return f"line {line + 1}, column {column + 1}"


def parse_tree(text: str, *, allow_empty: bool = False) -> tuple[object, list[ConfigProblem]]:
    """The document as plain Python values, with the problems that stop it from being one.

    With ``allow_empty`` a document that holds nothing (no text, only comments, ``null``) is an empty mapping:
    in a configuration directory such a file contributes nothing.
    """
    tree, problems = _parse_tree(text)
    if allow_empty and tree is None and [p.message for p in problems] == [_NOTHING]:
        return {}, []
    return tree, problems


def _parse_tree(text: str) -> tuple[object, list[ConfigProblem]]:
    body = text[_LEADING_COMMENTS.match(text).end() :]  # type: ignore[union-attr]  # matches the empty string
    if body.startswith("{"):
        tree, problems = _json_tree(body)
        if tree is not None or problems:
            return tree, problems
    return _yaml_tree(text)


def _yaml_tree(text: str) -> tuple[object, list[ConfigProblem]]:
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader refuses control characters before parsing starts
        line, column = text.count("\n", 0, exc.position), exc.position - (text.rfind("\n", 0, exc.position) + 1)
        problem = ConfigProblem(_mark(line, column), f"not valid YAML: character {exc.character:#04x} is not allowed")
        return _json_fallback(text, problem)
    try:
        tree: object = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own cap, where PyYAML would recurse
            return None, [ConfigProblem("", "the document is nested too deeply")]
        mark = exc.problem_mark or exc.context_mark
        where = _mark(mark.line, mark.column) if mark is not None else ""
        problem = ConfigProblem(where, f"not valid YAML: {exc.problem or exc.context or 'syntax error'}")
        return _json_fallback(text, problem)
    except ValueError:  # an integer with more digits than Python is willing to convert
        return None, [ConfigProblem("", "not valid YAML: a number has too many digits")]
    except yaml.YAMLError as exc:
        return None, [ConfigProblem("", f"not valid YAML: {type(exc).__name__}")]
    except RecursionError:
        return None, [ConfigProblem("", "the document is nested too deeply")]
    finally:
        loader.dispose()
    if loader.duplicates:
        return None, loader.duplicates
    return _checked(tree)


def _json_fallback(text: str, yaml_problem: ConfigProblem) -> tuple[object, list[ConfigProblem]]:
    """Read a JSON document that PyYAML refused (tab indentation); otherwise keep the YAML problem."""
    if not text.lstrip().startswith("{"):
        return None, [yaml_problem]
    tree, problems = _json_tree(text)
    if tree is None and not problems:
        return None, [yaml_problem]
    return tree, problems


def _json_tree(text: str) -> tuple[object, list[ConfigProblem]]:
    """The JSON object in ``text``; ``(None, [])`` when it is not JSON (then YAML has the say)."""
    duplicates: list[ConfigProblem] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items):  # a repeated name: find it (rare, so the common case stays in C)
            seen: set[str] = set()
            for key, _value in items:
                if key in seen:
                    duplicates.append(ConfigProblem("", f"duplicate property {show(key)}"))
                seen.add(key)
        return result

    def constant(name: str) -> None:
        raise ValueError(name)

    try:
        tree: object = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):
        return None, []
    if duplicates:
        return None, duplicates
    if tree is None:
        return None, [ConfigProblem("", _NOTHING)]
    return tree, []  # JSON has no aliases: every value is written out, so the file's size bounds the tree


def _checked(tree: object) -> tuple[object, list[ConfigProblem]]:
    if tree is None:
        return None, [ConfigProblem("", _NOTHING)]
    size = _expanded_size(tree)
    if size is None:
        return None, [ConfigProblem("", "the document refers to itself through an alias")]
    if size > MAX_EXPANDED_VALUES:
        return None, [ConfigProblem("", f"the document expands to more than {MAX_EXPANDED_VALUES} values")]
    return tree, []


def _expanded_size(root: object) -> int | None:
    """How many values the tree holds with every alias written out; ``None`` if it contains itself.

    Shared lists and mappings are counted once per reference but sized once (memoised by identity), so this
    is linear in the parsed size even when the expansion is exponential. Iterative: no recursion limit.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if not isinstance(node, list | dict):
            continue
        children = list(node.values()) if isinstance(node, dict) else node
        key = id(node)
        if finished:
            total = 1 + len(node) + sum(sizes.get(id(child), 0) for child in children)
            sizes[key] = min(total, MAX_EXPANDED_VALUES + 1)
            open_nodes.discard(key)
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            return None
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children)
    return sizes.get(id(root), 1)
