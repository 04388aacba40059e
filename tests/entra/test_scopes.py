"""gateway_authz.entra.scopes: the index that config warnings use to check an estate's role assignment scopes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_authz.entra.scopes import ScopeIndex, scope_covers

RG = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
NS = f"{RG}/providers/Microsoft.Relay/namespaces/contoso"

_SEGMENTS = st.lists(
    st.sampled_from(
        [
            *("subscriptions", "s1", "resourceGroups", "rg", "providers", "Microsoft.Relay", "namespaces", "ns", "NS"),
            *("hybridConnections", "wcfRelays", "orders", "eu"),
        ]
    ),
    max_size=10,
)


def _scope(segments: list[str]) -> str:
    return "/" + "/".join(segments)


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(st.lists(_SEGMENTS, max_size=6), _SEGMENTS)
def test_the_index_agrees_with_scope_covers_over_every_resource(resources: list[list[str]], scope: list[str]) -> None:
    """One lookup answers exactly what ``scope_covers`` against each resource in turn would."""
    expected = any(scope_covers(_scope(scope), _scope(resource)) for resource in resources)
    assert ScopeIndex(_scope(r) for r in resources).any_covered_by(_scope(scope)) == expected


def test_an_entity_scope_covers_only_itself_not_an_entity_below_it() -> None:
    """``…/hybridConnections/eu`` is the entity ``eu``; it covers nothing when only ``eu/orders`` is configured."""
    index = ScopeIndex([f"{NS}/hybridConnections/eu/orders"])
    assert not index.any_covered_by(f"{NS}/hybridConnections/eu")
    assert index.any_covered_by(f"{NS}/HYBRIDCONNECTIONS/EU/ORDERS/")
    assert index.any_covered_by(f"{NS}/hybridConnections") and index.any_covered_by(RG)


def test_nearest_corrects_each_segment_and_keeps_the_configured_spelling() -> None:
    index = ScopeIndex([NS, f"{NS}/hybridConnections/orders", f"{NS}/hybridConnections/billing"])
    assert index.nearest(f"{NS}/hybridConnections/ordres") == f"{NS}/hybridConnections/orders"
    assert index.nearest(NS.replace("/rg/", "/rg2/").lower()) == NS
    assert index.nearest(f"{NS}/hybridConnections/orders/extra") == f"{NS}/hybridConnections/orders"


def test_nearest_is_none_when_nothing_is_close() -> None:
    index = ScopeIndex([NS])
    assert index.nearest("/subscriptions/ffffffff-ffff-ffff-ffff-ffffffffffff/resourceGroups/rg") is None
    assert index.nearest(f"{RG}/providers/Microsoft.Storage/storageAccounts/x") is None
