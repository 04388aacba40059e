"""Tests for gateway_authz.config.loader: the YAML schema, validation rules, secrets, fingerprint, starter config."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from gateway_authz.config.loader import (
    MAX_CONFIG_BYTES,
    generate_key,
    load_settings,
    parse_settings,
    starter_config,
    validate_file,
)
from gateway_authz.core.errors import ConfigError, ConfigProblem
from gateway_authz.core.model import Right
from gateway_authz.core.settings import EntityKind, Settings
from gateway_authz.entra.roles import AZURE_RELAY_SENDER, BUILTIN_ROLES

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "config" / "gateway-authz.yaml"
KEY = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5PQ=="
OTHER_KEY = "c2Vjb25kYXJ5LWtleS1mb3ItdGVzdHMtb25seS0xMjM0NTY="
GUID_A = "11111111-1111-1111-1111-111111111111"
GUID_B = "22222222-2222-2222-2222-222222222222"
GUID_C = "33333333-3333-3333-3333-333333333333"
ARM_NS = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Relay/namespaces"

Config = dict[str, Any]


def rule(key_name: str = "RootManageSharedAccessKey", rights: list[str] | None = None, **extra: Any) -> Config:
    """A valid authorization rule, with overrides."""
    result: Config = {"keyName": key_name, "primaryKey": KEY, "rights": rights or ["Manage", "Listen", "Send"]}
    result.update(extra)
    return result


def namespace(name: str = "contoso", **extra: Any) -> Config:
    """A valid namespace, with overrides."""
    result: Config = {"name": name, "hosts": [f"{name}.servicebus.windows.net"], "authorizationRules": [rule()]}
    result.update(extra)
    return result


def config(**extra: Any) -> Config:
    """A valid whole config, with top-level overrides."""
    result: Config = {"namespaces": [namespace()]}
    result.update(extra)
    return result


def issuer(**extra: Any) -> Config:
    """A valid identity issuer, with overrides."""
    result: Config = {
        "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        "tenants": [GUID_A],
        "audiences": ["https://relay.azure.net"],
        "jwksUri": "https://login.microsoftonline.com/common/discovery/v2.0/keys",
    }
    result.update(extra)
    return result


@pytest.fixture
def write(tmp_path: Path) -> Callable[[object], Path]:
    """Write a config (a dict is written as JSON, which is YAML; a str as is) and return its path."""

    def _write(content: object) -> Path:
        path = tmp_path / "gateway-authz.yaml"
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def load(write: Callable[[object], Path]) -> Callable[..., Settings]:
    """Load a config with an explicit (by default empty) environment."""

    def _load(content: object, environ: Mapping[str, str] | None = None) -> Settings:
        return load_settings(write(content), environ=environ or {})

    return _load


@pytest.fixture
def problems(write: Callable[[object], Path]) -> Callable[..., list[ConfigProblem]]:
    """The problems of a config, with an explicit (by default empty) environment."""

    def _problems(content: object, environ: Mapping[str, str] | None = None) -> list[ConfigProblem]:
        return validate_file(write(content), environ=environ or {})

    return _problems


def at(found: list[ConfigProblem], location: str) -> list[str]:
    """The messages of the problems found at exactly ``location``."""
    return [p.message for p in found if p.location == location]


# --- the file itself ---------------------------------------------------------------------------------------------


def test_shipped_default_config_loads() -> None:
    """The default config in config/ loads with no environment variables at all."""
    settings = load_settings(DEFAULT_CONFIG, environ={})
    assert settings.source == str(DEFAULT_CONFIG)
    assert len(settings.fingerprint) == 64


def test_shipped_default_config_matches_the_quick_start() -> None:
    """contoso answers on its Azure host, has the root rule, orders (Send rule), public (anonymous), legacy/echo."""
    settings = load_settings(DEFAULT_CONFIG, environ={})
    (ns,) = settings.namespaces
    assert ns.name == "contoso"
    assert "contoso.servicebus.windows.net" in ns.hosts
    assert [(r.key_name, r.rights) for r in ns.rules] == [
        ("RootManageSharedAccessKey", frozenset({Right.MANAGE, Right.LISTEN, Right.SEND}))
    ]
    entities = {e.name: e for e in ns.entities}
    assert entities["orders"].kind is EntityKind.HYBRID_CONNECTION
    assert [(r.key_name, r.rights) for r in entities["orders"].rules] == [("orders-send", frozenset({Right.SEND}))]
    assert entities["public"].requires_client_authorization is False
    assert entities["legacy/echo"].kind is EntityKind.WCF_RELAY
    assert all(len(base64.b64decode(r.primary_key)) == 32 for r in ns.rules)


def test_minimal_config_loads_with_defaults(load: Callable[..., Settings]) -> None:
    """Only namespaces is required; every other section takes the documented defaults."""
    settings = load(config())
    assert settings.identity.issuers == ()
    assert settings.identity.leeway_seconds == 60
    assert settings.role_definitions == BUILTIN_ROLES
    assert settings.role_assignments == ()
    assert settings.sas.clock_skew_seconds == 300
    assert settings.sas.max_token_lifetime_seconds is None
    assert settings.cache.decision_max_entries == 100_000
    assert settings.dry_run is False


def test_null_optional_sections_mean_defaults(load: Callable[..., Settings]) -> None:
    """An optional section written as null (an empty YAML key) is the same as leaving it out."""
    settings = load(
        "namespaces:\n  - name: contoso\n    hosts: [a.example]\n    hybridConnections:\n"
        "identity:\nroleDefinitions:\nroleAssignments:\nsas:\ncache:\ndryRun:\n"
    )
    assert settings.namespaces[0].entities == ()
    assert settings.role_definitions == BUILTIN_ROLES


def test_json_config_is_accepted_even_with_tab_indentation(load: Callable[..., Settings]) -> None:
    """JSON is valid YAML; tab-indented JSON, which PyYAML refuses, is read as JSON."""
    text = json.dumps(config(), indent="\t")
    assert "\t" in text
    assert load(text).namespaces[0].name == "contoso"


def test_rejects_file_larger_than_1_mib(problems: Callable[..., list[ConfigProblem]]) -> None:
    """The size cap applies before parsing."""
    found = problems("#" * (MAX_CONFIG_BYTES + 1))
    assert len(found) == 1
    assert "larger than" in found[0].message


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    """An unreadable config is a ConfigError, not an OSError."""
    found = validate_file(tmp_path / "absent.yaml", environ={})
    assert len(found) == 1
    assert "cannot read" in found[0].message


def test_rejects_non_utf8_file(problems: Callable[..., list[ConfigProblem]], write: Callable[[object], Path]) -> None:
    """Config files are UTF-8."""
    path = write("")
    path.write_bytes(b"namespaces: [\xff]\n")
    found = validate_file(path, environ={})
    assert [p.message for p in found] == ["the file is not UTF-8 text"]


def test_invalid_yaml_reports_line_and_column(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A syntax error is located by line and column."""
    found = problems("namespaces:\n  - name: [unclosed\n")
    assert len(found) == 1
    assert found[0].location.startswith("line ")
    assert "not valid YAML" in found[0].message


