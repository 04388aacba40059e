"""A real, small OIDC provider for tests: discovery documents, a JWKS with RSA and EC keys, Azure-AD-shaped tokens.

In-process::

    async with OidcProvider() as idp:               # listens on a free loopback port
        token = idp.mint(version="2.0", oid=OID, groups=[GROUP])
        idp.rotate()                                 # new signing key, old one still published
        idp.unpublish(old_kid)                       # removed from the JWKS but can still sign (for "removed key")
        idp.behaviour = Behaviour.DOWN               # connection reset; also ERROR, GARBAGE, HUGE, SLOW, REDIRECT…
        idp.requests["/keys"]                        # fetch counts per path

As a process (for the gateway integration tests)::

    python -P tests/oidc_provider.py --port N --state-dir D   (-P: tests/http would shadow the stdlib http)

writes ``D/provider.json`` (base URL, issuers, tenant) once it listens; control and minting go through
``POST /_admin/mint`` (JSON claims overrides → token), ``/_admin/rotate``, ``/_admin/behaviour`` and
``GET /_admin/stats``. Issuers are Azure's real strings (``https://sts.windows.net/<tid>/`` and
``https://login.microsoftonline.com/<tid>/v2.0``); only the discovery and key URLs are on loopback.
"""

from __future__ import annotations

import sys

# Run as a script, this file's directory (tests/) is first on sys.path, and tests/http would shadow the standard
# library's http package (which aiohttp and PyJWT import). Drop it before anything imports http.
if __name__ == "__main__" and sys.path and sys.path[0] == __import__("os").path.dirname(__file__):
    del sys.path[0]

import argparse
import asyncio
import base64
import collections
import contextlib
import enum
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt as pyjwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RELAY_AUDIENCE = "https://relay.azure.net"
V1_TEMPLATE = "https://sts.windows.net/{tenantid}/"
V2_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _text(value: Mapping[str, Any] | str) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass
class SigningKey:
    """A private key with its kid and JOSE algorithm; ``public_jwk`` is what the JWKS publishes."""

    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def rsa(cls, kid: str | None = None, alg: str = "RS256", bits: int = 2048) -> SigningKey:
        return cls(kid or f"rsa-{uuid.uuid4().hex[:12]}", alg, rsa.generate_private_key(65537, bits))

    @classmethod
    def ec(cls, kid: str | None = None, curve: ec.EllipticCurve | None = None, alg: str = "ES256") -> SigningKey:
        return cls(kid or f"ec-{uuid.uuid4().hex[:12]}", alg, ec.generate_private_key(curve or ec.SECP256R1()))

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        base = (
            RSAAlgorithm.to_jwk(public, as_dict=True)
            if isinstance(public, rsa.RSAPublicKey)
            else (ECAlgorithm.to_jwk(public, as_dict=True))
        )
        return {**base, "kid": self.kid, "use": "sig", "alg": self.alg, **extra}

    def private_jwk(self) -> dict[str, Any]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            base = RSAAlgorithm.to_jwk(self.private, as_dict=True)
        else:
            base = ECAlgorithm.to_jwk(self.private, as_dict=True)
        return {**base, "kid": self.kid, "alg": self.alg}

    @classmethod
    def from_private_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        algorithm = RSAAlgorithm if jwk["kty"] == "RSA" else ECAlgorithm
        private = algorithm.from_jwk(dict(jwk))
        assert isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return cls(jwk["kid"], jwk["alg"], private)

    def sign(self, signing_input: bytes, alg: str | None = None) -> bytes:
        engine = pyjwt.get_algorithm_by_name(alg or self.alg)
        return engine.sign(signing_input, self.private)

    def compact(
        self, header: Mapping[str, Any] | str, payload: Mapping[str, Any] | str, *, alg: str | None = None
    ) -> str:
        """Sign the exact header and payload text given (so duplicate members and odd JSON survive)."""
        signing_input = f"{b64u(_text(header).encode())}.{b64u(_text(payload).encode())}"
        return f"{signing_input}.{b64u(self.sign(signing_input.encode('ascii'), alg))}"


