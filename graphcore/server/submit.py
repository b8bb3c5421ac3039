"""Queueing a prompt — shared by POST /prompt, POST /run and POST /workflows/{name}/run.

The body is ComfyUI's `{prompt, client_id?, prompt_id?, extra_data?, front?, number?,
partial_execution_targets?}`, plus diffgraph's `wait` (answer with the outputs once the prompt ended),
`base64` (include the image bytes) and `timeout` (seconds to wait at most).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from graphcore.folders import PathEscape
from graphcore.server import files
from graphcore.server.bodies import (
    BadRequest,
    error_body,
    field_bool,
    field_id,
    field_number,
    field_object,
    field_str,
    field_str_list,
)
from graphcore.server.queue_store import DuplicatePromptId, QueuedPrompt
from graphcore.server.state import ServerState
from graphcore.validation import ValidationReport, validate
from graphcore.workflow import Workflow, WorkflowFormatError

log = logging.getLogger(__name__)


@dataclass
class Submission:
    prompt: dict[str, Any]
    client_id: str | None = None
    prompt_id: str | None = None
    extra_data: dict[str, Any] | None = None
    number: float | None = None
    front: bool = False
    targets: list[str] | None = None
    wait: bool = False
    include_base64: bool = False
    timeout: float | None = None


def parse_submission(body: dict[str, Any], *, wait_default: bool = False, prompt: Any = None) -> Submission:
    prompt = body.get("prompt") if prompt is None else prompt
    if prompt is None:
        raise BadRequest("No prompt provided", "no_prompt", "the body needs a 'prompt' object (the API-format graph)")
    if not isinstance(prompt, dict):
        raise BadRequest("'prompt' must be a JSON object of node id → node", "invalid_prompt")
    extra_data = dict(field_object(body, "extra_data"))
    # Some clients put client_id only inside extra_data, where ComfyUI itself stores it.
    client_id = field_str(body, "client_id", max_length=128) or field_str(extra_data, "client_id", max_length=128)
    return Submission(
        prompt=prompt,
        client_id=client_id,
        prompt_id=field_id(body, "prompt_id"),
        extra_data=extra_data,
        number=field_number(body, "number"),
        front=field_bool(body, "front"),
        targets=field_str_list(body, "partial_execution_targets"),
        wait=field_bool(body, "wait", wait_default),
        include_base64=field_bool(body, "base64"),
        timeout=field_number(body, "timeout", minimum=0, maximum=7 * 24 * 3600),
    )


def _validate(state: ServerState, prompt: dict[str, Any]) -> ValidationReport:
    try:
        workflow = Workflow.from_api(prompt)
    except WorkflowFormatError as exc:
        raise BadRequest(str(exc), "invalid_prompt") from None
    try:
        return validate(workflow, state.registry)
    except Exception as exc:  # a validator fault must not become a 500; the log keeps the traceback
        log.exception("validating a prompt failed")
        details = f"{type(exc).__name__}: {exc}"
        raise BadRequest("the prompt could not be validated", "invalid_prompt", details) from None


async def submit(state: ServerState, sub: Submission) -> web.Response:
    report = await state.cpu(_validate, state, sub.prompt)
    if not report.ok:
        return web.json_response(report.to_comfy(), status=400)
    outputs = list(report.outputs)
    if sub.targets is not None:
        outputs = [node_id for node_id in outputs if node_id in set(sub.targets)]
        if not outputs:
            raise BadRequest("none of partial_execution_targets is an output node of this prompt", "prompt_no_outputs")
    number = sub.number if sub.number is not None else state.next_number(sub.front)
    prompt_id = sub.prompt_id or str(uuid.uuid4())
    extra_data = dict(sub.extra_data or {})
    if sub.client_id is not None:
        extra_data["client_id"] = sub.client_id
    item = QueuedPrompt(prompt_id, number, sub.prompt, extra_data, outputs, sub.client_id)
    waiter = state.waiter(prompt_id) if sub.wait else None
    try:
        await state.enqueue(item)
    except DuplicatePromptId as exc:
        if waiter is not None:
            state.forget_waiter(prompt_id, waiter)
        body = error_body("duplicate_prompt_id", str(exc), prompt_route=True)
        return web.json_response(body, status=400)
    accepted = {"prompt_id": prompt_id, "number": item.queue_item()[0], "node_errors": {}}
    if waiter is None:
        return web.json_response(accepted)
    try:
        await asyncio.wait_for(asyncio.shield(waiter), sub.timeout)
    except TimeoutError:
        state.forget_waiter(prompt_id, waiter)
        return web.json_response({**accepted, "status": {"status_str": "pending", "completed": False}}, status=202)
    assert state.store is not None
    entry = (await state.db(state.store.history_item, prompt_id)).get(prompt_id)
    return web.json_response({**accepted, **await state.cpu(outcome, state, entry, sub.include_base64)})


def outcome(state: ServerState, entry: dict[str, Any] | None, include_base64: bool) -> dict[str, Any]:
    """What a waiting client gets: status, outputs with a /view URL per file (and its bytes on request),
    and the error when the prompt failed."""
    if entry is None:  # removed from the queue before it ran
        return {"status": {"status_str": "cancelled", "completed": False, "messages": []}, "outputs": {}}
    outputs: dict[str, Any] = {}
    for node_id, ui in entry["outputs"].items():
        outputs[node_id] = {key: _with_urls(state, value, include_base64) for key, value in ui.items()}
    result: dict[str, Any] = {"status": entry["status"], "outputs": outputs}
    for event, data in entry["status"]["messages"]:
        if event in ("execution_error", "execution_interrupted"):
            result["error"] = data
    return result


def _with_urls(state: ServerState, items: Any, include_base64: bool) -> Any:
    if not isinstance(items, list):
        return items
    described = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("filename"), str):
            query = {"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                     "type": item.get("type", "output")}
            item = {**item, "url": "/view?" + urlencode(query)}
            if include_base64:
                item["base64"] = _file_base64(state, query)
        described.append(item)
    return described


def _file_base64(state: ServerState, query: dict[str, str]) -> str | None:
    try:
        path = files.resolve(state.folders, query["type"], query["subfolder"], query["filename"])
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except (BadRequest, PathEscape, OSError):
        return None
