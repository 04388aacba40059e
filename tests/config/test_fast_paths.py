"""The loader's fast paths for plain rules and role assignments (estate scale) agree with the full checks: whatever
a fast path accepts, the full checks accept with the very same result and no problem; everything else is left to
the full checks (hypothesis over valid values and near misses of each field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_authz.config._assignments import _plain_assignment, checked_assignment
from gateway_authz.config._namespaces import _plain_rule, checked_rule
from gateway_authz.config._reader import Reader
from gateway_authz.config._secrets import Secrets

KEYS = st.sampled_from(
    ["a" * 43 + "=", "k", "", " padded", "tab\tkey", "x" * 256, "x" * 257, "ключ", "\ud800", "ok/+=", 7, None]
)
RIGHTS = st.lists(st.sampled_from(["Listen", "Send", "Manage", "listen", "Read", 1]), max_size=4)
KEY_NAMES = st.sampled_from(["Root", "orders-send", "a.b_c", "-bad", "bad-", "x" * 50, "x" * 51, "", "é", 3, None])
GUIDS = st.sampled_from(
    [
        "22222222-2222-2222-2222-222222222222",
        "ABCDEF01-2222-2222-2222-222222222222",
        "2222222-2222-2222-2222-222222222222",
        "22222222-2222-2222-2222-2222222222222",
        "{22222222-2222-2222-2222-222222222222}",
        "",
        None,
        5,
    ]
)
SCOPES = st.sampled_from(
    [
        "/",
        "/subscriptions/x",
        "/subscriptions/x/resourceGroups/rg",
        "/subscriptions//x",
        "/subscriptions/x/",
        "/x",
        "",
        "/subscriptions/a\nb",
        "/subscriptions/" + "s" * 2040,
        None,
        1,
    ]
)
ROLE_NAMES = st.sampled_from(["Azure Relay Sender", "", "x" * 512, "x" * 513, "tab\there", None, 2])
ROLE_IDS = st.sampled_from(
    [
        "26baccc8-eea7-41f1-98f4-1762cc7f685d",
        "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/26BACCC8-EEA7-41F1-98F4-1762CC7F685D",
        "/providers/Microsoft.Authorization/roleDefinitions/not-a-guid",
        "26baccc8",
        "",
        None,
    ]
)


def _drop_absent(value: dict[str, Any], absent: set[str]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in absent}


@settings(max_examples=400, deadline=None)
@given(
    KEY_NAMES,
    KEYS,
    KEYS,
    RIGHTS,
    st.sets(st.sampled_from(["keyName", "primaryKey", "secondaryKey", "rights"])),
    st.booleans(),
)
def test_a_plain_rule_is_what_the_full_checks_make(
    key_name: object, primary: object, secondary: object, rights: list[object], absent: set[str], extra: bool
) -> None:
    value = _drop_absent(
        {"keyName": key_name, "primaryKey": primary, "secondaryKey": secondary, "rights": rights}, absent
    )
    if extra:
        value["surprise"] = True
    fast_secrets = Secrets(Reader(), {}, Path("."))
    fast = _plain_rule(fast_secrets, value, "r", {})
    if fast is None:
        assert fast_secrets.resolved == []  # a refused fast path leaves nothing behind
        return
    reader = Reader()
    full_secrets = Secrets(reader, {}, Path("."))
    full = checked_rule(reader, full_secrets, value, "r", {})
    assert reader.problems == []
    assert full == fast and full is not None and full.rights is fast.rights
    assert full_secrets.resolved == fast_secrets.resolved


@settings(max_examples=400, deadline=None)
@given(
    GUIDS,
    st.sampled_from(["User", "Group", "ServicePrincipal", "ForeignGroup", "user", None]),
    SCOPES,
    ROLE_NAMES,
    ROLE_IDS,
    st.sets(st.sampled_from(["principalId", "principalType", "scope", "roleDefinitionName", "roleDefinitionId"])),
)
def test_a_plain_assignment_is_what_the_full_checks_make(
    principal: object, kind: object, scope: object, name: object, role_id: object, absent: set[str]
) -> None:
    value = _drop_absent(
        {
            "principalId": principal,
            "principalType": kind,
            "scope": scope,
            "roleDefinitionName": name,
            "roleDefinitionId": role_id,
        },
        absent,
    )
    fast = _plain_assignment(value, 3)
    if fast is None:
        return
    reader = Reader()
    full = checked_assignment(reader, value, "roleAssignments[3]", 3)
    assert reader.problems == []
    assert full == fast


def test_the_plain_forms_take_the_fast_path() -> None:
    """The properties above are not vacuous: the plain forms written by config import do take the fast paths."""
    rule = {"keyName": "Root", "primaryKey": "a" * 43 + "=", "secondaryKey": "b" * 43 + "=", "rights": ["Send"]}
    assert _plain_rule(Secrets(Reader(), {}, Path(".")), rule, "r", {}) is not None
    assignment = {
        "principalId": "22222222-2222-2222-2222-222222222222",
        "principalType": "User",
        "roleDefinitionId": "26baccc8-eea7-41f1-98f4-1762cc7f685d",
        "scope": "/subscriptions/x",
    }
    assert _plain_assignment(assignment, 0) is not None
    assert _plain_rule(Secrets(Reader(), {}, Path(".")), {**rule, "rights": ["Manage"]}, "r", {}) is None
