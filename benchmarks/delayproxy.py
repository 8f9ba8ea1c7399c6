"""A TCP proxy that holds every request for a fixed delay before passing it on.

Loopback answers in microseconds; a CDN answers after tens of milliseconds.
Delaying the client->server direction by DELAY makes the first byte of every
response arrive DELAY later, on every connection and for every request on a
kept-alive connection, while bodies stream back at full speed. Only the port
this proxy listens on is affected (unlike `tc netem` on lo, which would slow
every other program on the machine).

Usage: python delayproxy.py UPSTREAM_PORT DELAY_SECONDS
Prints the port it listens on (127.0.0.1, chosen by the kernel), then serves
until killed.
"""

from __future__ import annotations

import asyncio
import sys

BUF = 1 << 18


async def _relay_delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """client -> upstream: each chunk leaves `delay` after it arrived, in order."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def pump() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(pump())
    try:
        while data := await reader.read(BUF):
            queue.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0.0, b""))
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUF):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        writer.close()
    except (ConnectionError, OSError):
        pass


async def main(upstream_port: int, delay: float) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(_relay_delayed(c_reader, u_writer, delay), _relay(u_reader, c_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
