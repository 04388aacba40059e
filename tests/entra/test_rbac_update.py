"""RbacPolicy.from_settings(settings, previous): a changed run of assignments is indexed, the rest is kept.

A changed role-assignment file rebuilt the whole index on the event loop (half a second at 100,000 assignments).
The update must answer exactly as a policy built from nothing, whatever changed: that is what these hold it to.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway_authz.core.errors import AuthzError
from gateway_authz.core.model import Right
from gateway_authz.core.settings import EntityKind, RoleAssignment, RoleDefinition, Settings
from gateway_authz.entra.rbac import RbacPolicy, permission_for
from gateway_authz.entra.roles import AZURE_RELAY_LISTENER, AZURE_RELAY_OWNER, AZURE_RELAY_SENDER, BUILTIN_ROLES
from tests.test_properties import ASSIGNMENT, prop, rbac_outcomes

ROLES = tuple(BUILTIN_ROLES)
SENDER, LISTENER, OWNER = AZURE_RELAY_SENDER.id, AZURE_RELAY_LISTENER.id, AZURE_RELAY_OWNER.id
NS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Relay/namespaces/contoso"
PERMISSIONS = [permission_for(right, kind) for right in Right for kind in (None, EntityKind.HYBRID_CONNECTION)]
ALICE, BOB = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


def a(principal: str, role: str, scope: str = NS) -> RoleAssignment:
    return RoleAssignment(principal, "User", role, scope)


def settings(assignments: tuple[RoleAssignment, ...], roles: tuple[RoleDefinition, ...] = ROLES) -> Settings:
    return Settings(namespaces=(), role_definitions=roles, role_assignments=assignments)


# Other principals' assignments around every case, the same objects before and after, as an estate's other files
# are: a change bigger than half of the assignments is indexed from nothing, which is not what is tested here.
ESTATE = tuple(a(f"{n:08d}-0000-4000-8000-000000000000", SENDER) for n in range(40))


def updated(before: tuple[RoleAssignment, ...], after: tuple[RoleAssignment, ...]) -> RbacPolicy:
    """The policy of ``after``, updated from that of ``before`` (the very same role definitions: ``ROLES``)."""
    previous = RbacPolicy.from_settings(settings(in_estate(before)))
    policy = RbacPolicy.from_settings(settings(in_estate(after)), previous)
    assert policy is not previous or before == after
    return policy


def in_estate(assignments: tuple[RoleAssignment, ...]) -> tuple[RoleAssignment, ...]:
    return (*ESTATE[:20], *assignments, *ESTATE[20:])


def outcomes(policy: RbacPolicy) -> list[Any]:
    """Every answer of ``policy`` here and in the property tests' world (principals, resources, permissions)."""
    found = rbac_outcomes(policy)
    for principal in (ALICE, BOB):
        for resource in (NS, f"{NS}/hybridConnections/orders"):
            for permission in PERMISSIONS:
                try:
                    found.append(policy.authorize(principal, (), resource, permission))
                except AuthzError as error:
                    found.append((error.status, error.reason))
    return found


def assert_same_as_rebuilt(policy: RbacPolicy, after: tuple[RoleAssignment, ...]) -> None:
    rebuilt = RbacPolicy.from_settings(settings(in_estate(after)))
    assert outcomes(policy) == outcomes(rebuilt)
    assert sorted(map(id, policy.unresolved)) == sorted(map(id, rebuilt.unresolved))


def test_unchanged_assignments_keep_the_very_same_policy() -> None:
    assignments = (a(ALICE, SENDER), a(BOB, LISTENER))
    previous = RbacPolicy.from_settings(settings(assignments))
    assert RbacPolicy.from_settings(settings(assignments), previous) is previous


def test_other_role_definitions_build_the_policy_again() -> None:
    assignments = (a(ALICE, SENDER),)
    previous = RbacPolicy.from_settings(settings(assignments))
    custom = RoleDefinition("Relay Nothing", "0b0b0b0b-0000-4000-8000-000000000000", actions=())
    fresh = RbacPolicy.from_settings(settings((*assignments, a(BOB, custom.id)), (*ROLES, custom)), previous)
    assert fresh is not previous and not fresh.unresolved  # the new role is known: nothing was patched onto the old


def test_a_changed_file_in_the_middle_grants_what_it_now_says() -> None:
    head, tail = (a(ALICE, LISTENER),), (a(BOB, LISTENER),)
    before = (*head, a(ALICE, SENDER), a(BOB, SENDER), *tail)
    after = (*head, a(ALICE, OWNER), *tail)  # the middle file replaced: Bob loses Send, Alice gains Manage
    policy = updated(before, after)
    assert_same_as_rebuilt(policy, after)


def test_a_file_added_or_removed_at_either_end() -> None:
    middle = (a(ALICE, SENDER), a(BOB, LISTENER))
    extra = (a(BOB, OWNER),)
    for before, after in [(middle, (*middle, *extra)), ((*middle, *extra), middle), (middle, (*extra, *middle))]:
        assert_same_as_rebuilt(updated(before, after), after)


def test_a_removed_assignment_goes_even_when_an_equal_one_stays() -> None:
    kept, dropped = a(ALICE, SENDER), a(ALICE, SENDER)  # equal values, two objects: removal is by identity
    before = (kept, a(BOB, LISTENER), dropped)
    after = (kept, a(BOB, LISTENER))
    assert_same_as_rebuilt(updated(before, after), after)


def test_an_unresolved_assignment_that_goes_is_no_longer_reported() -> None:
    unknown = a(ALICE, "99999999-0000-4000-8000-000000000000")
    before = (a(BOB, SENDER), unknown)
    policy = updated(before, (a(BOB, SENDER),))
    assert policy.unresolved == ()
    assert updated((a(BOB, SENDER),), before).unresolved == (unknown,)


def test_the_same_object_twice_is_removed_as_often_as_it_goes() -> None:
    twice = a(ALICE, SENDER)
    before = (twice, a(BOB, LISTENER), twice)
    after = (twice, a(BOB, LISTENER))
    assert_same_as_rebuilt(updated(before, after), after)


@prop(150)
@given(
    st.lists(ASSIGNMENT, max_size=10),
    st.lists(ASSIGNMENT, max_size=4),
    st.data(),
)
def test_an_update_answers_as_a_policy_built_from_nothing(
    before: list[RoleAssignment], fresh: list[RoleAssignment], data: st.DataObject
) -> None:
    """Any run of the old assignments replaced by any new ones (a changed, added or removed file), or several."""
    start = data.draw(st.integers(0, len(before)))
    end = data.draw(st.integers(start, len(before)))
    after = [*before[:start], *fresh, *before[end:]]
    if data.draw(st.booleans()):  # several changes at once: drop one more of the kept objects somewhere
        after = [x for i, x in enumerate(after) if i != data.draw(st.integers(0, max(0, len(after) - 1)))]
    assert_same_as_rebuilt(updated(tuple(before), tuple(after)), tuple(after))
