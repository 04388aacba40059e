"""Contract §5: a configuration directory. Merge rules, every conflict named with both places, the per-file cap,
``FILE: location: message``, and reloads that read and parse only what changed (Kubernetes ``..data`` swaps too)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway_authz.config._files import EstateLoader
from gateway_authz.config._fragment import FileRead, read_fragment
from gateway_authz.config.loader import load_settings
from gateway_authz.core.errors import ConfigError

KEY_A = "a" * 43 + "="
KEY_B = "b" * 43 + "="
OID = "22222222-2222-2222-2222-222222222222"
ISSUER = {
    "issuer": "https://issuer.example/",
    "audiences": ["https://relay.azure.net"],
    "jwksUri": "https://issuer.example/k",
}


def namespace(name: str, *, host: str | None = None, key: Any = KEY_A) -> dict[str, Any]:
    return {
        "name": name,
        "hosts": [host or f"{name}.servicebus.windows.net"],
        "authorizationRules": [{"keyName": "Root", "primaryKey": key, "rights": ["Manage", "Listen", "Send"]}],
        "hybridConnections": [{"name": "orders"}],
    }


def write(directory: Path, name: str, content: object) -> Path:
    path = directory / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {})
    return [str(p) for p in caught.value.problems]


# --- merge rules ---------------------------------------------------------------------------------------------


def test_files_are_concatenated_in_bytewise_name_order(tmp_path: Path) -> None:
    write(tmp_path, "b.yaml", {"namespaces": [namespace("bravo-ns")]})
    write(tmp_path, "B.json", {"namespaces": [namespace("upper-ns")]})
    write(tmp_path, "a.yml", "namespaces:\n  - " + json.dumps(namespace("alpha-ns")) + "\n")
    settings = load_settings(tmp_path, environ={})
    assert [ns.name for ns in settings.namespaces] == ["upper-ns", "alpha-ns", "bravo-ns"]


def test_other_names_dotfiles_and_subdirectories_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns")]})
    write(tmp_path, ".hidden.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "not: [valid")
    (tmp_path / "sub.yaml").mkdir()
    write(tmp_path / "sub.yaml", "x.yaml", "not: [valid")
    assert [ns.name for ns in load_settings(tmp_path, environ={}).namespaces] == ["alpha-ns"]


def test_an_empty_or_comment_only_file_contributes_nothing(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns")]})
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "comments.yaml", "# nothing here yet\n\n# really\n")
    assert len(load_settings(tmp_path, environ={}).namespaces) == 1


def test_an_empty_directory_is_invalid(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "# nothing\n")
    assert problems(tmp_path) == ["the directory defines no namespace and no issuer"]


def test_a_directory_with_only_an_issuer_is_valid(tmp_path: Path) -> None:
    write(tmp_path, "identity.yaml", {"identity": {"issuers": [ISSUER]}})
    settings = load_settings(tmp_path, environ={})
    assert settings.namespaces == () and len(settings.identity.issuers) == 1


def test_sections_of_one_file_and_lists_across_files(tmp_path: Path) -> None:
    role = {"roleName": "Orders Reader", "id": "33333333-3333-3333-3333-333333333333", "dataActions": ["x/*"]}
    write(tmp_path, "10-ns.yaml", {"namespaces": [namespace("alpha-ns")], "sas": {"clockSkewSeconds": 10}})
    write(tmp_path, "20-roles.yaml", {"roleDefinitions": [role], "cache": {"configTtlSeconds": 3}})
    write(tmp_path, "30-identity.yaml", {"identity": {"leewaySeconds": 5, "issuers": [ISSUER]}, "dryRun": False})
    assignment = {"principalId": OID, "principalType": "User", "roleDefinitionName": "Orders Reader", "scope": "/"}
    write(tmp_path, "40-assignments.yaml", {"roleAssignments": [assignment, dict(assignment, scope="/")]})
    write(tmp_path, "41-assignments.yaml", {"roleAssignments": [assignment]})
    settings = load_settings(tmp_path, environ={})
    assert settings.sas.clock_skew_seconds == 10
    assert settings.cache.config_ttl_seconds == 3
    assert settings.identity.leeway_seconds == 5
    assert [r.role_name for r in settings.role_definitions][-1] == "Orders Reader"
    assert len(settings.role_assignments) == 1  # the same (principal, role, scope) counts once


# --- conflicts: each names both places --------------------------------------------------------------------------


def test_a_namespace_name_in_two_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns")]})
    write(tmp_path, "b.yaml", {"namespaces": [namespace("Alpha-ns", host="other.example.net")]})
    assert problems(tmp_path) == [
        "b.yaml: namespaces[0].name: duplicate namespace name; it is already defined at a.yaml: namespaces[0].name"
    ]


def test_a_host_in_two_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns", host="shared.example.net")]})
    write(
        tmp_path, "b.yaml", {"namespaces": [namespace("bravo-ns"), namespace("charlie-ns", host="shared.example.net")]}
    )
    assert problems(tmp_path) == [
        "b.yaml: namespaces[1].hosts[0]: duplicate host; it is already defined at a.yaml: namespaces[0].hosts[0]"
    ]


def test_a_namespace_twice_within_one_file_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns"), namespace("alpha-ns", host="x.example.net")]})
    assert problems(tmp_path) == [
        "a.yaml: namespaces[1].name: duplicate namespace name; it is already used at namespaces[0].name"
    ]


def test_a_role_definition_id_or_name_in_two_files_names_both(tmp_path: Path) -> None:
    role = {"roleName": "Orders Reader", "id": "33333333-3333-3333-3333-333333333333", "dataActions": ["x/*"]}
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns")], "roleDefinitions": [role]})
    write(tmp_path, "b.yaml", {"roleDefinitions": [dict(role, roleName="Other")]})
    write(tmp_path, "c.yaml", {"roleDefinitions": [dict(role, id="44444444-4444-4444-4444-444444444444")]})
    assert problems(tmp_path) == [
        "b.yaml: roleDefinitions[0].id: duplicate role id; it is already defined at a.yaml: roleDefinitions[0].id",
        "c.yaml: roleDefinitions[0].roleName: duplicate roleName; it is already defined at "
        "a.yaml: roleDefinitions[0].roleName",
    ]


def test_an_issuer_in_two_files_names_both(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"identity": {"issuers": [ISSUER]}})
    write(tmp_path, "b.yaml", {"identity": {"issuers": [ISSUER]}})
    assert problems(tmp_path) == [
        "b.yaml: identity.issuers[0].issuer: duplicate issuer; it is already defined at "
        "a.yaml: identity.issuers[0].issuer"
    ]


@pytest.mark.parametrize(
    ("section", "value", "where"),
    [
        ("sas", {"clockSkewSeconds": 1}, "sas"),
        ("cache", {"configTtlSeconds": 1}, "cache"),
        ("identity", {"leewaySeconds": 1}, "identity.leewaySeconds"),
        ("dryRun", True, "dryRun"),
    ],
)
def test_a_one_file_section_in_two_files_names_both(tmp_path: Path, section: str, value: object, where: str) -> None:
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns")], section: value})
    write(tmp_path, "b.yaml", {section: value})
    assert problems(tmp_path) == [f"b.yaml: {where}: is already set at a.yaml: {where}; it may be set in one file only"]


def test_an_assignment_may_use_a_role_defined_in_another_file_and_unknown_roles_are_located(tmp_path: Path) -> None:
    role = {"roleName": "Orders Reader", "id": "33333333-3333-3333-3333-333333333333", "dataActions": ["x/*"]}
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns")], "roleDefinitions": [role]})
    good = {"principalId": OID, "principalType": "User", "roleDefinitionName": "orders reader", "scope": "/"}
    write(tmp_path, "b.yaml", {"roleAssignments": [good, dict(good, roleDefinitionName="Nope")]})
    assert problems(tmp_path) == ["b.yaml: roleAssignments[1].roleDefinitionName: unknown role 'Nope'"]


def test_problems_read_file_location_message(tmp_path: Path) -> None:
    bad = namespace("alpha-ns")
    bad["authorizationRules"][0]["rights"] = ["Manage"]
    write(tmp_path, "eu-west.yaml", {"namespaces": [namespace("bravo-ns"), bad]})
    write(tmp_path, "syntax.yaml", "namespaces: [\n")
    found = problems(tmp_path)
    assert found[0].startswith("eu-west.yaml: namespaces[1].authorizationRules[0].rights: Manage is only valid")
    assert found[1].startswith("syntax.yaml: line ")


def test_each_file_is_capped_and_the_cap_is_configurable(tmp_path: Path) -> None:
    text = json.dumps({"namespaces": [namespace("alpha-ns")]})
    write(tmp_path, "a.json", text)
    assert problems(tmp_path, {"GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES": str(len(text) - 1)}) == [
        f"a.json: the file is larger than {len(text) - 1} bytes"
    ]
    assert load_settings(tmp_path, environ={"GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES": str(len(text))}).namespaces
    assert (
        "GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES must be"
        in problems(tmp_path, {"GATEWAY_AUTHZ_MAX_CONFIG_FILE_BYTES": "1k"})[0]
    )


def test_the_single_file_form_is_unchanged(tmp_path: Path) -> None:
    path = write(tmp_path, "one.yaml", {"namespaces": [namespace("alpha-ns")]})
    assert [ns.name for ns in load_settings(path, environ={}).namespaces] == ["alpha-ns"]
    empty = write(tmp_path, "empty.yaml", "")
    assert problems(empty) == ["the file holds no configuration"]


# --- reloads that cost what changed -----------------------------------------------------------------------------


class CountingParser:
    """The real parser, counting the files it is given (by the name of their first namespace)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes, base_dir: Path, single: bool) -> FileRead:
        self.calls += 1
        return read_fragment(data, base_dir=base_dir, environ={}, max_bytes=1 << 20, single=single)


