"""Credential carriers and precedence (Azure Relay's), and the transport cases T1-T6.

Specifications for :mod:`gateway_authz.core.credentials`: the ``sb-hc-token`` query parameter, else the
``ServiceBusAuthorization`` header, else ``Authorization``. Unit tests call ``parse_query`` / ``find_credential``;
the T cases go through ``DecisionService.decide`` with SDK-minted tokens and assert status, reason and which
carriers the gateway is told to strip.
"""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest

from gateway_authz.core.credentials import MAX_CREDENTIAL_LENGTH, QueryFacts, find_credential, parse_query
from gateway_authz.core.errors import AuthzError, InvalidCredential, NotPermitted
from gateway_authz.core.model import AuthzRequest, Right, headers_from_pairs
from tests._factories import (
    HOST,
    NOW,
    ORDERS_LISTEN,
    ORDERS_LISTEN_KEY,
    SEND_ONLY,
    SEND_ONLY_KEY,
    assert_decision,
    forge,
    harness,
    make_request,
    mint,
)

TOKEN = mint("/orders")
OTHER_TOKEN = mint("/orders", SEND_ONLY, SEND_ONLY_KEY)  # valid too, for another principal
FORGED = forge(TOKEN)  # well-formed, wrong signature
JWT_SHAPED = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
SBA = ("servicebusauthorization",)
QUERY = ("sb-hc-token",)


def raw_request(target: str, *pairs: tuple[str, str], method: str = "POST") -> AuthzRequest:
    return AuthzRequest("envoy-http", method, HOST, target, headers_from_pairs(pairs))


def query_refusal(query: str) -> AuthzError:
    with pytest.raises(AuthzError) as info:
        parse_query(query)
    return info.value


# --------------------------------------------------------------------------------------------------------------
# parse_query / find_credential units
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "facts"),
    [
        ("", QueryFacts(None, None)),
        ("a=1&b", QueryFacts(None, None)),
        ("sb-hc-action=listen", QueryFacts(None, Right.LISTEN)),
        ("sb-hc-action=accept", QueryFacts(None, Right.LISTEN)),
        ("sb-hc-action=request", QueryFacts(None, Right.LISTEN)),
        ("sb-hc-action=connect", QueryFacts(None, Right.SEND)),
        ("x=1&sb-hc-token=abc&sb-hc-id=7", QueryFacts("abc", None)),
        ("sb-hc-token=a+b%20c%2B", QueryFacts("a b c+", None)),
        ("%FF=1&sb-hc-action=connect", QueryFacts(None, Right.SEND)),  # a non-UTF-8 name is no Relay parameter
    ],
)
def test_parse_query(query: str, facts: QueryFacts) -> None:
    """sb-hc-token is form-decoded once; sb-hc-action maps listen/accept/request to Listen, connect to Send."""
    assert parse_query(query) == facts


@pytest.mark.parametrize("action", ["LISTEN", "Listen", "send", "manage", "", "listen ", "listen%00"])
def test_unknown_sb_hc_action_is_403(action: str) -> None:
    """An sb-hc-action value other than the four lower-case Relay actions is a 403 ``malformed_request``."""
    error = query_refusal(f"sb-hc-action={action}")
    assert (type(error), error.reason) == (NotPermitted, "malformed_request")


def test_repeated_sb_hc_action_is_refused() -> None:
    """sb-hc-action given twice (listen and connect) cannot pick the cheaper right: 401."""
    error = query_refusal("sb-hc-action=connect&sb-hc-action=listen")
    assert (type(error), error.reason) == (InvalidCredential, "duplicate_credential")


def test_invalid_utf8_token_value_is_malformed() -> None:
    """An sb-hc-token value that is not UTF-8 after decoding is a 401 ``malformed_token``."""
    assert query_refusal("sb-hc-token=%FF").reason == "malformed_token"


def test_find_credential_none_when_no_carrier() -> None:
    """A request without any of the three carriers has no credential (anonymous or 401 is the policy's call)."""
    assert find_credential(raw_request("/orders", ("x-other", "1")), QueryFacts(None, None)) is None


