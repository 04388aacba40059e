"""Namespaces, hosts, entities, management routes and shared access rules, checked the way ARM checks them.

Names follow Azure's resource-name rules (relay-auth.md §2.5, §5.5) so that a config mirrors a real namespace;
the rule limits and the Manage-needs-Listen-and-Send rule are ARM's own (§2.4, §2.5). Hosts are matched
against the request's lower-case host with the port removed, so a configured host carries no port and no upper
case.
"""

from __future__ import annotations

import ipaddress
import re
import sys

from ..core.model import Right
from ..core.resources import canonical_segments
from ..core.settings import AuthorizationRule, Entity, EntityKind, ManagementRoute, Namespace
from ._reader import Reader, at
from ._secrets import Secrets

__all__ = ["MAX_RULES_PER_SCOPE", "read_namespaces"]

MAX_RULES_PER_SCOPE = 12
_NAMESPACE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]")
_KEY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,48}[A-Za-z0-9])?")
_ENTITY_NAME = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RESOURCE_ID = re.compile(
    r"/subscriptions/[^/\s]+/resourceGroups/[^/\s]+/providers/Microsoft\.Relay/namespaces/([^/\s]+)",
    re.IGNORECASE,
)
_ROUTE_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")
_METHOD = re.compile(r"[A-Z][A-Z0-9!#$%&'*+.^_`|~-]*")
_ENTITY_KINDS = ((EntityKind.HYBRID_CONNECTION, "hybridConnections"), (EntityKind.WCF_RELAY, "wcfRelays"))
_RIGHTS = {right.value: right for right in Right}
# Every possible set of rights, so that rules share one frozenset each instead of one per rule (estate scale).
_RULE_KEYS = frozenset({"keyName", "primaryKey", "secondaryKey", "rights"})
_ALL_RIGHTS = tuple(Right)
_RIGHT_SETS = {
    s: s
    for s in (
        frozenset(r for bit, r in enumerate(_ALL_RIGHTS) if mask >> bit & 1) for mask in range(1 << len(_ALL_RIGHTS))
    )
}


def read_namespaces(
    reader: Reader, secrets: Secrets, value: object, location: str, *, required: bool = True
) -> tuple[Namespace, ...]:
    """Every valid namespace; names and hosts are unique across the file (a host picks its namespace)."""
    names: dict[str, str] = {}
    hosts: dict[str, str] = {}
    result = []
    for item_location, item in reader.items(value, location, required=required):
        namespace = _namespace(reader, secrets, item, item_location, names, hosts)
        if namespace is not None:
            result.append(namespace)
    return tuple(result)


def _namespace(
    reader: Reader,
    secrets: Secrets,
    value: object,
    location: str,
    names: dict[str, str],
    hosts: dict[str, str],
) -> Namespace | None:
    raw = reader.mapping(
        value,
        location,
        required=("name", "hosts"),
        optional=(
            "resourceId",
            "authorizationRules",
            "hybridConnections",
            "wcfRelays",
            "managementRoutes",
            "dryRun",
        ),
    )
    if raw is None:
        return None
    name = reader.string(
        raw.get("name"),
        at(location, "name"),
        max_length=50,
        pattern=_NAMESPACE_NAME,
        rule="6-50 letters, digits and hyphens, starting with a letter and ending with a letter or digit",
    )
    if name is not None:
        reader.unique(at(location, "name"), name.lower(), names, what="namespace name")
    host_list = []
    for host_location, host_value in reader.items(raw.get("hosts"), at(location, "hosts"), required=True):
        host = _host(reader, host_value, host_location)
        if host is not None and reader.unique(host_location, host, hosts, what="host"):
            host_list.append(host)
    resource_id = _resource_id(reader, raw.get("resourceId"), at(location, "resourceId"), name)
    rules = read_rules(reader, secrets, raw.get("authorizationRules"), at(location, "authorizationRules"))
    entities = _entities(reader, secrets, raw, location)
    routes = _routes(reader, raw.get("managementRoutes"), at(location, "managementRoutes"))
    dry_run = reader.boolean(raw.get("dryRun"), at(location, "dryRun"), default=False)
    if name is None or rules is None or entities is None or routes is None:
        return None
    return Namespace(
        name=name,
        hosts=tuple(host_list),
        rules=rules,
        entities=entities,
        resource_id=resource_id,
        management_routes=routes,
        dry_run=dry_run,
    )