def estate(directory: Path, count: int) -> None:
    for i in range(count):
        write(directory, f"ns{i:03d}.yaml", {"namespaces": [namespace(f"ns{i:03d}-relay")]})


def test_unchanged_files_are_not_parsed_on_a_tick(tmp_path: Path) -> None:
    estate(tmp_path, 20)
    parse = CountingParser()
    loader = EstateLoader(environ={}, parse=parse)
    first = loader(str(tmp_path))
    assert parse.calls == 20
    assert loader(str(tmp_path)) is first  # nothing changed: the very same settings, nothing parsed
    assert parse.calls == 20
    os.utime(tmp_path / "ns003.yaml", ns=(1, 1))  # touched, same bytes: read and hashed, not parsed
    assert loader(str(tmp_path)) is first
    assert parse.calls == 20
    write(tmp_path, "ns007.yaml", {"namespaces": [namespace("ns007-relay", key=KEY_B)]})
    second = loader(str(tmp_path))
    assert parse.calls == 21
    assert second.fingerprint != first.fingerprint
    # every other namespace is the very object of the first load: the compiled policy reuses it
    assert all(a is b for a, b in zip(first.namespaces, second.namespaces, strict=True) if a.name != "ns007-relay")


def test_a_changed_secret_file_is_seen_and_only_its_file_is_parsed(tmp_path: Path) -> None:
    estate(tmp_path, 3)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "root").write_text(KEY_A + "\n")
    write(tmp_path, "zz.yaml", {"namespaces": [namespace("secret-ns", key={"file": "keys/root"})]})
    parse = CountingParser()
    loader = EstateLoader(environ={}, parse=parse)
    first = loader(str(tmp_path))
    assert parse.calls == 4
    (tmp_path / "keys" / "root").write_text(KEY_B + "\n")
    second = loader(str(tmp_path))
    assert parse.calls == 5
    assert second.namespaces[-1].rules[0].primary_key == KEY_B
    assert second.fingerprint != first.fingerprint


