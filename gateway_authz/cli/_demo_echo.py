"""The demo's upstream application: answers every request 200 with what it received, as JSON.

Run as ``python -m gateway_authz.cli._demo_echo --port N`` (loopback only). The ``x-authz-*`` headers in its
answer show what the authorizer told the gateway to pass on; the credential headers are gone.
"""

from __future__ import annotations

import argparse

from aiohttp import web

__all__ = ["main"]


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": [[name, value] for name, value in request.headers.items()],
            "body_bytes": len(body),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
