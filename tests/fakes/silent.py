"""An API that hangs: it takes each connection and request on 127.0.0.1 and never
answers."""

from __future__ import annotations

import asyncio


class SilentServer:
    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []  # one per connection taken
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _take(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.held.append(writer)
        await reader.read(65536)

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._take, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.held:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