def kubernetes_mount(directory: Path, generation: str, files: dict[str, object]) -> None:
    """Write ``files`` the way the kubelet updates a ConfigMap volume: a new timestamped folder, then a temporary
    symlink renamed over ``..data``; the visible names are symlinks through ``..data``."""
    folder = directory / f"..{generation}"
    folder.mkdir()
    for name, content in files.items():
        write(folder, name, content)
    temporary = directory / "..data_tmp"
    temporary.symlink_to(folder.name)
    os.replace(temporary, directory / "..data")
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)


def test_a_kubernetes_data_swap_is_one_atomic_change(tmp_path: Path) -> None:
    files: dict[str, object] = {f"ns{i}.yaml": {"namespaces": [namespace(f"ns{i:03d}-relay")]} for i in range(5)}
    kubernetes_mount(tmp_path, "2026_12_03_08_00_00.000000001", files)
    parse = CountingParser()
    loader = EstateLoader(environ={}, parse=parse)
    first = loader(str(tmp_path))
    assert parse.calls == 5
    # the next generation: same bytes for four files, two namespaces rotated to key B in one swap
    files["ns1.yaml"] = {"namespaces": [namespace("ns001-relay", key=KEY_B)]}
    files["ns3.yaml"] = {"namespaces": [namespace("ns003-relay", key=KEY_B)]}
    kubernetes_mount(tmp_path, "2026_12_03_08_01_00.000000002", files)
    second = loader(str(tmp_path))
    assert parse.calls == 7  # only the two files whose bytes changed are parsed; the others are re-hashed
    keys = {ns.name: ns.rules[0].primary_key for ns in second.namespaces}
    assert keys == {
        "ns000-relay": KEY_A,
        "ns001-relay": KEY_B,
        "ns002-relay": KEY_A,
        "ns003-relay": KEY_B,
        "ns004-relay": KEY_A,
    }
    assert second.fingerprint != first.fingerprint