@pytest.mark.parametrize(
    ("value", "kind", "stored"),
    [
        (TOKEN, "sas", TOKEN),
        (f"Bearer {JWT_SHAPED}", "jwt", JWT_SHAPED),
        (f"bearer {JWT_SHAPED}", "jwt", JWT_SHAPED),
        (JWT_SHAPED, "jwt", JWT_SHAPED),
    ],
)
def test_credential_kind_is_told_by_shape(value: str, kind: str, stored: str) -> None:
    """``SharedAccessSignature `` is SAS; ``Bearer <jwt>`` or a bare three-part token is a JWT."""
    found = find_credential(raw_request("/orders", ("Authorization", value)), QueryFacts(None, None))
    assert found is not None and (found.kind, found.value) == (kind, stored)


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "garbage", "Bearer", "Bearer  " + JWT_SHAPED, "a.b", ""])
def test_neither_sas_nor_jwt_is_unsupported(value: str) -> None:
    """A credential that is neither a SAS token nor JWT-shaped is a 401 ``unsupported_credential``."""
    with pytest.raises(InvalidCredential) as info:
        find_credential(raw_request("/orders", ("Authorization", value)), QueryFacts(None, None))
    assert info.value.reason == "unsupported_credential"


async def test_credential_over_the_size_cap_is_401() -> None:
    """A credential longer than MAX_CREDENTIAL_LENGTH is refused before any parsing: 401 ``token_too_large``."""
    huge = "SharedAccessSignature " + "a" * MAX_CREDENTIAL_LENGTH
    assert_decision(await harness().decide(make_request("/orders", sba=huge)), 401, "token_too_large")


# --------------------------------------------------------------------------------------------------------------
# T1-T6
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoded",
    [quote(TOKEN, safe=""), quote_plus(TOKEN), quote(TOKEN, safe="").replace("%20", "+")],
    ids=["percent-20", "form-plus", "plus-for-space-only"],
)
async def test_T1_sb_hc_token_in_the_query_only_is_accepted_and_stripped(encoded: str) -> None:
    """A valid token in ``sb-hc-token`` (``%20`` or ``+`` for the space) allows; the query parameter is stripped."""
    h = harness()
    decision = await h.decide(make_request(f"/orders?x=1&sb-hc-token={encoded}"))
    assert_decision(decision, 200, "allowed")
    assert (decision.strip_query, decision.strip_headers) == (QUERY, ())
    (event,) = h.events()
    assert encoded not in event["path"] and "sb-hc-token=[removed]" in event["path"]


async def test_T1_sb_hc_token_with_listen_action() -> None:
    """A listener's ``?sb-hc-action=listen&sb-hc-token=…`` on ``/$hc/orders`` with a Listen rule is allowed."""
    token = mint("/orders", ORDERS_LISTEN, ORDERS_LISTEN_KEY)
    decision = await harness().decide(make_request("/$hc/orders", query_token=token, action="listen"))
    assert_decision(decision, 200, "allowed")
    assert decision.right is Right.LISTEN


@pytest.mark.parametrize(
    ("query_token", "authorization", "status", "reason"),
    [
        (TOKEN, "Basic dXNlcjpwYXNz", 200, "allowed"),
        (TOKEN, FORGED, 200, "allowed"),
        (TOKEN, TOKEN, 200, "allowed"),
        (FORGED, TOKEN, 401, "bad_signature"),
        (mint("/orders", ttl=-1000), TOKEN, 401, "expired"),
    ],
    ids=["app-basic-auth", "app-forged-sas", "same-token", "query-forged", "query-expired"],
)
async def test_T2_design_authorization_is_the_apps_when_sb_hc_token_is_present(
    query_token: str, authorization: str, status: int, reason: str
) -> None:
    """Design: with sb-hc-token present, Authorization is the application's: never read, never stripped."""
    decision = await harness().decide(make_request("/orders", query_token=query_token, authorization=authorization))
    assert_decision(decision, status, reason)
    if decision.allowed:
        assert (decision.strip_query, decision.strip_headers) == (QUERY, ())