def _host(reader: Reader, value: object, location: str) -> str | None:
    """A lower-case DNS name, IPv4 address or bracketed IPv6 address, without a port or a trailing dot.

    Ports are rejected rather than ignored: the request's port is dropped before lookup, so ``host:8443``
    could never match and would only suggest a per-port distinction the service does not make.
    """
    text = reader.string(value, location, max_length=253)
    if text is None:
        return None
    if text.startswith("["):
        try:
            canonical = f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]" if text.endswith("]") else ""
        except ValueError:
            canonical = ""
        if canonical != text:
            reader.add(location, f"{text!r} is not a bracketed IPv6 address in its compressed lower-case form")
            return None
        return text
    if ":" in text:
        reader.add(location, "must not include a port; requests are matched by host name only")
        return None
    if text != text.lower():
        reader.add(location, f"must be lower-case: write {text.lower()!r}")
        return None
    labels = text.split(".")
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        reader.add(location, f"{text!r} is not a valid DNS name (no wildcards, ports or trailing dot)")
        return None
    if labels[-1].isdigit():
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            reader.add(location, f"{text!r} is neither a DNS name nor an IPv4 address")
            return None
    return text


def _resource_id(reader: Reader, value: object, location: str, name: str | None) -> str | None:
    """The namespace's ARM id, which must name this very namespace (it becomes the RBAC scope)."""
    if value is None:
        return None
    text = reader.string(value, location, max_length=1024)
    if text is None:
        return None
    match = _RESOURCE_ID.fullmatch(text)
    if match is None:
        reader.add(
            location,
            "must be /subscriptions/<id>/resourceGroups/<name>/providers/Microsoft.Relay/namespaces/<name>",
        )
        return None
    if name is not None and match.group(1).lower() != name.lower():
        reader.add(location, f"names namespace {match.group(1)!r}, not {name!r}")
        return None
    return text


def read_rules(reader: Reader, secrets: Secrets, value: object, location: str) -> tuple[AuthorizationRule, ...] | None:
    """At most 12 rules with unique (case-insensitive) key names; ``None`` if any of them is invalid."""
    seen: dict[str, str] = {}
    result: list[AuthorizationRule] = []
    valid = True
    for item_location, item in reader.items(value, location, max_items=MAX_RULES_PER_SCOPE):
        rule = _rule(reader, secrets, item, item_location, seen)
        valid = valid and rule is not None
        if rule is not None:
            result.append(rule)
    if isinstance(value, list) and len(value) > MAX_RULES_PER_SCOPE:
        return None
    return tuple(result) if valid else None


def _rule(
    reader: Reader, secrets: Secrets, value: object, location: str, seen: dict[str, str]
) -> AuthorizationRule | None:
    return _plain_rule(secrets, value, location, seen) or checked_rule(reader, secrets, value, location, seen)


