"""The ``gateway-authz`` command: serve, config validate/init, token, check, keys generate."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from ..core.errors import ConfigError
from ..core.settings import Entity, Namespace, Settings

if TYPE_CHECKING:
    from aiohttp import web

    from ..core.model import AuthzRequest

__all__ = ["main"]

_DEFAULT_TTL = 3600


def _default_config() -> str:
    """The shipped ``config/gateway-authz.yaml``, next to the package in a checkout, else in the working directory."""
    for base in (Path(__file__).resolve().parent.parent, Path.cwd()):
        candidate = base / "config" / "gateway-authz.yaml"
        if candidate.is_file():
            return str(candidate)
    return "config/gateway-authz.yaml"


class _Usage(Exception):
    """A bad argument: exit status 2 with the message."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway-authz", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the decision, admin and (optionally) gRPC listeners")
    serve.add_argument("--config", default=None, help="config file (default: the shipped config/)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--admin-port", type=int, default=8081)
    serve.add_argument("--grpc-port", type=int, default=None, help="serve Envoy gRPC ext_authz on this port")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the ports (SO_REUSEPORT)")
    serve.add_argument(
        "--keepalive-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close a connection that has not sent a complete request head this long after it opened or after its "
        "last answer (bounds slow-loris clients; keep it above the gateway's upstream idle timeout; default 75)",
    )

    config = commands.add_parser("config", help="validate or create a config file").add_subparsers(
        dest="config_command", required=True
    )
    validate = config.add_parser("validate", help="check a config file; print every problem")
    validate.add_argument("path")
    from .config_import import add_parser as add_import_parser

    add_import_parser(config)
    init = config.add_parser("init", help="print a starter config for a new namespace")
    init.add_argument("--namespace", required=True)
    init.add_argument("--host", required=True)

    token = commands.add_parser("token", help="print a SAS token signed as the Azure SDKs sign")
    source = token.add_mutually_exclusive_group(required=True)
    source.add_argument("--config")
    source.add_argument("--connection-string")
    token.add_argument("--namespace")
    token.add_argument("--rule", help="the rule's keyName")
    token.add_argument("--entity", help="take the rule from this entity instead of the namespace")
    token.add_argument("--key", choices=("primary", "secondary"), default="primary")
    token.add_argument("--resource", help="the resource URI the token is for (sr)")
    token.add_argument("--ttl", type=int, default=_DEFAULT_TTL, help="seconds until expiry")

    check = commands.add_parser("check", help="decide one request offline and explain the decision")
    check.add_argument("--config", required=True)
    check.add_argument("--method", default="GET")
    check.add_argument("--url", required=True)
    check.add_argument("-H", "--header", action="append", default=[], dest="headers")

    keys = commands.add_parser("keys", help="key material").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("generate", help="print a new random 256-bit key, base64")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "config":
            return _config(args)
        if args.command == "token":
            print(_token(args))
            return 0
        if args.command == "check":
            return _check(args)
        from ..config.loader import generate_key

        print(generate_key())
        return 0
    except _Usage as exc:
        print(f"gateway-authz: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from ..config.loader import load_settings
    from ..http.server import ServeOptions, run

    path = args.config or _default_config()
    settings = load_settings(path)  # a bad config stops start-up here, naming the exact key
    options = ServeOptions(path, args.host, args.port, args.admin_port, args.grpc_port, max(1, args.workers))
    if args.keepalive_timeout is not None:
        if not args.keepalive_timeout > 0:
            raise _Usage("--keepalive-timeout must be a positive number of seconds")
        options = dataclasses.replace(options, keepalive_timeout=args.keepalive_timeout)
    return run(settings, options)


def _config(args: argparse.Namespace) -> int:
    from ..config.loader import starter_config, validate_file

    if args.config_command == "import":
        from .config_import import run

        return run(args)
    if args.config_command == "init":
        print(starter_config(args.namespace, args.host), end="")
        return 0
    problems = validate_file(args.path)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{args.path}: valid")
    return 1 if problems else 0


def _token(args: argparse.Namespace) -> str:
    from ..sas.token import sign_sas

    if args.ttl <= 0:
        raise _Usage("--ttl must be a positive number of seconds")
    expiry = int(time.time()) + args.ttl
    if args.connection_string:
        from ..sas.connection_string import parse_connection_string

        try:
            parsed = parse_connection_string(args.connection_string)
        except ValueError as exc:
            raise _Usage(str(exc)) from None
        return sign_sas(args.resource or parsed.resource, parsed.key_name, parsed.key, expiry)
    if not (args.namespace and args.rule and args.resource):
        raise _Usage("--config needs --namespace, --rule and --resource")
    from ..config.loader import load_settings

    settings = load_settings(args.config)
    namespace = next((ns for ns in settings.namespaces if ns.name == args.namespace), None)
    if namespace is None:
        raise _Usage(f"no namespace {args.namespace!r} in {args.config}")
    rules = namespace.rules
    entity = _token_entity(namespace, args.entity, args.resource)
    if entity is not None:  # the entity's own rule of that name first, as the verifier looks it up
        rules = entity.rules + namespace.rules
    rule = next((r for r in rules if r.key_name == args.rule), None)
    if rule is None:
        raise _Usage(f"no rule {args.rule!r} there")
    key = rule.primary_key if args.key == "primary" else rule.secondary_key
    if not key:
        raise _Usage(f"rule {args.rule!r} has no {args.key} key")
    return sign_sas(args.resource, rule.key_name, key, expiry)


def _token_entity(namespace: Namespace, name: str | None, resource: str) -> Entity | None:
    """The entity whose rules may sign for ``resource``: ``--entity`` if given, else the one ``resource`` names."""
    if name:
        entity = next((e for e in namespace.entities if e.name.lower() == name.lower()), None)
        if entity is None:
            raise _Usage(f"no entity {name!r} in namespace {namespace.name!r}")
        return entity
    from ..core.errors import InvalidCredential
    from ..core.resources import ResourceIndex, parse_sr

    try:
        segments = parse_sr(resource).segments
    except InvalidCredential:
        raise _Usage(f"--resource {resource!r} is not a resource URI such as sb://<host>/<entity>") from None
    return ResourceIndex((namespace,)).entity_for(namespace, segments)


def _check(args: argparse.Namespace) -> int:
    from ..config.loader import load_settings
    from ..core.model import AuthzRequest, headers_from_pairs

    settings = load_settings(args.config)
    url = urlsplit(args.url)
    if not url.netloc:
        raise _Usage("--url must be absolute, e.g. https://contoso.servicebus.windows.net/orders")
    pairs = []
    for header in args.headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise _Usage(f"header {name!r} is not 'Name: value'")
        pairs.append((name.strip(), value.strip()))
    request = AuthzRequest(
        gateway="cli",
        method=args.method.upper(),
        host=url.netloc,
        target=(url.path or "/") + (f"?{url.query}" if url.query else ""),
        headers=headers_from_pairs(pairs),
        scheme=url.scheme or "https",
    )
    report = asyncio.run(_decide_offline(settings, request))
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    return 0 if report["decision"] == "allow" else 1


async def _decide_offline(settings: Settings, request: AuthzRequest) -> dict[str, object]:
    """Decide ``request`` in a started (but not listening) app, so issuers' keys are fetched as when serving.

    The app's startup and cleanup run around the decision: the JWKS client session and the key refresher live in
    its ``cleanup_ctx``. For a JWT the report also lists the principal's role assignments and why each does or
    does not apply; the token itself is never printed.
    """
    from aiohttp import web

    from ..core.appkeys import SERVICE
    from ..http.app import create_app

    app = create_app(settings, audit_sink=lambda _line: None, watch_config=False)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        decision = await app[SERVICE].decide(request)
        report: dict[str, object] = {
            "decision": "allow" if decision.allowed else "deny",
            "status": decision.status,
            "reason": decision.reason,
            "auth": decision.auth,
            "principal": decision.principal,
            "right": decision.right.value if decision.right else None,
            "namespace": decision.namespace,
            "entity": decision.entity,
            **decision.audit,
        }
        if decision.detail:
            report["detail"] = decision.detail
        if decision.auth == "jwt" and decision.status in (200, 403):
            assignments = await _explain_jwt(app, request)
            if assignments is not None:
                report["assignments"] = list(assignments)
        return report
    finally:
        await runner.cleanup()


async def _explain_jwt(app: web.Application, request: AuthzRequest) -> tuple[str, ...] | None:
    """The RBAC explanation of a verified JWT's decision (see ``EntraAuthorizer.explain``), or None."""
    from ..core.appkeys import HOLDER, JWT
    from ..core.credentials import find_credential, parse_query
    from ..core.errors import AuthzError
    from ..core.resources import split_target

    runtime = app[HOLDER].runtime
    try:
        path, query_string = split_target(request.target)
        resolved = runtime.policy.resolve(request.host, path)
        query = parse_query(query_string)
        rights = runtime.policy.required_rights(request, resolved, query)
        found = find_credential(request, query)
        if found is None or found.kind != "jwt":
            return None
        return await app[JWT].explain(found.value, runtime.rbac, resolved, rights, time.time())
    except AuthzError:
        return None
