"""The admin listener's operator views: ``GET /`` (HTML), ``GET /status.json`` and ``POST /explain``.

Registered on the admin application by :func:`add_operator_views` (one call in ``create_admin_app``). Explain
changes nothing in the service (see :mod:`gateway_authz.decision.explain`).
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from ..core.appkeys import HOLDER, JWT, SERVICE
from ..decision.described import MAX_DESCRIPTION_BYTES, DescriptionError, described_request
from ..decision.explain import explain
from .status_facts import status_facts
from .status_page import render_status_page

__all__ = ["add_operator_views"]

_NO_STORE = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
# The page needs no script, frame or outside resource: say so, so a browser refuses any that slipped in.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def add_operator_views(admin: web.Application, decision_app: web.Application) -> None:
    holder, service, jwt = decision_app[HOLDER], decision_app[SERVICE], decision_app[JWT]
    started_at = time.time()

    def facts() -> dict[str, object]:
        return status_facts(holder, service, jwt, started_at=started_at)

    async def page(_request: web.Request) -> web.Response:
        return web.Response(
            text=render_status_page(facts()),
            content_type="text/html",
            headers={**_NO_STORE, "content-security-policy": _CSP},
        )

    async def status_json(_request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(facts()), content_type="application/json", headers=_NO_STORE)

    async def explain_handler(request: web.Request) -> web.Response:
        body = await request.content.read(MAX_DESCRIPTION_BYTES + 1)
        if len(body) > MAX_DESCRIPTION_BYTES:
            return _bad_request(f"the body is larger than {MAX_DESCRIPTION_BYTES} bytes")
        try:
            described = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _bad_request("the body is not JSON")
        if not isinstance(described, dict):
            return _bad_request('the body must be {"method": ..., "url": ..., "headers": {...}}')
        try:
            authz_request = described_request(
                described.get("method", "GET"), described.get("url"), described.get("headers")
            )
        except DescriptionError as exc:
            return _bad_request(str(exc))
        explanation = explain(holder.runtime, authz_request, now=time.time(), keys=jwt.keys)
        return web.Response(
            body=orjson.dumps(explanation.to_json()), content_type="application/json", headers=_NO_STORE
        )

    admin.router.add_get("/", page)
    admin.router.add_get("/status.json", status_json)
    admin.router.add_post("/explain", explain_handler)


def _bad_request(message: str) -> web.Response:
    return web.Response(
        status=400, body=orjson.dumps({"error": message}), content_type="application/json", headers=_NO_STORE
    )
