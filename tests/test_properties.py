"""Properties of the SAS parser, the resource canonicaliser and the policy evaluators (hypothesis; one by exhaustion).

Deterministic settings throughout (``derandomize=True``, no example database, no deadline, bounded examples), so a
run is the same run everywhere. The world (configuration, keys, tokens) is :mod:`fuzz.world`.

1. **Single-byte edits.** Any single-byte substitution, insertion or deletion in a valid SAS token is refused,
   except an edit that leaves the very same token (same raw ``sr`` and ``se``, same signature bytes, same key
   name). Why only those can pass: the string to sign is the raw ``sr`` + LF + the raw ``se``, so an edit there
   changes what the HMAC covers (passing would be an HMAC-SHA256 forgery); the prefix, the ``&``/``=`` structure and
   the field names are fixed by the strict parser; ``se`` must be canonical digits; ``sig`` must be canonical
   base64 of 32 bytes. What is left are the unsigned fields ``sig`` and ``skn``, compared *after* percent-decoding,
   and the only one-byte edits that decode to the same bytes flip the case of a hex digit inside an escape
   (``%2B`` -> ``%2b``). The exhaustive test checks exactly that set, for every byte value at every position.
2. **Canonicalisation** is idempotent (the canonical form, written back as a path, canonicalises to itself) and
   invariant under host case, any valid port, scheme alias, a ``$hc/`` prefix, a trailing dot and a trailing slash.
3. **Coverage**: a token scope covers a resource exactly when the resource's segments extend the scope's, both for
   :meth:`ResourcePath.covers` against a reference and end to end through the decision service.
4. **Order**: permuting namespace rules, entities, entity rules, management routes, namespaces, role definitions or
   role assignments never changes a decision (status, reason, principal, entity, audit fields).
5. **Caches**: the decision cache and the request memo never change a decision (a warm service against one with
   every cache off, each request asked twice).
6. **Boundary**: arbitrary requests at :meth:`DecisionService.decide` never raise and are denied with 401/403.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway_authz.core.errors import AuthzError, InvalidCredential
from gateway_authz.core.model import AuthzRequest, Decision, Right, headers_from_pairs
from gateway_authz.core.resources import ResourcePath, canonical_segments, parse_sr
from gateway_authz.core.settings import CacheSettings, EntityKind, RoleAssignment, RoleDefinition
from gateway_authz.entra.rbac import Permission, Plane, RbacPolicy, permission_for
from gateway_authz.entra.roles import BUILTIN_ROLES
from gateway_authz.http.app import http_response
from gateway_authz.sas.token import SasToken, parse_sas
from tests.fuzz import world as w
from tests.fuzz.strategies import PLAUSIBLE_REQUESTS
from tests.fuzz.targets import rejoin


def prop(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def world() -> Iterator[w.World]:
    yield w.World()


# -- 1. single-byte edits ----------------------------------------------------------------------------------------


def single_byte_edits(token: str) -> Iterator[tuple[str, str]]:
    """Every deletion, and every substitution and insertion of each of the 256 byte values, at every position."""
    raw = token.encode("ascii")
    for i in range(len(raw)):
        yield f"delete {i}", (raw[:i] + raw[i + 1 :]).decode("latin-1")
        for b in range(256):
            if b != raw[i]:
                yield f"substitute {i} {b:#04x}", (raw[:i] + bytes([b]) + raw[i + 1 :]).decode("latin-1")
    for i in range(len(raw) + 1):
        for b in range(256):
            yield f"insert {i} {b:#04x}", (raw[:i] + bytes([b]) + raw[i:]).decode("latin-1")


def same_spelling_edits(token: str) -> set[str]:
    """The case flips of hex letters inside the percent escapes of the unsigned fields sig and skn."""
    expected = set()
    for field in re.finditer(r"(?:^|&|\s)(sig|skn)=([^&]*)", token):
        for escape in re.finditer(r"%[0-9A-Fa-f]{2}", field.group(2)):
            for offset in (1, 2):
                position = field.start(2) + escape.start() + offset
                char = token[position]
                if char.isalpha():
                    expected.add(f"substitute {position} {ord(char.swapcase()):#04x}")
    return expected


_ENTITY_TOKEN = w.hand_sas("http%3a%2f%2fcontoso.servicebus.windows.net%2forders%2f", w.ORDERS_LISTEN)
EXHAUSTIVE_CASES = [
    pytest.param(w.sas_token("/orders"), "/orders", (Right.SEND,), id="sdk-namespace-rule"),
    pytest.param(
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), _ENTITY_TOKEN),
        "/orders/x",
        (Right.LISTEN,),
        id="entity-rule-lowercase-escapes",
    ),
]


@pytest.mark.parametrize(("token", "path", "rights"), EXHAUSTIVE_CASES)
def test_every_single_byte_edit_of_a_valid_token_is_refused_unless_it_is_the_same_token(
    world: w.World, token: str, path: str, rights: tuple[Right, ...]
) -> None:
    """Exhaustively: of ~87k one-byte edits only hex-case flips in sig/skn escapes verify, and parse identically."""
    policy = world.source.runtime.policy
    resolved = policy.resolve(w.HOST, path)
    original = parse_sas(token)
    policy.authorize_sas(original, resolved, rights, now=w.NOW)  # the unedited token is allowed

    allowed: dict[str, SasToken] = {}
    edits = 0
    for label, mutant in single_byte_edits(token):
        edits += 1
        try:
            parsed = parse_sas(mutant)
            policy.authorize_sas(parsed, resolved, rights, now=w.NOW)
        except AuthzError:
            continue
        allowed[label] = parsed
    assert edits > 80_000
    assert set(allowed) == same_spelling_edits(token)
    assert all(parsed == original for parsed in allowed.values())


def _send_or_listen(rule: Any) -> str:
    return "" if rule.grants(Right.SEND) else "?sb-hc-action=listen"


# (token, path with query, host) of one allowed request per rule of the world
SIGNED_REQUESTS = [
    (
        w.sas_token(f"/{entity}" if entity else "/", rule, host=host),
        f"/{entity or 'orders'}{_send_or_listen(rule)}",
        host,
    )
    for host, entity, rule in w.SIGNERS
]
OPS = st.sampled_from(["substitute", "insert", "delete"])
# A signed request with an edit at a uniform position: hypothesis favours small integers, which would crowd the edits
# into the "SharedAccessSignature " prefix, so the position comes from a PRNG seeded by the drawn number.
EDITED_REQUESTS = st.tuples(st.sampled_from(SIGNED_REQUESTS), OPS, st.integers(0, 2**32 - 1), st.integers(0, 255)).map(
    lambda t: (t[0], t[1], random.Random(t[2]).randrange(len(t[0][0]) + (t[1] == "insert")), t[3])
)


def apply_edit(token: str, op: str, i: int, value: int) -> str:
    raw = token.encode("ascii")
    if op == "insert":  # i may be len(raw): appended
        return (raw[:i] + bytes([value]) + raw[i:]).decode("latin-1")
    return (raw[:i] + (b"" if op == "delete" else bytes([value])) + raw[i + 1 :]).decode("latin-1")


@prop(300)
@given(EDITED_REQUESTS, st.sampled_from(["ServiceBusAuthorization", "Authorization", "sb-hc-token"]))
def test_single_byte_edit_through_the_decision_service_is_never_allowed_unless_it_parses_identically(
    world: w.World, edited: tuple[tuple[str, str, str], str, int, int], carrier: str
) -> None:
    """Any rule, any carrier, any one-byte edit: the service denies (401/403), or the edit left the same token."""
    (token, target, host), op, position, value = edited
    assert world.decide(_carried(token, target, host, carrier)).allowed, "the unedited request must be allowed"
    mutant = apply_edit(token, op, position, value)
    decision = world.check(_carried(mutant, target, host, carrier))
    if decision.allowed:
        assert parse_sas(mutant) == parse_sas(token), (op, position, value, mutant)
        event("allowed: the edit left the same token (hex case in a sig/skn escape)")
    else:
        event(f"denied {decision.status} {decision.reason}")
        assert decision.status in (401, 403)


def _carried(token: str, target: str, host: str, carrier: str) -> AuthzRequest:
    if carrier == "sb-hc-token":
        separator = "&" if "?" in target else "?"
        return w.request(f"{target}{separator}sb-hc-token={quote(token, safe='')}", host=host)
    return w.request(target, host=host, headers=[(carrier, token)])


# -- 2. canonicalisation -----------------------------------------------------------------------------------------

# Segment text: anything but the separators and control characters, percent-encoded to varying degrees.
_SEGMENT_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/\\"), min_size=1, max_size=6
).filter(lambda s: s.partition(";")[0] not in ("", ".", ".."))
_SAFE_SETS = st.sampled_from(["", "~-._", "~-._!$&'()*+,;=:@"])
SPELLED_SEGMENT = st.tuples(_SEGMENT_TEXT, _SAFE_SETS, st.booleans()).map(
    lambda t: (
        t[0],
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(t[0], safe=t[1]))
        if t[2]
        else quote(t[0], safe=t[1]),
    )
)
SPELLED_PATH = st.tuples(st.lists(SPELLED_SEGMENT, max_size=5), st.booleans(), st.booleans())


def spell(segments: list[tuple[str, str]], hc: bool, slash: bool) -> str:
    raw = "/" + "/".join(spelling for _, spelling in segments)
    return ("/$hc" if hc else "") + raw + ("/" if slash and segments else "")


def reference_canonical(segments: list[tuple[str, str]], hc: bool = False) -> tuple[str, ...] | None:
    """Independent reading: the decoded texts with ASCII letters lower-cased, one leading ``$hc`` dropped;
    ``None`` where the path must be refused (a second ``$hc`` right after the first)."""
    texts = (("$hc",) if hc else ()) + tuple(re.sub("[A-Z]+", lambda m: m.group().lower(), t) for t, _ in segments)
    if texts[:1] == ("$hc",):
        texts = texts[1:]
        if texts[:1] == ("$hc",):
            return None
    return texts


@prop(300)
@given(SPELLED_PATH)
def test_canonicalisation_is_idempotent_and_matches_a_reference(
    spelled: tuple[list[tuple[str, str]], bool, bool],
) -> None:
    """canonical_segments(rejoin(c)) == c for every accepted path, and c is the reference reading of the path."""
    segments, hc, slash = spelled
    path = spell(segments, hc, slash)
    expected = reference_canonical(segments, hc)
    if expected is None:
        event("refused: repeated $hc")
        with pytest.raises(ValueError, match="repeated"):
            canonical_segments(path)
        return
    event("accepted")
    canonical = canonical_segments(path)
    assert canonical == expected, path
    assert canonical_segments(rejoin(canonical)) == canonical
    assert parse_sr(f"sb://{w.HOST}{rejoin(canonical)}") == ResourcePath(w.HOST, canonical)


def _case_mask(text: str, mask: int) -> str:
    return "".join(c.upper() if mask >> (i % 60) & 1 else c for i, c in enumerate(text))


@prop(300)
@given(
    SPELLED_PATH,
    st.sampled_from(["sb", "http", "https", "ws", "wss"]),
    st.integers(0, 2**60),
    st.sampled_from(["", ":443", ":80", ":9354", ":5671", ":1", ":65535"]),
    st.booleans(),
)
def test_sr_and_request_are_invariant_under_host_case_port_scheme_hc_dot_and_slash(
    world: w.World, spelled: tuple[list[tuple[str, str]], bool, bool], scheme: str, mask: int, port: str, dot: bool
) -> None:
    """Every spelling Relay treats as one resource canonicalises to one ResourcePath, on the sr and request side."""
    segments, hc, slash = spelled
    plain = reference_canonical(segments)
    if plain is None or reference_canonical(segments, hc=True) is None:
        return  # segments that start with $hc: "/$hc/$hc/…" is refused on purpose (see the idempotence property)
    expected = ResourcePath(w.HOST, plain)
    host = _case_mask(w.HOST, mask) + ("." if dot else "")
    path = spell(segments, hc, slash)
    assert parse_sr(f"{_case_mask(scheme, mask >> 7)}://{host}{port}{path}") == expected
    assert world.source.runtime.policy.resolve(host + port, path).path == expected


# -- 3. coverage -------------------------------------------------------------------------------------------------

_COVER_SEGMENTS = st.lists(st.sampled_from(["hc", "hc2", "h", "c", "hcx", "x"]), max_size=4)


def reference_covers(scope: list[str] | tuple[str, ...], resource: list[str] | tuple[str, ...]) -> bool:
    return len(resource) >= len(scope) and all(a == b for a, b in zip(scope, resource, strict=False))


@prop(300)
@given(_COVER_SEGMENTS, _COVER_SEGMENTS, st.booleans())
def test_covers_is_exactly_whole_segment_extension(scope: list[str], resource: list[str], same_host: bool) -> None:
    """ResourcePath.covers agrees with the reference: never a string prefix (/hc never covers /hc2)."""
    mine = ResourcePath(w.HOST, tuple(scope))
    theirs = ResourcePath(w.HOST if same_host else w.OTHER_HOST, tuple(resource))
    assert mine.covers(theirs) == (same_host and reference_covers(scope, resource))


_NO_ENTITIES = w.World(w.make_settings([w.contoso(entities=(), routes=())]))
_SPELLED = st.lists(
    st.sampled_from(
        [("hc", "hc"), ("hc", "HC"), ("hc", "%68c"), ("hc2", "hc2"), ("h", "h"), ("hcx", "hcX"), ("x", "%78")]
    ),
    max_size=3,
)


@prop(250)
@given(_SPELLED, _SPELLED, st.sampled_from(["sb", "https"]), st.booleans())
def test_token_scope_covers_a_request_exactly_when_its_segments_extend_the_scopes_end_to_end(
    scope: list[tuple[str, str]], resource: list[tuple[str, str]], scheme: str, slash: bool
) -> None:
    """A namespace token for sr=<scope> allows a request for <resource> iff resource extends scope by whole segments."""
    sr = f"{scheme}://{w.HOST}/" + "/".join(s for _, s in scope) + ("/" if slash and scope else "")
    token = w.hand_sas(quote(sr, safe=""))
    decision = _NO_ENTITIES.check(w.request("/" + "/".join(s for _, s in resource), headers=[("Authorization", token)]))
    assert decision.allowed == reference_covers([t for t, _ in scope], [t for t, _ in resource]), (sr, decision)
    event("covered: allowed" if decision.allowed else "not covered: 403 token_scope")
    if not decision.allowed:
        assert (decision.status, decision.reason) == (403, "token_scope")


# -- 4. order never matters --------------------------------------------------------------------------------------

_PATHS = ("/", "/orders", "/orders/priority/x", "/orders2", "/eu/orders", "/public", "/legacy/echo", "/$admin", "/x")
_CREDENTIALS = [
    *(w.sas_token(f"/{entity}" if entity else "/", rule, host=host) for host, entity, rule in w.SIGNERS),
    w.sas_token("/", w.ORDERS_SEND),  # an entity rule signing for the namespace (rule_scope)
    w.jwt_token("RS256"),
    w.jwt_token("ES256", oid=w.OWNER_OID, groups=None),
    w.jwt_token("RS256", groups=None, hasgroups=True),
]
BATTERY = [
    w.request(path + query, method=method, headers=[("ServiceBusAuthorization", credential)])
    for credential in _CREDENTIALS
    for path in _PATHS
    for query, method in (("", "POST"), ("?sb-hc-action=listen", "GET"), ("", "PUT"))
] + [w.request(path, method="POST") for path in _PATHS]


def outcome(decision: Decision) -> tuple[Any, ...]:
    return (decision.status, decision.reason, decision.auth, decision.principal, decision.entity, dict(decision.audit))


@pytest.fixture(scope="module")
def baseline(world: w.World) -> list[tuple[Any, ...]]:
    decisions = [outcome(world.decide(request)) for request in BATTERY]
    assert {d[0] for d in decisions} == {200, 401, 403}  # the battery reaches every outcome
    return decisions


@prop(25)
@given(
    st.permutations(w.NAMESPACE_RULES),
    st.permutations(w.ENTITIES),
    st.tuples(*(st.permutations(entity.rules) for entity in w.ENTITIES)),
    st.permutations(w.MANAGEMENT_ROUTES),
    st.booleans(),
    st.permutations(w.ASSIGNMENTS),
    st.permutations(BUILTIN_ROLES),
)
def test_rule_entity_route_and_assignment_order_never_changes_a_decision(
    baseline: list[tuple[Any, ...]],
    rules: list[Any],
    entities: list[Any],
    entity_rules: tuple[list[Any], ...],
    routes: list[Any],
    swap_namespaces: bool,
    assignments: list[RoleAssignment],
    roles: list[RoleDefinition],
) -> None:
    """Every SAS, JWT and anonymous decision of the battery is the same under any configuration order."""
    by_name = dict(zip((e.name for e in w.ENTITIES), entity_rules, strict=True))
    shuffled = [dataclasses.replace(e, rules=tuple(by_name[e.name])) for e in entities]
    namespaces = [w.contoso(rules, shuffled, routes), w.fabrikam()]
    settings_ = w.make_settings(
        namespaces[::-1] if swap_namespaces else namespaces,
        role_assignments=tuple(assignments),
        role_definitions=tuple(roles),
    )
    world = w.World(settings_)
    assert [outcome(world.check(request)) for request in BATTERY] == baseline


_GUIDS = [
    "0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d",
    "5e1b7f1a-8c3e-4d7a-9b2c-7d6e5f4a3b2c",
    "7d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
]
_SCOPES = [
    "/",
    "/subscriptions/-",
    "/subscriptions/-/resourceGroups/-",
    "/SUBSCRIPTIONS/-/resourcegroups/-",
    w.NS_SCOPE,
    w.NS_SCOPE.upper(),
    f"{w.NS_SCOPE}/hybridConnections/orders",
    f"{w.NS_SCOPE}/HybridConnections/Orders",
    f"{w.NS_SCOPE}/hybridConnections/eu/orders",
    f"{w.NS_SCOPE}/wcfRelays/legacy/echo",
    "/subscriptions/other",
]
_CUSTOM_ROLES = [
    RoleDefinition(
        "Custom Sender",
        "9f0c4c3e-1d5b-4c7e-8e2a-3b1f2d4c5e6f",
        data_actions=("Microsoft.Relay/*/send/action",),
        not_data_actions=("Microsoft.Relay/namespaces/wcfRelays/*",),
    ),
    RoleDefinition(
        "Everything But Listen",
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
        actions=("*",),
        data_actions=("*",),
        not_data_actions=("*/listen/action",),
    ),
]
_ROLE_IDS = [r.id for r in (*BUILTIN_ROLES, *_CUSTOM_ROLES)]
ASSIGNMENT = st.builds(
    RoleAssignment,
    st.sampled_from(_GUIDS),
    st.sampled_from(["User", "Group", "ServicePrincipal"]),
    st.sampled_from(_ROLE_IDS),
    st.sampled_from(_SCOPES),
)
_RESOURCES = [
    w.NS_SCOPE,
    f"{w.NS_SCOPE}/hybridConnections/orders",
    f"{w.NS_SCOPE}/hybridConnections/eu/orders",
    f"{w.NS_SCOPE}/wcfRelays/legacy/echo",
    "/subscriptions/other/resourceGroups/rg/providers/Microsoft.Relay/namespaces/x",
]
_PERMISSIONS = [permission_for(right, kind) for right in Right for kind in (None, *EntityKind)] + [
    Permission(Plane.CONTROL, "Microsoft.Relay/namespaces/hybridConnections/read")
]
_PRINCIPALS = [(_GUIDS[0], ()), (_GUIDS[0], (_GUIDS[1],)), (_GUIDS[2], (_GUIDS[0], _GUIDS[1]))]


def rbac_outcomes(policy: RbacPolicy) -> list[Any]:
    results: list[Any] = []
    for oid, groups in _PRINCIPALS:
        for resource in _RESOURCES:
            for permission in _PERMISSIONS:
                try:
                    results.append(policy.authorize(oid, groups, resource, permission))
                except AuthzError as error:
                    results.append((error.status, error.reason))
    return results


@prop(100)
@given(st.lists(ASSIGNMENT, min_size=1, max_size=8), st.data())
def test_role_assignment_and_definition_order_never_changes_an_rbac_decision(
    assignments: list[RoleAssignment], data: st.DataObject
) -> None:
    """RbacPolicy.authorize answers the same grant (role, scope, principal, via) or denial under any order."""
    roles = [*BUILTIN_ROLES, *_CUSTOM_ROLES]
    expected = rbac_outcomes(RbacPolicy(roles, assignments))
    shuffled = data.draw(st.permutations(assignments))
    assert rbac_outcomes(RbacPolicy(data.draw(st.permutations(roles)), shuffled)) == expected


# -- 5. the caches never change a decision ------------------------------------------------------------------------

_UNCACHED = w.World(w.make_settings(cache=CacheSettings(decision_ttl_seconds=0)))


@prop(120)
@given(st.lists(PLAUSIBLE_REQUESTS, min_size=1, max_size=6))
def test_the_decision_cache_and_request_memo_never_change_a_decision(
    world: w.World, requests: list[AuthzRequest]
) -> None:
    """Each request twice through the shared, warm world equals the same request decided with every cache off."""
    for request in requests + requests:
        assert outcome(world.check(request)) == outcome(_UNCACHED.check(request)), request


# -- 6. the service boundary -------------------------------------------------------------------------------------

ARBITRARY_REQUESTS = st.builds(
    AuthzRequest,
    gateway=st.sampled_from(["envoy-http", "envoy-grpc", "nginx", "forward-auth", "cli"]),
    method=st.text(max_size=10),
    host=st.one_of(st.text(max_size=40), st.sampled_from([w.HOST, w.HOST.upper() + ":443"])),
    target=st.one_of(st.text(max_size=80), st.text(max_size=40).map(lambda t: "/" + t)),
    headers=st.lists(
        st.tuples(
            st.one_of(st.text(max_size=20), st.sampled_from(["servicebusauthorization", "authorization"])),
            st.one_of(st.text(max_size=80), st.text(max_size=60).map(lambda t: "SharedAccessSignature " + t)),
        ),
        max_size=4,
    ).map(headers_from_pairs),
    scheme=st.text(max_size=6),
    request_id=st.text(max_size=10),
    context=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)


@prop(300)
@given(ARBITRARY_REQUESTS)
def test_every_rejection_at_the_service_boundary_is_a_401_or_403_never_an_exception(
    world: w.World, request: AuthzRequest
) -> None:
    """Arbitrary header, query and path strings: decide() returns; a deny is 401/403 and answered as such."""
    decision = world.check(request)  # raises if decide() raised, and checks any allow is earned
    response = http_response((decision, "id"), make_mocked_request("GET", "/ext_authz/"))
    assert response.status == decision.status and (response.status == 200) is decision.allowed


# -- regressions found by the properties and fuzzers --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/$hc/$hc/orders", "/$HC/%24hc", "/$hc/$hc"])
def test_repeated_hc_prefix_is_refused_so_the_canonical_form_never_starts_with_hc(path: str) -> None:
    """/$hc/$hc/x used to canonicalise to ('$hc', 'x'), which canonicalises again to ('x',): not idempotent."""
    with pytest.raises(ValueError, match="repeated"):
        canonical_segments(path)
    assert canonical_segments("/$hc/orders") == ("orders",) == canonical_segments("/orders/$hc")[:1]


def test_repeated_hc_prefix_in_a_token_sr_is_malformed() -> None:
    """The same rule for the sr: a token for sb://ns/$hc/$hc/x is refused as malformed, never matched."""
    with pytest.raises(InvalidCredential, match="malformed_token"):
        parse_sas(w.sas_token("/$hc/$hc/orders"))