@pytest.mark.parametrize(
    ("sba", "authorization", "status", "reason"),
    [
        (TOKEN, f"Bearer {JWT_SHAPED}", 200, "allowed"),
        (TOKEN, FORGED, 200, "allowed"),
        (FORGED, TOKEN, 401, "bad_signature"),
    ],
    ids=["app-bearer", "app-forged-sas", "sba-forged"],
)
async def test_T2_design_authorization_is_the_apps_when_ServiceBusAuthorization_is_present(
    sba: str, authorization: str, status: int, reason: str
) -> None:
    """Design: with ServiceBusAuthorization present, Authorization passes upstream untouched and is never read."""
    decision = await harness().decide(make_request("/orders", sba=sba, authorization=authorization))
    assert_decision(decision, status, reason)
    if decision.allowed:
        assert decision.strip_headers == SBA


async def test_T2_authorization_alone_is_the_credential_and_is_stripped() -> None:
    """With neither other carrier, Authorization is the credential, and only then is it stripped."""
    decision = await harness().decide(make_request("/orders", authorization=TOKEN))
    assert_decision(decision, 200, "allowed")
    assert decision.strip_headers == ("authorization",)


@pytest.mark.parametrize(
    "query",
    [f"sb-hc-token={quote(TOKEN, safe='')}&sb-hc-token={quote(TOKEN, safe='')}", "sb-hc-token=a&sb-hc-token=b"],
    ids=["same-value-twice", "different-values"],
)
async def test_T3_repeated_sb_hc_token_is_refused(query: str) -> None:
    """sb-hc-token given twice, even with the same value, is a 401 ``duplicate_credential``."""
    assert_decision(await harness().decide(make_request(f"/orders?{query}")), 401, "duplicate_credential")


@pytest.mark.parametrize("name", ["SB-HC-TOKEN", "Sb-Hc-Token", "sb%2Dhc%2Dtoken", "sb%2dhc-token", "%73b-hc-token"])
async def test_T3_case_or_percent_variants_of_sb_hc_token_are_refused(name: str) -> None:
    """Design: a name a lenient upstream would read as sb-hc-token (case, escapes) is refused (401), not ignored."""
    decision = await harness().decide(make_request(f"/orders?{name}={quote(TOKEN, safe='')}"))
    assert_decision(decision, 401, "ambiguous_credential")


@pytest.mark.parametrize("name", ["sb_hc_token", "sbhctoken", "sb-hc-token2", "x-sb-hc-token", "token"])
@pytest.mark.parametrize(
    ("path", "status", "reason"), [("/orders", 401, "missing_credential"), ("/public", 200, "allowed")]
)
async def test_T3_other_names_are_not_the_credential_parameter(name: str, path: str, status: int, reason: str) -> None:
    """``sb_hc_token`` and other look-alikes carry no credential: the request is treated as having none."""
    decision = await harness().decide(make_request(f"{path}?{name}={quote(TOKEN, safe='')}"))
    assert_decision(decision, status, reason)
    if decision.allowed:
        assert decision.auth == "anonymous" and decision.principal == ""


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", TOKEN), ("Authorization", f"Bearer {JWT_SHAPED}")],
        [("Authorization", TOKEN), ("Authorization", TOKEN)],
        [("ServiceBusAuthorization", TOKEN), ("ServiceBusAuthorization", TOKEN)],
        [("ServiceBusAuthorization", TOKEN), ("servicebusauthorization", OTHER_TOKEN)],
    ],
    ids=["sas-and-bearer", "authorization-twice", "sba-twice-same", "sba-twice-case-variant"],
)
async def test_T4_two_credential_headers_are_refused(headers: list[tuple[str, str]]) -> None:
    """Two Authorization (or ServiceBusAuthorization) header lines are a 401 ``duplicate_credential``."""
    decision = await harness().decide(make_request("/orders", headers=headers))
    assert_decision(decision, 401, "duplicate_credential")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Authorization", f"{TOKEN},Bearer {JWT_SHAPED}"),
        ("Authorization", f"{TOKEN}, {TOKEN}"),
        ("ServiceBusAuthorization", f"{TOKEN},{OTHER_TOKEN}"),
    ],
    ids=["sas-comma-bearer", "sas-comma-sas", "sba-comma-sba"],
)
async def test_T4_envoy_merged_duplicate_header_is_refused(header: str, value: str) -> None:
    """Envoy joins duplicate headers with ``,``: the joined value is not one token and is a 401, never the first."""
    decision = await harness().decide(make_request("/orders", headers=[(header, value)]))
    assert decision.status == 401 and not decision.allowed
    assert decision.reason == "malformed_token"