def test_a_swap_during_a_read_is_read_again_whole(tmp_path: Path) -> None:
    """A ``..data`` swap that lands in the middle of a read is noticed, and the read is done again."""
    files: dict[str, object] = {f"ns{i}.yaml": {"namespaces": [namespace(f"ns{i:03d}-relay")]} for i in range(4)}
    kubernetes_mount(tmp_path, "gen1", files)
    swapped: list[bool] = []
    parse = CountingParser()

    def swapping_parse(data: bytes, base_dir: Path, single: bool) -> FileRead:
        if not swapped:
            swapped.append(True)
            rotated: dict[str, object] = {
                n: {"namespaces": [namespace(f"ns{i:03d}-relay", key=KEY_B)]} for i, n in enumerate(files)
            }
            kubernetes_mount(tmp_path, "gen2", rotated)
        return parse(data, base_dir, single)

    settings = EstateLoader(environ={}, parse=swapping_parse)(str(tmp_path))
    assert {ns.rules[0].primary_key for ns in settings.namespaces} == {KEY_B}  # never a mix of generations


def test_a_broken_file_among_many_keeps_the_whole_last_good_and_is_picked_up_once_fixed(tmp_path: Path) -> None:
    estate(tmp_path, 10)
    parse = CountingParser()
    loader = EstateLoader(environ={}, parse=parse)
    good = loader(str(tmp_path))
    write(tmp_path, "ns004.yaml", "namespaces: [\n")
    write(tmp_path, "ns008.yaml", {"namespaces": [namespace("ns008-relay", key=KEY_B)]})
    with pytest.raises(ConfigError) as caught:
        loader(str(tmp_path))
    assert str(caught.value.problems[0]).startswith("ns004.yaml: line ")
    calls = parse.calls
    with pytest.raises(ConfigError):  # still broken: reported again without parsing anything
        loader(str(tmp_path))
    assert parse.calls == calls
    write(tmp_path, "ns004.yaml", {"namespaces": [namespace("ns004-relay")]})
    fixed = loader(str(tmp_path))
    assert len(fixed.namespaces) == 10 and fixed.fingerprint != good.fingerprint
    assert fixed.namespaces[8].rules[0].primary_key == KEY_B


