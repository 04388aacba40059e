"""``gateway-authz test``: decision tests in YAML, run offline against a configuration file or directory.

Each case describes a request (method, URL, headers; a header value is a literal or a ``sas``/``jwt`` recipe
minted at run time) and what to expect of the decision (any of decision, status, reason, auth, principal,
right). Cases are decided with the same implementation as ``POST /explain`` and ``gateway-authz check``, at the
file's fixed ``now`` when it has one, with the issuers' keys the configuration holds inline (nothing is fetched).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..core.errors import ConfigError
from ..decision.described import DescriptionError, described_request
from ..decision.explain import Explanation, explain
from ..decision.runtime import Runtime
from ..entra.jwks import JwksCache, JwksFetchError
from ._common import Usage
from ._coverage import Coverage
from ._junit import write_junit
from ._recipes import RecipeError, SigningKeys, jwt_recipe, sas_recipe

__all__ = ["CaseResult", "register", "run"]

HELP = "run YAML decision tests offline against a configuration"
DESCRIPTION = (
    "Run decision tests offline: each case describes a request and the decision expected for it. SAS tokens "
    "and JWTs are minted at run time from recipes. Prints one line per failing case with what was expected "
    "and what was decided, then 'N passed, N failed'. Exit status: 0 when every case passes, 1 when any "
    "fails, 2 on usage or config errors."
)
_MAX_TEST_FILE = 1024 * 1024
_EXPECTED = ("decision", "status", "reason", "auth", "principal", "right")


class _TestFileError(Exception):
    """The test file itself is wrong: exit status 2."""


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("test", help=HELP, description=DESCRIPTION)
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="configuration file or directory; wins over the 'config' a test file names",
    )
    parser.add_argument("--junit", metavar="FILE", default=None, help="also write the results as JUnit XML")
    parser.add_argument(
        "--coverage",
        action="store_true",
        help="list the rules, anonymous entities and role assignments that decided no case",
    )
    parser.add_argument("testfiles", nargs="+", metavar="TESTFILE", help="YAML test file(s)")
    parser.set_defaults(run=run)


@dataclass(frozen=True, slots=True)
class CaseResult:
    file: str
    name: str
    passed: bool
    message: str
    seconds: float
    explanation: Explanation | None = field(default=None, compare=False)


def run(args: argparse.Namespace) -> int:
    results: list[CaseResult] = []
    configs: dict[str, _Config] = {}
    try:
        for testfile in args.testfiles:
            config, cases, now, keys = _load(Path(testfile), args.config)
            if config not in configs:
                configs[config] = _Config.load(config)
            results += _run_file(testfile, configs[config], cases, now, keys)
    except (_TestFileError, RecipeError) as exc:
        print(f"gateway-authz test: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 2
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"FAIL {result.file}: {result.name}: {result.message}")
    if args.junit:
        write_junit(Path(args.junit), results)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if args.coverage:
        for path, loaded in configs.items():
            if len(configs) > 1:
                print(f"coverage of {path}:")
            for line in loaded.coverage.report():
                print(line)
    return 1 if failed else 0


class _RefuseFetch:
    """Decision tests run offline: an issuer's keys are the ones its configuration holds inline."""

    async def fetch(self, url: str) -> bytes:
        raise JwksFetchError("decision tests do not fetch keys")


@dataclass
class _Config:
    runtime: Runtime
    keys: JwksCache
    coverage: Coverage

    @classmethod
    def load(cls, path: str) -> _Config:
        from ..config.loader import load_settings

        settings = load_settings(path)
        return cls(Runtime.build(settings), JwksCache.from_settings(settings, _RefuseFetch()), Coverage(settings))


