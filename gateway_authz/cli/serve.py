"""``gateway-authz serve``: its flags (each also read from a ``GATEWAY_AUTHZ_*`` variable; a flag wins) and the
start-up that turns every failure to start into one line on standard error and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..http.server import ServeOptions

__all__ = ["ENV_PREFIX", "StartFailure", "add_serve_parser", "serve", "serve_options"]

ENV_PREFIX = "GATEWAY_AUTHZ_"


class StartFailure(Exception):
    """The service cannot start (a bad flag or variable, a port that is taken): exit 2 with this one line."""


@dataclass(frozen=True, slots=True)
class _Flag:
    dest: str
    env: str
    default: Any
    parse: Callable[[str], Any]
    help: str


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("not a TCP port")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


_FLAGS = (
    _Flag("config", "CONFIG", None, str, "config file (default: the one shipped inside the package)"),
    _Flag("host", "HOST", "127.0.0.1", str, "address of the decision (and gRPC) listeners"),
    _Flag("port", "PORT", 8080, _port, "decision listener port"),
    _Flag("admin_host", "ADMIN_HOST", "127.0.0.1", str, "address of the admin listener (/healthz /readyz /metrics)"),
    _Flag("admin_port", "ADMIN_PORT", 8081, _port, "admin listener port"),
    _Flag("grpc_port", "GRPC_PORT", None, _port, "serve Envoy gRPC ext_authz on this port"),
    _Flag("workers", "WORKERS", 1, _positive, "processes sharing the ports (SO_REUSEPORT)"),
)


def add_serve_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``serve`` subcommand; flags default to ``None`` so that :func:`serve_options` can tell given from not."""
    serve_parser: argparse.ArgumentParser = commands.add_parser(
        "serve", help="run the decision, admin and (optionally) gRPC listeners"
    )
    for flag in _FLAGS:
        serve_parser.add_argument(
            "--" + flag.dest.replace("_", "-"), default=None, help=f"{flag.help} [env {ENV_PREFIX}{flag.env}]"
        )
    serve_parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="close a connection that has not sent a complete request head this long after it opened or after its "
        "last answer (bounds slow-loris clients; keep it above the gateway's upstream idle timeout; default 75)",
    )
    return serve_parser


def _value(flag: _Flag, given: str | None, environ: Mapping[str, str]) -> Any:
    """The flag's value: given on the command line, else from the environment, else the default."""
    name = ENV_PREFIX + flag.env
    source, text = ("--" + flag.dest.replace("_", "-"), given) if given is not None else (name, environ.get(name))
    if text is None or (given is None and text == ""):  # an empty variable is an unset one
        return flag.default
    try:
        return flag.parse(text)
    except ValueError:
        raise StartFailure(f"{source}={text!r} is not valid: {flag.help}") from None


def serve_options(
    args: argparse.Namespace, environ: Mapping[str, str], default_config: Callable[[], str]
) -> ServeOptions:
    """The :class:`~gateway_authz.http.server.ServeOptions` that ``args`` and ``environ`` ask for."""
    from ..http.server import ServeOptions

    values = {flag.dest: _value(flag, getattr(args, flag.dest), environ) for flag in _FLAGS}
    options = ServeOptions(
        values["config"] or default_config(),
        values["host"],
        values["port"],
        values["admin_port"],
        values["grpc_port"],
        values["workers"],
        admin_host=values["admin_host"],
    )
    if args.keepalive_timeout is not None:
        if not args.keepalive_timeout > 0:
            raise StartFailure("--keepalive-timeout must be a positive number of seconds")
        options = dataclasses.replace(options, keepalive_timeout=args.keepalive_timeout)
    return options


def serve(args: argparse.Namespace, environ: Mapping[str, str], default_config: Callable[[], str]) -> int:
    """Load the config (a key that is missing or empty leaves the service unready, not stopped) and serve."""
    from ..config.loader import load_settings
    from ..http.server import ListenError, run

    options = serve_options(args, environ, default_config)
    settings = load_settings(options.config_path, allow_missing_keys=True)  # a bad config stops start-up here
    try:
        return run(settings, options)
    except ListenError as exc:
        raise StartFailure(str(exc)) from None