def test_rejects_empty_file(problems: Callable[..., list[ConfigProblem]]) -> None:
    """An empty file is not a config."""
    assert [p.message for p in problems("# nothing\n")] == ["the file holds no configuration"]


def test_rejects_duplicate_yaml_keys(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A repeated key would silently keep the last value; it is an error, located by line."""
    text = (
        "namespaces:\n  - name: contoso\n    hosts: [a.example]\n    authorizationRules:\n"
        f"      - keyName: k\n        primaryKey: {KEY}\n        primaryKey: {OTHER_KEY}\n        rights: [Send]\n"
    )
    found = problems(text)
    assert [(p.location, p.message) for p in found] == [("line 7, column 9", "duplicate property 'primaryKey'")]


def test_yaml_anchors_and_merge_keys_work(load: Callable[..., Settings]) -> None:
    """Anchors, aliases and << merges stay usable for keeping a config short."""
    text = (
        "namespaces:\n  - name: contoso\n    hosts: [a.example]\n    authorizationRules:\n"
        f"      - &base {{keyName: one, primaryKey: {KEY}, rights: [Send]}}\n"
        "      - {<<: *base, keyName: two}\n"
    )
    rules = load(text).namespaces[0].rules
    assert [r.key_name for r in rules] == ["one", "two"]


def test_rejects_alias_expansion_bomb(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A billion-laughs document is refused before validation walks it."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    found = problems("\n".join(lines) + "\nnamespaces: *a8\n")
    assert len(found) == 1
    assert "expands to more than" in found[0].message


def test_rejects_self_referencing_alias(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A recursive structure cannot be walked; it is refused."""
    found = problems("namespaces: &a [*a]\n")
    assert [p.message for p in found] == ["the document refers to itself through an alias"]


def test_rejects_very_deep_nesting_without_crashing(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Deep nesting overflows PyYAML's recursive composer; that is a problem, not a crash."""
    found = problems("namespaces: " + "[" * 3000 + "]" * 3000 + "\n")
    assert [p.message for p in found] == ["the document is nested too deeply"]


def test_rejects_integer_too_long_to_convert(problems: Callable[..., list[ConfigProblem]]) -> None:
    """An integer of thousands of digits is a problem, not a ValueError escaping the loader."""
    found = problems("namespaces: []\nsas: {clockSkewSeconds: " + "9" * 5000 + "}\n")
    assert [p.message for p in found] == ["not valid YAML: a number has too many digits"]


def test_rejects_top_level_that_is_not_a_mapping(problems: Callable[..., list[ConfigProblem]]) -> None:
    """The document is a mapping."""
    assert at(problems("- a\n- b\n"), "") == ["must be a mapping, not a list"]


def test_collects_every_problem_not_just_first(problems: Callable[..., list[ConfigProblem]]) -> None:
    """One load reports every problem with its own location."""
    bad = config(
        namespaces=[
            namespace(name="x", authorizationRules=[rule(rights=["Manage"]), rule("ok", rights=["Sned"])]),
        ],
        sas={"clockSkewSeconds": 5000},
        cache={"configTtlSeconds": 0},
        bogus=1,
    )
    found = problems(bad)
    locations = {p.location for p in found}
    assert {
        "namespaces[0].name",
        "namespaces[0].authorizationRules[0].rights",
        "namespaces[0].authorizationRules[1].rights[0]",
        "sas.clockSkewSeconds",
        "cache.configTtlSeconds",
        "bogus",
    } <= locations


def test_config_error_lists_every_location(write: Callable[[object], Path]) -> None:
    """load_settings raises ConfigError whose text names each location."""
    path = write(config(sas={"clockSkewSeconds": -1}, cache={"decisionMaxEntries": 0}))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "sas.clockSkewSeconds" in str(caught.value)
    assert "cache.decisionMaxEntries" in str(caught.value)
    assert len(caught.value.problems) == 2


def test_validate_file_is_empty_for_a_valid_config(problems: Callable[..., list[ConfigProblem]]) -> None:
    """validate_file returns no problems for a good file."""
    assert problems(config()) == []


def test_parse_settings_reads_bytes_in_hand() -> None:
    """parse_settings is load_settings without a file."""
    settings = parse_settings(json.dumps(config()).encode(), source="inline")
    assert settings.source == "inline"


# --- strict schema and types ---------------------------------------------------------------------------------------


def test_rejects_unknown_top_level_property(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Unknown properties are errors, never ignored."""
    assert at(problems(config(namespace=[])), "namespace") == ["unknown property"]


def test_rejects_misspelt_requires_client_authorization(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A typo must not silently fall back to the default."""
    found = problems(config(namespaces=[namespace(hybridConnections=[{"name": "hc", "requireClientAuth": False}])]))
    assert at(found, "namespaces[0].hybridConnections[0].requireClientAuth") == ["unknown property"]


def test_rejects_unknown_property_inside_rule(problems: Callable[..., list[ConfigProblem]]) -> None:
    """The strict schema reaches every level."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(right=["Send"])])]))
    assert at(found, "namespaces[0].authorizationRules[0].right") == ["unknown property"]


def test_rejects_non_string_property_names(problems: Callable[..., list[ConfigProblem]]) -> None:
    """YAML lets keys be numbers or booleans; the config does not."""
    found = problems("namespaces: []\n1: x\n")
    assert any("property names must be strings" in m for m in at(found, ""))


def test_bool_is_not_an_int(problems: Callable[..., list[ConfigProblem]]) -> None:
    """true is not 1: booleans are rejected where integers or seconds are expected."""
    found = problems(config(sas={"clockSkewSeconds": True}, cache={"decisionTtlSeconds": False}))
    assert at(found, "sas.clockSkewSeconds") == ["must be an integer, not a boolean"]
    assert at(found, "cache.decisionTtlSeconds") == ["must be a number of seconds, not a boolean"]


def test_string_is_not_a_bool(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A quoted "true" is a string, not a boolean."""
    found = problems(config(dryRun="true"))
    assert at(found, "dryRun") == ["must be true or false, not a string"]


def test_rejects_non_bool_namespace_dry_run(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A namespace's dryRun is a real boolean too."""
    assert at(problems(config(namespaces=[namespace(dryRun=1)])), "namespaces[0].dryRun") == [
        "must be true or false, not an integer"
    ]


def test_dry_run_flags_are_read(load: Callable[..., Settings]) -> None:
    """Top-level and per-namespace dryRun are booleans defaulting to false."""
    settings = load(config(dryRun=True, namespaces=[namespace(dryRun=True)]))
    assert settings.dry_run is True
    assert settings.namespaces[0].dry_run is True


# --- namespaces and hosts ------------------------------------------------------------------------------------------


def test_rejects_empty_namespaces_list(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A config without a namespace serves nothing."""
    assert at(problems({"namespaces": []}), "namespaces") == ["must not be empty"]


def test_rejects_missing_namespaces(problems: Callable[..., list[ConfigProblem]]) -> None:
    """namespaces is required."""
    assert at(problems({"sas": {}}), "namespaces") == ["is required"]


@pytest.mark.parametrize("name", ["abcde", "a" * 51, "1abcdef", "abc_def", "abcdef-", "-abcdef", "abc.def"])
def test_rejects_invalid_namespace_names(problems: Callable[..., list[ConfigProblem]], name: str) -> None:
    """Namespace names are 6-50 letters, digits and hyphens, starting with a letter (Azure's rule)."""
    assert at(problems(config(namespaces=[namespace(name)])), "namespaces[0].name")


@pytest.mark.parametrize("name", ["abcdef", "a" * 50, "Contoso-2"])
def test_accepts_namespace_names_at_the_bounds(load: Callable[..., Settings], name: str) -> None:
    """6 and 50 characters are both fine."""
    assert load(config(namespaces=[namespace(name, hosts=["a.example"])])).namespaces[0].name == name


def test_rejects_duplicate_namespace_names_case_insensitively(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Namespace names are global and case-insensitive in Azure."""
    found = problems(config(namespaces=[namespace("contoso"), namespace("CONTOSO", hosts=["b.example"])]))
    assert at(found, "namespaces[1].name") == ["duplicate namespace name; it is already used at namespaces[0].name"]


def test_rejects_empty_hosts(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A namespace without a host can never be reached."""
    assert at(problems(config(namespaces=[namespace(hosts=[])])), "namespaces[0].hosts") == ["must not be empty"]


def test_rejects_host_with_port(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Hosts are matched without the port, so a port in the config is an error."""
    found = problems(config(namespaces=[namespace(hosts=["contoso.example:8443"])]))
    assert "port" in at(found, "namespaces[0].hosts[0]")[0]


def test_rejects_upper_case_host(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Hosts are written lower-case, the form requests are matched in."""
    found = problems(config(namespaces=[namespace(hosts=["Contoso.example"])]))
    assert "lower-case" in at(found, "namespaces[0].hosts[0]")[0]


@pytest.mark.parametrize(
    "host",
    ["a..b", "-a.example", "*.example", "a.example.", "a_b.example", "héllo.example", "999.1.1.1", " a.example",
     "a" * 64 + ".example", "[::1", "[0:0:0:0:0:0:0:1]", "http://a.example"],
)  # fmt: skip
def test_rejects_invalid_hosts(problems: Callable[..., list[ConfigProblem]], host: str) -> None:
    """Hosts are ASCII DNS names, IPv4 addresses or compressed bracketed IPv6 addresses."""
    assert at(problems(config(namespaces=[namespace(hosts=[host])])), "namespaces[0].hosts[0]")


def test_accepts_ip_and_localhost_hosts(load: Callable[..., Settings]) -> None:
    """Loopback names and addresses are valid hosts for local use."""
    settings = load(config(namespaces=[namespace(hosts=["localhost", "127.0.0.1", "[::1]"])]))
    assert settings.namespaces[0].hosts == ("localhost", "127.0.0.1", "[::1]")


def test_rejects_duplicate_hosts_across_namespaces(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A host picks exactly one namespace."""
    found = problems(
        config(namespaces=[namespace("contoso"), namespace("fabrikam", hosts=["contoso.servicebus.windows.net"])])
    )
    assert at(found, "namespaces[1].hosts[0]") == ["duplicate host; it is already used at namespaces[0].hosts[0]"]


def test_resource_id_is_accepted_case_insensitively(load: Callable[..., Settings]) -> None:
    """ARM ids compare case-insensitively; the namespace scope becomes the resource id."""
    rid = f"{ARM_NS.lower()}/CONTOSO"
    ns = load(config(namespaces=[namespace(resourceId=rid)])).namespaces[0]
    assert ns.resource_id == rid
    assert ns.scope == rid


def test_rejects_resource_id_of_another_namespace(problems: Callable[..., list[ConfigProblem]]) -> None:
    """The resource id must name the namespace it belongs to."""
    found = problems(config(namespaces=[namespace(resourceId=f"{ARM_NS}/fabrikam")]))
    assert at(found, "namespaces[0].resourceId") == ["names namespace 'fabrikam', not 'contoso'"]


@pytest.mark.parametrize(
    "rid",
    [f"{ARM_NS}/contoso/hybridConnections/x", "contoso", f"{ARM_NS}/contoso/",
     "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/contoso"],
)  # fmt: skip
def test_rejects_malformed_resource_id(problems: Callable[..., list[ConfigProblem]], rid: str) -> None:
    """Only an ARM Relay namespace id is a namespace resource id."""
    assert at(problems(config(namespaces=[namespace(resourceId=rid)])), "namespaces[0].resourceId")


def test_management_routes_are_read(load: Callable[..., Settings]) -> None:
    """Routes are stored lower-case without a trailing slash; absent methods means all methods."""
    routes = [{"path": "/$Admin/", "methods": ["PUT", "DELETE"]}, {"path": "/ops"}]
    ns = load(config(namespaces=[namespace(managementRoutes=routes)])).namespaces[0]
    assert [(r.path, r.methods) for r in ns.management_routes] == [
        ("/$admin", frozenset({"PUT", "DELETE"})),
        ("/ops", frozenset()),
    ]


@pytest.mark.parametrize("path", ["admin", "/a//b", "/a/../b", "/./a", "/a%2fb", "/a b", "/a?x", "/a#x", "//"])
def test_rejects_invalid_route_paths(problems: Callable[..., list[ConfigProblem]], path: str) -> None:
    """Route paths start with '/' and hold plain, non-dot, non-empty segments."""
    found = problems(config(namespaces=[namespace(managementRoutes=[{"path": path}])]))
    assert at(found, "namespaces[0].managementRoutes[0].path")


@pytest.mark.parametrize("method", ["put", "G ET", "", 1])
def test_rejects_invalid_route_methods(problems: Callable[..., list[ConfigProblem]], method: object) -> None:
    """Methods are upper-case HTTP tokens."""
    found = problems(config(namespaces=[namespace(managementRoutes=[{"path": "/a", "methods": [method]}])]))
    assert at(found, "namespaces[0].managementRoutes[0].methods[0]")


def test_rejects_duplicate_route_paths(problems: Callable[..., list[ConfigProblem]]) -> None:
    """One route per path; list all its methods together."""
    found = problems(config(namespaces=[namespace(managementRoutes=[{"path": "/a"}, {"path": "/A/"}])]))
    assert at(found, "namespaces[0].managementRoutes[1].path")


# --- authorization rules -------------------------------------------------------------------------------------------


def test_rejects_more_than_12_namespace_rules(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Azure allows at most 12 rules on a namespace."""
    rules = [rule(f"rule{i}", rights=["Send"]) for i in range(13)]
    found = problems(config(namespaces=[namespace(authorizationRules=rules)]))
    assert at(found, "namespaces[0].authorizationRules") == ["has 13 items; at most 12 are allowed"]


def test_rejects_more_than_12_entity_rules(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Azure allows at most 12 rules on each entity."""
    rules = [rule(f"rule{i}", rights=["Send"]) for i in range(13)]
    found = problems(config(namespaces=[namespace(wcfRelays=[{"name": "w", "authorizationRules": rules}])]))
    assert at(found, "namespaces[0].wcfRelays[0].authorizationRules") == ["has 13 items; at most 12 are allowed"]


def test_accepts_exactly_12_rules(load: Callable[..., Settings]) -> None:
    """12 is the limit, not 11."""
    rules = [rule(f"rule{i}", rights=["Send"]) for i in range(12)]
    assert len(load(config(namespaces=[namespace(authorizationRules=rules)])).namespaces[0].rules) == 12


@pytest.mark.parametrize("key_name", ["", "-abc", "abc.", "_abc", "a b", "a" * 51, "ключ", "a/b", 7])
def test_rejects_invalid_key_names(problems: Callable[..., list[ConfigProblem]], key_name: object) -> None:
    """keyName is 1-50 of [A-Za-z0-9._-], starting and ending with a letter or digit."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(key_name)])]))  # type: ignore[arg-type]
    assert at(found, "namespaces[0].authorizationRules[0].keyName")


@pytest.mark.parametrize("key_name", ["a", "a" * 50, "a.b-c_d", "9"])
def test_accepts_key_names_at_the_bounds(load: Callable[..., Settings], key_name: str) -> None:
    """One character and fifty characters are both valid rule names."""
    assert load(config(namespaces=[namespace(authorizationRules=[rule(key_name)])])).namespaces[0].rules


def test_rejects_duplicate_key_names_case_insensitively(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Two rules in one scope may not share a name, whatever the case."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule("Root"), rule("root")])]))
    assert at(found, "namespaces[0].authorizationRules[1].keyName")


def test_same_key_name_allowed_in_different_scopes(load: Callable[..., Settings]) -> None:
    """A namespace rule and an entity rule may share a name, as in Azure."""
    ns = namespace(hybridConnections=[{"name": "hc", "authorizationRules": [rule()]}])
    assert load(config(namespaces=[ns])).namespaces[0].entities[0].rules[0].key_name == "RootManageSharedAccessKey"


@pytest.mark.parametrize("rights", [["Manage"], ["Manage", "Listen"], ["Manage", "Send"]])
def test_rejects_manage_without_listen_and_send(
    problems: Callable[..., list[ConfigProblem]], rights: list[str]
) -> None:
    """ARM refuses Manage unless Listen and Send come with it."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(rights=rights)])]))
    assert (
        "Manage is only valid together with Listen and Send"
        in at(found, "namespaces[0].authorizationRules[0].rights")[0]
    )


def test_rejects_empty_rights(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A rule grants at least one right."""
    found = problems(
        config(namespaces=[namespace(authorizationRules=[{"keyName": "k", "primaryKey": KEY, "rights": []}])])
    )
    assert at(found, "namespaces[0].authorizationRules[0].rights") == ["must not be empty"]


def test_rejects_missing_rights(problems: Callable[..., list[ConfigProblem]]) -> None:
    """rights is required, as in ARM."""
    found = problems(config(namespaces=[namespace(authorizationRules=[{"keyName": "k", "primaryKey": KEY}])]))
    assert at(found, "namespaces[0].authorizationRules[0].rights") == ["is required"]


@pytest.mark.parametrize("right", ["listen", "Read", "", None, 1])
def test_rejects_unknown_rights(problems: Callable[..., list[ConfigProblem]], right: object) -> None:
    """Rights are exactly Manage, Listen or Send (ARM enum, case-sensitive)."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(rights=[right])])]))  # type: ignore[list-item]
    assert at(found, "namespaces[0].authorizationRules[0].rights[0]")


def test_rejects_duplicate_rights(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Each right appears once."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(rights=["Send", "Send"])])]))
    assert at(found, "namespaces[0].authorizationRules[0].rights[1]") == ["Send is listed twice"]


def test_rights_are_read_into_the_enum(load: Callable[..., Settings]) -> None:
    """rights become a frozenset of Right."""
    rules = load(config(namespaces=[namespace(authorizationRules=[rule(rights=["Listen"])])])).namespaces[0].rules
    assert rules[0].rights == frozenset({Right.LISTEN})


# --- keys and secrets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("secondary", [None, "absent"])
def test_secondary_key_absent_or_null_is_none(load: Callable[..., Settings], secondary: str | None) -> None:
    """A missing secondary key is None, never an empty string."""
    r = rule() if secondary == "absent" else rule(secondaryKey=None)
    assert load(config(namespaces=[namespace(authorizationRules=[r])])).namespaces[0].rules[0].secondary_key is None


@pytest.mark.parametrize("field", ["primaryKey", "secondaryKey"])
def test_rejects_empty_keys(problems: Callable[..., list[ConfigProblem]], field: str) -> None:
    """An empty key would make every signature trivially forgeable."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule() | {field: ""}])]))
    assert at(found, f"namespaces[0].authorizationRules[0].{field}") == ["must not be empty"]


def test_missing_primary_key_is_required(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Every rule has a primary key."""
    found = problems(config(namespaces=[namespace(authorizationRules=[{"keyName": "k", "rights": ["Send"]}])]))
    assert [(p.location, p.message) for p in found] == [
        ("namespaces[0].authorizationRules[0].primaryKey", "is required")
    ]


def test_missing_required_properties_are_reported_once(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A missing property gives one 'is required', not a second complaint about its null value."""
    found = problems({"namespaces": [{}], "identity": {"issuers": [{"jwksUri": "https://a.example/k"}]}})
    assert sorted((p.location, p.message) for p in found) == [
        ("identity.issuers[0].audiences", "is required"),
        ("identity.issuers[0].issuer", "is required"),
        ("namespaces[0].hosts", "is required"),
        ("namespaces[0].name", "is required"),
    ]


def test_rejects_key_over_256_chars_and_accepts_256(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Keys longer than 256 characters are refused."""
    rules = [rule("a", primaryKey="k" * 256), rule("b", primaryKey="k" * 257)]
    found = problems(config(namespaces=[namespace(authorizationRules=rules)]))
    assert not at(found, "namespaces[0].authorizationRules[0].primaryKey")
    assert at(found, "namespaces[0].authorizationRules[1].primaryKey") == ["is longer than 256 characters"]


@pytest.mark.parametrize("key", [" " + KEY, KEY + " ", KEY[:10] + "\n" + KEY[10:], KEY + "\t"])
def test_rejects_keys_with_whitespace_or_control_characters(
    problems: Callable[..., list[ConfigProblem]], key: str
) -> None:
    """Outer whitespace or control characters in a key are copy-paste slips, refused at load."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey=key)])]))
    assert at(found, "namespaces[0].authorizationRules[0].primaryKey")


@pytest.mark.parametrize("value", [12345, True, ["a"], {"env": "A", "file": "b"}, {"value": "x"}, {}])
def test_rejects_keys_of_the_wrong_shape(problems: Callable[..., list[ConfigProblem]], value: object) -> None:
    """A key is a string, {env: NAME} or {file: PATH}; nothing else."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey=value)])]))
    assert at(found, "namespaces[0].authorizationRules[0].primaryKey")


def test_env_secret_is_resolved(load: Callable[..., Settings]) -> None:
    """{env: NAME} takes the key from the given environment."""
    settings = load(
        config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"env": "ROOT_KEY"})])]), {"ROOT_KEY": KEY}
    )
    assert settings.namespaces[0].rules[0].primary_key == KEY


def test_env_secret_missing_names_location(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A missing variable is a problem at the key's location, naming the variable."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(secondaryKey={"env": "NOPE"})])]))
    assert at(found, "namespaces[0].authorizationRules[0].secondaryKey") == ["environment variable NOPE is not set"]


def test_env_secret_empty_is_rejected(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A variable set to the empty string is not a key."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"env": "K"})])]), {"K": ""})
    assert at(found, "namespaces[0].authorizationRules[0].primaryKey") == ["must not be empty"]


def test_rejects_env_key_that_is_not_utf8(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Undecodable bytes in a variable (surrogate escapes) cannot be a key: its UTF-8 bytes are the HMAC key."""
    found = problems(
        config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"env": "K"})])]), {"K": "k\udcff"}
    )
    assert at(found, "namespaces[0].authorizationRules[0].primaryKey") == ["must be valid UTF-8 text"]


@pytest.mark.parametrize("name", ["1ABC", "A-B", "", 5])
def test_rejects_invalid_env_var_names(problems: Callable[..., list[ConfigProblem]], name: object) -> None:
    """Variable names follow the POSIX shape."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"env": name})])]))
    assert at(found, "namespaces[0].authorizationRules[0].primaryKey.env")


@pytest.mark.parametrize(("content", "expected"), [(KEY + "\n", KEY), (KEY + "\r\n", KEY), (KEY, KEY)])
def test_file_secret_is_read_and_trailing_newline_stripped(
    load: Callable[..., Settings], tmp_path: Path, content: str, expected: str
) -> None:
    """{file: PATH} reads the file and drops exactly one trailing newline."""
    secret = tmp_path / "root.key"
    secret.write_bytes(content.encode())
    settings = load(config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"file": str(secret)})])]))
    assert settings.namespaces[0].rules[0].primary_key == expected


def test_file_secret_with_two_trailing_newlines_is_rejected(
    problems: Callable[..., list[ConfigProblem]], tmp_path: Path
) -> None:
    """Only one newline is stripped; what remains must still be a clean key."""
    (tmp_path / "k").write_text(KEY + "\n\n")
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"file": "k"})])]))
    assert at(found, "namespaces[0].authorizationRules[0].primaryKey")


def test_file_secret_path_is_relative_to_the_config(load: Callable[..., Settings], tmp_path: Path) -> None:
    """A relative {file:} path is read from the config file's directory, not the working directory."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "k").write_text(OTHER_KEY)
    settings = load(config(namespaces=[namespace(authorizationRules=[rule(secondaryKey={"file": "secrets/k"})])]))
    assert settings.namespaces[0].rules[0].secondary_key == OTHER_KEY


def test_file_secret_unreadable_is_a_problem(problems: Callable[..., list[ConfigProblem]], tmp_path: Path) -> None:
    """A missing secret file is a located problem naming the file."""
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"file": "missing.key"})])]))
    (message,) = at(found, "namespaces[0].authorizationRules[0].primaryKey")
    assert message.startswith("cannot read secret file missing.key")


