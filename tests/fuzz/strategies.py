"""Hypothesis strategies for the harnesses: arbitrary input, structure-aware input, and mutants of valid input.

Each input family mixes three sources, because each finds different bugs: free text (crashes in the first
checks), inputs assembled from the grammar's own pieces (reaching deep code with wrong values) and byte-level
mutants of valid inputs (:func:`~fuzz.targets.mutate`, seeded by hypothesis so a run is reproducible).
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any
from urllib.parse import quote

import yaml
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2
from hypothesis import strategies as st

from gateway_authz.core.credentials import SAS_PREFIX
from gateway_authz.core.model import AuthzRequest, headers_from_pairs

from . import world as w
from .targets import mutate, mutate_text

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
LATIN1 = st.text(st.characters(codec="latin-1"), max_size=200)
ANY_TEXT = st.one_of(LATIN1, st.text(max_size=120))


# The word lists the structured strategies draw from (kept compact: they are data, not code).
# fmt: off
_SAS_ODD_VALUES = [
    "", "0", "-1", "1e9", "٣", "99999999999999", "253402300800", "%", "%zz", "%ff", "%C0%AE",
    "http%3A%2F%2Fcontoso.servicebus.windows.net%2F..%2Fx", "sb%3A%2F%2Fevil%40contoso.servicebus.windows.net",
    "A" * 43 + "=", "A" * 42 + "B=", "%2B" * 10,
]
_SEGMENT_WORDS = [
    "orders", "ORDERS", "priority", "$hc", "$HC", "%24hc", ".", "..", "%2e", "%2E%2e", "", "a%2Fb", "a%2fb", "a%5Cb",
    "a\\b", "%00", "%0d%0a", "%C0%AE", "%ff", "%", "%4", "%41", "é", "%C3%A9", "\u212a", "K", "a b", "a%20b", "a;x=1",
    "a?b", "a#b", "~", "%7E", "-_.",
]
_AUTHORITY_WORDS: list[Any] = [
    w.HOST, w.HOST.upper(), w.HOST + ".", w.HOST + ":443", w.HOST + ":9354", w.HOST + ":0", w.HOST + ":65536",
    w.HOST + ":", "evil@" + w.HOST, w.HOST + "@evil.test", "[::1]", "[::1]:80", "[::1",
    "xn--e1a.servicebus.windows.net", "contoso\u3002servicebus\u3002windows\u3002net",
    "\u0441ontoso.servicebus.windows.net", "", "-a.b", "a..b", "a" * 64 + ".net", w.OTHER_HOST,
]
_QUERY_NAME_WORDS = [
    "sb-hc-token", "sb-hc-action", "SB-HC-TOKEN", "sb%2Dhc%2Dtoken", "sb-hc-token%00", "sb_hc_token",
    "sb-hc-action%20", "x", "", "%ff", "sb%2dhc%2daction",
]
_HEADER_NAME_WORDS = [
    "servicebusauthorization", "ServiceBusAuthorization", "authorization", "Authorization",
    "service_bus_authorization", "x-original-uri", "x-request-id", "host", "cookie",
]
_HTTP_HEADER_NAMES = [
    "Host", "X-Original-URI", "X-Original-Host", "X-Original-Method", "X-Forwarded-Uri", "X-Forwarded-Host",
    "X-Forwarded-Method", "ServiceBusAuthorization", "Authorization",
]
_ODD_JSON_WORDS = [
    b'{"exp":1,"exp":2}', b"NaN", b'{"a":Infinity}', b"1e400", b"[" * 3000 + b"]" * 3000, b"\xef\xbb\xbf{}",
    '{"a":1}'.encode("utf-16"), b'{"s":"\\ud800"}', b"9" * 5000, b'{"keys":[]}', b"{}", b"", b"\xff",
]
_INTERESTING_VALUES: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**64, 10**400, "", "none", "None", "RS256", "ES256", "HS256", "ES521",
    "PS256", "../../dev/null", "x" * 300, [], {}, ["exp"], "rsa-1", "ec-1", w.V2_ISSUER, w.AUDIENCE, w.TENANT, w.OID,
    253402300800, 1e308,
]
_JWKS_URIS = [
    "http://login.microsoftonline.com/keys", "https://user@login.microsoftonline.com/k", "/keys",
    "https://127.0.0.1/keys", "http://127.0.0.1/keys", "javascript:x", "https://",
]
_PB_HEADER_NAMES = [
    "servicebusauthorization", "authorization", ":authority", ":scheme", ":path", "x-request-id", "AUTHORIZATION", "",
]
_YAML_SNIPPETS = [
    b"&a [*a]", b"!!python/object/apply:os.system ['true']", b"<<: *x", b"? [a]\n: 1", b"\t", b"%YAML 1.1\n",
    b"---\n", b"...\n", b"[[[[[[[[", b"{", b"'", b'"\\x00"', b"0x1F", b"1_000", b"~", b"!!binary AA==",
    b"a: &x 1\nb: *x\n", b"\xef\xbb\xbf", b"\x00", b"{env: X}", b"{file: k}",
]
_ODD_VALUES: list[Any] = [
    None, "", -1, 0, 13, 10**30, 1e308, True, [], {}, "x" * 300, {"env": "NOPE"}, {"file": "missing-key"},
    {"env": "SEND_KEY", "file": "k"}, ["Manage"], ["Listen", "Listen"], "/$admin/..", "/a//b",
    "*.servicebus.windows.net", "contoso.servicebus.windows.net:443", "{tenantid}", "http://127.0.0.1/jwks", "ES512",
    "HS256", "a/../b", "$hc", "/$hc/$hc", "/a/..;x", "/x;y",
]
# fmt: on


def _mutants(bases: list[str] | list[bytes], max_edits: int = 4) -> st.SearchStrategy[Any]:
    def build(args: tuple[Any, int, int]) -> Any:
        base, seed, edits = args
        rng = random.Random(seed)
        return mutate(base, rng, edits) if isinstance(base, bytes) else mutate_text(base, rng, edits)

    return st.tuples(st.sampled_from(bases), SEEDS, st.integers(1, max_edits)).map(build)


# -- SAS ---------------------------------------------------------------------------------------------------------

PATHS = (
    "",
    "/",
    "/orders",
    "/orders/",
    "/orders/priority",
    "/orders/x/y",
    "/orders2",
    "/eu/orders",
    "/public",
    "/public/x",
    "/legacy/echo",
    "/$hc/orders",
    "/$admin",
    "/$ops/x",
    "/ORDERS",
    "/hc",
    "/orders%2Fpriority",
)


def _valid_sas() -> list[str]:
    tokens = []
    for host, entity, rule in w.SIGNERS:
        path = f"/{entity}" if entity else "/"
        tokens.append(w.sas_token(path, rule, host=host))
        tokens.append(w.sas_token(path + "/", rule, host=host, scheme="https", secondary=True))
    tokens.append(w.hand_sas("http%3a%2f%2fcontoso.servicebus.windows.net%2forders%2f"))
    tokens.append(w.hand_sas("sb%3A%2F%2FCONTOSO.servicebus.windows.net%3A443%2F%24hc%2Forders"))
    tokens.append(w.sas_token("/public", w.ROOT, expiry=w.NOW - 1000))  # expired
    return tokens


VALID_SAS = _valid_sas()
_SAS_FIELDS = [part for token in VALID_SAS[:6] for part in token.removeprefix(SAS_PREFIX).split("&")]
_FIELD_NAMES = st.sampled_from(["sr", "sig", "se", "skn", "SR", "Sig", "", "x", "sr ", "s%72", "skn\x00"])
_FIELD_VALUES = st.one_of(
    st.sampled_from([p.partition("=")[2] for p in _SAS_FIELDS]),
    st.sampled_from(_SAS_ODD_VALUES),
    ANY_TEXT,
)
_FIELDS = st.lists(st.tuples(_FIELD_NAMES, st.sampled_from(["=", "==", ""]), _FIELD_VALUES), max_size=6)
_SEPARATORS = st.sampled_from(["&", "&", "&", ";", "&&", "& "])
SAS_STRUCTURED = st.tuples(
    st.sampled_from([SAS_PREFIX, SAS_PREFIX, "sharedaccesssignature ", "SharedAccessSignature"]),
    _FIELDS,
    _SEPARATORS,
).map(lambda t: t[0] + t[2].join(f"{n}{e}{v}" for n, e, v in t[1]))
SAS_VALUES = st.one_of(ANY_TEXT, st.sampled_from(VALID_SAS), SAS_STRUCTURED, _mutants(VALID_SAS))


# -- resources ---------------------------------------------------------------------------------------------------

_SEGMENTS = st.one_of(
    st.sampled_from(_SEGMENT_WORDS),
    st.text(st.characters(codec="utf-8"), max_size=8),
)
PATH_VALUES = st.one_of(
    st.lists(_SEGMENTS, max_size=5).map(lambda s: "/" + "/".join(s)),
    st.lists(_SEGMENTS, max_size=5).map(lambda s: "/" + "/".join(s) + "/"),
    ANY_TEXT,
    _mutants(list(PATHS[1:])),
)
_SCHEMES = st.sampled_from(["sb", "http", "https", "ws", "wss", "HTTP", "amqps", "file", "javascript", "", "sb:"])
_AUTHORITIES = st.one_of(
    st.sampled_from(_AUTHORITY_WORDS),
    st.text(max_size=20),
)
SR_VALUES = st.one_of(
    st.tuples(_SCHEMES, _AUTHORITIES, PATH_VALUES, st.sampled_from(["", "", "?x=1", "#f", "?"])).map(
        lambda t: f"{t[0]}://{t[1]}{t[2]}{t[3]}"
    ),
    ANY_TEXT,
    _mutants([f"sb://{w.HOST}/orders", f"http://{w.HOST}/$hc/orders/", f"https://{w.HOST}:443/"]),
)


# -- query, headers, requests ------------------------------------------------------------------------------------

VALID_JWT = [
    w.jwt_token("RS256"),
    w.jwt_token("ES256"),
    w.jwt_token("RS256", oid=w.OWNER_OID, groups=None),
    w.jwt_token("ES256", groups=None, _claim_names={"groups": "src1"}),  # overage: the group's Listener is not seen
    w.jwt_token("RS256", exp=w.NOW - 120),
]
_QUERY_NAMES = st.sampled_from(_QUERY_NAME_WORDS)
_QUERY_VALUES = st.one_of(
    st.sampled_from([quote(t, safe="") for t in VALID_SAS[:4]] + [VALID_SAS[0].replace(" ", "+")]),
    st.sampled_from(["listen", "accept", "request", "connect", "send", "LISTEN", "", "%ff", "%zz", "a+b"]),
    ANY_TEXT.map(lambda s: s.replace("&", "")),
)
QUERY_VALUES = st.one_of(
    st.lists(st.tuples(_QUERY_NAMES, st.sampled_from(["=", ""]), _QUERY_VALUES), max_size=5).map(
        lambda pairs: "&".join(f"{n}{e}{v}" for n, e, v in pairs)
    ),
    ANY_TEXT,
)
TARGETS = st.one_of(
    st.tuples(PATH_VALUES, st.sampled_from(["", "?"]), QUERY_VALUES).map(
        lambda t: t[0] + (t[1] + t[2] if t[1] else "")
    ),
    ANY_TEXT,
    st.sampled_from(["*", "http://contoso.servicebus.windows.net/orders", "//orders", "/orders?sb-hc-action=listen"]),
)
CREDENTIAL_VALUES = st.one_of(
    st.sampled_from(VALID_SAS),
    st.sampled_from(VALID_JWT + ["Bearer " + t for t in VALID_JWT] + ["bearer  " + VALID_JWT[0]]),
    _mutants(VALID_SAS, 2),
    st.tuples(st.sampled_from(VALID_SAS), st.sampled_from(VALID_JWT)).map(lambda t: f"{t[0]},Bearer {t[1]}"),
    ANY_TEXT,
)
_HEADER_NAMES = st.sampled_from(_HEADER_NAME_WORDS)
HEADERS = st.lists(st.tuples(st.one_of(_HEADER_NAMES, st.text(max_size=10)), CREDENTIAL_VALUES), max_size=4)
_HOSTS = st.one_of(
    st.sampled_from([w.HOST, w.HOST.upper() + ":443", w.OTHER_HOST, w.HOST + ".", "", "[::1]"]), ANY_TEXT
)
_METHODS = st.one_of(st.sampled_from(["GET", "POST", "PUT", "DELETE", "get", ""]), ANY_TEXT)
_CONTEXT = st.dictionaries(
    st.sampled_from(["right", "dry_run", "x"]), st.sampled_from(["Listen", "send", "MANAGE", "bogus", "true", ""])
)
# A credential-bearing request on a configured path: the shape most likely to reach an allow if anything is wrong.
PLAUSIBLE_REQUESTS = st.builds(
    w.request,
    st.sampled_from(PATHS[1:]).flatmap(
        lambda p: st.sampled_from([p, p + "?sb-hc-action=listen", p + "?sb-hc-action=connect", p + "?x=1"])
    ),
    host=st.sampled_from([w.HOST, w.HOST.upper(), w.HOST + ":443", w.OTHER_HOST]),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    headers=st.lists(
        st.tuples(st.sampled_from(["ServiceBusAuthorization", "Authorization"]), CREDENTIAL_VALUES), max_size=2
    ),
)
AUTHZ_REQUESTS = st.one_of(
    PLAUSIBLE_REQUESTS,
    st.builds(
        AuthzRequest,
        gateway=st.sampled_from(["envoy-http", "envoy-grpc", "nginx", "forward-auth"]),
        method=_METHODS,
        host=_HOSTS,
        target=TARGETS,
        headers=HEADERS.map(headers_from_pairs),
        context=_CONTEXT,
    ),
)


def _plausible_http(gateway: str, path: str, method: str, credential: tuple[str, str]) -> tuple[Any, ...]:
    """A check request as each gateway really sends it: Envoy forwards the path, NGINX and Traefik describe it."""
    if gateway == "envoy-http":
        return gateway, method, "/ext_authz" + path, [("Host", w.HOST), credential]
    if gateway == "nginx":
        described = [("X-Original-URI", path), ("X-Original-Host", w.HOST), ("X-Original-Method", method)]
        return gateway, "GET", "/auth", [("Host", "authz"), *described, credential]
    described = [("X-Forwarded-Uri", path), ("X-Forwarded-Host", w.HOST), ("X-Forwarded-Method", method)]
    return gateway, "GET", "/forward-auth", [*described, credential]


PLAUSIBLE_HTTP = st.builds(
    _plausible_http,
    st.sampled_from(["envoy-http", "nginx", "forward-auth"]),
    st.sampled_from(PATHS[1:]).flatmap(lambda p: st.sampled_from([p, p + "?sb-hc-action=listen"])),
    st.sampled_from(["GET", "POST", "PUT"]),
    st.tuples(st.sampled_from(["ServiceBusAuthorization", "Authorization", "X-Other"]), CREDENTIAL_VALUES),
)
_ANY_HTTP = st.tuples(
    st.sampled_from(["envoy-http", "nginx", "forward-auth"]),
    _METHODS.filter(lambda m: m.isascii() and m.isalpha()),
    st.one_of(
        st.sampled_from(PATHS[1:]).map(lambda p: "/ext_authz" + p),
        st.sampled_from(
            ["/auth", "/forward-auth", "/ext_authz", "/ext_authzx", "/auth/", "/AUTH", "/ext_authz%2Forders"]
        ),
        TARGETS,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(_HTTP_HEADER_NAMES),
            st.one_of(st.sampled_from([w.HOST, "/orders", "POST", "/public?x"]), CREDENTIAL_VALUES),
        ),
        max_size=6,
    ),
)
HTTP_REQUESTS = st.one_of(PLAUSIBLE_HTTP, _ANY_HTTP)


# -- JSON, JWT, JWK ----------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_ODD_JSON_TEXT = st.sampled_from(_ODD_JSON_WORDS)
_INTERESTING = st.sampled_from(_INTERESTING_VALUES)
_MEMBER_VALUE = st.one_of(_INTERESTING, JSON)


def _edited(base: dict[str, Any], names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some members replaced, removed or added."""
    edits = st.lists(
        st.tuples(
            st.sampled_from([*names, "crit", "b64", "jku", "jwk", "x5c", "d", "k"]),
            st.one_of(st.just(KeyError), _MEMBER_VALUE),
        ),
        max_size=4,
    )

    def apply(changes: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(base)
        for name, value in changes:
            if value is KeyError:
                result.pop(name, None)
            else:
                result[name] = value
        return result

    return edits.map(apply)


_HEADER = {"typ": "JWT", "alg": "RS256", "kid": "rsa-1"}
_CLAIMS = w.jwt_claims()
JWT_HEADERS = st.one_of(_edited(_HEADER, list(_HEADER)).map(lambda h: json.dumps(h).encode()), _ODD_JSON_TEXT)
JWT_PAYLOADS = st.one_of(
    _edited(_CLAIMS, [*_CLAIMS, "_claim_names", "hasgroups"]).map(lambda c: json.dumps(c).encode()),
    _ODD_JSON_TEXT,
    JSON.map(lambda v: json.dumps(v).encode()),
)
JWT_VALUES = st.one_of(
    ANY_TEXT,
    st.sampled_from(VALID_JWT),
    _mutants(VALID_JWT),
    _mutants(["Bearer " + VALID_JWT[1]], 2),
    st.tuples(JWT_HEADERS, JWT_PAYLOADS, st.binary(max_size=80)).map(lambda t: ".".join(w.b64u(part) for part in t)),
    st.sampled_from(["a.b.c", "..", "a.b.", "e30.e30.", "Bearer ", "Bearer a.b.c", "x" * 20000]),
)
_RSA_JWK, _EC_JWK = w.JWKS["keys"]
JWK_OBJECTS = st.one_of(
    _edited(_RSA_JWK, ["kty", "kid", "use", "alg", "key_ops", "n", "e", "issuer"]),
    _edited(_EC_JWK, ["kty", "kid", "use", "alg", "key_ops", "crv", "x", "y", "issuer"]),
    st.builds(
        lambda crv, x, y: {"kty": "EC", "kid": "k", "crv": crv, "x": x, "y": y},
        st.sampled_from(["P-256", "P-384", "P-521", "secp256k1"]),
        st.binary(min_size=31, max_size=67).map(w.b64u),
        st.binary(min_size=31, max_size=67).map(w.b64u),
    ),
    JSON,
)
_JWKS_BYTES = json.dumps(w.JWKS).encode()
JWK_DOCUMENTS = st.one_of(
    st.lists(JWK_OBJECTS, max_size=4).map(lambda keys: json.dumps({"keys": keys}).encode()),
    st.lists(st.sampled_from([_RSA_JWK, _EC_JWK, {**_RSA_JWK, "d": "AA"}]), max_size=4).map(
        lambda keys: json.dumps({"keys": keys}).encode()
    ),
    _ODD_JSON_TEXT,
    st.binary(max_size=200),
    _mutants([_JWKS_BYTES], 3),
)
_DISCOVERY = {"issuer": w.V2_ISSUER, "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys"}
DISCOVERY_DOCUMENTS = st.one_of(
    st.just(json.dumps(_DISCOVERY).encode()),
    _edited(_DISCOVERY, ["issuer", "jwks_uri"]).map(lambda d: json.dumps(d).encode()),
    st.sampled_from(_JWKS_URIS).map(lambda url: json.dumps({**_DISCOVERY, "jwks_uri": url}).encode()),
    st.just(b"!"),
    _ODD_JSON_TEXT,
)
KEY_DOCUMENTS = st.one_of(st.just(_JWKS_BYTES), st.just(b"!"), JWK_DOCUMENTS)


# -- Envoy gRPC CheckRequest -------------------------------------------------------------------------------------

_PB_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)


