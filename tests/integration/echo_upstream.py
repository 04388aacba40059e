"""The upstream application of the integration tests: answers every request with what it received.

Run as a script (``python echo_upstream.py --port N``). The JSON body holds the method, the raw path and query,
every header line in arrival order as ``[name, value]`` pairs (so a header that was stripped, overwritten or
repeated by a gateway is visible) and the body. ``x-echo-upstream: 1`` marks a response that came from here
rather than from the gateway or the authorization service.
"""

from __future__ import annotations

import argparse

from aiohttp import web


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
            "body": body.decode("utf-8", errors="replace"),
        },
        headers={"x-echo-upstream": "1"},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
