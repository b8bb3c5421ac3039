"""Files the server reads and writes for clients: uploads (verified images, sanitised names) and /view.

Every name goes through `graphcore.folders.safe_join`, which refuses `..`, absolute paths, NUL bytes
and symlinks leading out of the folder. Served files get a content type from an allow-list; anything
else is an attachment, so nothing a user put in a folder renders as a page in the browser.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from graphcore.folders import Folders, PathEscape, safe_join
from graphcore.server.bodies import BadRequest

FOLDER_TYPES = ("input", "output", "temp")

# Formats an upload may have, with the extensions a stored file may keep (the first is the default).
IMAGE_FORMATS: dict[str, tuple[str, ...]] = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg"),
    "WEBP": (".webp",),
    "GIF": (".gif",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
}
IMAGE_SUFFIXES = frozenset(ext for extensions in IMAGE_FORMATS.values() for ext in extensions)

# Content types served inline; anything else is application/octet-stream as an attachment.
INLINE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
    ".gif": "image/gif", ".bmp": "image/bmp", ".mp4": "video/mp4", ".webm": "video/webm",
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
# Even inline files may not run scripts or load anything if a browser opens them directly.
VIEW_CSP = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox"

_UNSAFE_CHARS = re.compile(r"[^\w .()\[\]+-]")
MAX_NAME = 150


def folder_root(folders: Folders, folder_type: str) -> Path:
    roots = {"input": folders.input_dir, "output": folders.output_dir, "temp": folders.temp_dir}
    if folder_type not in roots:
        raise BadRequest(f"type must be one of {', '.join(FOLDER_TYPES)}, not {folder_type[:40]!r}")
    return roots[folder_type]


def resolve(folders: Folders, folder_type: str, subfolder: str, filename: str) -> Path:
    """The file a client names, inside its folder; BadRequest for anything that would leave it."""
    if not filename:
        raise BadRequest("a filename is required")
    root = folder_root(folders, folder_type)
    try:
        # Each part alone must be a plain relative name (no absolute file name re-rooted under the
        # subfolder); the joined path must then resolve inside the folder, symlinks included.
        safe_join(root, subfolder or "", allow_symlinks_out=True)
        safe_join(root, filename, allow_symlinks_out=True)
        return safe_join(root, f"{subfolder}/{filename}" if subfolder else filename)
    except PathEscape as exc:
        raise BadRequest(f"invalid file name: {exc}", "invalid_path") from None


def sanitize_name(name: str, fallback: str = "upload") -> str:
    """A plain file name: no folders, no control or shell-special characters, no leading dot."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/").split("/")[-1])
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_CHARS.sub("_", name).strip(" .")
    stem, ext = os.path.splitext(name)
    stem = stem[: MAX_NAME - len(ext[:16])]
    name = stem + ext[:16]
    return name if stem else fallback + ext[:16]


def sanitize_subfolder(subfolder: str) -> str:
    parts = [p for p in subfolder.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or "\x00" in subfolder or subfolder.startswith(("/", "\\")):
        raise BadRequest(f"invalid subfolder {subfolder[:80]!r}", "invalid_path")
    return "/".join(sanitize_name(p, "folder") for p in parts)


@dataclass
class VerifiedImage:
    format: str
    width: int
    height: int


def verify_image(data: bytes, max_pixels: int) -> VerifiedImage:
    """Pillow must recognise, verify and fully decode the bytes as an allowed format within the size cap."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt, (width, height) = probe.format, probe.size
            if fmt not in IMAGE_FORMATS:
                raise BadRequest(f"{fmt} images are not accepted; use {', '.join(IMAGE_FORMATS)}", "invalid_image")
            if width * height > max_pixels:
                raise BadRequest(f"the image is {width}×{height}; the limit is {max_pixels} pixels", "invalid_image")
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except BadRequest:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadRequest("the upload is not a readable image", "invalid_image", str(exc)[:200]) from None
    return VerifiedImage(fmt, width, height)


def stored_name(filename: str, fmt: str) -> str:
    """The sanitised name, with an extension that matches the image's real format."""
    name = sanitize_name(filename, "image")
    stem, ext = os.path.splitext(name)
    allowed = IMAGE_FORMATS[fmt]
    return name if ext.lower() in allowed else f"{stem or 'image'}{allowed[0]}"


def save_upload(directory: Path, name: str, data: bytes, overwrite: bool) -> str:
    """Write `data` as `directory/name`; without overwrite an existing different file keeps its name and
    this one becomes "name (1).ext" (an identical file is reused). Returns the name used."""
    directory.mkdir(parents=True, exist_ok=True)
    stem, ext = os.path.splitext(name)
    candidate, counter = name, 1
    while not overwrite:
        path = safe_join(directory, candidate)
        if not path.exists():
            break
        if path.is_file() and _same_content(path, data):
            return candidate
        candidate = f"{stem} ({counter}){ext}"
        counter += 1
    target = safe_join(directory, candidate)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return candidate


def _same_content(path: Path, data: bytes) -> bool:
    if path.stat().st_size != len(data):
        return False
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def content_headers(path: Path) -> dict[str, str]:
    content_type = INLINE_TYPES.get(path.suffix.lower())
    quoted = path.name.replace('"', "_").replace("\r", "_").replace("\n", "_")
    if content_type is None:
        return {"Content-Type": "application/octet-stream", "Content-Disposition": f'attachment; filename="{quoted}"',
                "Content-Security-Policy": VIEW_CSP}
    return {"Content-Type": content_type, "Content-Disposition": f'inline; filename="{quoted}"',
            "Content-Security-Policy": VIEW_CSP}


def converted_view(path: Path, channel: str, preview: str | None) -> tuple[bytes, str]:
    """ComfyUI's /view options: `channel` rgb | a | rgba, `preview` "webp;90" or "jpeg;80"."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        if channel == "a":
            alpha = image.getchannel("A") if "A" in image.getbands() else Image.new("L", image.size, 255)
            image = Image.new("RGBA", image.size)
            image.putalpha(alpha)
        elif channel == "rgb" or (preview and preview.split(";")[0] == "jpeg"):
            image = image.convert("RGB")
        elif image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA")
        buffer = io.BytesIO()
        if preview:
            fmt, _, quality = preview.partition(";")
            fmt = fmt if fmt in ("webp", "jpeg") and channel != "a" else "webp"
            image.save(buffer, format=fmt.upper(), quality=int(quality) if quality.isdigit() else 90)
            return buffer.getvalue(), f"image/{fmt}"
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
