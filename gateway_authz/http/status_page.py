"""``GET /``: the status facts as one plain HTML page, rendered on the server.

No script, no external asset (it must work in an air-gapped cluster), every value escaped. It shows only what
:func:`~gateway_authz.http.status_facts.status_facts` holds, which never includes a key, signature or token.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

__all__ = ["render_status_page"]

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1b1b}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.4em 0 1em}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;
vertical-align:top}th{background:#f3f3f3}.fail{color:#a00;font-weight:bold}.ok{color:#070}code{font-size:.95em}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(headers: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _never(value: object) -> object:
    return value if value else "never"


def render_status_page(facts: dict[str, Any]) -> str:
    config = facts["config"]
    reload = config["last_reload"]
    reload_text = (
        '<span class="ok">ok</span>' if reload["ok"] else f'<span class="fail">failed</span>: {_e(reload["error"])}'
    )
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<title>gateway-authz status</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>gateway-authz status</h1>",
        _table(
            ("version", "uptime", "config source", "loaded at", "last reload"),
            [],
        ).replace(
            "<tbody></tbody>",
            "<tbody><tr>"
            f"<td>{_e(facts['version'])}</td><td>{_e(_uptime(facts['uptime_seconds']))}</td>"
            f"<td><code>{_e(config['source'])}</code></td><td>{_e(config['loaded_at'])}</td>"
            f"<td>{reload_text}</td></tr></tbody>",
        ),
        f"<p>{_e(facts['role_assignments'])} role assignments, {_e(facts['role_definitions'])} role definitions "
        "loaded.</p>",
        "<h2>Namespaces</h2>",
    ]
    for namespace in facts["namespaces"]:
        parts.append(f"<h3>{_e(namespace['name'])}</h3>")
        parts.append(f"<p>hosts: {_e(', '.join(namespace['hosts']))}<br>scope: <code>{_e(namespace['scope'])}</code>")
        if namespace["dry_run"]:
            parts.append(" (dry run)")
        parts.append("</p>")
        parts.append(_rules_table("namespace rules", namespace["rules"]))
        for entity in namespace["entities"]:
            anonymous = "" if entity["requires_client_authorization"] else " (anonymous senders allowed)"
            parts.append(f"<p><b>{_e(entity['kind'])}/{_e(entity['name'])}</b>{_e(anonymous)}</p>")
            if entity["rules"]:
                parts.append(_rules_table("entity rules", entity["rules"]))
    parts.append("<h2>Issuers</h2>")
    if facts["issuers"]:
        parts.append(
            _table(
                ("issuer", "tenants", "key ids", "last JWKS refresh", "fetches", "failures"),
                (
                    (
                        issuer["issuer"],
                        ", ".join(issuer["tenants"]),
                        ", ".join(issuer["key_ids"]) or "none",
                        "ok" if issuer["last_refresh_ok"] else f"failed: {issuer['last_error'] or 'no keys loaded'}",
                        issuer["fetches"],
                        issuer["failures"],
                    )
                    for issuer in facts["issuers"]
                ),
            )
        )
    else:
        parts.append("<p>No issuer configured.</p>")
    denies = facts["recent_denies"]
    parts.append(f"<h2>Recent denies ({len(denies)})</h2>")
    parts.append(
        _table(
            ("time", "status", "reason", "method", "host", "path", "decision id"),
            (
                (
                    d["time"],
                    d["status"],
                    d["reason"] + (" (dry run: answered 200)" if d["dry_run"] else ""),
                    d["method"],
                    d["host"],
                    d["path"],
                    d["decision_id"],
                )
                for d in denies
            ),
        )
        if denies
        else "<p>No deny since the service started.</p>"
    )
    parts.append("</body></html>")
    return "".join(parts)


def _rules_table(title: str, rules: list[dict[str, Any]]) -> str:
    return _table(
        (title, "rights", "primary key last used", "secondary key last used"),
        (
            (
                rule["key_name"],
                ", ".join(rule["rights"]),
                _never(rule["primary_last_used"]),
                _never(rule["secondary_last_used"]) if rule["has_secondary_key"] else "no secondary key",
            )
            for rule in rules
        ),
    )


def _uptime(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"
