"""One fixed world for the property tests and the fuzz harnesses: a configuration, its keys, tokens, a service.

Built straight from the frozen settings dataclasses (no config file) so that a harness depends only on the code
it exercises: two namespaces, namespace and entity rules (one key name on two entities with different keys), an
anonymous-send entity, management routes, and a JWT issuer with an RSA and an EC key. :class:`World` wraps a
:class:`DecisionService` over that configuration; it checks every audit line for key material as it is written
and knows enough to tell whether an allow was earned (:meth:`World.explain_allow`).

Decisions are driven without an event loop (:func:`drive`): with inline JWT keys the decision core never suspends
(no key fetch, no I/O), so a harness iteration costs no loop round trip and leaves no loop behind.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import unquote

import jwt as pyjwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from gateway_authz.core.credentials import find_credential, parse_query
from gateway_authz.core.metrics import Metrics
from gateway_authz.core.model import AuthzRequest, Decision, Right, headers_from_pairs
from gateway_authz.core.resources import split_target
from gateway_authz.core.settings import (
    AuthorizationRule,
    Entity,
    EntityKind,
    Identity,
    Issuer,
    ManagementRoute,
    Namespace,
    RoleAssignment,
    SasSettings,
    Settings,
)
from gateway_authz.decision.audit import AuditLog
from gateway_authz.decision.runtime import Runtime
from gateway_authz.decision.service import DecisionService
from gateway_authz.entra.authorizer import EntraAuthorizer
from gateway_authz.entra.issuers import IssuerRegistry
from gateway_authz.entra.jwk import KeySet, parse_jwk_set
from gateway_authz.entra.jwt import VerifiedJwt, bearer_token
from gateway_authz.entra.roles import BUILTIN_ROLES
from gateway_authz.sas.token import SAS_PREFIX, parse_sas, sign_sas

T = TypeVar("T")

NOW = 1_800_000_000
HOST = "contoso.servicebus.windows.net"
OTHER_HOST = "fabrikam.servicebus.windows.net"
ALL_RIGHTS = frozenset(Right)
SEND, LISTEN = frozenset({Right.SEND}), frozenset({Right.LISTEN})


def fake_key(label: str) -> str:
    """A 44-character base64 key string, as Azure provisions one; fixed per ``label``, fake."""
    return base64.b64encode(hashlib.sha256(f"gateway-authz fuzz {label}".encode()).digest()).decode()


ROOT = AuthorizationRule("RootManageSharedAccessKey", fake_key("root primary"), fake_key("root secondary"), ALL_RIGHTS)
SEND_ONLY = AuthorizationRule("SendOnly", fake_key("send only"), None, SEND)
LISTEN_ONLY = AuthorizationRule("ListenOnly", fake_key("listen only"), "", LISTEN)
ORDERS_SEND = AuthorizationRule("orders-send", fake_key("orders send"), None, SEND)
ORDERS_LISTEN = AuthorizationRule("orders-listen", fake_key("orders listen"), fake_key("orders listen 2"), LISTEN)
SHARED_ON_ORDERS = AuthorizationRule("shared", fake_key("shared on orders"), None, ALL_RIGHTS)
SHARED_ON_ORDERS2 = AuthorizationRule("shared", fake_key("shared on orders2"), None, SEND)
PRIORITY_SEND = AuthorizationRule("priority-send", fake_key("priority send"), None, SEND)
FABRIKAM_ROOT = AuthorizationRule("RootManageSharedAccessKey", fake_key("fabrikam root"), None, ALL_RIGHTS)

NAMESPACE_RULES = (ROOT, SEND_ONLY, LISTEN_ONLY)
HC, WCF = EntityKind.HYBRID_CONNECTION, EntityKind.WCF_RELAY
ENTITIES = (
    Entity(HC, "orders", True, (ORDERS_SEND, ORDERS_LISTEN, SHARED_ON_ORDERS)),
    Entity(HC, "orders/priority", True, (PRIORITY_SEND,)),
    Entity(HC, "orders2", True, (SHARED_ON_ORDERS2,)),
    Entity(HC, "eu/orders", True, ()),
    Entity(HC, "public", False, ()),
    Entity(WCF, "legacy/echo", True, ()),
)
ENTITY_RULES = {entity.name: entity.rules for entity in ENTITIES}
MANAGEMENT_ROUTES = (ManagementRoute("/$admin", frozenset({"PUT", "DELETE"})), ManagementRoute("/$ops"))
# Every rule with the (lower-case) entity it sits on, "" for the namespace: who may have signed a token.
SIGNERS: tuple[tuple[str, str, AuthorizationRule], ...] = (
    *((HOST, "", rule) for rule in NAMESPACE_RULES),
    *((HOST, entity.name.lower(), rule) for entity in ENTITIES for rule in entity.rules),
    (OTHER_HOST, "", FABRIKAM_ROOT),
)
SECRETS = tuple({k for _, _, r in SIGNERS for k in (r.primary_key, r.secondary_key) if k})

# -- JWT: one v2 issuer with an RSA and an EC key, published inline ----------------------------------------------

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
V2_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
V2_ISSUER = V2_TEMPLATE.replace("{tenantid}", TENANT)
AUDIENCE = "https://relay.azure.net"
OID = "0b9c6b1e-3c0f-4a6e-9a49-1f6a3c1a2b3d"
GROUP = "5e1b7f1a-8c3e-4d7a-9b2c-7d6e5f4a3b2c"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.derive_private_key(0x5EED_F022_C0FF_EE00_1234_5678_9ABC_DEF0, ec.SECP256R1())


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    return b64u(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


def _public_jwks() -> dict[str, Any]:
    rsa_numbers = RSA_KEY.public_key().public_numbers()
    ec_numbers = EC_KEY.public_key().public_numbers()
    return {
        "keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": _uint(rsa_numbers.n), "e": _uint(rsa_numbers.e)},
            {
                "kty": "EC",
                "kid": "ec-1",
                "crv": "P-256",
                "x": _uint(ec_numbers.x, 32),
                "y": _uint(ec_numbers.y, 32),
            },
        ]
    }


JWKS = _public_jwks()
ISSUER = Issuer(issuer=V2_TEMPLATE, tenants=(TENANT,), audiences=(AUDIENCE,), algorithms=("RS256", "ES256"), jwks=JWKS)
IDENTITY = Identity(leeway_seconds=60, issuers=(ISSUER,))
REGISTRY = IssuerRegistry(IDENTITY.issuers)
KEYSET: KeySet = parse_jwk_set(JWKS)


def jwt_claims(**changes: Any) -> dict[str, Any]:
    """Azure-AD-shaped v2 claims that verify at :data:`NOW`; ``None`` values drop a claim."""
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "iss": V2_ISSUER,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "exp": NOW + 3600,
        "tid": TENANT,
        "oid": OID,
        "sub": "subject",
        "groups": [GROUP],
        "ver": "2.0",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def jws_sign(signing_input: bytes, alg: str) -> bytes:
    """An RS256 (RSA key) or ES256 (EC key, raw r||s) signature over ``signing_input``."""
    if alg == "ES256":
        r, s = decode_dss_signature(EC_KEY.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return RSA_KEY.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def jwt_from_text(header: bytes, payload: bytes, alg: str = "RS256") -> str:
    """A compact JWS over the exact header and payload bytes, genuinely signed by the world's key for ``alg``."""
    signing_input = f"{b64u(header)}.{b64u(payload)}".encode("ascii")
    return f"{signing_input.decode()}.{b64u(jws_sign(signing_input, alg))}"