def test_added_and_removed_files_are_noticed(tmp_path: Path) -> None:
    estate(tmp_path, 3)
    loader = EstateLoader(environ={})
    assert len(loader(str(tmp_path)).namespaces) == 3
    write(tmp_path, "zz-new.yaml", {"namespaces": [namespace("added-ns")]})
    assert [ns.name for ns in loader(str(tmp_path)).namespaces][-1] == "added-ns"
    (tmp_path / "ns001.yaml").unlink()
    assert [ns.name for ns in loader(str(tmp_path)).namespaces] == ["ns000-relay", "ns002-relay", "added-ns"]


def test_a_conflict_brought_by_a_later_change_is_reported_with_both_places(tmp_path: Path) -> None:
    """Small changes to namespace files are patched into the last merge; a conflict still gets the full report."""
    estate(tmp_path, 10)
    loader = EstateLoader(environ={})
    first = loader(str(tmp_path))
    write(tmp_path, "ns004.yaml", {"namespaces": [namespace("ns004-relay", key=KEY_B)]})
    patched = loader(str(tmp_path))
    assert patched.namespaces[4].rules[0].primary_key == KEY_B and patched.fingerprint != first.fingerprint
    assert patched.role_assignments is first.role_assignments
    write(tmp_path, "zz.yaml", {"namespaces": [namespace("NS002-relay", host="other.example.net")]})
    with pytest.raises(ConfigError) as caught:
        loader(str(tmp_path))
    assert [str(p) for p in caught.value.problems] == [
        "zz.yaml: namespaces[0].name: duplicate namespace name; it is already defined at ns002.yaml: namespaces[0].name"
    ]
    write(tmp_path, "zz.yaml", {"namespaces": [namespace("other-relay", host="ns003-relay.servicebus.windows.net")]})
    with pytest.raises(ConfigError) as caught:
        loader(str(tmp_path))
    assert "zz.yaml: namespaces[0].hosts[0]: duplicate host; it is already defined at ns003.yaml" in str(caught.value)
    (tmp_path / "zz.yaml").unlink()
    (tmp_path / "ns009.yaml").unlink()
    assert [ns.name for ns in loader(str(tmp_path)).namespaces][-1] == "ns008-relay"
    assert load_settings(tmp_path, environ={}).fingerprint == loader(str(tmp_path)).fingerprint


def test_the_holder_starts_from_what_the_first_load_read(tmp_path: Path) -> None:
    """``load_settings`` hands its reads to the reloader: the first tick after start parses nothing."""
    estate(tmp_path, 5)
    settings = load_settings(tmp_path, environ={})
    parse = CountingParser()
    loader = EstateLoader(environ={}, parse=parse, start=settings)
    assert loader(str(tmp_path)) is settings
    assert parse.calls == 0


def test_a_same_size_rewrite_within_the_timestamp_granularity_is_not_missed(tmp_path: Path) -> None:
    """A key rotated in place to a key of the same length, with the very same mtime (a coarse file system clock):
    inode, size and mtime all match, yet the new bytes are read, because a fresh mtime is never trusted."""
    path = write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns", key=KEY_A)]})
    stamp = path.stat().st_mtime_ns
    loader = EstateLoader(environ={})
    assert loader(str(tmp_path)).namespaces[0].rules[0].primary_key == KEY_A
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns", key=KEY_B)]})
    os.utime(path, ns=(stamp, stamp))  # same inode, same size, same mtime as when it was read
    assert loader(str(tmp_path)).namespaces[0].rules[0].primary_key == KEY_B


def test_a_secret_rewritten_within_the_timestamp_granularity_is_not_missed(tmp_path: Path) -> None:
    secret = tmp_path / "root.key"
    secret.write_text(KEY_A)
    stamp = secret.stat().st_mtime_ns
    write(tmp_path, "a.yaml", {"namespaces": [namespace("alpha-ns", key={"file": "root.key"})]})
    loader = EstateLoader(environ={})
    assert loader(str(tmp_path)).namespaces[0].rules[0].primary_key == KEY_A
    secret.write_text(KEY_B)
    os.utime(secret, ns=(stamp, stamp))
    assert loader(str(tmp_path)).namespaces[0].rules[0].primary_key == KEY_B
