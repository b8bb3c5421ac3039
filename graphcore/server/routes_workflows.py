"""Saved workflows by name: the user's in <data-dir>/workflows (read-write) and the repository's examples
(read-only), listed, read, saved, deleted, and run with overrides:

    POST /workflows/txt2img/run {"overrides": {"6.text": "a red fox"}, "wait": true}

and POST /convert: any workflow file or image a user drops, as an API graph with an import report.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from graphcore.folders import PathEscape, safe_join
from graphcore.server.bodies import PROMPT_ROUTE, BadRequest, field_object, parse_json, read_json, read_object
from graphcore.server.state import STATE_KEY, ServerState
from graphcore.server.submit import parse_submission, submit
from graphcore.workflow import Workflow, WorkflowFormatError

_NAME = re.compile(r"[\w][\w .()+-]{0,127}")


def add_routes(routes) -> None:
    routes.get("/workflows", list_workflows)
    routes.get("/workflows/{name}", get_workflow)
    routes.post("/workflows/{name}", save_workflow)
    routes.put("/workflows/{name}", save_workflow)
    routes.delete("/workflows/{name}", delete_workflow)
    routes.post("/workflows/{name}/run", run_workflow)
    routes.post("/convert", convert)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    name = name[:-5] if name.lower().endswith(".json") else name
    if not _NAME.fullmatch(name) or name.strip(" .") != name:
        raise BadRequest("a workflow name has letters, digits, spaces and . _ ( ) + - (at most 128)", "invalid_name")
    return name


def _roots(state: ServerState) -> list[tuple[str, Path]]:
    roots = [("user", state.config.workflows_dir)]
    if state.config.examples_dir is not None:
        roots.append(("example", state.config.examples_dir))
    return roots


def _listing(state: ServerState) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for source, root in _roots(state):
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.json")):
            name = path.stem
            if name in seen or not _NAME.fullmatch(name):
                continue  # a user's workflow hides the example of the same name
            stat = path.stat()
            seen[name] = {"name": name, "source": source, "size": stat.st_size, "modified": stat.st_mtime}
    return sorted(seen.values(), key=lambda entry: entry["name"].lower())


def _find(state: ServerState, name: str) -> tuple[str, Path] | None:
    for source, root in _roots(state):
        try:
            path = safe_join(root, f"{name}.json")
        except PathEscape:
            continue
        if path.is_file():
            return source, path
    return None


def _load(state: ServerState, name: str) -> Any:
    found = _find(state, name)
    if found is None:
        raise web.HTTPNotFound(reason=f"no saved workflow named {name!r}")
    raw = found[1].read_bytes()
    if len(raw) > state.config.max_json_bytes:
        raise BadRequest(f"the workflow file {name!r} is too large", "too_large")
    return parse_json(raw)


async def list_workflows(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response({"workflows": await state.cpu(_listing, state)})


async def get_workflow(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response(await state.cpu(_load, state, _name(request)))


async def save_workflow(request: web.Request) -> web.Response:
    state = _state(request)
    name = _name(request)
    data = await read_json(request, state.config.max_json_bytes)
    if not isinstance(data, dict):
        raise BadRequest("a saved workflow is a JSON object")
    await state.cpu(_write, state.config.workflows_dir, name, data)
    return web.json_response({"name": name, "source": "user"})


def _write(directory: Path, name: str, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = safe_join(directory, f"{name}.json")
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temporary, target)


async def delete_workflow(request: web.Request) -> web.Response:
    state = _state(request)
    name = _name(request)
    found = await state.cpu(_find, state, name)
    if found is None:
        raise web.HTTPNotFound(reason=f"no saved workflow named {name!r}")
    source, path = found
    if source != "user":
        raise web.HTTPForbidden(reason="examples are read-only")
    await state.cpu(path.unlink)
    return web.json_response({"deleted": name})


async def run_workflow(request: web.Request) -> web.Response:
    """Body: {overrides: {"NODE.INPUT": value}, client_id?, wait?, base64?, timeout?, extra_data?, front?}."""
    request[PROMPT_ROUTE] = True
    state = _state(request)
    name = _name(request)
    body = await read_object(request, state.config.max_json_bytes, allow_empty=True)
    overrides = field_object(body, "overrides")
    data = await state.cpu(_load, state, name)
    prompt = await state.cpu(_api_graph, state, data, name)
    try:
        workflow = Workflow.from_api(prompt)
        if overrides:
            workflow = workflow.with_overrides(overrides)
    except (WorkflowFormatError, KeyError) as exc:
        raise BadRequest(f"workflow {name!r}: {exc.args[0] if exc.args else exc}", "invalid_prompt") from None
    submission = parse_submission({**body, "prompt": None}, prompt=workflow.to_api())
    ui = data.get("workflow") or data.get("ui") or (data if isinstance(data.get("nodes"), list) else None)
    if isinstance(ui, dict):
        submission.extra_data = {"extra_pnginfo": {"workflow": ui}, **(submission.extra_data or {})}
    return await submit(state, submission)


async def convert(request: web.Request) -> web.Response:
    """Any workflow a user may drop — ComfyUI UI or API JSON, diffgraph's saved file, or an image carrying
    one (or A1111 parameters) — as {"prompt": API graph, "report": import report}.
    Query: our_names=true (our node names), map=OLD=NEW (model file renames, repeatable)."""
    state = _state(request)
    try:
        from graphcore.convert import ConvertError, convert_payload
    except ImportError:
        raise web.HTTPNotImplemented(reason="workflow conversion is not available in this build") from None
    raw = await _read_raw(request, state.config.max_upload_bytes)
    payload: Any = raw if raw.startswith(_IMAGE_SIGNATURES) else parse_json(raw)
    model_map = {}
    for item in request.query.getall("map", []):
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise BadRequest(f"map={item[:80]!r}: expected OLD=NEW")
        model_map[old] = new
    our_names = request.query.get("our_names", "").lower() in ("1", "true", "yes")

    def run() -> tuple[dict[str, Any], dict[str, Any]]:
        return convert_payload(payload, state.registry, folders=state.folders, model_map=model_map,
                               our_names=our_names)

    try:
        prompt, report = await state.cpu(run)
    except ConvertError as exc:
        raise BadRequest(str(exc), "invalid_workflow") from None
    return web.json_response({"prompt": prompt, "report": report})


_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")


async def _read_raw(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"the body is larger than the limit of {limit} bytes", "too_large", status=413)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(f"the body is larger than the limit of {limit} bytes", "too_large", status=413) from None
    if not raw.strip():
        raise BadRequest("the body is empty; send a workflow JSON or an image")
    return raw


def _api_graph(state: ServerState, data: Any, name: str) -> dict[str, Any]:
    """The API graph in a saved file of any format (UI-format files are converted with this registry)."""
    try:
        from graphcore.convert import ConvertError, convert_any
    except ImportError:
        from graphcore.cli import CliError, unwrap_api_graph

        try:
            return unwrap_api_graph(data, f"workflow {name!r}")
        except CliError as exc:
            raise BadRequest(str(exc), "invalid_prompt") from None
    try:
        return convert_any(data, state.registry, folders=state.folders).prompt
    except ConvertError as exc:
        raise BadRequest(f"workflow {name!r}: {exc}", "invalid_prompt") from None
