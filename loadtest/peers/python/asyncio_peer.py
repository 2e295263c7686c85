#!/usr/bin/env python3
# Python `asyncio`: one thread, one event loop, a coroutine per connection (asyncio.start_server
# and streams). Waiting is an await (asyncio.sleep) that frees the loop; computing is not: /cpu
# runs on the loop thread and every other connection waits behind it. With --uvloop, the same
# program on uvloop's event loop (libuv), as `uvloop.install()` would have it.
"""py-asyncio: asyncio.start_server, a coroutine per connection, one event loop."""
import asyncio
import socket
import sys

import httpcore


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as e:
                if e.partial:
                    writer.write(httpcore.response(400, b"closed inside a head", False))
                break
            except asyncio.LimitOverrunError:
                writer.write(httpcore.response(431, b"head too large", False))
                break
            try:
                req = httpcore.parse_head(head[:-4])
            except httpcore.BadRequest as e:
                writer.write(httpcore.response(e.status, str(e).encode(), False))
                break
            body = await reader.readexactly(req.content_length) if req.content_length else b""
            p = httpcore.plan(req, body)
            if p.kind == "delay":
                await asyncio.sleep(p.ms / 1000)
            elif p.kind == "cpu":
                httpcore.burn(p.ms)  # on the loop thread, by design: the loop stalls
            keep = req.keep_alive()
            writer.write(httpcore.response(p.status, b"" if req.method == "HEAD" else p.body,
                                           keep, p.ctype))
            await writer.drain()
            if not keep:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve(sock: socket.socket, name: str, detail: str) -> None:
    server = await asyncio.start_server(handle, sock=sock, limit=httpcore.MAX_HEAD,
                                        backlog=4096)
    httpcore.announce(name, sock, detail)
    async with server:
        await server.serve_forever()


def main(use_uvloop: bool = False) -> None:
    args = httpcore.arguments(__doc__)
    name, detail = "py-asyncio", "asyncio, standard event loop"
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            print("py-uvloop: uvloop is not installed (Debian package python3-uvloop)",
                  file=sys.stderr)
            sys.exit(2)
        uvloop.install()
        name, detail = "py-uvloop", f"asyncio on uvloop {uvloop.__version__}"
    httpcore.calibrate()
    sock = httpcore.listener(args.listen)
    httpcore.exit_on_sigterm()
    asyncio.run(serve(sock, name, detail))


if __name__ == "__main__":
    main()