def test_file_secret_that_is_too_large_is_a_problem(
    problems: Callable[..., list[ConfigProblem]], tmp_path: Path
) -> None:
    """Secret files are capped before they are read whole."""
    (tmp_path / "big").write_bytes(b"k" * (64 * 1024 + 1))
    found = problems(config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"file": "big"})])]))
    assert "larger than" in at(found, "namespaces[0].authorizationRules[0].primaryKey")[0]


def test_problems_and_reprs_never_contain_keys(
    problems: Callable[..., list[ConfigProblem]], load: Callable[..., Settings], tmp_path: Path
) -> None:
    """No message, and no repr of the loaded settings, shows key material."""
    long_key, spaced_key = "S3cr3t" * 50, " S3cr3tSpace"
    (tmp_path / "f").write_text("S3cr3tFile\n\n")
    rules = [rule("a", primaryKey=long_key), rule("b", primaryKey=spaced_key), rule("c", primaryKey={"file": "f"}),
             rule("d", primaryKey={"env": "E"}, rights=["Manage"])]  # fmt: skip
    found = problems(config(namespaces=[namespace(authorizationRules=rules)]), {"E": "S3cr3tEnv"})
    assert len(found) == 4
    assert "S3cr3t" not in " ".join(str(p) for p in found)
    settings = load(config(namespaces=[namespace(authorizationRules=[rule(secondaryKey=OTHER_KEY)])]))
    assert KEY not in repr(settings)
    assert OTHER_KEY not in repr(settings)