def jwt_token(alg: str = "RS256", *, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A valid token (with ``claims`` changes) signed by the RSA (RS256) or EC (ES256) key."""
    head = {"typ": "JWT", "alg": alg, "kid": "rsa-1" if alg == "RS256" else "ec-1", **(header or {})}
    return jwt_from_text(json.dumps(head).encode(), json.dumps(jwt_claims(**claims)).encode(), alg)


# -- Azure RBAC: three principals, built-in roles at entity, namespace and resource-group scope --------------------

OWNER_OID = "7d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
NS_SCOPE = "/subscriptions/-/resourceGroups/-/providers/Microsoft.Relay/namespaces/contoso"
ASSIGNMENTS = (
    RoleAssignment(OID, "User", "26baccc8-eea7-41f1-98f4-1762cc7f685d", f"{NS_SCOPE}/hybridConnections/orders"),
    RoleAssignment(GROUP, "Group", "26e0b698-aa6d-4085-9386-aadae190014d", NS_SCOPE),
    RoleAssignment(
        OWNER_OID, "ServicePrincipal", "2787bf04-f1f5-4bfe-8383-c8a24483ee38", "/subscriptions/-/resourceGroups/-"
    ),
)
ROLE_RIGHTS = {"Azure Relay Owner": ALL_RIGHTS, "Azure Relay Sender": SEND, "Azure Relay Listener": LISTEN}
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")


def _pyjws_accepts(token: str, alg: str) -> bool:
    """PyJWT's own JWS layer (no claim checks) as the second opinion on a signature."""
    key = RSA_KEY.public_key() if alg.startswith(("RS", "PS")) else EC_KEY.public_key()
    try:
        pyjwt.api_jws.PyJWS().decode_complete(token, key=key, algorithms=[alg])
    except pyjwt.PyJWTError:
        return False
    return True


def jwt_oracle(token: str, verified: VerifiedJwt | None = None) -> dict[str, Any]:
    """Assert that ``token`` deserves to verify, judged from its own text (not the verifier's intermediate values).

    Returns its claims. With ``verified``, the verifier's result must also agree with them.
    """
    head_text, payload_text, _ = token.split(".")
    header = json.loads(pyjwt.utils.base64url_decode(head_text))
    claims: dict[str, Any] = json.loads(pyjwt.utils.base64url_decode(payload_text))
    assert header["alg"] in ("RS256", "ES256") and "crit" not in header
    assert header["kid"] == ("rsa-1" if header["alg"] == "RS256" else "ec-1")
    assert _pyjws_accepts(token, header["alg"]), "PyJWS does not verify a signature we accepted"
    assert claims["iss"] == V2_ISSUER and claims["tid"].lower() == TENANT
    exp = claims["exp"]
    assert type(exp) in (int, float) and exp + 60 > NOW
    for name in ("nbf", "iat"):
        if name in claims:
            assert type(claims[name]) in (int, float) and claims[name] <= NOW + 60
    aud = claims["aud"]
    assert AUDIENCE in (aud if isinstance(aud, list) else [aud])
    assert _GUID.fullmatch(claims["oid"])
    if verified is not None:
        assert (verified.issuer, verified.expires_at, verified.audience) == (V2_ISSUER, exp, AUDIENCE)
        assert verified.oid == claims["oid"].lower() and verified.tenant == TENANT
    return claims


# -- the SAS configuration ---------------------------------------------------------------------------------------


def contoso(
    rules: Sequence[AuthorizationRule] = NAMESPACE_RULES,
    entities: Sequence[Entity] = ENTITIES,
    routes: Sequence[ManagementRoute] = MANAGEMENT_ROUTES,
) -> Namespace:
    return Namespace("contoso", (HOST,), tuple(rules), tuple(entities), management_routes=tuple(routes))


def fabrikam() -> Namespace:
    return Namespace("fabrikam", (OTHER_HOST,), (FABRIKAM_ROOT,), (Entity(HC, "orders", True, ()),))


def make_settings(namespaces: Iterable[Namespace] | None = None, **changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "sas": SasSettings(clock_skew_seconds=300),
        "identity": IDENTITY,
        "role_definitions": BUILTIN_ROLES,
        "role_assignments": ASSIGNMENTS,
        "fingerprint": "fuzz",
    }
    fields.update(changes)
    return Settings(namespaces=tuple(namespaces) if namespaces is not None else (contoso(), fabrikam()), **fields)


def sas_token(
    path: str = "/orders",
    rule: AuthorizationRule = ROOT,
    *,
    secondary: bool = False,
    host: str = HOST,
    scheme: str = "sb",
    expiry: int = NOW + 3600,
) -> str:
    """A token signed as the official SDKs sign one (``sign_sas`` equals ``azure-servicebus`` byte for byte)."""
    key = rule.secondary_key if secondary and rule.secondary_key else rule.primary_key
    return sign_sas(f"{scheme}://{host}{path}", rule.key_name, key, expiry)


def hand_sas(raw_sr: str, rule: AuthorizationRule = ROOT, *, se: str = str(NOW + 3600), raw_skn: str = "") -> str:
    """A token over an ``sr`` spelled exactly as given (already percent-encoded), signed over that raw text."""
    mac = hmac.new(rule.primary_key.encode(), f"{raw_sr}\n{se}".encode(), hashlib.sha256).digest()
    sig = base64.b64encode(mac).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    return f"{SAS_PREFIX}sr={raw_sr}&sig={sig}&se={se}&skn={raw_skn or rule.key_name}"


def request(
    path: str = "/orders",
    *,
    host: str = HOST,
    method: str = "POST",
    headers: Iterable[tuple[str, str]] = (),
    gateway: Any = "envoy-http",
    context: dict[str, str] | None = None,
) -> AuthzRequest:
    return AuthzRequest(
        gateway=gateway,
        method=method,
        host=host,
        target=path,
        headers=headers_from_pairs(headers),
        context=dict(context or {}),
    )


def drive(coroutine: Awaitable[T]) -> T:
    """Run a coroutine that never suspends (the decision core of a world with inline keys) to its result."""
    assert isinstance(coroutine, Coroutine)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the coroutine suspended; drive() only runs code that never waits")


class _Source:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime


class World:
    """A decision service over ``settings`` (the world's by default) at the fixed clock :data:`NOW`."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or make_settings()
        self.source = _Source(Runtime.build(self.settings, clock=lambda: NOW))
        self.audit_lines = 0
        self.allows: collections.Counter[str] = collections.Counter()  # earned allows by kind, for the figures
        metrics = Metrics(clock=lambda: NOW)
        self.entra = EntraAuthorizer(self.settings, metrics=metrics)  # inline keys: verifying never suspends
        self.service = DecisionService(
            self.source, audit=AuditLog(self._audit), metrics=metrics, clock=lambda: NOW, jwt=self.entra
        )

    def _audit(self, line: bytes) -> None:
        self.audit_lines += 1
        assert line.endswith(b"\n") and line.count(b"\n") == 1, line
        for secret in SECRETS:
            assert secret.encode() not in line, "an audit line holds a key"

    def decide(self, request: AuthzRequest) -> Decision:
        return drive(self.service.decide(request))

    def check(self, request: AuthzRequest) -> Decision:
        """Decide and assert what holds for every decision; an allow must be explained by :meth:`explain_allow`.

        A dry-run pass (a deny answered 200, ``Decision.dry_run``) is only accepted where dry-run is switched on.
        """
        decision = self.decide(request)
        assert decision.reason != "internal_error", (decision, request)
        assert decision.status in (200, 401, 403), (decision, request)
        assert decision.allowed is (decision.status == 200), decision
        if decision.dry_run:  # a deny answered 200 because the operator said so; it vouches for nobody
            assert request.context.get("dry_run", "").lower() == "true" or self.settings.dry_run, request
            assert decision.allowed and decision.auth == "anonymous" and not decision.principal, decision
            self.allows["dry-run"] += 1
        elif decision.allowed:
            self.explain_allow(request, decision)
            self.allows[decision.auth] += 1
        return decision

    def explain_allow(self, request: AuthzRequest, decision: Decision) -> None:
        """Assert that an allow was earned, by checks of its own rather than the decision path's.

        Anonymous: a Send to the open entity with no credential at all. SAS: a configured key really produced the
        HMAC, the token is unexpired, its ``sr`` covers the path by whole segments and an entity rule sits on the
        resolved entity. JWT: the token passes :func:`jwt_oracle` and an assignment of its ``oid`` or one of its
        groups (none on an overage) covers the resource's ARM id with a role holding the right.
        """
        path, query = split_target(request.target)
        facts = parse_query(query)
        found = find_credential(request, facts)
        if decision.auth == "anonymous":
            assert found is None, "anonymous allow although a credential was sent"
            assert decision.entity == "public" and decision.right is Right.SEND, decision
            return
        if decision.auth == "jwt":
            assert found is not None and found.kind == "jwt", decision
            claims = jwt_oracle(bearer_token(found.value))
            overage = claims.get("hasgroups") is True or "groups" in (claims.get("_claim_names") or {})
            principals = {claims["oid"].lower(), *(() if overage else (g.lower() for g in claims.get("groups", [])))}
            grants = [a for a in ASSIGNMENTS if a.principal_id in principals and a.scope == decision.audit["scope"]]
            assert grants, f"no assignment of {principals} at {decision.audit['scope']}"
            entity = next((e for e in ENTITIES if e.name == decision.entity), None)
            arm = (f"{NS_SCOPE}/{entity.kind.value}/{entity.name}" if entity else NS_SCOPE).lower()
            scope = grants[0].scope.lower()
            assert arm == scope or arm.startswith(scope + "/"), (arm, scope)
            role = decision.audit["role"]
            assert decision.right in ROLE_RIGHTS[role], (role, decision.right)
            return
        assert decision.auth == "sas" and found is not None and found.kind == "sas", decision
        token = parse_sas(found.value)
        assert token.expiry + self.settings.sas.clock_skew_seconds > NOW
        signers = [
            (host, entity, rule)
            for host, entity, rule in SIGNERS
            if rule.key_name == token.key_name
            and any(
                hmac.compare_digest(
                    hmac.new(k.encode(), token.string_to_sign, hashlib.sha256).digest(), token.signature
                )
                for k in (rule.primary_key, rule.secondary_key)
                if k
            )
        ]
        assert signers, "allowed a SAS token no configured key signed"
        host, signer_entity, rule = signers[0]
        assert token.resource.host == host
        requested = tuple(unquote(s).lower() for s in path.strip("/").split("/") if s)
        if requested[:1] == ("$hc",):
            requested = requested[1:]
        assert requested[: len(token.resource.segments)] == token.resource.segments, "sr does not cover the request"
        if signer_entity:
            assert decision.entity.lower() == signer_entity, "an entity rule allowed another entity"
        assert all(rule.grants(right) for right in (decision.right,) if right is not None)