def _check_request(
    attributes: bool,
    http: bool,
    method: str,
    path: str,
    host: str,
    scheme: str,
    query: str,
    fragment: str,
    headers: dict[str, str],
    raw: list[tuple[str, bytes, str]],
    context: dict[str, str],
) -> Any:
    message = external_auth_pb2.CheckRequest()
    if not attributes:
        return message
    message.attributes.context_extensions.update(context)
    if not http:
        message.attributes.request.SetInParent()
        return message
    h = message.attributes.request.http
    h.method, h.path, h.host, h.scheme, h.query, h.fragment = method, path, host, scheme, query, fragment
    h.headers.update(headers)
    for key, raw_value, value in raw:
        h.header_map.headers.append(base_pb2.HeaderValue(key=key, raw_value=raw_value, value=value))
    return message


_PB_HEADERS = st.dictionaries(
    st.one_of(
        st.sampled_from(_PB_HEADER_NAMES),
        _PB_TEXT,
    ),
    st.one_of(
        CREDENTIAL_VALUES.map(lambda v: v.encode("utf-8", "replace").decode()),
        st.sampled_from([w.HOST, "https", "/orders"]),
    ),
    max_size=4,
)
CHECK_REQUESTS = st.builds(
    _check_request,
    attributes=st.sampled_from([True, True, True, True, False]),
    http=st.sampled_from([True, True, True, False]),
    method=st.one_of(st.sampled_from(["POST", "GET", "PUT", "", "G ET", "X" * 40]), _PB_TEXT),
    path=st.one_of(TARGETS.map(lambda t: t.encode("utf-8", "replace").decode()), _PB_TEXT),
    host=st.one_of(st.sampled_from([w.HOST, "", w.HOST.upper(), "x" * 2000]), _PB_TEXT),
    scheme=st.sampled_from(["", "http", "https", "HTTPS", "ftp"]),
    query=st.sampled_from(["", "", "", "x=1"]),
    fragment=st.sampled_from(["", "", "", "f"]),
    headers=_PB_HEADERS,
    raw=st.lists(
        st.tuples(
            st.sampled_from(["servicebusauthorization", "authorization", ":authority", "x"]),
            st.one_of(st.sampled_from([v.encode() for v in VALID_SAS[:3]]), st.binary(max_size=40)),
            st.sampled_from(["", w.HOST]),
        ),
        max_size=3,
    ),
    context=st.dictionaries(
        st.sampled_from(["right", "dry_run", "x", ""]),
        st.sampled_from(["Listen", "send", "MANAGE", "bogus", "true", "FALSE", "", "y" * 2000]),
        max_size=3,
    ),
)
CHECK_REQUEST_BYTES = st.one_of(
    st.binary(max_size=300),
    _mutants(
        [
            _check_request(
                True,
                True,
                "POST",
                "/orders",
                w.HOST,
                "https",
                "",
                "",
                {"servicebusauthorization": t},
                [],
                {"right": "Send"},
            ).SerializeToString()
            for t in VALID_SAS[:3]
        ],
        6,
    ),
)


