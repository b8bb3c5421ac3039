"""diffgraph's HTTP/WebSocket server (ComfyUI-compatible API, persistent queue). Needs aiohttp; imported
only by `diffgraph serve` and by code that embeds the server."""

from graphcore.server.app import create_app, serve
from graphcore.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]
