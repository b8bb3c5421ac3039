"""Workflows carried inside images: PNG text chunks (tEXt/zTXt/iTXt) read and written, and the graph they hold.

- ComfyUI and diffgraph write `prompt` (the API graph as JSON) and `workflow` (the UI graph, or diffgraph's own
  saved workflow, which embeds the API graph under "api").
- AUTOMATIC1111 writes one `parameters` text (see graphcore.a1111); in JPEG/WebP files it sits in the EXIF
  UserComment instead.

The chunk reader walks the PNG chunk list itself (no pixel decoding; it skips the image data) and caps what a
compressed chunk may inflate to. Torch-free: Pillow is only used for non-PNG files and for writing.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 64 * 1024 * 1024  # per chunk, after decompression
TEXT_CHUNK_TYPES = (b"tEXt", b"zTXt", b"iTXt")
SOFTWARE_KEY = "Software"
SOFTWARE_NAME = "diffgraph"

Source = str | os.PathLike | bytes | bytearray | IO[bytes]


class MetadataError(ValueError):
    """The file carries no usable workflow (or is not an image we can read metadata from)."""


# ---------------------------------------------------------------------------------------------- reading


def _open(source: Source) -> tuple[IO[bytes], bool]:
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb"), True  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise MetadataError(f"cannot read {os.fspath(source)!r}: {exc.strerror or exc}") from None
    return source, False


def _describe(source: Source) -> str:
    return repr(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "the image"


def _inflate(data: bytes, what: str) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as exc:
        raise MetadataError(f"compressed text chunk {what!r} is corrupt: {exc}") from None
    if inflater.unconsumed_tail:
        raise MetadataError(f"text chunk {what!r} inflates to more than {MAX_TEXT_BYTES} bytes")
    return out


def _decode_text(raw: bytes) -> str:
    # tEXt is Latin-1 by the standard, yet many tools write UTF-8 there; valid UTF-8 is almost never
    # accidental Latin-1, so it is tried first.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_text_chunk(kind: bytes, data: bytes) -> tuple[str, str] | None:
    keyword, sep, rest = data.partition(b"\x00")
    if not sep or not keyword:
        return None
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return key, _decode_text(rest)
    if kind == b"zTXt":
        return key, _decode_text(_inflate(rest[1:], key))  # rest[0] is the compression method (0)
    # iTXt: compression flag, method, language tag\0, translated keyword\0, text (UTF-8)
    if len(rest) < 2:
        return None
    compressed, body = rest[0], rest[2:]
    _language, _, body = body.partition(b"\x00")
    _translated, _, text = body.partition(b"\x00")
    if compressed:
        text = _inflate(text, key)
    return key, text.decode("utf-8", errors="replace")


def png_text_chunks(source: Source) -> dict[str, str]:
    """Every text chunk of a PNG as {keyword: text} (a later chunk with the same keyword wins, as in Pillow).

    `source` is a path, the file's bytes, or a binary stream. Chunks with a bad CRC are skipped.
    """
    stream, owned = _open(source)
    try:
        if stream.read(8) != PNG_SIGNATURE:
            raise MetadataError(f"{_describe(source)} is not a PNG file")
        texts: dict[str, str] = {}
        while True:
            header = stream.read(8)
            if len(header) < 8:
                break  # truncated file: keep what was read
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind not in TEXT_CHUNK_TYPES:
                stream.seek(length + 4, io.SEEK_CUR)
                continue
            if length > MAX_TEXT_BYTES:
                raise MetadataError(f"a {kind.decode()} chunk of {length} bytes is too large")
            data = stream.read(length)
            crc = stream.read(4)
            if len(data) < length or len(crc) < 4:
                break
            if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
                continue
            parsed = _parse_text_chunk(kind, data)
            if parsed is not None:
                texts[parsed[0]] = parsed[1]
        return texts
    finally:
        if owned:
            stream.close()


_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
# ComfyUI's WebP/animated savers put "prompt:{...}" and "workflow:{...}" in these two IFD0 tags.
_COMFY_EXIF_TAGS = (0x0110, 0x010F)
_USER_COMMENT_CODECS = {b"UNICODE\x00": ("utf-16-be", "utf-16-le"), b"ASCII\x00\x00\x00": ("ascii",)}


def _user_comment_text(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        return None
    codecs = _USER_COMMENT_CODECS.get(raw[:8])
    if codecs is None:
        return _decode_text(raw.rstrip(b"\x00")) or None
    for codec in codecs:
        try:
            text = raw[8:].decode(codec)
        except UnicodeDecodeError:
            continue
        if text.isprintable() or "\n" in text:
            return text.rstrip("\x00")
    return None


def image_text_metadata(source: Source) -> dict[str, str]:
    """Text metadata of a PNG (its chunks) or of a JPEG/WebP (A1111's EXIF UserComment as `parameters`,
    ComfyUI's EXIF `prompt:`/`workflow:` tags)."""
    stream, owned = _open(source)
    try:
        if stream.read(8) == PNG_SIGNATURE:
            stream.seek(0)
            return png_text_chunks(stream)
        stream.seek(0)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(stream) as image:
                exif = image.getexif()
        except (UnidentifiedImageError, OSError) as exc:
            raise MetadataError(f"{_describe(source)} is not an image Pillow can read: {exc}") from None
        texts: dict[str, str] = {}
        comment = _user_comment_text(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT))
        if comment:
            texts["parameters"] = comment
        for tag in _COMFY_EXIF_TAGS:
            value = exif.get(tag)
            if isinstance(value, str) and ":" in value:
                key, _, text = value.partition(":")
                if key in ("prompt", "workflow"):
                    texts[key] = text
        return texts
    finally:
        if owned:
            stream.close()