# --- entities ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "/a", "a/", "a//b", "a/./b", "../a", "a/..", "a b", "a%2fb", "a\\b", "x" * 261, "$hc", "a?b", None],
)
def test_rejects_invalid_entity_names(problems: Callable[..., list[ConfigProblem]], name: object) -> None:
    """Entity names are 1-260 of letters, digits, '.', '-', '_' in non-empty, non-dot '/' segments."""
    found = problems(config(namespaces=[namespace(hybridConnections=[{"name": name}])]))
    assert at(found, "namespaces[0].hybridConnections[0].name")


@pytest.mark.parametrize("name", ["eu/orders", "a.b_c-d", "x" * 260, "a/b/c", "1"])
def test_accepts_valid_entity_names(load: Callable[..., Settings], name: str) -> None:
    """Names may contain '/', and 260 characters is the limit."""
    assert load(config(namespaces=[namespace(wcfRelays=[{"name": name}])])).namespaces[0].entities[0].name == name


def test_rejects_duplicate_entity_names_across_kinds(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A hybrid connection and a WCF relay may not share a name, whatever the case."""
    ns = namespace(hybridConnections=[{"name": "Echo"}], wcfRelays=[{"name": "echo"}])
    assert at(problems(config(namespaces=[ns])), "namespaces[0].wcfRelays[0].name") == [
        "duplicate entity name; it is already used at namespaces[0].hybridConnections[0].name"
    ]


def test_requires_client_authorization_defaults_to_true(load: Callable[..., Settings]) -> None:
    """Anonymous access is opt-in."""
    ns = namespace(hybridConnections=[{"name": "a"}, {"name": "b", "requiresClientAuthorization": False}])
    entities = load(config(namespaces=[ns])).namespaces[0].entities
    assert [(e.name, e.requires_client_authorization) for e in entities] == [("a", True), ("b", False)]


def test_rejects_non_bool_requires_client_authorization(problems: Callable[..., list[ConfigProblem]]) -> None:
    """'false' as a string must not be read as true or false."""
    ns = namespace(hybridConnections=[{"name": "a", "requiresClientAuthorization": "false"}])
    assert at(problems(config(namespaces=[ns])), "namespaces[0].hybridConnections[0].requiresClientAuthorization")


def test_entity_kinds_are_recorded(load: Callable[..., Settings]) -> None:
    """Hybrid connections come first, then WCF relays, each with its kind."""
    ns = namespace(wcfRelays=[{"name": "w"}], hybridConnections=[{"name": "h"}])
    entities = load(config(namespaces=[ns])).namespaces[0].entities
    assert [(e.kind, e.name) for e in entities] == [(EntityKind.HYBRID_CONNECTION, "h"), (EntityKind.WCF_RELAY, "w")]


# --- identity ------------------------------------------------------------------------------------------------------


def test_identity_issuer_is_read(load: Callable[..., Settings]) -> None:
    """An issuer with the tenant placeholder, tenants, audiences and a JWKS URI."""
    settings = load(config(identity={"leewaySeconds": 30, "issuers": [issuer(tenants=[GUID_A.upper()])]}))
    (iss,) = settings.identity.issuers
    assert settings.identity.leeway_seconds == 30
    assert iss.tenants == (GUID_A,)
    assert iss.algorithms == ("RS256",)
    assert iss.jwks_uri is not None
    assert iss.allow_insecure_http is False


@pytest.mark.parametrize("leeway", [301, -1, 1.5, True, "60"])
def test_rejects_leeway_outside_0_to_300(problems: Callable[..., list[ConfigProblem]], leeway: object) -> None:
    """A huge leeway lets expired tokens through; leeway is an integer 0..300."""
    assert at(problems(config(identity={"leewaySeconds": leeway})), "identity.leewaySeconds")


def test_accepts_leeway_of_300(load: Callable[..., Settings]) -> None:
    """300 seconds is the cap, inclusive."""
    assert load(config(identity={"leewaySeconds": 300})).identity.leeway_seconds == 300


@pytest.mark.parametrize("field", ["issuer", "jwksUri", "discoveryUrl"])
def test_rejects_http_urls_for_remote_hosts(problems: Callable[..., list[ConfigProblem]], field: str) -> None:
    """Keys and issuers come over https unless the host is loopback."""
    extra: Config = {field: "http://login.example/x"}
    if field == "discoveryUrl":
        extra["jwksUri"] = None
    found = problems(config(identity={"issuers": [issuer(**extra)]}))
    assert "must use https" in at(found, f"identity.issuers[0].{field}")[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "[::1]", "localhost"])
def test_accepts_http_on_loopback(load: Callable[..., Settings], host: str) -> None:
    """http is fine for a loopback identity provider (tests, local development)."""
    iss = issuer(issuer=f"http://{host}:8000/tenant", tenants=None, jwksUri=f"http://{host}:8000/keys")
    assert load(config(identity={"issuers": [iss]})).identity.issuers[0].jwks_uri == f"http://{host}:8000/keys"


def test_allow_insecure_http_permits_remote_http(load: Callable[..., Settings]) -> None:
    """allowInsecureHttp is the explicit opt-in for http elsewhere."""
    iss = issuer(jwksUri="http://keys.internal/jwks", allowInsecureHttp=True)
    assert load(config(identity={"issuers": [iss]})).identity.issuers[0].allow_insecure_http is True


@pytest.mark.parametrize(
    "url", ["ftp://a.example/x", "https:///x", "https://user:pw@a.example/x", "https://a.example/x#f", "not a url",
            "https://a.example:99999/x"],
)  # fmt: skip
def test_rejects_malformed_urls(problems: Callable[..., list[ConfigProblem]], url: str) -> None:
    """URLs are absolute http(s) URLs without user information or fragments."""
    assert at(problems(config(identity={"issuers": [issuer(jwksUri=url)]})), "identity.issuers[0].jwksUri")


def test_tenant_placeholder_requires_tenants(problems: Callable[..., list[ConfigProblem]]) -> None:
    """An issuer with {tenantid} without a tenant list would trust every tenant."""
    found = problems(
        config(identity={"issuers": [issuer(tenants=None), issuer(issuer="https://b.example/{tenantid}/", tenants=[])]})
    )
    assert at(found, "identity.issuers[0].tenants")
    assert at(found, "identity.issuers[1].tenants")


def test_fixed_issuer_needs_no_tenants(load: Callable[..., Settings]) -> None:
    """A single-tenant issuer URL stands on its own."""
    iss = issuer(issuer=f"https://login.microsoftonline.com/{GUID_A}/v2.0", tenants=None)
    assert load(config(identity={"issuers": [iss]})).identity.issuers[0].tenants == ()


def test_rejects_other_placeholders(problems: Callable[..., list[ConfigProblem]]) -> None:
    """{tenantid} is the only placeholder."""
    found = problems(config(identity={"issuers": [issuer(issuer="https://a.example/{tenant}/v2.0")]}))
    assert at(found, "identity.issuers[0].issuer")


@pytest.mark.parametrize("tenant", ["not-a-guid", "1111111-1111-1111-1111-111111111111", 5])
def test_rejects_invalid_tenant_ids(problems: Callable[..., list[ConfigProblem]], tenant: object) -> None:
    """Tenants are GUIDs."""
    assert at(problems(config(identity={"issuers": [issuer(tenants=[tenant])]})), "identity.issuers[0].tenants[0]")


@pytest.mark.parametrize("audiences", [None, [], [""], [5]])
def test_rejects_missing_or_empty_audiences(problems: Callable[..., list[ConfigProblem]], audiences: object) -> None:
    """At least one non-empty audience string."""
    found = problems(config(identity={"issuers": [issuer(audiences=audiences)]}))
    assert any(p.location.startswith("identity.issuers[0].audiences") for p in found)


@pytest.mark.parametrize(
    "sources",
    [{"jwksUri": None}, {"discoveryUrl": "https://a.example/.well-known/openid-configuration"},
     {"jwks": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}}],
)  # fmt: skip
def test_requires_exactly_one_key_source(problems: Callable[..., list[ConfigProblem]], sources: Config) -> None:
    """Exactly one of discoveryUrl, jwksUri or jwks."""
    found = problems(config(identity={"issuers": [issuer(**sources)]}))
    assert any("exactly one of discoveryUrl, jwksUri or jwks" in m for m in at(found, "identity.issuers[0]"))


@pytest.mark.parametrize("alg", ["none", "HS256", "rs256", "EdDSA", "ES256K"])
def test_rejects_none_hmac_and_unknown_algorithms(problems: Callable[..., list[ConfigProblem]], alg: str) -> None:
    """The allow-list never holds none or an HMAC algorithm."""
    found = problems(config(identity={"issuers": [issuer(algorithms=[alg])]}))
    assert at(found, "identity.issuers[0].algorithms[0]")


def test_rejects_empty_algorithm_list(problems: Callable[..., list[ConfigProblem]]) -> None:
    """An empty allow-list is an error, not 'any algorithm'."""
    assert at(problems(config(identity={"issuers": [issuer(algorithms=[])]})), "identity.issuers[0].algorithms")


def test_accepts_every_allowed_algorithm(load: Callable[..., Settings]) -> None:
    """RSA, RSA-PSS and ECDSA algorithms are all allowed."""
    algs = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
    assert load(config(identity={"issuers": [issuer(algorithms=algs)]})).identity.issuers[0].algorithms == tuple(algs)


def test_inline_jwks_is_usable_by_pyjwt(load: Callable[..., Settings]) -> None:
    """dict(issuer.jwks) is a JWK Set that PyJWT reads."""
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    jwk = json.loads(RSAAlgorithm.to_jwk(public)) | {"kid": "k1"}
    iss = issuer(jwksUri=None, jwks={"keys": [jwk]})
    loaded = load(config(identity={"issuers": [iss]})).identity.issuers[0].jwks
    assert loaded is not None
    assert jwt.PyJWKSet.from_dict(dict(loaded))["k1"].key_id == "k1"


@pytest.mark.parametrize(
    "key",
    [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}, {"kty": "oct", "k": "c2VjcmV0"}, {"n": "x"}, "RSA"],
)
def test_rejects_private_symmetric_or_malformed_jwks(problems: Callable[..., list[ConfigProblem]], key: object) -> None:
    """Inline JWKS hold RSA or EC public keys only."""
    found = problems(config(identity={"issuers": [issuer(jwksUri=None, jwks={"keys": [key]})]}))
    assert any(p.location.startswith("identity.issuers[0].jwks.keys[0]") for p in found)
    assert "secret" not in " ".join(str(p) for p in found)


def test_rejects_jwks_without_keys(problems: Callable[..., list[ConfigProblem]]) -> None:
    """An inline JWKS has a non-empty keys list."""
    found = problems(config(identity={"issuers": [issuer(jwksUri=None, jwks={"keys": []})]}))
    assert at(found, "identity.issuers[0].jwks.keys") == ["must not be empty"]


def test_rejects_duplicate_issuers(problems: Callable[..., list[ConfigProblem]]) -> None:
    """One entry per issuer, so there is one answer to 'which audiences apply'."""
    found = problems(config(identity={"issuers": [issuer(), issuer()]}))
    assert at(found, "identity.issuers[1].issuer")


# --- roles ---------------------------------------------------------------------------------------------------------


def custom_role(**extra: Any) -> Config:
    """A valid custom role definition, with overrides."""
    result: Config = {"roleName": "Relay Auditor", "id": GUID_C, "actions": ["Microsoft.Relay/*/read"]}
    result.update(extra)
    return result


def assignment(**extra: Any) -> Config:
    """A valid role assignment, with overrides."""
    result: Config = {
        "principalId": GUID_B,
        "principalType": "ServicePrincipal",
        "roleDefinitionName": "Azure Relay Sender",
        "scope": f"{ARM_NS}/contoso",
    }
    result.update(extra)
    return result


def test_custom_roles_follow_the_builtins(load: Callable[..., Settings]) -> None:
    """role_definitions holds the built-in roles, then the custom ones."""
    roles = load(config(roleDefinitions=[custom_role(dataActions=["Microsoft.Relay/*/send/action"])])).role_definitions
    assert roles[: len(BUILTIN_ROLES)] == BUILTIN_ROLES
    assert roles[-1].role_name == "Relay Auditor"
    assert roles[-1].data_actions == ("Microsoft.Relay/*/send/action",)


@pytest.mark.parametrize(
    ("extra", "location"),
    [({"roleName": "azure relay owner"}, "roleName"), ({"id": AZURE_RELAY_SENDER.id.upper()}, "id")],
)
def test_rejects_custom_roles_colliding_with_builtins(
    problems: Callable[..., list[ConfigProblem]], extra: Config, location: str
) -> None:
    """A custom role may not shadow a built-in one by name or id."""
    found = problems(config(roleDefinitions=[custom_role(**extra)]))
    assert at(found, f"roleDefinitions[0].{location}")


def test_rejects_duplicate_custom_roles(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Custom role names and ids are unique."""
    found = problems(config(roleDefinitions=[custom_role(), custom_role()]))
    assert at(found, "roleDefinitions[1].roleName")
    assert at(found, "roleDefinitions[1].id")


@pytest.mark.parametrize("permission", ["Microsoft.Relay/*/*/read", "", "has space"])
def test_rejects_bad_permission_strings(problems: Callable[..., list[ConfigProblem]], permission: str) -> None:
    """A permission string is non-empty, has no spaces and at most one wildcard."""
    found = problems(config(roleDefinitions=[custom_role(notDataActions=[permission])]))
    assert at(found, "roleDefinitions[0].notDataActions[0]")


def test_rejects_invalid_role_id(problems: Callable[..., list[ConfigProblem]]) -> None:
    """Role definition ids are GUIDs."""
    assert at(problems(config(roleDefinitions=[custom_role(id="owner")])), "roleDefinitions[0].id")


def test_role_assignment_by_name_resolves_to_id(load: Callable[..., Settings]) -> None:
    """roleDefinitionName is matched case-insensitively and stored as the role id."""
    (a,) = load(config(roleAssignments=[assignment(roleDefinitionName="azure relay SENDER")])).role_assignments
    assert a.role_definition_id == AZURE_RELAY_SENDER.id
    assert a.principal_type == "ServicePrincipal"


@pytest.mark.parametrize(
    "role_id",
    [AZURE_RELAY_SENDER.id.upper(), f"/providers/Microsoft.Authorization/roleDefinitions/{AZURE_RELAY_SENDER.id}",
     f"/subscriptions/x/providers/microsoft.authorization/roledefinitions/{AZURE_RELAY_SENDER.id}"],
)  # fmt: skip
def test_role_assignment_by_id(load: Callable[..., Settings], role_id: str) -> None:
    """roleDefinitionId may be a bare GUID or a full ARM role definition id."""
    a = assignment(roleDefinitionName=None, roleDefinitionId=role_id)
    assert load(config(roleAssignments=[a])).role_assignments[0].role_definition_id == AZURE_RELAY_SENDER.id


def test_role_assignment_to_custom_role(load: Callable[..., Settings]) -> None:
    """Assignments can name custom roles."""
    settings = load(
        config(roleDefinitions=[custom_role()], roleAssignments=[assignment(roleDefinitionName="Relay Auditor")])
    )
    assert settings.role_assignments[0].role_definition_id == GUID_C


@pytest.mark.parametrize(
    "extra",
    [{"roleDefinitionName": "Relay Superuser"}, {"roleDefinitionName": None, "roleDefinitionId": GUID_C}],
)
def test_rejects_unknown_roles(problems: Callable[..., list[ConfigProblem]], extra: Config) -> None:
    """An assignment to a role nobody defined is an error."""
    found = problems(config(roleAssignments=[assignment(**extra)]))
    assert any(p.location.startswith("roleAssignments[0].roleDefinition") for p in found)


@pytest.mark.parametrize("extra", [{"roleDefinitionId": GUID_C}, {"roleDefinitionName": None}])
def test_requires_exactly_one_role_reference(problems: Callable[..., list[ConfigProblem]], extra: Config) -> None:
    """Exactly one of roleDefinitionName or roleDefinitionId."""
    found = problems(config(roleAssignments=[assignment(**extra)]))
    assert at(found, "roleAssignments[0]") == ["must have exactly one of roleDefinitionName or roleDefinitionId"]


def test_assignment_to_broken_custom_role_reports_only_the_role(problems: Callable[..., list[ConfigProblem]]) -> None:
    """A broken custom role is reported once, not again as an unknown role in every assignment."""
    found = problems(
        config(
            roleDefinitions=[custom_role(actions=["a/*/*"])],
            roleAssignments=[assignment(roleDefinitionName="Relay Auditor")],
        )
    )
    assert [p.location for p in found] == ["roleDefinitions[0].actions[0]"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("principalId", "someone"), ("principalType", "Device"), ("principalType", "user"), ("principalType", None)],
)
def test_rejects_bad_principals(problems: Callable[..., list[ConfigProblem]], field: str, value: object) -> None:
    """principalId is a GUID and principalType is User, Group or ServicePrincipal."""
    assert at(problems(config(roleAssignments=[assignment(**{field: value})])), f"roleAssignments[0].{field}")