def azure_claims(
    *,
    version: str = "2.0",
    tenant: str = TENANT,
    oid: str | None = None,
    groups: list[str] | None = None,
    audience: str | list[str] = RELAY_AUDIENCE,
    now: float | None = None,
    lifetime: int = 3600,
    **extra: Any,
) -> dict[str, Any]:
    """Claims shaped like an Entra ID access token of ``version`` (v1: sts.windows.net, appid; v2: azp)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": (V1_TEMPLATE if version == "1.0" else V2_TEMPLATE).replace("{tenantid}", tenant),
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "oid": oid or str(uuid.uuid4()),
        "sub": uuid.uuid4().hex,
        "tid": tenant,
        "ver": version,
        ("appid" if version == "1.0" else "azp"): str(uuid.uuid4()),
    }
    if groups is not None:
        claims["groups"] = groups
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


class Behaviour(enum.Enum):
    """How the provider answers discovery and key requests."""

    OK = "ok"
    DOWN = "down"  # connection closed without an answer
    ERROR = "error"  # 503
    GARBAGE = "garbage"  # 200 with HTML
    NOT_OBJECT = "not_object"  # 200 with a JSON array
    HUGE = "huge"  # 200 with a body far over any sane cap, streamed
    SLOW = "slow"  # answers only after `slow_seconds`
    DRIP = "drip"  # sends a valid body one byte at a time, slowly
    REDIRECT = "redirect"  # 302 to another host


class OidcProvider:
    """The provider: an aiohttp app on loopback, its keys, and a token minter."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tenant: str = TENANT,
                 keys: list[SigningKey] | None = None) -> None:  # fmt: skip
        self.host, self.port, self.tenant = host, port, tenant
        self.keys: dict[str, SigningKey] = {}
        self.published: list[str] = []
        for key in keys or [SigningKey.rsa(), SigningKey.ec()]:
            self.add_key(key)
        self.signing_kid = self.published[0]
        self.behaviour = Behaviour.OK
        self.slow_seconds = 30.0
        self.huge_bytes = 2 * 1024 * 1024
        self.extra_jwks_members: list[Any] = []
        self.discovery_issuer_override: str | None = None
        self.requests: collections.Counter[str] = collections.Counter()
        self._runner: web.AppRunner | None = None

    # -- keys ------------------------------------------------------------------------------------------------
    def add_key(self, key: SigningKey, *, publish: bool = True) -> SigningKey:
        self.keys[key.kid] = key
        if publish and key.kid not in self.published:
            self.published.append(key.kid)
        return key

    def rotate(self, key: SigningKey | None = None) -> SigningKey:
        """Publish a new key and sign with it from now on; the old keys stay published."""
        key = self.add_key(key or SigningKey.rsa())
        self.signing_kid = key.kid
        return key

    def unpublish(self, kid: str) -> None:
        """Drop ``kid`` from the JWKS; the key can still sign (a token the relying party must now refuse)."""
        self.published.remove(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.keys[kid].public_jwk() for kid in self.published] + list(self.extra_jwks_members)}

    # -- tokens ----------------------------------------------------------------------------------------------
    def issuer(self, version: str = "2.0", tenant: str | None = None) -> str:
        return (V1_TEMPLATE if version == "1.0" else V2_TEMPLATE).replace("{tenantid}", tenant or self.tenant)

    def mint(self, *, kid: str | None = None, header: Mapping[str, Any] | None = None, **claims: Any) -> str:
        """An Azure-AD-shaped token signed by ``kid`` (default: the current signing key); see :func:`azure_claims`."""
        key = self.keys[kid or self.signing_kid]
        claims.setdefault("tenant", self.tenant)
        return key.compact({"typ": "JWT", "alg": key.alg, "kid": key.kid, **(header or {})}, azure_claims(**claims))

    # -- URLs ------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.base_url}/keys"

    def discovery_url(self, version: str = "2.0", tenant: str | None = None) -> str:
        """Tenant-specific discovery document; ``tenant="common"`` gives the v2 template issuer."""
        middle = f"{tenant or self.tenant}/v2.0" if version == "2.0" else f"{tenant or self.tenant}"
        return f"{self.base_url}/{middle}/.well-known/openid-configuration"

    # -- HTTP ------------------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery_v2)
        app.router.add_get("/{tenant}/.well-known/openid-configuration", self._discovery_v1)
        app.router.add_post("/_admin/mint", self._admin_mint)
        app.router.add_post("/_admin/rotate", self._admin_rotate)
        app.router.add_post("/_admin/behaviour", self._admin_behaviour)
        app.router.add_get("/_admin/stats", self._admin_stats)
        return app

    async def _answer(self, request: web.Request, document: Any) -> web.StreamResponse:
        self.requests[request.path] += 1
        behaviour = self.behaviour
        if behaviour is Behaviour.DOWN:
            if request.transport is not None:
                request.transport.abort()  # a reset: the client sees the connection drop, no answer
            return web.Response(status=503)
        if behaviour is Behaviour.ERROR:
            return web.Response(status=503, text="upstream trouble")
        if behaviour is Behaviour.GARBAGE:
            return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")
        if behaviour is Behaviour.NOT_OBJECT:
            return web.json_response([1, 2, 3])
        if behaviour is Behaviour.REDIRECT:
            raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
        if behaviour is Behaviour.SLOW:
            await asyncio.sleep(self.slow_seconds)
        body = json.dumps(document).encode()
        if behaviour in (Behaviour.HUGE, Behaviour.DRIP):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            if behaviour is Behaviour.HUGE:
                chunk = b" " * 65536
                for _ in range(self.huge_bytes // len(chunk)):
                    await response.write(chunk)
            else:
                for byte in body:
                    await response.write(bytes([byte]))
                    await asyncio.sleep(0.05)
            await response.write_eof()
            return response
        return web.Response(body=body, content_type="application/json")

    async def _keys(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self.jwks())

    async def _discovery(self, request: web.Request, template: str) -> web.StreamResponse:
        tenant = request.match_info["tenant"]
        issuer = template if tenant in ("common", "organizations") else template.replace("{tenantid}", tenant)
        document = {
            "issuer": self.discovery_issuer_override or issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": f"{self.base_url}/{tenant}/oauth2/token",
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        return await self._answer(request, document)

    async def _discovery_v2(self, request: web.Request) -> web.StreamResponse:
        return await self._discovery(request, V2_TEMPLATE)

    async def _discovery_v1(self, request: web.Request) -> web.StreamResponse:
        return await self._discovery(request, V1_TEMPLATE)

    async def _admin_mint(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"token": self.mint(**body)})

    async def _admin_rotate(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        old = self.signing_kid
        new = self.rotate()
        if body.get("unpublish_old"):
            self.unpublish(old)
        return web.json_response({"kid": new.kid, "previous": old})

    async def _admin_behaviour(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.behaviour = Behaviour(body["behaviour"])
        return web.json_response({"behaviour": self.behaviour.value})

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": dict(self.requests), "published": self.published})

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OidcProvider:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def load_signing_keys(state_dir: Path) -> list[SigningKey]:
    """The keys a provider process wrote to ``state_dir/keys.json`` (so a test can mint without HTTP)."""
    members = json.loads((state_dir / "keys.json").read_text())["keys"]
    return [SigningKey.from_private_jwk(member) for member in members]


async def _serve(args: argparse.Namespace) -> None:
    state = Path(args.state_dir) if args.state_dir else None
    keys = load_signing_keys(state) if state and (state / "keys.json").exists() else None
    provider = OidcProvider(host=args.host, port=args.port, tenant=args.tenant, keys=keys)
    await provider.start()
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
        (state / "keys.json").write_text(json.dumps({"keys": [k.private_jwk() for k in provider.keys.values()]}))
        info = {
            "base_url": provider.base_url,
            "port": provider.port,
            "tenant": provider.tenant,
            "jwks_uri": provider.jwks_uri,
            "issuer_v1": provider.issuer("1.0"),
            "issuer_v2": provider.issuer("2.0"),
            "discovery_v1": provider.discovery_url("1.0"),
            "discovery_v2": provider.discovery_url("2.0"),
            "signing_kid": provider.signing_kid,
        }
        tmp = state / "provider.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(state / "provider.json")
    try:
        await asyncio.Event().wait()
    finally:
        await provider.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A small OIDC provider for gateway-authz tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tenant", default=TENANT)
    parser.add_argument("--state-dir", default=None)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
