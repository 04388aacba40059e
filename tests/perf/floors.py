"""The floors: do-nothing allow-all authorizers that every gateway-authz row is measured against.

``--kind http``: an aiohttp routed ``web.Application`` (one catch-all route, default asyncio loop, one process)
answering 200 with no body to anything, so it serves both Envoy's ``/ext_authz/...`` and NGINX's ``/auth``.
With ``--uvloop --lowlevel`` the same handler runs on uvloop under aiohttp's low-level ``web.Server``: not a
floor but a reference, the most any aiohttp handler can reach (the benchmark's ``*-bare`` rows). With
``--answer-headers`` the floor's 200 carries the headers of gateway-authz's SAS allow (``x-authz-*`` and
``x-envoy-auth-headers-to-remove``): what the gateway does with them, which the floor itself never asks of it.
``--kind grpc``: a grpc.aio ``envoy.service.auth.v3.Authorization/Check`` answering ``OK`` to every call.

They decide nothing; what they cost is the price of the framework and the round trip alone. Run as scripts::

    python tests/perf/floors.py --kind http --port 18080
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

# The headers of the benchmark's SAS allow (key orders-send, Send on the orders entity), as gateway-authz sends them.
ANSWER_HEADERS = {
    "x-authz-auth": "sas",
    "x-authz-principal": "orders-send",
    "x-authz-right": "Send",
    "x-envoy-auth-headers-to-remove": "servicebusauthorization",
}


def _serve_http(host: str, port: int, *, lowlevel: bool, answer_headers: bool) -> None:
    from aiohttp import web

    headers = ANSWER_HEADERS if answer_headers else None

    async def allow(_request: web.BaseRequest) -> web.Response:
        return web.Response(headers=headers)

    if lowlevel:  # aiohttp's low-level server: no application, no router
        asyncio.run(_serve_lowlevel(host, port, allow))
        return
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", allow)
    web.run_app(app, host=host, port=port, access_log=None, print=None)


async def _serve_lowlevel(host: str, port: int, handler: Any) -> None:
    from aiohttp import web

    runner = web.ServerRunner(web.Server(handler, access_log=None))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await asyncio.Event().wait()


async def _serve_grpc(host: str, port: int) -> None:
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
    from google.rpc import status_pb2

    ok = external_auth_pb2.CheckResponse(status=status_pb2.Status(code=0))

    class Allow:
        async def Check(self, request: Any, context: Any) -> Any:
            return ok

    server = grpc.aio.server()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Allow(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("http", "grpc"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="on uvloop instead of the default asyncio loop")
    parser.add_argument("--lowlevel", action="store_true", help="http: aiohttp's low-level web.Server, no router")
    parser.add_argument("--answer-headers", action="store_true", help="http: allow with gateway-authz's headers")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    if args.kind == "http":
        _serve_http(args.host, args.port, lowlevel=args.lowlevel, answer_headers=args.answer_headers)
    else:
        asyncio.run(_serve_grpc(args.host, args.port))


if __name__ == "__main__":
    main()