@pytest.mark.parametrize(
    "scope", ["subscriptions/x", "/subscriptions/x/", "/tenants/x", "/subscriptions//rg", "/subscriptions"]
)
def test_rejects_invalid_scopes(problems: Callable[..., list[ConfigProblem]], scope: str) -> None:
    """Scopes are '/' or /subscriptions/... ARM ids without empty segments or a trailing slash."""
    assert at(problems(config(roleAssignments=[assignment(scope=scope)])), "roleAssignments[0].scope")


@pytest.mark.parametrize("scope", ["/", "/subscriptions/x", f"{ARM_NS}/contoso/hybridConnections/eu/orders"])
def test_accepts_valid_scopes(load: Callable[..., Settings], scope: str) -> None:
    """Root, subscription and entity scopes are all valid."""
    assert load(config(roleAssignments=[assignment(scope=scope)])).role_assignments[0].scope == scope


# --- sas and cache -------------------------------------------------------------------------------------------------


def test_sas_settings_are_read(load: Callable[..., Settings]) -> None:
    """clockSkewSeconds and maxTokenLifetimeSeconds are read."""
    sas = load(config(sas={"clockSkewSeconds": 0, "maxTokenLifetimeSeconds": 3600})).sas
    assert (sas.clock_skew_seconds, sas.max_token_lifetime_seconds) == (0, 3600)


