"""WebSocket clients: `/ws?clientId=…`, and the hub that delivers events to them.

Workers call the hub from their threads (`EventSink`); the hub hops onto the event loop with
`call_soon_threadsafe` and puts the message on each of the client's sockets' queue; one writer task per
socket drains it, so a slow client never holds up the workers or other clients. When a queue is full,
preview frames are dropped first; a client that cannot even take JSON events is disconnected (it can
reconnect and read /history).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

QUEUE_LIMIT = 4096
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(eq=False)
class Connection:
    client_id: str
    ws: web.WebSocketResponse
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    writer: asyncio.Task | None = None

    def put(self, payload: str | bytes) -> bool:
        try:
            self.queue.put_nowait(payload)
            return True
        except asyncio.QueueFull:
            return False

    async def write_all(self) -> None:
        while True:
            payload = await self.queue.get()
            if payload is None or self.ws.closed:
                return
            try:
                if isinstance(payload, bytes):
                    await self.ws.send_bytes(payload)
                else:
                    await self.ws.send_str(payload)
            except (ConnectionError, RuntimeError):
                return


class Hub:
    """The registry of connected clients; the `EventSink` the workers report to."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clients: dict[str, set[Connection]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    # -- EventSink: called from worker threads ----------------------------------------------------------

    def wants(self, client_id: str | None) -> bool:
        return client_id is not None and client_id in self.clients

    def send_text(self, client_id: str, text: str) -> None:
        self._hop(client_id, text)

    def send_bytes(self, client_id: str, frame: bytes) -> None:
        self._hop(client_id, frame)

    def _hop(self, client_id: str, payload: str | bytes) -> None:
        if self.loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody is listening any more
            self.loop.call_soon_threadsafe(self.deliver, client_id, payload)

    # -- on the event loop ---------------------------------------------------------------------------

    def deliver(self, client_id: str, payload: str | bytes) -> None:
        for connection in list(self.clients.get(client_id, ())):
            if not connection.put(payload) and isinstance(payload, str):
                log.warning("client %s is not reading its events; disconnecting it", client_id)
                self._drop(connection)

    def broadcast(self, text: str) -> None:
        for client_id in list(self.clients):
            self.deliver(client_id, text)

    def register(self, connection: Connection) -> None:
        self.clients.setdefault(connection.client_id, set()).add(connection)
        connection.writer = asyncio.get_running_loop().create_task(connection.write_all())

    def unregister(self, connection: Connection) -> None:
        sockets = self.clients.get(connection.client_id)
        if sockets is not None:
            sockets.discard(connection)
            if not sockets:
                del self.clients[connection.client_id]
        if connection.writer is not None and not connection.writer.done():
            with contextlib.suppress(asyncio.QueueFull):
                connection.queue.put_nowait(None)

    def _drop(self, connection: Connection) -> None:
        self.unregister(connection)
        if connection.writer is not None:
            connection.writer.cancel()
        asyncio.get_running_loop().create_task(connection.ws.close())

    async def close_all(self) -> None:
        for sockets in list(self.clients.values()):
            for connection in list(sockets):
                self.unregister(connection)
                with contextlib.suppress(Exception):
                    await connection.ws.close()


def client_id_from(request: web.Request) -> str:
    requested = request.query.get("clientId", "")
    return requested if _CLIENT_ID.fullmatch(requested) else uuid.uuid4().hex


async def serve_socket(
    request: web.Request, hub: Hub, greeting: Callable[[str], Awaitable[list[str]]]
) -> web.WebSocketResponse:
    """Accept the socket, send the greeting for its client id (status, its running prompt), then keep it
    open until the client closes it."""
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
    await ws.prepare(request)
    connection = Connection(client_id_from(request), ws)
    for text in await greeting(connection.client_id):  # status comes first, as ComfyUI clients expect
        connection.put(text)
    hub.register(connection)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break  # clients' messages (e.g. feature flags) need no answer
    finally:
        hub.unregister(connection)
    return ws
