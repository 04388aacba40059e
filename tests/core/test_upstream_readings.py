"""Issue 18 point 7: a path an upstream could normalise into another entity or management route is a 400.

With ``a`` open to anonymous senders and ``a/b`` protected, ``/a/b;x`` was decided as anonymous ``a`` while a
servlet-style upstream (dropping ``;params``) reaches ``a/b``; ``PUT /$admin;x`` passed with a Send-only token
while the upstream reads ``/$admin``. Each spelling is refused with ``ambiguous_path``, never decided as the looser.
"""

from __future__ import annotations

import pytest

from gateway_authz.core.resources import canonical_segments, upstream_readings
from tests._factories import (
    SEND_ONLY,
    SEND_ONLY_KEY,
    Harness,
    assert_decision,
    contoso,
    harness,
    hc,
    make_request,
    make_settings,
    mint,
)


def open_a_protected_ab() -> Harness:
    return harness(make_settings(namespaces=[contoso(entities=[hc("a", requires_auth=False), hc("a/b")])]))


WIDENING_PATHS = {
    "params": "/a/b;x",
    "empty-params": "/a/b;",
    "encoded-params": "/a/b%3bx",
    "encoded-params-upper": "/a/b%3Bx",
    "trailing-dot": "/a/b.",
    "trailing-dots": "/a/b..",
    "trailing-space": "/a/b%20",
    "trailing-dot-space": "/a/b.%20",
    "decoded-twice": "/a/%2562",  # "%62" to us, "b" to an upstream that decodes once more
    "params-after-a-sub-path": "/a/b;x/c",
}


@pytest.mark.parametrize("path", WIDENING_PATHS.values(), ids=WIDENING_PATHS.keys())
async def test_a_path_an_upstream_reads_as_a_protected_entity_is_400_not_anonymous(path: str) -> None:
    decision = await open_a_protected_ab().decide(make_request(path, method="GET"))
    assert_decision(decision, 400, "ambiguous_path")
    assert not decision.allowed


async def test_the_plain_paths_still_decide_as_before() -> None:
    """``/a/c`` is anonymous ``a`` (allowed); ``/a/b`` needs a credential (401): the fix refuses only the ambiguous."""
    h = open_a_protected_ab()
    allowed = await h.decide(make_request("/a/c", method="GET"))
    assert allowed.allowed and allowed.status == 200 and allowed.entity == "a"
    assert_decision(await h.decide(make_request("/a/b", method="GET")), 401, "missing_credential")


@pytest.mark.parametrize("path", ["/a/c;x", "/a/c.", "/a/c%20", "/a/b/c;x", "/a/b/c."])
async def test_params_and_trailing_dots_that_stay_in_the_same_entity_are_decided(path: str) -> None:
    """Within one entity an upstream's normalisation changes nothing this service decides: no 400."""
    decision = await open_a_protected_ab().decide(make_request(path, method="GET"))
    assert decision.status != 400, decision


@pytest.mark.parametrize("path", ["/$admin;x", "/$admin;", "/$admin%3bx", "/$admin.", "/$admin%20", "/$admin;x/y"])
async def test_a_management_route_spelled_for_an_upstream_is_400_for_a_send_only_token(path: str) -> None:
    """``PUT /$admin;x`` with a Send-only token was allowed as a plain Send; the upstream reads ``PUT /$admin``."""
    token = mint("/", SEND_ONLY, SEND_ONLY_KEY)
    decision = await harness().decide(make_request(path, method="PUT", sba=token))
    assert_decision(decision, 400, "ambiguous_path")


async def test_the_management_route_itself_still_needs_manage() -> None:
    token = mint("/", SEND_ONLY, SEND_ONLY_KEY)
    assert_decision(
        await harness().decide(make_request("/$admin", method="PUT", sba=token)), 403, "insufficient_rights"
    )


async def test_a_management_spelling_on_a_method_the_route_does_not_cover_is_decided() -> None:
    """``/$admin`` needs Manage for PUT and DELETE only, so ``GET /$admin;x`` is a Send whichever way it is read."""
    token = mint("/", SEND_ONLY, SEND_ONLY_KEY)
    decision = await harness().decide(make_request("/$admin;x", method="GET", sba=token))
    assert decision.allowed and decision.status == 200


def test_readings_of_a_clean_path_are_none() -> None:
    assert upstream_readings(canonical_segments("/orders/priority/x")) == ()


def test_readings_cover_each_normalisation_and_their_mix() -> None:
    readings = set(upstream_readings(canonical_segments("/a/b%253bx.")))
    assert ("a", "b%3bx") in readings  # trailing dot trimmed
    assert ("a", "b;x.") in readings  # decoded once more
    assert ("a", "b") in readings  # decoded once more, then ;params dropped (and the dot with them)


@pytest.mark.parametrize("path", ["/a/...", "/a/;x", "/a/%20", "/a/%252f"])
def test_a_segment_an_upstream_would_empty_or_split_is_refused(path: str) -> None:
    with pytest.raises(ValueError):
        upstream_readings(canonical_segments(path))
