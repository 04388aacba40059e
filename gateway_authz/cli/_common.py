"""What every command shares: the usage error, ``--config`` (one way on every command), and did-you-mean."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import NoReturn

__all__ = ["HelpfulParser", "Usage", "add_config_option", "config_path", "default_config", "fill_missing_help"]

CONFIG_HELP = "configuration file or directory (YAML or JSON)"


class Usage(Exception):
    """A bad argument: exit status 2 with the message."""


def default_config() -> str:
    """The default configuration shipped inside the package (``config/gateway-authz.yaml`` links to it)."""
    from ..config.default import default_config as packaged

    return packaged()


def add_config_option(parser: argparse.ArgumentParser, *, default_note: str = "", positional: bool = False) -> None:
    """``--config PATH`` as every command takes it; ``positional`` also accepts the older bare ``PATH``."""
    parser.add_argument("--config", metavar="PATH", default=None, help=CONFIG_HELP + default_note)
    if positional:
        parser.add_argument("legacy_config", nargs="?", metavar="PATH", default=None, help=argparse.SUPPRESS)


def config_path(args: argparse.Namespace, *, required: bool = False) -> str:
    """The ``--config`` value; a bare ``PATH`` still works, with a deprecation note on standard error."""
    flag: str | None = getattr(args, "config", None)
    legacy: str | None = getattr(args, "legacy_config", None)
    if legacy is not None:
        if flag is not None:
            raise Usage("give the configuration once: --config PATH")
        print("gateway-authz: a bare PATH is deprecated; use --config PATH", file=sys.stderr)
        return legacy
    if flag is not None:
        return flag
    if required:
        raise Usage("--config PATH is required")
    return default_config()


_CHOICE = re.compile(r"argument (?P<arg>[^:]+): invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (?P<args>.*)")


class HelpfulParser(argparse.ArgumentParser):
    """An argument parser whose errors suggest the command or flag that was probably meant (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)}\n")

    def _suggestion(self, message: str) -> str:
        choice = _CHOICE.search(message)
        if choice is not None:
            choices = [c.strip().strip("'") for c in choice.group("choices").split(",")]
            near = difflib.get_close_matches(choice.group("value"), choices, n=1)
            return f"\n  did you mean '{near[0]}'?" if near else ""
        unknown = _UNRECOGNIZED.search(message)
        if unknown is not None:
            flags = [opt for action in self._all_actions() for opt in action.option_strings]
            hints = []
            for arg in unknown.group("args").split():
                if arg.startswith("-"):
                    near = difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1)
                    if near:
                        hints.append(f"\n  did you mean '{near[0]}' instead of '{arg}'?")
            return "".join(hints)
        return ""

    def _all_actions(self) -> list[argparse.Action]:
        """This parser's options and those of the subcommand parsers below it (an unknown flag may be theirs)."""
        actions = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    if isinstance(parser, HelpfulParser):
                        actions += parser._all_actions()
        return actions


# Help for options registered without any, by destination: filled in, never overriding a command's own text.
_FALLBACK_HELP = {
    "host": "address the decision listener binds to (default 127.0.0.1)",
    "port": "port of the decision listener (default 8080)",
    "admin_port": "port of the admin listener: /healthz, /readyz, /metrics, the status page, /explain (default 8081)",
}


def fill_missing_help(parser: argparse.ArgumentParser) -> None:
    """Give every option of ``parser`` and its subcommands a help text (see ``_FALLBACK_HELP``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                fill_missing_help(sub)
        elif action.help is None and action.dest in _FALLBACK_HELP:
            action.help = _FALLBACK_HELP[action.dest]