# ---------------------------------------------------------------------------------------------- writing


def valid_keyword(key: str) -> bool:
    """PNG keywords: 1–79 printable Latin-1 characters, no leading, trailing or double spaces."""
    if not 1 <= len(key) <= 79 or key != key.strip() or "  " in key:
        return False
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return all(32 <= ord(c) <= 126 or 161 <= ord(c) <= 255 for c in key)


def png_info(texts: Mapping[str, str]) -> Any:
    """A Pillow PngInfo with one text chunk per entry: tEXt when the text is Latin-1, iTXt (UTF-8) otherwise."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, text in texts.items():
        if not valid_keyword(key):
            raise ValueError(f"{key!r} is not a valid PNG text keyword")
        info.add_text(key, text)  # Pillow switches to iTXt by itself when Latin-1 cannot hold the text
    return info


def comfy_texts(prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None) -> dict[str, str]:
    """The chunks ComfyUI's SaveImage writes: `prompt`, then each extra_pnginfo entry (e.g. `workflow`), as JSON."""
    texts: dict[str, str] = {}
    if prompt is not None:
        texts["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        if isinstance(key, str) and valid_keyword(key) and key not in texts and value is not None:
            texts[key] = json.dumps(value)
    return texts


# ---------------------------------------------------------------------------------------------- workflows


@dataclass
class ImageWorkflow:
    """What an image says about how it was made."""

    api: dict[str, Any]
    origin: str  # "comfyui" | "diffgraph" | "a1111"
    ui: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None  # parsed A1111 parameters, when that was the source
    warnings: list[str] = field(default_factory=list)


def _looks_like_api_graph(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(node, dict) and isinstance(node.get("class_type"), str) for node in data.values())
    )


def _json(texts: Mapping[str, str], key: str, warnings: list[str]) -> Any:
    if key not in texts:
        return None
    try:
        return json.loads(texts[key])
    except json.JSONDecodeError as exc:
        warnings.append(f"the {key!r} chunk is not valid JSON ({exc}); ignored")
        return None


def read_image_workflow(
    source: Source,
    *,
    checkpoints: list[str] | None = None,
    ui_to_api: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> ImageWorkflow:
    """The API graph an image carries: its `prompt` chunk, else its `workflow` chunk (diffgraph's saved
    workflow, or a UI-format one when `ui_to_api` converts it), else a txt2img graph built from A1111
    `parameters`. `checkpoints` (names in the models folder) lets an A1111 model name find its file."""
    texts = image_text_metadata(source)
    warnings: list[str] = []
    origin = "diffgraph" if texts.get(SOFTWARE_KEY, "").startswith(SOFTWARE_NAME) else "comfyui"
    ui = _json(texts, "workflow", warnings)
    prompt = _json(texts, "prompt", warnings)
    if prompt is not None:
        if _looks_like_api_graph(prompt):
            return ImageWorkflow(prompt, origin, ui if isinstance(ui, dict) else None, warnings=warnings)
        warnings.append("the 'prompt' chunk is not an API-format graph; ignored")
    if isinstance(ui, dict):
        if _looks_like_api_graph(ui.get("api")):
            return ImageWorkflow(ui["api"], "diffgraph", ui, warnings=warnings)
        if isinstance(ui.get("nodes"), list):
            if ui_to_api is None:
                raise MetadataError(
                    f"{_describe(source)} carries only a UI-format workflow; convert it to the API format"
                )
            return ImageWorkflow(ui_to_api(ui), origin, ui, warnings=warnings)
    if texts.get("parameters", "").strip():
        from graphcore import a1111

        params = a1111.parse_parameters(texts["parameters"])
        api = a1111.txt2img_graph(params, checkpoints=checkpoints, warnings=warnings)
        return ImageWorkflow(api, "a1111", parameters=params, warnings=warnings)
    found = ", ".join(sorted(texts)) or "none"
    raise MetadataError(
        f"{_describe(source)} carries no workflow: expected a 'prompt', 'workflow' or 'parameters' text "
        f"(text chunks found: {found})"
    )


def workflow_from_png(
    source: Source | Path,
    *,
    checkpoints: list[str] | None = None,
    ui_to_api: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The API-format graph an image (PNG, or A1111 JPEG/WebP) carries; MetadataError when it has none."""
    return read_image_workflow(source, checkpoints=checkpoints, ui_to_api=ui_to_api).api
