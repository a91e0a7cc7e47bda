"""A TCP proxy on 127.0.0.1 that adds a round-trip time, for benchmarks against an S3
server that is otherwise a loopback hop away (real object stores answer in 10-50 ms).

Each direction delays every piece of data by half the round trip without limiting the
bandwidth: what arrives is forwarded when its time comes, in order, while later data keeps
arriving. So a request waits one round trip more, and a large body streams as before.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import TracebackType
from typing import Self

CHUNK = 1 << 16


class LatencyProxy:
    """`with LatencyProxy(server.endpoint, rtt_ms=20) as proxy:` serves `proxy.endpoint` (an
    `http://127.0.0.1:port` URL, like the server's) in a thread."""

    def __init__(self, upstream: str, *, rtt_ms: float) -> None:
        self._upstream = int(upstream.rpartition(":")[2])
        self._delay = rtt_ms / 2000
        self._loop = asyncio.new_event_loop()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._connection, sock=self._listener)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self._upstream)
        await asyncio.gather(
            self._forward(client_in, server_out), self._forward(server_in, client_out), return_exceptions=True
        )

    async def _forward(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            while True:
                data = await source.read(CHUNK)
                queue.put_nowait((loop.time() + self._delay, data))
                if not data:
                    return

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    sink.close()
                    return
                sink.write(data)
                await sink.drain()

        try:
            await asyncio.gather(receive(), deliver())
        finally:
            sink.close()
