"""A stand-in authorizer for testing a gateway config's header plumbing, not the service's decisions.

Run as a script (``python stub_authz.py --port N``). It prints every check it receives as one JSON line on stdout
(method, path, headers) and answers, by the original path (Envoy: the request path; NGINX: ``X-Original-URI``):
a path containing ``/allow`` is allowed (200 and the ``x-authz-*`` headers), anything else denied with 401 in the
service's format. Every answer carries ``x-authz-decision-id: stub-<n>``, the header the service will set, so a
test can follow where a gateway passes it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

from aiohttp import web

_COUNTER = itertools.count(1)


async def _check(request: web.Request) -> web.Response:
    print(
        json.dumps({"method": request.method, "path_qs": request.raw_path, "headers": list(request.headers.items())}),
        flush=True,
    )
    original = request.headers.get("X-Original-URI", request.raw_path)
    decision_id = f"stub-{next(_COUNTER)}"
    if "/allow" in original:
        return web.Response(
            status=200,
            headers={
                "x-authz-auth": "sas",
                "x-authz-principal": "stub",
                "x-authz-right": "Send",
                "x-authz-decision-id": decision_id,
            },
        )
    return web.Response(
        status=401,
        body=b'{"error":"a valid credential is required","reason":"stub_denied"}',
        headers={
            "content-type": "application/json",
            "www-authenticate": 'SharedAccessSignature realm="stub"',
            "x-authz-reason": "stub_denied",
            "x-authz-decision-id": decision_id,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _check)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