def checked_rule(
    reader: Reader, secrets: Secrets, value: object, location: str, seen: dict[str, str]
) -> AuthorizationRule | None:
    """One rule through every check, each problem recorded (what :func:`_plain_rule` must agree with)."""
    raw = reader.mapping(value, location, required=("keyName", "primaryKey", "rights"), optional=("secondaryKey",))
    if raw is None:
        return None
    key_name = reader.string(
        raw.get("keyName"),
        at(location, "keyName"),
        max_length=50,
        pattern=_KEY_NAME,
        rule="1-50 letters, digits, '.', '-' or '_', starting and ending with a letter or digit",
    )
    if key_name is not None:
        reader.unique(at(location, "keyName"), key_name.lower(), seen, what="keyName")
    primary = secrets.key(raw.get("primaryKey"), at(location, "primaryKey"))
    secondary = secrets.key(raw.get("secondaryKey"), at(location, "secondaryKey"))
    rights = _rights(reader, raw.get("rights"), at(location, "rights"))
    secondary_ok = raw.get("secondaryKey") is None or secondary is not None
    if key_name is None or primary is None or rights is None or not secondary_ok:
        return None
    key_name = sys.intern(key_name)  # names like RootManageSharedAccessKey recur in every namespace
    return AuthorizationRule(
        key_name=key_name,
        primary_key=primary,
        secondary_key=secondary or None,
        rights=rights,
        unavailable=secrets.missing_under(location),
    )


def _plain_rule(secrets: Secrets, value: object, location: str, seen: dict[str, str]) -> AuthorizationRule | None:
    """The rule, when it is written the plain way (literal keys, valid as they stand), else ``None``.

    At estate scale rules are most of the work; this accepts only what the full checks below accept, with the same
    result, and leaves everything else (including every problem to report) to them.
    """
    if type(value) is not dict or not value.keys() <= _RULE_KEYS:
        return None
    key_name, primary, rights = value.get("keyName"), value.get("primaryKey"), value.get("rights")
    secondary = value.get("secondaryKey")
    if type(key_name) is not str or len(key_name) > 50 or not _KEY_NAME.fullmatch(key_name):
        return None
    if key_name.lower() in seen or type(primary) is not str or (secondary is not None and type(secondary) is not str):
        return None
    if type(rights) is not list or not 0 < len(rights) <= len(_RIGHTS) or len(set(map(str, rights))) != len(rights):
        return None
    if not all(type(r) is str and r in _RIGHTS for r in rights):
        return None
    granted = _RIGHT_SETS[frozenset(_RIGHTS[r] for r in rights)]
    if Right.MANAGE in granted and not {Right.LISTEN, Right.SEND} <= granted:
        return None
    if not secrets.literal(primary, at(location, "primaryKey")):
        return None
    if secondary is not None and not secrets.literal(secondary, at(location, "secondaryKey")):
        secrets.resolved.pop()  # the primary's record: the full checks record it again
        return None
    seen[key_name.lower()] = at(location, "keyName")
    return AuthorizationRule(
        key_name=sys.intern(key_name), primary_key=primary, secondary_key=secondary, rights=granted
    )


def _rights(reader: Reader, value: object, location: str) -> frozenset[Right] | None:
    """A non-empty set of unique rights; Manage only together with Listen and Send, as ARM insists."""
    if value is None:
        return None  # reported as required by the rule's schema check
    rights: set[Right] = set()
    valid = True
    for item_location, item in reader.items(value, location, required=True):
        name = reader.choice(item, item_location, _RIGHTS, what="right")
        if name is None:
            valid = False
        elif _RIGHTS[name] in rights:
            reader.add(item_location, f"{name} is listed twice")
            valid = False
        else:
            rights.add(_RIGHTS[name])
    if not valid or not rights:
        return None
    if Right.MANAGE in rights and not {Right.LISTEN, Right.SEND} <= rights:
        reader.add(location, "Manage is only valid together with Listen and Send: use [Manage, Listen, Send]")
        return None
    return _RIGHT_SETS[frozenset(rights)]


def _entities(reader: Reader, secrets: Secrets, raw: dict[str, object], location: str) -> tuple[Entity, ...] | None:
    """Hybrid connections then WCF relays; names are unique across both kinds, case-insensitively."""
    seen: dict[str, str] = {}
    result: list[Entity] = []
    valid = True
    for kind, key in _ENTITY_KINDS:
        for item_location, item in reader.items(raw.get(key), at(location, key)):
            entity = _entity(reader, secrets, kind, item, item_location, seen)
            valid = valid and entity is not None
            if entity is not None:
                result.append(entity)
    return tuple(result) if valid else None


