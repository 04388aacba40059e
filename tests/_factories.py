"""Shared builders for the unit and security tests: a configuration, a fake clock, requests, tokens, an app.

Everything is built directly from the frozen dataclasses in :mod:`gateway_authz.core.settings` (no config file, no
loader), so these tests depend only on the decision path. Tokens are minted by the official Azure SDK's own
signing function wherever an SDK would produce them; hand-built tokens (other escapings, broken fields) sign the
raw ``sr`` exactly as Relay specifies, so that a refusal is always about the one thing the test changed.

Import from a test module as ``from _factories import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

import pytest
from aiohttp import web

from gateway_authz.core.appkeys import HOLDER, METRICS, SERVICE
from gateway_authz.core.metrics import Metrics
from gateway_authz.core.model import AuthzRequest, Decision, Gateway, Right, headers_from_pairs
from gateway_authz.core.settings import (
    AuthorizationRule,
    CacheSettings,
    Entity,
    EntityKind,
    ManagementRoute,
    Namespace,
    SasSettings,
    Settings,
)
from gateway_authz.decision.service import DecisionService
from gateway_authz.http.app import create_app

_sdk_generate_sas_token: Callable[..., Any] | None
try:
    from azure.servicebus._pyamqp.utils import generate_sas_token as _sdk_generate_sas_token
except ImportError as _exc:  # pragma: no cover - azure-servicebus is a declared test dependency
    _sdk_generate_sas_token = None
    _SDK_IMPORT_ERROR: ImportError | None = _exc
else:
    _SDK_IMPORT_ERROR = None

# --------------------------------------------------------------------------------------------------------------
# The configuration every test starts from
# --------------------------------------------------------------------------------------------------------------

NOW = 1_800_000_000  # the fake clock's default reading (2027-01-15T08:00:00Z)
HOST = "contoso.servicebus.windows.net"
OTHER_HOST = "fabrikam.servicebus.windows.net"
NS_URI = f"sb://{HOST}"


def fake_key(label: str) -> str:
    """A 44-character base64 key string, as Azure provisions one; deterministic per ``label``, fake."""
    return base64.b64encode(hashlib.sha256(f"gateway-authz tests {label}".encode()).digest()).decode()


ROOT = "RootManageSharedAccessKey"
ROOT_PRIMARY = fake_key("root primary")
ROOT_SECONDARY = fake_key("root secondary")
SEND_ONLY = "SendOnly"  # namespace rule: Send only, secondary key empty ("")
SEND_ONLY_KEY = fake_key("send only")
ORDERS_SEND = "orders-send"  # entity rule on `orders`: Send only, no secondary (None)
ORDERS_SEND_KEY = fake_key("orders send")
ORDERS_LISTEN = "orders-listen"  # entity rule on `orders`: Listen only
ORDERS_LISTEN_KEY = fake_key("orders listen")
ORDERS_LISTEN_SECONDARY = fake_key("orders listen secondary")
PRIORITY_SEND = "priority-send"  # entity rule on `orders/priority`, a hybrid connection nested under `orders`
PRIORITY_SEND_KEY = fake_key("priority send")
FABRIKAM_ROOT_PRIMARY = fake_key("fabrikam root primary")  # another namespace's RootManageSharedAccessKey

ALL_RIGHTS = frozenset({Right.MANAGE, Right.LISTEN, Right.SEND})

ROOT_RULE = AuthorizationRule(ROOT, ROOT_PRIMARY, ROOT_SECONDARY, ALL_RIGHTS)
SEND_ONLY_RULE = AuthorizationRule(SEND_ONLY, SEND_ONLY_KEY, "", frozenset({Right.SEND}))
ORDERS_SEND_RULE = AuthorizationRule(ORDERS_SEND, ORDERS_SEND_KEY, None, frozenset({Right.SEND}))
ORDERS_LISTEN_RULE = AuthorizationRule(
    ORDERS_LISTEN, ORDERS_LISTEN_KEY, ORDERS_LISTEN_SECONDARY, frozenset({Right.LISTEN})
)
PRIORITY_SEND_RULE = AuthorizationRule(PRIORITY_SEND, PRIORITY_SEND_KEY, None, frozenset({Right.SEND}))

# Every secret the configuration holds: none of these may ever appear in an audit line or a deny body.
ALL_KEYS = (
    ROOT_PRIMARY,
    ROOT_SECONDARY,
    SEND_ONLY_KEY,
    ORDERS_SEND_KEY,
    ORDERS_LISTEN_KEY,
    ORDERS_LISTEN_SECONDARY,
    PRIORITY_SEND_KEY,
    FABRIKAM_ROOT_PRIMARY,
)

HC = EntityKind.HYBRID_CONNECTION


def hc(name: str, *rules: AuthorizationRule, requires_auth: bool = True) -> Entity:
    return Entity(HC, name, requires_auth, tuple(rules))


def contoso(
    *,
    rules: Sequence[AuthorizationRule] | None = None,
    entities: Sequence[Entity] | None = None,
    management_routes: Sequence[ManagementRoute] | None = None,
    dry_run: bool = False,
) -> Namespace:
    """Namespace ``contoso`` on ``contoso.servicebus.windows.net``.

    Rules: RootManageSharedAccessKey (Manage/Listen/Send, primary + secondary) and SendOnly (Send, empty
    secondary). Entities: hybrid connections ``orders`` (rules ``orders-send`` Send, ``orders-listen`` Listen),
    ``orders/priority`` (rule ``priority-send``), ``orders2``, ``eu/orders``, ``public``
    (``requiresClientAuthorization: false``) and the WCF relay ``legacy/echo``. Management routes: ``/$admin``
    for PUT and DELETE, ``/$ops`` for every method.
    """
    return Namespace(
        name="contoso",
        hosts=(HOST,),
        rules=tuple(rules) if rules is not None else (ROOT_RULE, SEND_ONLY_RULE),
        entities=tuple(entities)
        if entities is not None
        else (
            hc("orders", ORDERS_SEND_RULE, ORDERS_LISTEN_RULE),
            hc("orders/priority", PRIORITY_SEND_RULE),
            hc("orders2"),
            hc("eu/orders"),
            hc("public", requires_auth=False),
            Entity(EntityKind.WCF_RELAY, "legacy/echo", True, ()),
        ),
        management_routes=tuple(management_routes)
        if management_routes is not None
        else (ManagementRoute("/$admin", frozenset({"PUT", "DELETE"})), ManagementRoute("/$ops")),
        dry_run=dry_run,
    )


def fabrikam() -> Namespace:
    """A second namespace whose root rule has the same name as contoso's but another key."""
    rule = AuthorizationRule(ROOT, FABRIKAM_ROOT_PRIMARY, None, ALL_RIGHTS)
    return Namespace(name="fabrikam", hosts=(OTHER_HOST,), rules=(rule,), entities=(hc("orders"),))