def _load(testfile: Path, config_flag: str | None) -> tuple[str, list[Any], float | None, SigningKeys]:
    try:
        with testfile.open("rb") as handle:
            data = handle.read(_MAX_TEST_FILE + 1)
    except OSError as exc:
        raise _TestFileError(f"cannot read {testfile}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > _MAX_TEST_FILE:
        raise _TestFileError(f"{testfile}: larger than {_MAX_TEST_FILE} bytes")
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise _TestFileError(f"{testfile}: not YAML ({exc.__class__.__name__})") from None
    if not isinstance(document, Mapping):
        raise _TestFileError(f"{testfile}: a test file is a mapping with 'cases'")
    unknown = set(document) - {"config", "now", "signingKeys", "cases"}
    if unknown:
        raise _TestFileError(f"{testfile}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    config = config_flag
    if config is None:
        named = document.get("config")
        if not isinstance(named, str):
            raise Usage(f"{testfile} names no config: give --config PATH")
        config = str(testfile.parent / named)
    cases = document.get("cases")
    if not isinstance(cases, list) or not cases:
        raise _TestFileError(f"{testfile}: 'cases' must be a non-empty list")
    try:
        keys = SigningKeys(document.get("signingKeys"))
    except RecipeError as exc:
        raise _TestFileError(f"{testfile}: {exc}") from None
    return config, cases, _now(testfile, document.get("now")), keys


def _now(testfile: Path, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise _TestFileError(f"{testfile}: now must be an ISO 8601 time such as 2026-12-01T00:00:00Z")


def _run_file(
    testfile: str, config: _Config, cases: list[Any], now: float | None, keys: SigningKeys
) -> list[CaseResult]:
    runtime, coverage = config.runtime, config.coverage
    results = []
    for index, case in enumerate(cases):
        if not isinstance(case, Mapping) or not isinstance(case.get("request"), Mapping):
            raise _TestFileError(f"{testfile}: cases[{index}] needs a name, a request and an expect")
        name = str(case.get("name") or f"cases[{index}]")
        expect = case.get("expect")
        if not isinstance(expect, Mapping) or not expect or set(expect) - set(_EXPECTED):
            raise _TestFileError(f"{testfile}: {name}: expect must hold some of {', '.join(_EXPECTED)}")
        started = time.perf_counter()
        at = time.time() if now is None else now
        try:
            request = _request(case["request"], runtime, keys, at)
        except (DescriptionError, RecipeError) as exc:
            raise _TestFileError(f"{testfile}: {name}: {exc}") from None
        explanation = explain(runtime, request, now=at, keys=config.keys)
        coverage.saw(explanation.decision)
        message = _compare(expect, explanation.to_json())
        results.append(CaseResult(testfile, name, not message, message, time.perf_counter() - started, explanation))
    return results


def _request(description: Mapping[str, Any], runtime: Runtime, keys: SigningKeys, now: float) -> Any:
    url = description.get("url")
    if not isinstance(url, str):
        raise DescriptionError("request.url must be an absolute URL")
    parts = urlsplit(url)
    raw = description.get("headers") or {}
    items = list(raw.items()) if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise DescriptionError("request.headers must be a mapping or a list of [name, value] pairs")
    pairs = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise DescriptionError("request.headers as a list must hold [name, value] pairs")
        name, value = item
        if isinstance(value, Mapping) and set(value) == {"sas"}:
            value = sas_recipe(value["sas"], runtime, parts.hostname or "", parts.path or "/", parts.scheme, now)
        elif isinstance(value, Mapping) and set(value) == {"jwt"}:
            token, bearer = jwt_recipe(value["jwt"], keys, now)
            value = f"Bearer {token}" if bearer and str(name).lower() == "authorization" else token
        elif not isinstance(value, str):
            raise DescriptionError(f"header {name}: a string, or one of the recipes sas or jwt")
        pairs.append([name, value])
    return described_request(description.get("method", "GET"), url, pairs)


def _compare(expect: Mapping[str, Any], got: Mapping[str, Any]) -> str:
    wrong = [name for name in _EXPECTED if name in expect and str(expect[name]) != str(got[name])]
    if not wrong:
        return ""
    expected = " ".join(f"{name}={expect[name]}" for name in wrong)
    actual = " ".join(f"{name}={got[name]}" for name in wrong)
    context = "" if "reason" in wrong else f" (reason={got['reason']})"
    return f"expected {expected}, got {actual}{context}"