@pytest.mark.parametrize("skew", [901, -1, 1.5, "300"])
def test_rejects_clock_skew_outside_0_to_900(problems: Callable[..., list[ConfigProblem]], skew: object) -> None:
    """Clock skew is an integer from 0 to 900 seconds."""
    assert at(problems(config(sas={"clockSkewSeconds": skew})), "sas.clockSkewSeconds")


@pytest.mark.parametrize("lifetime", [0, -5, 2.5, True])
def test_rejects_non_positive_max_token_lifetime(
    problems: Callable[..., list[ConfigProblem]], lifetime: object
) -> None:
    """maxTokenLifetimeSeconds is null or a positive integer."""
    assert at(problems(config(sas={"maxTokenLifetimeSeconds": lifetime})), "sas.maxTokenLifetimeSeconds")


def test_cache_settings_accept_decimal_seconds(load: Callable[..., Settings]) -> None:
    """Seconds may be decimals; decisionTtlSeconds may be 0."""
    cache = load(config(cache={"configTtlSeconds": 0.5, "decisionTtlSeconds": 0, "decisionMaxEntries": 1,
                               "jwksTtlSeconds": 60, "jwksRefreshCooldownSeconds": 2.5})).cache  # fmt: skip
    assert (cache.config_ttl_seconds, cache.decision_ttl_seconds, cache.decision_max_entries) == (0.5, 0, 1)
    assert (cache.jwks_ttl_seconds, cache.jwks_refresh_cooldown_seconds) == (60, 2.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [("configTtlSeconds", 0), ("jwksTtlSeconds", -1), ("jwksRefreshCooldownSeconds", 0), ("decisionTtlSeconds", -0.1),
     ("decisionMaxEntries", 0), ("decisionMaxEntries", 10_000_001), ("decisionMaxEntries", 1.5),
     ("configTtlSeconds", "30")],
)  # fmt: skip
def test_rejects_out_of_range_cache_settings(
    problems: Callable[..., list[ConfigProblem]], field: str, value: object
) -> None:
    """TTLs are positive (decision TTL non-negative); decisionMaxEntries is 1..10,000,000."""
    assert at(problems(config(cache={field: value})), f"cache.{field}")


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_rejects_nan_and_infinite_seconds(problems: Callable[..., list[ConfigProblem]], value: str) -> None:
    """YAML's .nan and .inf are not durations."""
    found = problems(f"namespaces: [{{name: contoso, hosts: [a.example]}}]\ncache: {{configTtlSeconds: {value}}}\n")
    assert at(found, "cache.configTtlSeconds")


