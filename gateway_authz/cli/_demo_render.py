"""The shipped gateway configurations (``gateway_authz/gateways``, the files the Kubernetes manifests carry), put
onto loopback for ``gateway-authz demo``.

Only addresses, ports and file paths change, and they are changed by structure, never by searching the text for
values: Envoy's admin address, its one listener and the endpoints of each named cluster; NGINX's ``server`` lines
inside each named ``upstream`` block, its one ``listen`` line and its ``pid`` / log / ``*_temp_path`` paths.
Every cluster or upstream of a shipped file must be mapped, and nothing else: a renamed one fails loudly here
rather than sending the demo's requests to a cluster address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .. import gateways

__all__ = ["RenderError", "render_envoy", "render_nginx"]

_LOOPBACK = "127.0.0.1"
_UPSTREAM_BLOCK = re.compile(r"(upstream\s+(?P<name>[\w.-]+)\s*\{)(?P<body>[^}]*)(\})")
_SERVER_LINE = re.compile(r"^(?P<indent>[ \t]*)server\s+[^;]+;[^\n]*\n?", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen\s+[^;]+;", re.MULTILINE)
_TEMP_PATH = re.compile(r"^(\s*)(\w+)_temp_path\s+[^;]+;", re.MULTILINE)


class RenderError(Exception):
    """A shipped configuration no longer has the shape the demo rewrites."""


def _socket(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": _LOOPBACK, "port_value": port}}


def render_envoy(name: str, *, listener_port: int, admin_port: int, clusters: Mapping[str, int]) -> str:
    """The shipped Envoy config ``name`` with its admin, its listener and the named clusters on loopback ports."""
    config: dict[str, Any] = yaml.safe_load(gateways.path(name).read_text())
    config["admin"]["address"] = _socket(admin_port)
    listeners = config["static_resources"]["listeners"]
    if len(listeners) != 1:
        raise RenderError(f"{name}: expected one listener, found {len(listeners)}")
    listeners[0]["address"] = _socket(listener_port)
    shipped = {c["name"]: c for c in config["static_resources"]["clusters"]}
    if set(shipped) != set(clusters):
        raise RenderError(f"{name}: clusters are {sorted(shipped)}, the demo maps {sorted(clusters)}")
    for cluster_name, port in clusters.items():
        cluster = shipped[cluster_name]
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": _socket(port)}}]}]
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
    return yaml.safe_dump(config, sort_keys=False)


def render_nginx(*, listen_port: int, upstreams: Mapping[str, int], rundir: Path) -> str:
    """The shipped ``nginx.conf`` listening on a loopback port, its upstreams on loopback, its files in ``rundir``."""
    text = gateways.path("nginx.conf").read_text()
    found: set[str] = set()

    def upstream(match: re.Match[str]) -> str:
        upstream_name = match["name"]
        found.add(upstream_name)
        if upstream_name not in upstreams:
            raise RenderError(f"nginx.conf: upstream {upstream_name!r} is not mapped by the demo")
        servers = _SERVER_LINE.findall(match["body"])
        if not servers:
            raise RenderError(f"nginx.conf: upstream {upstream_name!r} has no server line")
        body = _SERVER_LINE.sub("", match["body"]).lstrip("\n")
        return f"{match.group(1)}\n{servers[0]}server {_LOOPBACK}:{upstreams[upstream_name]};\n{body}{match.group(4)}"

    text = _UPSTREAM_BLOCK.sub(upstream, text)
    if found != set(upstreams):
        raise RenderError(f"nginx.conf: upstreams are {sorted(found)}, the demo maps {sorted(upstreams)}")
    text, listens = _LISTEN.subn(rf"\g<1>listen {_LOOPBACK}:{listen_port};", text)
    if listens != 1:
        raise RenderError(f"nginx.conf: expected one listen line, found {listens}")
    for directive, filename, expected in (
        ("pid", "nginx.pid", 1),
        ("error_log", "nginx-error.log", 1),
        ("access_log", "nginx-access.log", None),
    ):
        text, count = re.subn(
            rf"^(\s*){directive}\s+\S+?(\s[^;]*)?;", rf"\g<1>{directive} {rundir}/{filename}\g<2>;", text, flags=re.M
        )
        if expected is not None and count != expected:
            raise RenderError(f"nginx.conf: expected {expected} {directive} directive, found {count}")
    return _TEMP_PATH.sub(lambda m: f"{m.group(1)}{m.group(2)}_temp_path {rundir}/{m.group(2)}_temp;", text)