def make_settings(
    *,
    namespaces: Sequence[Namespace] | None = None,
    clock_skew: int = 300,
    max_lifetime: int | None = None,
    decision_ttl: float = 60,
    decision_max_entries: int = 1000,
    dry_run: bool = False,
    fingerprint: str = "fixture-1",
) -> Settings:
    return Settings(
        namespaces=tuple(namespaces) if namespaces is not None else (contoso(), fabrikam()),
        sas=SasSettings(clock_skew_seconds=clock_skew, max_token_lifetime_seconds=max_lifetime),
        cache=CacheSettings(decision_ttl_seconds=decision_ttl, decision_max_entries=decision_max_entries),
        dry_run=dry_run,
        fingerprint=fingerprint,
    )


class FakeClock:
    """A wall clock the test moves by hand; pass it as ``create_app(clock=...)``."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------------------


def uri(path: str = "/orders", *, scheme: str = "sb", host: str = HOST) -> str:
    """An absolute resource URI on ``host`` for ``path``."""
    return f"{scheme}://{host}{path}"


def sdk_token(resource: str, key_name: str, key: str, expiry: int) -> str:
    """``SharedAccessSignature …`` as the official Python SDK signs it (``azure-servicebus``'s own function)."""
    if _sdk_generate_sas_token is None:
        pytest.fail(f"azure-servicebus is a test dependency and must be installed: {_SDK_IMPORT_ERROR}", pytrace=False)
    return str(_sdk_generate_sas_token(resource, key_name, key, expiry))


def mint(
    path_or_uri: str = "/orders",
    key_name: str = ROOT,
    key: str = ROOT_PRIMARY,
    *,
    expiry: int | None = None,
    ttl: int = 3600,
    now: float = NOW,
) -> str:
    """An SDK-minted token; a path is taken on the contoso namespace (``sb://contoso…``)."""
    resource = uri(path_or_uri) if path_or_uri.startswith("/") else path_or_uri
    return sdk_token(resource, key_name, key, expiry if expiry is not None else int(now) + ttl)


def signature(raw_sr: str, se: str, key: str | bytes) -> str:
    """base64 HMAC-SHA256 over ``raw_sr`` + LF + ``se``, keyed with the UTF-8 bytes of the key string."""
    key_bytes = key.encode("utf-8") if isinstance(key, str) else key
    return base64.b64encode(hmac.new(key_bytes, f"{raw_sr}\n{se}".encode(), hashlib.sha256).digest()).decode()


def hand_token(
    raw_sr: str,
    key_name: str = ROOT,
    key: str | bytes = ROOT_PRIMARY,
    *,
    se: int | str | None = None,
    raw_skn: str | None = None,
) -> str:
    """A token over an ``sr`` spelled exactly as given (already percent-encoded), signed over that raw text."""
    se_text = str(se if se is not None else NOW + 3600)
    sig = quote(signature(raw_sr, se_text, key), safe="")
    skn = raw_skn if raw_skn is not None else quote(key_name, safe="")
    return f"SharedAccessSignature sr={raw_sr}&sig={sig}&se={se_text}&skn={skn}"


def encode_sr(resource: str) -> str:
    """``resource`` percent-encoded as the Python SDK does (``quote_plus``, uppercase hex)."""
    return quote_plus(resource)


def fields(token: str) -> list[tuple[str, str]]:
    """The raw ``name=value`` fields of a token, in order."""
    body = token.removeprefix("SharedAccessSignature ")
    return [(name, value) for name, _, value in (part.partition("=") for part in body.split("&"))]


def assemble(pairs: Iterable[tuple[str, str]], *, prefix: str = "SharedAccessSignature ") -> str:
    return prefix + "&".join(f"{name}={value}" for name, value in pairs)


def replace_field(token: str, name: str, value: str) -> str:
    return assemble((n, value if n == name else v) for n, v in fields(token))


def forge(token: str) -> str:
    """``token`` with a well-formed base64 signature that no key made: it parses, and fails only on the HMAC."""
    return replace_field(token, "sig", quote("A" * 43 + "=", safe=""))


def secret_forms(token: str) -> tuple[str, ...]:
    """The token and its signature in every spelling that could show up in a log line.

    Besides the whole token (raw, percent-encoded, form-encoded) and the signature (as sent, decoded,
    re-encoded), the longest alphanumeric run of the signature is included: it survives any escaping.
    """
    raw_sig = dict(fields(token))["sig"]
    sig = unquote(raw_sig)
    longest_run = max(re.findall(r"[A-Za-z0-9]+", sig), key=len)
    return (
        token,
        quote(token, safe=""),
        quote_plus(token),
        token.split(" ", 1)[1],
        raw_sig,
        sig,
        quote(raw_sig, safe=""),
        longest_run,
    )


# --------------------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------------------


def make_request(
    path: str = "/orders",
    *,
    host: str = HOST,
    method: str = "POST",
    sba: str | None = None,
    authorization: str | None = None,
    query_token: str | None = None,
    action: str | None = None,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    gateway: Gateway = "envoy-http",
    context: Mapping[str, str] | None = None,
    request_id: str = "",
) -> AuthzRequest:
    """An :class:`AuthzRequest` as an adapter would build it.

    ``sba`` / ``authorization`` set those headers; ``query_token`` adds ``sb-hc-token`` (percent-encoded as the
    Relay SDKs do) and ``action`` adds ``sb-hc-action`` to the query of ``path``.
    """
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if sba is not None:
        pairs.append(("ServiceBusAuthorization", sba))
    if authorization is not None:
        pairs.append(("Authorization", authorization))
    extra = []
    if action is not None:
        extra.append(f"sb-hc-action={action}")
    if query_token is not None:
        extra.append(f"sb-hc-token={quote(query_token, safe='')}")
    target = path
    if extra:
        target += ("&" if "?" in path else "?") + "&".join(extra)
    return AuthzRequest(
        gateway=gateway,
        method=method,
        host=host,
        target=target,
        headers=headers_from_pairs(pairs),
        request_id=request_id,
        context=dict(context or {}),
    )


# --------------------------------------------------------------------------------------------------------------
# The application under test
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Harness:
    """``create_app(settings, audit_sink=list.append, watch_config=False)`` with a fake clock, and helpers."""

    app: web.Application
    clock: FakeClock
    loader: _SwapLoader
    audit: list[bytes] = field(default_factory=list)
    ops: list[bytes] = field(default_factory=list)

    @property
    def service(self) -> DecisionService:
        return self.app[SERVICE]

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    async def decide(self, request: AuthzRequest) -> Decision:
        return await self.service.decide(request)

    def events(self) -> list[dict[str, Any]]:
        """The audit lines written so far, parsed; each must be exactly one JSON object on one line."""
        out = []
        for line in self.audit:
            assert line.endswith(b"\n") and line.count(b"\n") == 1, line
            out.append(json.loads(line))
        return out

    def cache_lookups(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value("gateway_authz_decision_cache_total", {"result": result})
        return value or 0.0

    def swap_settings(self, settings: Settings) -> bool:
        """Make the next reload read ``settings`` (as a changed file would); returns whether it swapped."""
        self.loader.settings = settings
        holder = self.app[HOLDER]
        holder._loader = self.loader  # back to the good "file", should a test have made reloads fail meanwhile
        return holder.reload()


class _SwapLoader:
    """The config holder's loader seam: a reload "reads" whatever settings the test put here."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, _path: str) -> Settings:
        return self.settings


def harness(settings: Settings | None = None, *, clock: FakeClock | None = None) -> Harness:
    settings = settings or make_settings()
    clock = clock or FakeClock()
    audit: list[bytes] = []
    ops: list[bytes] = []
    loader = _SwapLoader(settings)
    app = create_app(
        settings,
        loader=loader,
        audit_sink=audit.append,
        ops_sink=ops.append,
        clock=clock,
        watch_config=False,
    )
    return Harness(app=app, clock=clock, loader=loader, audit=audit, ops=ops)


def audit_without_timing(lines: list[bytes]) -> list[dict[str, Any]]:
    """Audit lines parsed, without the three fields that differ between two runs of the same decision (the decision
    id is checked to be a UUIDv7 first)."""
    events = [json.loads(line) for line in lines]
    for event in events:
        event.pop("timestamp")
        event.pop("latency_ms")
        assert DECISION_ID.fullmatch(event.pop("decision_id")), event
    return events


DECISION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def assert_decision(decision: Decision, status: int, reason: str) -> None:
    """Status and reason code together, with a readable failure."""
    assert (decision.status, decision.reason) == (status, reason), decision
    assert decision.allowed is (status == 200)


# --------------------------------------------------------------------------------------------------------------
# Vendored test vectors (tests/vectors; sources and license in tests/vectors/README.md)
# --------------------------------------------------------------------------------------------------------------

VECTORS = Path(__file__).resolve().parent / "vectors"


def load_vectors(relative: str) -> Any:
    """A JSON file under ``tests/vectors``."""
    return json.loads((VECTORS / relative).read_text(encoding="utf-8"))
