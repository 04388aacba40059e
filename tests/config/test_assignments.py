"""AssignmentResolver: the role assignments of a directory, resolved again only for the files that changed."""

from __future__ import annotations

from gateway_authz.config._assignments import AssignmentResolver, RawAssignment, read_raw_assignments
from gateway_authz.config._reader import Reader
from gateway_authz.core.settings import RoleDefinition
from gateway_authz.entra.roles import AZURE_RELAY_OWNER, BUILTIN_ROLES

ROLES = tuple(BUILTIN_ROLES)
NS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Relay/namespaces/contoso"
CUSTOM = RoleDefinition("Relay Auditor", "0b0b0b0b-0000-4000-8000-000000000000", actions=("*/read",))


def raw(*rows: tuple[str, str]) -> tuple[RawAssignment, ...]:
    """One file's assignments: (principal suffix, role name) each, at the namespace scope."""
    items = [
        {
            "principalId": f"00000000-0000-4000-8000-{p:0>12}",
            "principalType": "User",
            "roleDefinitionName": r,
            "scope": NS,
        }
        for p, r in rows
    ]
    reader = Reader()
    found = read_raw_assignments(reader, items, "roleAssignments")
    assert not reader.problems
    return found


def test_an_unchanged_file_keeps_its_very_assignment_objects_when_another_changes() -> None:
    resolve = AssignmentResolver()
    first, second = raw(("1", "Azure Relay Sender")), raw(("2", "Azure Relay Listener"))
    before, problems = resolve([("a.yaml: ", first), ("b.yaml: ", second)], ROLES, frozenset())
    assert not problems
    changed = raw(("2", "Azure Relay Owner"))
    after, problems = resolve([("a.yaml: ", first), ("b.yaml: ", changed)], ROLES, frozenset())
    assert not problems
    assert after[0] is before[0]  # a.yaml was not resolved again
    assert after[1] is not before[1] and after[1].role_definition_id == AZURE_RELAY_OWNER.id


def test_other_roles_resolve_every_file_again() -> None:
    resolve = AssignmentResolver()
    files = [("a.yaml: ", raw(("1", "Relay Auditor")))]
    before, _ = resolve(files, (*ROLES, CUSTOM), frozenset())
    moved = RoleDefinition(CUSTOM.role_name, "0c0c0c0c-0000-4000-8000-000000000000", actions=CUSTOM.actions)
    after, _ = resolve(files, (*ROLES, moved), frozenset())  # the same file, its role now another id
    assert [x.role_definition_id for x in before + after] == [CUSTOM.id, moved.id]


def test_a_changed_file_keeps_the_very_objects_of_its_unchanged_assignments() -> None:
    resolve = AssignmentResolver()
    rows = [("1", "Azure Relay Sender"), ("2", "Azure Relay Listener"), ("3", "Azure Relay Sender")]
    before, _ = resolve([("a.yaml: ", raw(*rows))], ROLES, frozenset())
    after, _ = resolve([("a.yaml: ", raw(rows[0], ("4", "Azure Relay Owner"), *rows[1:]))], ROLES, frozenset())
    assert [x is y for x, y in zip(after, (before[0], None, *before[1:]), strict=True)] == [True, False, True, True]


def test_an_assignment_repeated_in_two_files_counts_once_the_first_wins() -> None:
    resolve = AssignmentResolver()
    same = raw(("1", "Azure Relay Sender"))
    found, _ = resolve([("a.yaml: ", same), ("b.yaml: ", raw(("1", "azure relay sender")))], ROLES, frozenset())
    assert len(found) == 1


def test_an_unknown_role_is_a_problem_of_its_file_and_is_not_remembered() -> None:
    resolve = AssignmentResolver()
    typo = raw(("1", "Azure Relay Sendr"))
    _, problems = resolve([("a.yaml: ", raw(("2", "Azure Relay Sender"))), ("b.yaml: ", typo)], ROLES, frozenset())
    assert [str(p) for p in problems] == [
        "b.yaml: roleAssignments[0].roleDefinitionName: unknown role 'Azure Relay Sendr'"
    ]
    # the same (still wrong) file is checked again on the next merge: a problem is never taken for a resolution
    _, again = resolve([("b.yaml: ", typo)], ROLES, frozenset())
    assert again == problems


def test_a_role_declared_elsewhere_but_not_defined_is_not_a_problem_here() -> None:
    resolve = AssignmentResolver()
    found, problems = resolve([("a.yaml: ", raw(("1", "Relay Auditor")))], ROLES, frozenset({"relay auditor"}))
    assert (found, problems) == ((), [])


def test_nothing_changed_returns_the_very_same_assignments() -> None:
    """What the RBAC index and the warnings compare by identity to know they have nothing to do."""
    resolve = AssignmentResolver()
    files = [("a.yaml: ", raw(("1", "Azure Relay Sender"))), ("b.yaml: ", raw(("2", "Azure Relay Listener")))]
    first, _ = resolve(files, ROLES, frozenset())
    again, problems = resolve(list(files), ROLES, frozenset())
    assert again is first and problems == []
    reordered, _ = resolve(files[::-1], ROLES, frozenset())
    assert reordered is not first and set(reordered) == set(first)
