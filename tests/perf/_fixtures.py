"""What the perf scripts share: the benchmark namespace, SAS and JWT tokens for it, and a few process facts.

The namespace is small and realistic: one namespace rule with every right, and a hybrid connection ``orders``
with its own Send rule. Every benchmark request is ``GET /orders`` on ``contoso.servicebus.windows.net`` with a
token signed by the ``orders-send`` entity rule: the path a real sender takes (entity resolution, an entity
rule, scope by whole segments). Unique tokens differ only in ``se``, so each has its own signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `python tests/perf/x.py` as well as `python -m tests.perf.x`
    sys.path.insert(0, str(REPO_ROOT))

from gateway_authz.sas.token import SAS_PREFIX, sign_sas  # noqa: E402

HOST = "contoso.servicebus.windows.net"
PATH = "/orders"
RESOURCE = f"sb://{HOST}{PATH}"
KEY_NAME = "orders-send"
# Fixed benchmark keys (generated once for this file): only ever used on loopback.
ORDERS_KEY = "Zm9yLWJlbmNobWFya3Mtb25seS0xMjM0NTY3ODkwYWI="
ROOT_KEY = "YmVuY2htYXJrLXJvb3Qta2V5LW5vdC1hLXNlY3JldDA="
SECONDARY_KEY = "c2Vjb25kYXJ5LWJlbmNobWFyay1rZXktMDEyMzQ1Njc="

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"
AUDIENCE = "https://relay.azure.net"
OID = "22222222-2222-2222-2222-222222222222"
KID = "bench-rsa-1"


def config(*, jwks: dict[str, Any] | None = None, decision_max_entries: int = 100_000) -> dict[str, Any]:
    """The benchmark configuration; with ``jwks`` also an Entra-style issuer and a Sender role assignment."""
    data: dict[str, Any] = {
        "namespaces": [
            {
                "name": "contoso",
                "hosts": [HOST],
                "authorizationRules": [
                    {
                        "keyName": "RootManageSharedAccessKey",
                        "primaryKey": ROOT_KEY,
                        "secondaryKey": SECONDARY_KEY,
                        "rights": ["Manage", "Listen", "Send"],
                    }
                ],
                "hybridConnections": [
                    {
                        "name": "orders",
                        "requiresClientAuthorization": True,
                        "authorizationRules": [
                            {
                                "keyName": KEY_NAME,
                                "primaryKey": ORDERS_KEY,
                                "secondaryKey": SECONDARY_KEY,
                                "rights": ["Send"],
                            }
                        ],
                    }
                ],
            }
        ],
        "sas": {"clockSkewSeconds": 300},
        "cache": {"configTtlSeconds": 30, "decisionTtlSeconds": 60, "decisionMaxEntries": decision_max_entries},
    }
    if jwks is not None:
        data["identity"] = {
            "leewaySeconds": 60,
            "issuers": [
                {"issuer": ISSUER, "tenants": [TENANT], "audiences": [AUDIENCE], "jwks": jwks, "algorithms": ["RS256"]}
            ],
        }
        data["roleAssignments"] = [
            {
                "principalId": OID,
                "principalType": "ServicePrincipal",
                "roleDefinitionName": "Azure Relay Sender",
                "scope": "/subscriptions/-/resourceGroups/-/providers/Microsoft.Relay/namespaces/contoso",
            }
        ]
    return data


def sas_token(expiry: int | None = None) -> str:
    """A valid ``orders-send`` token for ``/orders``, signed as the Azure SDKs sign one."""
    return sign_sas(RESOURCE, KEY_NAME, ORDERS_KEY, expiry if expiry is not None else int(time.time()) + 7200)


def unique_sas_tokens(count: int, *, start: int | None = None) -> Iterator[str]:
    """``count`` distinct valid tokens (consecutive ``se`` values from ``start``, hours ahead by default).

    Byte for byte what :func:`sas_token` (the SDKs' signing) gives for each ``se``, with the HMAC key schedule
    and the URI encoding done once, so that a few hundred thousand tokens take a second or two.
    """
    first = start if start is not None else int(time.time()) + 7200
    encoded_uri = quote_plus(RESOURCE)
    prefix = f"{SAS_PREFIX}sr={encoded_uri}&sig="
    keyed = hmac.new(ORDERS_KEY.encode(), digestmod=hashlib.sha256)
    for expiry in range(first, first + count):
        mac = keyed.copy()
        mac.update(f"{encoded_uri}\n{expiry}".encode())
        yield f"{prefix}{quote_plus(base64.b64encode(mac.digest()).decode())}&se={expiry}&skn={KEY_NAME}"


class JwtSigner:
    """An RSA-2048 signing key for the benchmark issuer, its public JWKS, and Entra-v2-shaped RS256 tokens."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa
        from jwt.algorithms import RSAAlgorithm

        self._private = rsa.generate_private_key(65537, 2048)
        public = RSAAlgorithm.to_jwk(self._private.public_key(), as_dict=True)
        self.jwks = {"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]}

    @property
    def public_key(self) -> Any:
        return self._private.public_key()

    def token(self, *, lifetime: int = 7200, jti: str | None = None) -> str:
        import jwt as pyjwt

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "tid": TENANT,
            "oid": OID,
            "sub": OID,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + lifetime,
            "ver": "2.0",
            "uti": jti or base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
        }
        return str(pyjwt.encode(claims, self._private, algorithm="RS256", headers={"kid": KID, "typ": "JWT"}))


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc status")


def machine() -> str:
    """``nproc`` and the CPU model, for every report."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, Python {sys.version.split()[0]}"
