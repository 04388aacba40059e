"""``gateway-authz check``: one request decided offline and explained, as ``POST /explain`` answers it."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import orjson

from ..core.model import AuthzRequest
from ..core.settings import Settings
from ..decision.described import DescriptionError, described_request
from ..decision.explain import Explanation, explain
from ..decision.runtime import Runtime
from ..entra.jwks import HttpJwksFetcher, JwksCache
from ._common import Usage, add_config_option, config_path

__all__ = ["register", "run"]

HELP = "decide one request offline and explain the decision"
DESCRIPTION = (
    "Decide one request against a configuration without sending it, and print the decision as JSON with its "
    "trace: which credential carrier was read, what the token says (never its signature), and each candidate "
    "rule or role assignment with why it matched or failed. Issuers' keys are fetched once when the "
    "configuration names a discovery URL or JWKS URI. Exit status: 0 allow, 1 deny, 2 usage or config error."
)


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("check", help=HELP, description=DESCRIPTION)
    add_config_option(parser)
    parser.add_argument("--method", default="GET", help="the request's method (default: GET)")
    parser.add_argument("--url", required=True, help="the absolute URL the client asked for, with its query")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        dest="headers",
        metavar="'NAME: VALUE'",
        help="a request header; repeat the option for more headers",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config.loader import load_settings

    settings = load_settings(config_path(args, required=True))
    pairs = []
    for header in args.headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise Usage(f"header {name!r} is not 'Name: value'")
        pairs.append([name.strip(), value.strip()])
    try:
        request = described_request(args.method, args.url, pairs)
    except DescriptionError as exc:
        raise Usage(f"--url/--method: {exc}") from None
    explanation = asyncio.run(explain_offline(settings, request))
    print(orjson.dumps(explanation.to_json(), option=orjson.OPT_INDENT_2).decode())
    return 0 if explanation.decision.allowed else 1


async def explain_offline(settings: Settings, request: AuthzRequest, *, now: float | None = None) -> Explanation:
    """Explain with the issuers' keys fetched once (an inline key set needs no fetch)."""
    runtime = Runtime.build(settings)
    keys = await offline_keys(settings)
    return explain(runtime, request, now=time.time() if now is None else now, keys=keys)


async def offline_keys(settings: Settings) -> JwksCache:
    """A key cache for ``settings``' issuers, each loaded once (by fetching when it is not inline)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        keys = JwksCache.from_settings(settings, HttpJwksFetcher(session))
        await keys.refresh_due()
    return keys
