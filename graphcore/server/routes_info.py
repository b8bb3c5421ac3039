"""What the server knows: /object_info, /system_stats, /models, /embeddings, /extensions, /free, /ws."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import PurePosixPath

from aiohttp import web

from graphcore import hooks
from graphcore.folders import MODEL_KINDS
from graphcore.server.bodies import field_bool, read_object
from graphcore.server.prompt_events import message
from graphcore.server.state import STATE_KEY, ServerState, status_message
from graphcore.server.websocket import serve_socket


def add_routes(routes) -> None:
    routes.get("/object_info", get_object_info)
    routes.get("/object_info/{node_class}", get_object_info_node)
    routes.get("/system_stats", get_system_stats)
    routes.get("/models", get_model_folders)
    routes.get("/models/{folder}", get_models)
    routes.get("/embeddings", get_embeddings)
    routes.get("/extensions", get_extensions)
    routes.post("/free", post_free)
    routes.get("/ws", websocket)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


async def get_object_info(request: web.Request) -> web.Response:
    state = _state(request)  # model combos list folders: off the event loop
    return await state.big_json(await state.cpu(state.registry.object_info))


async def get_object_info_node(request: web.Request) -> web.Response:
    state = _state(request)
    node_class = request.match_info["node_class"]
    entry = await state.cpu(state.registry.object_info_for, node_class)
    return web.json_response({node_class: entry} if entry is not None else {})


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _memory() -> tuple[int, int]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return 0, 0


async def get_system_stats(request: web.Request) -> web.Response:
    ram_total, ram_free = _memory()
    version = _version("diffgraph") or "0"
    devices = await _state(request).cpu(hooks.device_stats)
    if not devices:  # no node package describes its devices: report the CPU
        devices = [{"name": "cpu", "type": "cpu", "index": None, "vram_total": ram_total, "vram_free": ram_free,
                    "torch_vram_total": 0, "torch_vram_free": 0}]
    return web.json_response({
        "system": {
            "os": os.name,
            "platform": platform.platform(),
            "ram_total": ram_total,
            "ram_free": ram_free,
            "comfyui_version": version,
            "diffgraph_version": version,
            "python_version": sys.version,
            "pytorch_version": _version("torch"),  # from package metadata: the server never imports torch
            "embedded_python": False,
            "argv": sys.argv,
        },
        "devices": devices,
    })


async def get_model_folders(request: web.Request) -> web.Response:
    return web.json_response(list(MODEL_KINDS))


async def get_models(request: web.Request) -> web.Response:
    state = _state(request)
    folder = request.match_info["folder"]
    if folder not in MODEL_KINDS:
        raise web.HTTPNotFound(reason=f"no model folder {folder[:60]!r}; known: {', '.join(MODEL_KINDS)}")
    return web.json_response(await state.cpu(state.folders.list_models, folder))


async def get_embeddings(request: web.Request) -> web.Response:
    state = _state(request)
    names = await state.cpu(state.folders.list_models, "embeddings")
    return web.json_response([str(PurePosixPath(name).with_suffix("")) for name in names])


async def get_extensions(request: web.Request) -> web.Response:
    return web.json_response([])  # diffgraph's canvas loads no ComfyUI front-end extensions


async def post_free(request: web.Request) -> web.Response:
    """{"unload_models": bool, "free_memory": bool}: applied by each worker before its next prompt."""
    state = _state(request)
    body = await read_object(request, state.config.max_json_bytes, allow_empty=True)
    unload_models, free_memory = field_bool(body, "unload_models"), field_bool(body, "free_memory")
    if unload_models or free_memory:
        state.pool.request_free(unload_models, free_memory)
    return web.json_response({"unload_models": unload_models, "free_memory": free_memory})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    state = _state(request)

    async def greeting(client_id: str) -> list[str]:
        remaining = await state.db(state.store.remaining)
        texts = [status_message(remaining, sid=client_id)]
        for prompt_id, (owner, node) in state.pool.running().items():
            if owner == client_id and node is not None:  # a reconnecting client sees where its prompt is
                texts.append(message("executing", {"node": node, "display_node": node, "prompt_id": prompt_id}))
        return texts

    return await serve_socket(request, state.hub, greeting)