# -- configuration -----------------------------------------------------------------------------------------------

_SUB = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Relay/namespaces"
VALID_CONFIG: dict[str, Any] = {
    "namespaces": [
        {
            "name": "contoso",
            "hosts": [w.HOST],
            "resourceId": f"{_SUB}/contoso",
            "authorizationRules": [
                {
                    "keyName": "Root",
                    "primaryKey": w.fake_key("c1"),
                    "secondaryKey": w.fake_key("c2"),
                    "rights": ["Manage", "Listen", "Send"],
                },
                {"keyName": "send", "primaryKey": {"env": "SEND_KEY"}, "rights": ["Send"]},
            ],
            "hybridConnections": [
                {
                    "name": "orders",
                    "requiresClientAuthorization": False,
                    "authorizationRules": [{"keyName": "s", "primaryKey": w.fake_key("c3"), "rights": ["Send"]}],
                },
                {"name": "eu/orders"},
            ],
            "wcfRelays": [{"name": "legacy/echo", "requiresClientAuthorization": True}],
            "managementRoutes": [{"path": "/$admin", "methods": ["PUT", "DELETE"]}],
            "dryRun": False,
        }
    ],
    "identity": {
        "leewaySeconds": 60,
        "issuers": [
            {
                "issuer": w.V2_TEMPLATE,
                "tenants": [w.TENANT],
                "audiences": [w.AUDIENCE],
                "algorithms": ["RS256"],
                "jwks": w.JWKS,
            },
            {
                "issuer": "https://sts.windows.net/{tenantid}/",
                "tenants": [w.TENANT],
                "audiences": [w.AUDIENCE],
                "discoveryUrl": "https://login.microsoftonline.com/x/.well-known/openid-configuration",
            },
        ],
    },
    "roleDefinitions": [
        {
            "roleName": "Custom Sender",
            "id": "9f0c4c3e-1d5b-4c7e-8e2a-3b1f2d4c5e6f",
            "actions": [],
            "dataActions": ["Microsoft.Relay/*/send/action"],
            "notDataActions": ["Microsoft.Relay/namespaces/wcfRelays/*"],
        },
    ],
    "roleAssignments": [
        {
            "principalId": w.OID,
            "principalType": "User",
            "roleDefinitionName": "Azure Relay Sender",
            "scope": f"{_SUB}/contoso/hybridConnections/orders",
        },
        {
            "principalId": w.GROUP,
            "principalType": "Group",
            "roleDefinitionId": "9f0c4c3e-1d5b-4c7e-8e2a-3b1f2d4c5e6f",
            "scope": "/subscriptions/00000000-0000-0000-0000-000000000000",
        },
    ],
    "sas": {"clockSkewSeconds": 300, "maxTokenLifetimeSeconds": None},
    "cache": {
        "configTtlSeconds": 30,
        "decisionTtlSeconds": 60,
        "decisionMaxEntries": 1000,
        "jwksTtlSeconds": 3600,
        "jwksRefreshCooldownSeconds": 30,
    },
    "dryRun": False,
}
VALID_CONFIG_TEXT = yaml.safe_dump(VALID_CONFIG, sort_keys=False).encode()


