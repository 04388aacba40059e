"""The gateway-authz command: serve, config validate/init, token, check, test, keys generate.

Each command beyond the original ones lives in a module of its own with a register() function; this module
only wires them. Help texts are plain text (they are printed as they are written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from ..core.build_info import package_version
from ..core.errors import ConfigError
from ..core.settings import Entity, Namespace
from . import check, config_import, decision_tests, validate
from ._common import HelpfulParser, default_config, fill_missing_help
from ._common import Usage as _Usage
from .demo import add_demo_parser, demo
from .serve import StartFailure, add_serve_parser, serve

__all__ = ["main"]

_DEFAULT_TTL = 3600
_DESCRIPTION = (
    "External authorization for Envoy, NGINX and forward-auth proxies, with Azure Relay's model: SAS tokens, "
    "and Entra ID tokens checked against Azure role assignments. Run 'gateway-authz COMMAND --help' for the "
    "options of a command."
)


def _parser() -> argparse.ArgumentParser:
    parser = HelpfulParser(prog="gateway-authz", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gateway-authz {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_serve_parser(commands)
    add_demo_parser(commands)

    config = commands.add_parser(
        "config", help="validate or create a configuration", description="Validate or create a configuration."
    ).add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    validate.register(config)
    config_import.add_parser(config)
    init = config.add_parser(
        "init",
        help="print a starter config for a new namespace",
        description="Print a starter configuration for a new namespace, with a RootManageSharedAccessKey rule "
        "holding all rights and fresh primary and secondary keys, as Azure provisions a namespace.",
    )
    init.add_argument("--namespace", required=True, help="the namespace name (6-50 letters, digits, hyphens)")
    init.add_argument("--host", required=True, help="the host name clients use for the namespace")

    token = commands.add_parser(
        "token",
        help="print a SAS token signed as the Azure SDKs sign",
        description="Print a SAS token signed the way the official Azure SDKs sign, from a rule in a "
        "configuration or from a connection string. Exit status 2 on bad arguments.",
    )
    source = token.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="PATH", help="configuration file or directory holding the rule")
    source.add_argument(
        "--connection-string",
        metavar="STRING",
        help="Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...[;EntityPath=...]",
    )
    token.add_argument("--namespace", help="the namespace whose rule signs (with --config)")
    token.add_argument("--rule", help="the rule's keyName (with --config)")
    token.add_argument("--entity", help="take the rule from this entity instead of the namespace")
    token.add_argument(
        "--key", choices=("primary", "secondary"), default="primary", help="which key signs (default: primary)"
    )
    token.add_argument("--resource", help="the resource URI the token is for (its sr), e.g. https://HOST/ENTITY")
    token.add_argument("--ttl", type=int, default=_DEFAULT_TTL, help="seconds until expiry (default: 3600)")

    check.register(commands)
    decision_tests.register(commands)

    keys = commands.add_parser("keys", help="key material", description="Key material.").add_subparsers(
        dest="keys_command", required=True, metavar="SUBCOMMAND"
    )
    keys.add_parser(
        "generate",
        help="print a new random 256-bit key, base64",
        description="Print a new random 256-bit key, base64 (44 characters), like the keys Azure issues.",
    )
    fill_missing_help(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run = getattr(args, "run", None)
        if run is not None:  # a command registered by its own module
            return int(run(args))
        if args.command == "serve":
            return serve(args, os.environ, default_config)
        if args.command == "demo":
            return demo(args)
        if args.command == "config":
            return _config(args)
        if args.command == "token":
            print(_token(args))
            return 0
        from ..config.loader import generate_key

        print(generate_key())
        return 0
    except _Usage as exc:
        print(f"gateway-authz: {exc}", file=sys.stderr)
        return 2
    except StartFailure as exc:  # one line naming the cause, e.g. "cannot listen on 127.0.0.1:8080: address in use"
        print(exc, file=sys.stderr)
        return 2
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return 2


def _config(args: argparse.Namespace) -> int:
    from ..config.loader import starter_config

    print(starter_config(args.namespace, args.host), end="")
    return 0


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
