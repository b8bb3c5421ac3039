"""Files: /upload/image, /upload/mask, /view (ComfyUI's forms and query parameters)."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from graphcore.folders import PathEscape, safe_join
from graphcore.server import files
from graphcore.server.bodies import BadRequest
from graphcore.server.state import STATE_KEY, ServerState

MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 16
CHANNELS = ("rgba", "rgb", "a")


def add_routes(routes) -> None:
    routes.post("/upload/image", upload_image)
    routes.post("/upload/mask", upload_mask)
    routes.get("/view", view)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


async def _read_capped(part: BodyPartReader, limit: int, what: str) -> bytes:
    chunks, size = [], 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BadRequest(f"{what} is larger than the limit of {limit} bytes", "too_large", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_form(request: web.Request, limit: int) -> dict[str, Any]:
    """Form fields: text fields as str, file fields as (filename, bytes), each capped."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("expected a multipart/form-data upload")
    if request.content_length is not None and request.content_length > limit + MAX_PARTS * MAX_FIELD_BYTES:
        raise BadRequest(f"the upload is larger than the limit of {limit} bytes", "too_large", status=413)
    try:
        reader = await request.multipart()
        fields: dict[str, Any] = {}
        for _ in range(MAX_PARTS):
            part = await reader.next()
            if part is None:
                return fields
            if not isinstance(part, BodyPartReader) or not part.name:
                raise BadRequest("nested or unnamed form parts are not accepted")
            if part.filename is not None:
                # Some clients percent-encode the name (aiohttp's FormData does); sanitising follows.
                filename = unquote(part.filename)
                fields[part.name] = (filename, await _read_capped(part, limit, "the file"))
            else:
                raw = await _read_capped(part, MAX_FIELD_BYTES, f"field {part.name!r}")
                fields[part.name] = raw.decode("utf-8", "replace")
    except (ValueError, AssertionError) as exc:  # a malformed multipart body
        raise BadRequest("the form could not be read", "invalid_form", str(exc)[:200]) from None
    raise BadRequest(f"the form has more than {MAX_PARTS} parts")


def _file_field(fields: dict[str, Any], name: str) -> tuple[str, bytes]:
    value = fields.get(name)
    if not isinstance(value, tuple):
        raise BadRequest(f"the form needs a file field {name!r}")
    return value


def _text(fields: dict[str, Any], name: str, default: str = "") -> str:
    value = fields.get(name, default)
    return value if isinstance(value, str) else default


async def _store(state: ServerState, fields: dict[str, Any], name: str, data: bytes) -> web.Response:
    folder_type = _text(fields, "type") or "input"
    subfolder = files.sanitize_subfolder(_text(fields, "subfolder"))
    overwrite = _text(fields, "overwrite").lower() in ("true", "1", "yes")
    root = files.folder_root(state.folders, folder_type)
    try:
        directory = safe_join(root, subfolder)
        stored = await state.cpu(files.save_upload, directory, name, data, overwrite)
    except PathEscape as exc:
        raise BadRequest(f"invalid subfolder: {exc}", "invalid_path") from None
    return web.json_response({"name": stored, "subfolder": subfolder, "type": folder_type})


async def upload_image(request: web.Request) -> web.Response:
    """Form: image (file), type (input|temp|output), subfolder, overwrite → {name, subfolder, type}."""
    state = _state(request)
    fields = await _read_form(request, state.config.max_upload_bytes)
    filename, data = _file_field(fields, "image")
    verified = await state.cpu(files.verify_image, data, state.config.max_image_pixels)
    return await _store(state, fields, files.stored_name(filename, verified.format), data)


async def upload_mask(request: web.Request) -> web.Response:
    """Form: image (the painted mask, its alpha is used), original_ref ({filename, subfolder, type} JSON):
    stores the original with the mask as its alpha channel, as a PNG."""
    state = _state(request)
    fields = await _read_form(request, state.config.max_upload_bytes)
    filename, data = _file_field(fields, "image")
    await state.cpu(files.verify_image, data, state.config.max_image_pixels)
    try:
        ref = json.loads(_text(fields, "original_ref"))
    except json.JSONDecodeError:
        raise BadRequest("original_ref must be JSON: {filename, subfolder, type}") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise BadRequest("original_ref must name the original image: {filename, subfolder, type}")
    original = files.resolve(
        state.folders, str(ref.get("type") or "input"), str(ref.get("subfolder") or ""), ref["filename"]
    )
    if not original.is_file():
        raise web.HTTPNotFound(reason=f"the original image {ref['filename'][:80]!r} does not exist")
    masked = await state.cpu(_apply_mask, original, data, state.config.max_image_pixels)
    name = files.stored_name(filename, "PNG")
    if not name.lower().endswith(".png"):
        name = name.rsplit(".", 1)[0] + ".png"
    return await _store(state, fields, name, masked)


def _apply_mask(original_path, mask_bytes: bytes, max_pixels: int) -> bytes:
    from PIL import Image, PngImagePlugin

    with Image.open(original_path) as original, Image.open(io.BytesIO(mask_bytes)) as mask:
        if original.width * original.height > max_pixels:
            raise BadRequest("the original image is too large", "invalid_image")
        info = PngImagePlugin.PngInfo()
        for key, value in original.info.items():
            if isinstance(key, str) and isinstance(value, str):
                info.add_text(key, value)
        alpha = mask.getchannel("A") if "A" in mask.getbands() else mask.convert("L")
        if alpha.size != original.size:
            alpha = alpha.resize(original.size)
        result = original.convert("RGBA")
        result.putalpha(alpha)
        buffer = io.BytesIO()
        result.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()


async def view(request: web.Request) -> web.StreamResponse:
    """?filename&type=output|input|temp&subfolder[&channel=rgba|rgb|a][&preview=webp;90]"""
    state = _state(request)
    query = request.query
    path = files.resolve(state.folders, query.get("type") or "output", query.get("subfolder", ""),
                         query.get("filename", ""))
    if not path.is_file():
        raise web.HTTPNotFound(reason="no such file")
    channel, preview = query.get("channel", "rgba"), query.get("preview")
    if channel not in CHANNELS:
        raise BadRequest(f"channel must be one of {', '.join(CHANNELS)}")
    if (preview or channel != "rgba") and path.suffix.lower() in files.IMAGE_SUFFIXES:
        try:
            body, content_type = await state.cpu(files.converted_view, path, channel, preview)
        except (OSError, ValueError) as exc:
            raise BadRequest("the file is not a convertible image", "invalid_image", str(exc)[:200]) from None
        return web.Response(body=body, content_type=content_type, headers={"Content-Security-Policy": files.VIEW_CSP})
    return web.FileResponse(path, headers=files.content_headers(path))