def _mutate_tree(seed: int, edits: int) -> bytes:
    """VALID_CONFIG with ``edits`` random node edits (replace, delete, add, duplicate), dumped as YAML."""
    rng = random.Random(seed)
    tree = copy.deepcopy(VALID_CONFIG)
    for _ in range(edits):
        nodes: list[tuple[Any, Any]] = []
        stack: list[Any] = [tree]
        while stack:
            node = stack.pop()
            keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
            for key in keys:
                nodes.append((node, key))
                stack.append(node[key])
        container, key = rng.choice(nodes)
        op = rng.randrange(4)
        if op == 0:
            container[key] = copy.deepcopy(rng.choice(_ODD_VALUES))
        elif op == 1:
            del container[key]
        elif op == 2 and isinstance(container, dict):
            name = rng.choice(["unknown", "keyName", "hosts", "rights", "jwksUri", "tenants"])
            container[name] = copy.deepcopy(rng.choice(_ODD_VALUES))
        elif isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
    return yaml.safe_dump(tree, sort_keys=False).encode()


CONFIG_BYTES = st.one_of(
    st.tuples(SEEDS, st.integers(1, 4)).map(lambda t: _mutate_tree(*t)),
    _mutants([VALID_CONFIG_TEXT], 4),
    st.lists(st.sampled_from(_YAML_SNIPPETS), max_size=6).map(b"\n".join),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=200),
)
