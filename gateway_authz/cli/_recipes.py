"""Credentials minted at test time for ``gateway-authz test``: SAS tokens from a configured rule's key and JWTs
signed with a test file's private JWK. Nothing minted here is printed or logged."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jwt as pyjwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ..core.settings import AuthorizationRule
from ..decision.runtime import Runtime
from ..sas.token import sign_sas

__all__ = ["RecipeError", "SigningKeys", "jwt_recipe", "sas_recipe"]

_RECIPE_FIELDS = {"sas": {"rule", "key", "resource", "ttl"}, "jwt": {"key", "claims", "ttl", "bearer"}}


class RecipeError(ValueError):
    """A recipe that cannot be minted (unknown rule or key, bad field): an error in the test file."""


class SigningKeys:
    """The private JWKs of a test file, by name; each must carry ``kid`` (the config trusts the public half)."""

    def __init__(self, raw: object) -> None:
        self._keys: dict[str, tuple[Any, str, str]] = {}
        if raw is None:
            return
        if not isinstance(raw, Mapping):
            raise RecipeError("signingKeys must map a name to a private JWK")
        for name, jwk in raw.items():
            if not isinstance(jwk, Mapping) or jwk.get("kty") not in ("RSA", "EC") or "d" not in jwk:
                raise RecipeError(f"signingKeys.{name}: a private RSA or EC JWK (with d) is required")
            try:
                algorithm = RSAAlgorithm if jwk["kty"] == "RSA" else ECAlgorithm
                key = algorithm.from_jwk(json.dumps(dict(jwk)))
            except (ValueError, KeyError, TypeError, pyjwt.exceptions.InvalidKeyError) as exc:
                raise RecipeError(f"signingKeys.{name}: not a usable private JWK ({type(exc).__name__})") from None
            alg = str(jwk.get("alg") or ("RS256" if jwk["kty"] == "RSA" else "ES256"))
            self._keys[str(name)] = (key, alg, str(jwk.get("kid", name)))

    def get(self, name: str) -> tuple[Any, str, str]:
        found = self._keys.get(name)
        if found is None:
            raise RecipeError(f"no signing key named {name!r} in signingKeys")
        return found


def _fields(kind: str, recipe: object) -> Mapping[str, Any]:
    if not isinstance(recipe, Mapping):
        raise RecipeError(f"a {kind} recipe must be a mapping")
    unknown = set(recipe) - _RECIPE_FIELDS[kind]
    if unknown:
        raise RecipeError(f"unknown {kind} recipe field(s): {', '.join(sorted(map(str, unknown)))}")
    return recipe


def _ttl(recipe: Mapping[str, Any], default: int) -> int:
    ttl = recipe.get("ttl", default)
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise RecipeError("ttl must be a whole number of seconds (negative for a token in the past)")
    return ttl


def sas_recipe(recipe: object, runtime: Runtime, host: str, path: str, scheme: str, now: float) -> str:
    """A SAS token of rule ``rule`` on the namespace ``host`` belongs to (else on the entity ``path`` names)."""
    fields = _fields("sas", recipe)
    name = fields.get("rule")
    if not isinstance(name, str) or not name:
        raise RecipeError("sas.rule must name a rule's keyName")
    try:
        resolved = runtime.policy.resolve(host, path)
    except Exception:
        raise RecipeError(f"no configured namespace serves the host {host}") from None
    rules: tuple[AuthorizationRule, ...] = resolved.namespace.rules
    if resolved.entity is not None:
        rules += resolved.entity.rules
    rule = next((r for r in rules if r.key_name == name), None)
    if rule is None:
        raise RecipeError(f"no rule {name!r} on namespace {resolved.namespace.name} or the entity of {path}")
    slot = fields.get("key", "primary")
    if slot not in ("primary", "secondary"):
        raise RecipeError("sas.key must be primary or secondary")
    key = rule.primary_key if slot == "primary" else rule.secondary_key
    if not key:
        raise RecipeError(f"rule {name!r} has no {slot} key")
    resource = fields.get("resource") or f"{'https' if scheme in ('http', 'https') else scheme}://{host}{path}"
    if not isinstance(resource, str):
        raise RecipeError("sas.resource must be a URI")
    return sign_sas(resource, name, key, int(now) + _ttl(fields, 3600))


def jwt_recipe(recipe: object, keys: SigningKeys, now: float) -> tuple[str, bool]:
    """A signed JWT and whether ``Bearer `` is to be put in front of it in ``Authorization`` (default yes)."""
    fields = _fields("jwt", recipe)
    name = fields.get("key")
    if not isinstance(name, str):
        raise RecipeError("jwt.key must name a signing key")
    key, alg, kid = keys.get(name)
    claims = fields.get("claims", {})
    if not isinstance(claims, Mapping):
        raise RecipeError("jwt.claims must be a mapping")
    issued = int(now)
    payload = {"iat": issued, "nbf": issued, "exp": issued + _ttl(fields, 600), **claims}
    token = pyjwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
    bearer = fields.get("bearer", True)
    if not isinstance(bearer, bool):
        raise RecipeError("jwt.bearer must be true or false")
    return token, bearer