# --- fingerprint ---------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_for_the_same_input(load: Callable[..., Settings]) -> None:
    """Loading the same file twice gives the same fingerprint."""
    assert load(config()).fingerprint == load(config()).fingerprint


def test_fingerprint_changes_when_file_secret_changes(load: Callable[..., Settings], tmp_path: Path) -> None:
    """Rotating a key in a {file:} secret is a config change even though the YAML is unchanged."""
    cfg = config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"file": "k"})])])
    (tmp_path / "k").write_text(KEY)
    before = load(cfg).fingerprint
    (tmp_path / "k").write_text(OTHER_KEY)
    assert load(cfg).fingerprint != before


def test_fingerprint_changes_when_env_secret_changes(load: Callable[..., Settings]) -> None:
    """Rotating a key in an {env:} secret is a config change too."""
    cfg = config(namespaces=[namespace(authorizationRules=[rule(primaryKey={"env": "K"})])])
    assert load(cfg, {"K": KEY}).fingerprint != load(cfg, {"K": OTHER_KEY}).fingerprint


def test_fingerprint_changes_when_the_file_changes(load: Callable[..., Settings]) -> None:
    """Any edit to the YAML changes the fingerprint."""
    assert load(config()).fingerprint != load(config(dryRun=False)).fingerprint


