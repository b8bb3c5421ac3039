"""The diffgraph server: `create_app` builds the aiohttp application, `serve` runs `diffgraph serve`.

    app = create_app(ServerConfig(data_dir=Path("data")), registry=my_registry)

Every API route answers at `/x` and `/api/x` (as ComfyUI's do); the web canvas is served at `/`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from graphcore import folders as folder_config
from graphcore.folders import Folders
from graphcore.registry import Registry, discover
from graphcore.server import routes_files, routes_info, routes_prompt, routes_static, routes_workflows
from graphcore.server.bodies import error_middleware
from graphcore.server.config import ServerConfig
from graphcore.server.security import (
    POLICY_KEY,
    InsecureBinding,
    SecurityPolicy,
    add_security_headers,
    check_binding,
    resolve_token,
    security_middleware,
)
from graphcore.server.state import STATE_KEY, PoolFactory, ServerState

log = logging.getLogger("diffgraph.server")

ROUTE_MODULES = (routes_prompt, routes_info, routes_files, routes_workflows)


class ApiRoutes:
    """Registers each route at `/x` and at `/api/x`."""

    def __init__(self, app: web.Application) -> None:
        self.router = app.router

    def get(self, path: str, handler: Callable) -> None:
        for prefix in ("", "/api"):
            self.router.add_get(prefix + path, handler)

    def route(self, method: str, path: str, handler: Callable) -> None:
        for prefix in ("", "/api"):
            self.router.add_route(method, prefix + path, handler)

    def post(self, path: str, handler: Callable) -> None:
        self.route("POST", path, handler)

    def delete(self, path: str, handler: Callable) -> None:
        self.route("DELETE", path, handler)

    def put(self, path: str, handler: Callable) -> None:
        self.route("PUT", path, handler)


def create_app(
    config: ServerConfig,
    registry: Registry | None = None,
    folders: Folders | None = None,
    pool_factory: PoolFactory | None = None,
) -> web.Application:
    """The application; the queue opens and the workers start when it starts (and stop on cleanup)."""
    app = web.Application(
        middlewares=[error_middleware, security_middleware],
        client_max_size=config.max_upload_bytes + 1024 * 1024,
    )
    app[POLICY_KEY] = SecurityPolicy(config.auth_token, frozenset(config.allowed_origins))
    state = ServerState(config, registry or discover(), folders or folder_config.current(), pool_factory)
    app[STATE_KEY] = state
    routes = ApiRoutes(app)
    for module in ROUTE_MODULES:
        module.add_routes(routes)
    routes_static.add_routes(app, config.web_dir)  # last: its catch-all must not shadow the API
    app.on_response_prepare.append(add_security_headers)

    async def start(app: web.Application) -> None:
        await state.start()

    async def stop(app: web.Application) -> None:
        await state.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(lambda app: state.hub.close_all())
    app.on_cleanup.append(stop)
    return app


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    data_dir = Path(args.data_dir).expanduser() if getattr(args, "data_dir", None) else None
    return ServerConfig(
        data_dir=data_dir or folder_config.default_data_dir(),
        host=args.host,
        port=args.port,
        auth_token=resolve_token(getattr(args, "auth_token", None)),
        allowed_origins=tuple(getattr(args, "allow_origin", None) or ()),
        history_size=getattr(args, "history_size", 10_000),
        max_upload_bytes=int(getattr(args, "max_upload_mb", 50) * 1024 * 1024),
    )


def serve(args: argparse.Namespace) -> int:
    """`diffgraph serve`: listen until interrupted. Prints the address it listens on."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from graphcore.cli import CliError, _configure_folders, _registry

    config = config_from_args(args)
    try:
        check_binding(config.host, config.auth_token)
    except InsecureBinding as exc:
        raise CliError(str(exc)) from None
    pool_factory = _pool_factory(args.workers, CliError)
    if getattr(args, "data_dir", None):
        # The data folder also holds the default models/input/output/temp folders.
        os.environ["DIFFGRAPH_DATA_DIR"] = str(config.data_dir)
    folders = _configure_folders(args)
    app = create_app(config, _registry(), folders, pool_factory)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(app, config))
    return 0


def _pool_factory(workers: str, error: type[Exception]) -> PoolFactory | None:
    """None for the in-process pool; the Ray pool (connected now, Ray imported only here) otherwise."""
    if workers == "local":
        return None
    from graphcore.server.ray_pool import RayPoolError, ray_pool_factory

    try:
        return ray_pool_factory(workers)
    except RayPoolError as exc:
        raise error(str(exc)) from None


async def _run(app: web.Application, config: ServerConfig) -> None:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    for sock in site._server.sockets if site._server else ():  # the real port when --port 0
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"diffgraph: listening on http://{shown}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on this platform / thread
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print("diffgraph: stopping (pending prompts stay queued)", file=sys.stderr, flush=True)
        await runner.cleanup()
