"""Reading requests safely: capped bodies, strict JSON, typed fields, and every failure as a JSON 4xx.

A malformed body, a wrong type, a number that is not finite or too long, nesting deeper than
MAX_DEPTH: each becomes `BadRequest` (400, or 413 for size), rendered by `error_middleware` as
`{"error": {type, message, details, extra_info}}` (plus `node_errors: {}` on prompt routes, the shape
ComfyUI clients parse). Nothing a client sends can produce a 500 or stop the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

MAX_DEPTH = 64
# Request key: answer errors with node_errors too (RequestKey exists from aiohttp 3.12).
PROMPT_ROUTE = web.RequestKey("prompt_route", bool) if hasattr(web, "RequestKey") else "diffgraph_prompt_route"
_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class BadRequest(Exception):
    def __init__(self, message: str, error_type: str = "invalid_request", details: str = "", status: int = 400):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.details = details
        self.status = status


def error_body(error_type: str, message: str, details: str = "", prompt_route: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"type": error_type, "message": message, "details": details, "extra_info": {}}}
    if prompt_route:
        body["node_errors"] = {}
    return body


def _reject_constant(name: str) -> Any:
    raise BadRequest(f"{name} is not a number JSON allows", "invalid_json")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f"the number {text[:40]} is too large", "invalid_json")
    return value


def parse_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8 text", "invalid_json", str(exc)) from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON", "invalid_json", str(exc)) from None
    except RecursionError:
        raise BadRequest(f"the JSON is nested deeper than {MAX_DEPTH} levels", "invalid_json") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise BadRequest("the JSON holds a value that cannot be read", "invalid_json", str(exc)[:200]) from None
    check_depth(value)
    return value


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise BadRequest(f"the JSON is nested deeper than {limit} levels", "invalid_json")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


async def read_json(request: web.Request, limit: int, *, allow_empty: bool = False) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise BadRequest(f"the body is {request.content_length} bytes; the limit is {limit}", "too_large", status=413)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(f"the body is larger than the limit of {limit} bytes", "too_large", status=413) from None
    if len(raw) > limit:
        raise BadRequest(f"the body is {len(raw)} bytes; the limit is {limit}", "too_large", status=413)
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("the body is empty; a JSON object was expected", "invalid_json")
    if len(raw) > 256 * 1024:  # big bodies are parsed off the event loop
        return await asyncio.get_running_loop().run_in_executor(None, parse_json, raw)
    return parse_json(raw)


async def read_object(request: web.Request, limit: int, *, allow_empty: bool = False) -> dict[str, Any]:
    value = await read_json(request, limit, allow_empty=allow_empty)
    if not isinstance(value, dict):
        raise BadRequest(f"the body must be a JSON object, not {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def field_str(body: dict, key: str, *, max_length: int = 256, default: str | None = None) -> str | None:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string, not {_kind(value)}")
    if len(value) > max_length:
        raise BadRequest(f"'{key}' is longer than {max_length} characters")
    return value


def field_id(body: dict, key: str) -> str | None:
    value = field_str(body, key, max_length=128)
    if value is not None and not _ID_PATTERN.fullmatch(value):
        raise BadRequest(f"'{key}' may hold only letters, digits and . _ : - (at most 128)")
    return value


def field_bool(body: dict, key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false, not {_kind(value)}")
    return value


def field_number(body: dict, key: str, *, minimum: float = -1e15, maximum: float = 1e15) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"'{key}' must be a number, not {_kind(value)}")
    if not minimum <= value <= maximum:
        raise BadRequest(f"'{key}' must be between {minimum:g} and {maximum:g}")
    return float(value)


def field_object(body: dict, key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"'{key}' must be a JSON object, not {_kind(value)}")
    return value


def field_str_list(body: dict, key: str, *, max_items: int = 100_000) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, (str, int)) and not isinstance(item, bool)
                                              for item in value):
        raise BadRequest(f"'{key}' must be a list of ids")
    if len(value) > max_items:
        raise BadRequest(f"'{key}' lists more than {max_items} ids")
    return [str(item) for item in value]


def query_int(request: web.Request, key: str, *, minimum: int = 0, maximum: int = 10**9) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter '{key}' must be a whole number") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"query parameter '{key}' must be between {minimum} and {maximum}")
    return value


_STATUS_TYPES = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 401: "unauthorized",
                 403: "forbidden"}


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        body = error_body(exc.error_type, exc.message, exc.details, bool(request.get(PROMPT_ROUTE)))
        return web.json_response(body, status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error_type = _STATUS_TYPES.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        body = error_body(error_type, exc.reason, exc.text or "", bool(request.get(PROMPT_ROUTE)))
        return web.json_response(body, status=exc.status, headers=headers)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        body = error_body("server_error", "the server failed to answer this request; see its log")
        return web.json_response(body, status=500)