# --- keys and the starter config -----------------------------------------------------------------------------------


def test_generate_key_is_44_chars_of_base64_256_bits() -> None:
    """A key is 32 random bytes in base64: 44 characters, like Azure's."""
    key = generate_key()
    assert len(key) == 44
    assert len(base64.b64decode(key, validate=True)) == 32


def test_generate_key_is_random() -> None:
    """Two keys differ."""
    assert generate_key() != generate_key()


def test_starter_config_round_trips() -> None:
    """The starter config loads and holds RootManageSharedAccessKey with all rights and both keys."""
    keys = iter([KEY, OTHER_KEY])
    text = starter_config("fabrikam", "fabrikam.servicebus.windows.net", key_factory=lambda: next(keys))
    (ns,) = parse_settings(text.encode(), environ={}).namespaces
    assert (ns.name, ns.hosts) == ("fabrikam", ("fabrikam.servicebus.windows.net",))
    (root,) = ns.rules
    assert root.key_name == "RootManageSharedAccessKey"
    assert root.rights == frozenset({Right.MANAGE, Right.LISTEN, Right.SEND})
    assert (root.primary_key, root.secondary_key) == (KEY, OTHER_KEY)


def test_starter_config_uses_fresh_keys_by_default() -> None:
    """Without a key factory, generate_key supplies two different 44-character keys."""
    (root,) = parse_settings(starter_config("fabrikam", "localhost").encode(), environ={}).namespaces[0].rules
    assert root.secondary_key is not None
    assert len(root.primary_key) == len(root.secondary_key) == 44
    assert root.primary_key != root.secondary_key


def test_starter_config_has_commented_examples() -> None:
    """The starter shows a hybrid connection and the sas and cache sections, commented out."""
    text = starter_config("fabrikam", "localhost")
    for needle in ("#   - name: orders", "# sas:", "# cache:", "#   clockSkewSeconds"):
        assert needle in text


def test_starter_config_rejects_invalid_arguments() -> None:
    """A bad namespace or host is refused up front, located at the argument."""
    with pytest.raises(ConfigError) as caught:
        starter_config("x", "Bad Host:80")
    assert {p.location for p in caught.value.problems} == {"namespace", "host"}