@pytest.mark.parametrize("path", ["/orders", "/orders2", "/legacy/echo"])
async def test_T5_hop_by_hop_stripped_authorization_is_missing_not_anonymous(path: str) -> None:
    """``Connection: Authorization`` with the header dropped by a proxy leaves no credential: 401, not anonymous."""
    decision = await harness().decide(make_request(path, headers=[("Connection", "Authorization")]))
    assert_decision(decision, 401, "missing_credential")


async def test_T5_connection_header_does_not_hide_a_present_authorization() -> None:
    """If Authorization still arrives, the service judges it (the Connection header changes nothing here)."""
    decision = await harness().decide(
        make_request("/orders", authorization=FORGED, headers=[("Connection", "Authorization")])
    )
    assert_decision(decision, 401, "bad_signature")


@pytest.mark.parametrize(
    ("query_token", "sba"),
    [(TOKEN, OTHER_TOKEN), (OTHER_TOKEN, TOKEN), (TOKEN, JWT_SHAPED), (TOKEN, FORGED), (FORGED, TOKEN)],
    ids=["root-vs-sendonly", "sendonly-vs-root", "sas-vs-jwt", "valid-vs-forged", "forged-vs-valid"],
)
async def test_T6_design_sb_hc_token_and_ServiceBusAuthorization_with_different_tokens_are_401_conflicting(
    query_token: str, sba: str
) -> None:
    """Design: sb-hc-token and ServiceBusAuthorization with different tokens: 401 ``conflicting_credentials``."""
    decision = await harness().decide(make_request("/orders", query_token=query_token, sba=sba))
    assert_decision(decision, 401, "conflicting_credentials")


async def test_T6_the_same_token_in_both_carriers_is_allowed_and_both_are_stripped() -> None:
    """The same token in sb-hc-token and ServiceBusAuthorization is one credential; both carriers are stripped."""
    decision = await harness().decide(make_request("/orders", query_token=TOKEN, sba=TOKEN))
    assert_decision(decision, 200, "allowed")
    assert (decision.strip_query, decision.strip_headers) == (QUERY, SBA)


async def test_T6_design_sas_in_ServiceBusAuthorization_decides_over_a_bearer_in_Authorization() -> None:
    """Design: SAS in ServiceBusAuthorization and a JWT in Authorization: the SAS decides, the JWT is the app's."""
    decision = await harness().decide(make_request("/orders", sba=OTHER_TOKEN, authorization=f"Bearer {JWT_SHAPED}"))
    assert_decision(decision, 200, "allowed")
    assert (decision.auth, decision.principal, decision.strip_headers) == ("sas", SEND_ONLY, SBA)


async def test_jwt_without_a_configured_issuer_is_401() -> None:
    """A JWT-shaped credential with no issuer configured is a 401, never an allow."""
    decision = await harness().decide(make_request("/orders", authorization=f"Bearer {JWT_SHAPED}"))
    assert decision.status == 401 and not decision.allowed


def test_tokens_used_here_are_valid() -> None:
    """Sanity: the fixtures' tokens expire after the fake clock's now, so denials above are about the case tested."""
    for token in (TOKEN, OTHER_TOKEN):
        assert int(dict(p.split("=", 1) for p in token.split(" ", 1)[1].split("&"))["se"]) > NOW