def _entity(
    reader: Reader, secrets: Secrets, kind: EntityKind, value: object, location: str, seen: dict[str, str]
) -> Entity | None:
    raw = reader.mapping(
        value, location, required=("name",), optional=("requiresClientAuthorization", "authorizationRules")
    )
    if raw is None:
        return None
    name = _entity_name(reader, raw.get("name"), at(location, "name"))
    if name is not None:
        reader.unique(at(location, "name"), name.lower(), seen, what="entity name")
    requires = reader.boolean(
        raw.get("requiresClientAuthorization"), at(location, "requiresClientAuthorization"), default=True
    )
    rules = read_rules(reader, secrets, raw.get("authorizationRules"), at(location, "authorizationRules"))
    if name is None or rules is None:
        return None
    return Entity(kind=kind, name=name, requires_client_authorization=requires, rules=rules)


def _entity_name(reader: Reader, value: object, location: str) -> str | None:
    """1-260 letters, digits, ``.``, ``-``, ``_`` in ``/``-separated segments, none empty, ``.`` or ``..``."""
    name = reader.string(
        value,
        location,
        max_length=260,
        pattern=_ENTITY_NAME,
        rule="letters, digits, '.', '-', '_' and '/' between non-empty segments, no leading or trailing '/'",
    )
    if name is not None and any(segment in {".", ".."} for segment in name.split("/")):
        reader.add(location, "must not contain a '.' or '..' segment")
        return None
    return name


def _routes(reader: Reader, value: object, location: str) -> tuple[ManagementRoute, ...] | None:
    """Paths (whole segments, stored lower-case like canonical request paths) whose requests need Manage."""
    seen: dict[str, str] = {}
    result: list[ManagementRoute] = []
    valid = True
    for item_location, item in reader.items(value, location):
        route = _route(reader, item, item_location, seen)
        valid = valid and route is not None
        if route is not None:
            result.append(route)
    return tuple(result) if valid else None


def _route(reader: Reader, value: object, location: str, seen: dict[str, str]) -> ManagementRoute | None:
    raw = reader.mapping(value, location, required=("path",), optional=("methods",))
    if raw is None:
        return None
    path = _route_path(reader, raw.get("path"), at(location, "path"))
    if path is not None and not reader.unique(at(location, "path"), path, seen, what="route path"):
        path = None
    methods: set[str] = set()
    valid = True
    for item_location, item in reader.items(raw.get("methods"), at(location, "methods")):
        method = reader.string(item, item_location, max_length=32, pattern=_METHOD, rule="an upper-case HTTP method")
        if method is not None and method in methods:
            reader.add(item_location, f"{method} is listed twice")
        valid = valid and method is not None and method not in methods
        if method is not None:
            methods.add(method)
    if path is None or not valid:
        return None
    return ManagementRoute(path=path, methods=frozenset(methods))


def _route_path(reader: Reader, value: object, location: str) -> str | None:
    path = reader.string(value, location, max_length=1024)
    if path is None:
        return None
    if not path.startswith("/"):
        reader.add(location, "must start with '/'")
        return None
    if path == "/":
        return path
    trimmed = path.removesuffix("/")
    if any(not _ROUTE_SEGMENT.fullmatch(s) or s in {".", ".."} for s in trimmed[1:].split("/")):
        reader.add(location, "must be a plain path: non-empty segments, no '.', '..', '%', '?', '#' or spaces")
        return None
    try:  # the request canonicaliser has the last word: a path it refuses could never match, and would not compile
        canonical_segments(trimmed)
    except ValueError:
        reader.add(location, "is not a canonical request path (a '..;' segment, a repeated '$hc' prefix…)")
        return None
    return trimmed.lower()
