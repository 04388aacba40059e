"""A WebSocket echo application for the long-lived-socket tests.

Run as a script (``python ws_upstream.py --port N``). A WebSocket handshake on any path is accepted and every text
message is sent back; the socket is never closed by this side, and no pings are sent (``heartbeat`` off), so an
idle socket stays idle. Any other request is echoed as ``echo_upstream.py`` does.
"""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web


async def _handle(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":  # as echo_upstream.py answers
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
    ws = web.WebSocketResponse(heartbeat=None, autoping=True, timeout=3600, receive_timeout=None)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _handle)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, shutdown_timeout=1)


if __name__ == "__main__":
    main()
