"""``gateway-authz config validate``: every problem with its location, then the config traps as warnings."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import add_config_option, config_path

__all__ = ["register", "run"]

DESCRIPTION = (
    "Load and check a configuration file or directory. Every problem is printed with its location, e.g. "
    "namespaces[0].authorizationRules[2].rights. A configuration that loads is then checked for traps, printed "
    "as warnings: role assignment scopes that match no configured namespace or entity, keys that are not "
    "32-byte base64 keys like Azure's, entity rules that repeat a namespace rule's keyName. Exit status: 0 "
    "valid, 1 invalid (or any warning with --strict)."
)


def register(commands: argparse._SubParsersAction[Any]) -> None:
    parser = commands.add_parser("validate", help="check a configuration; print every problem", description=DESCRIPTION)
    add_config_option(parser, positional=True)
    parser.add_argument("--strict", action="store_true", help="fail (exit status 1) on warnings too")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..config.loader import load_settings
    from ..config.warnings import config_warnings
    from ..core.errors import ConfigError

    path = config_path(args, required=True)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    warnings = config_warnings(settings)
    for warning in warnings:
        print(f"warning: {warning}")
    if warnings and args.strict:
        print(f"{path}: {len(warnings)} warning(s), failing because of --strict")
        return 1
    print(f"{path}: valid" + (f" with {len(warnings)} warning(s)" if warnings else ""))
    return 0
