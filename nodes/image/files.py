"""Image files in the input, output and temp folders: listing, hashing, decoding, naming and writing.

numpy + Pillow only (no torch), so it is testable on its own and cheap to import for COMBO listings.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphcore.folders import Folders, PathEscape, safe_join

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# ComfyUI's "annotated" names ("x.png [output]") point into another folder than the input one.
ANNOTATIONS: dict[str, Callable[[Folders], Path]] = {
    " [input]": lambda folders: folders.input_dir,
    " [output]": lambda folders: folders.output_dir,
    " [temp]": lambda folders: folders.temp_dir,
}


class ImageFileError(ValueError):
    """A named image that is not there, or not an image."""


# ------------------------------------------------------------------------------------------ input listing


def _visible(relative: str) -> bool:
    return not any(part.startswith(".") for part in relative.split("/"))


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def input_image_path(root: Path, name: str) -> Path | None:
    """The file `name` (relative, '/'-separated) names inside `root`, if it is a visible image there."""
    if not isinstance(name, str) or not is_image_name(name) or not _visible(name.replace("\\", "/")):
        return None
    try:
        path = safe_join(root, name)
    except PathEscape:
        return None
    return path if path.is_file() else None


def list_input_images(root: Path) -> list[str]:
    """Images in a folder and its sub-folders, as '/'-separated relative names (hidden entries skipped)."""
    if not root.is_dir():
        return []
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        for filename in filenames:
            relative = (here / filename).relative_to(root).as_posix()
            if input_image_path(root, relative) is not None:
                names.append(relative)
    return sorted(names, key=lambda n: (n.lower(), n))


def resolve_image(folders: Folders, name: str) -> Path:
    """The file a LoadImage name refers to: input folder, or the folder its annotation names."""
    root, bare = folders.input_dir, name
    for suffix, folder_of in ANNOTATIONS.items():
        if name.endswith(suffix):
            root, bare = folder_of(folders), name[: -len(suffix)]
            break
    path = input_image_path(root, bare)
    if path is None:
        raise ImageFileError(f"{name!r} is not an image file in {root}")
    return path


# -------------------------------------------------------------------------------------------------- hashing

_hash_cache: dict[str, tuple[int, int, str]] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (hex), remembered per path while its modification time and size stay the same."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (stat.st_mtime_ns, stat.st_size)
    with _hash_lock:
        known = _hash_cache.get(real)
    if known is not None and known[:2] == key:
        return known[2]
    digest = hashlib.sha256()
    with open(real, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    with _hash_lock:
        _hash_cache[real] = (*key, digest.hexdigest())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ decoding


@dataclass(frozen=True)
class Frame:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    alpha: np.ndarray | None  # [H, W] float32 in [0, 1], when the frame has transparency


def _frame_arrays(frame) -> Frame:
    from PIL import ImageOps

    frame = ImageOps.exif_transpose(frame)
    if frame.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit greyscale: keep its full range
        grey = np.clip(np.asarray(frame, dtype=np.float32) / 65535.0, 0.0, 1.0)
        return Frame(np.repeat(grey[..., None], 3, axis=2), None)
    alpha = None
    if "A" in frame.getbands():
        alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
    elif frame.mode == "P" and "transparency" in frame.info:
        alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
    return Frame(rgb, alpha)


def read_frames(path: Path) -> list[Frame]:
    """Every frame of an image file that has the first frame's size (an animated GIF → several), EXIF
    orientation applied. MPO files (stereo JPEGs) give their first frame only, as in ComfyUI."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            frames: list[Frame] = []
            for frame in ImageSequence.Iterator(image):
                arrays = _frame_arrays(frame)
                if frames and arrays.rgb.shape != frames[0].rgb.shape:
                    continue
                frames.append(arrays)
                if image.format == "MPO":
                    break
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageFileError(f"{path.name!r} is not a readable image: {exc}") from None
    if not frames:
        raise ImageFileError(f"{path.name!r} has no image frames")
    return frames


CHANNELS = {"alpha": "A", "red": "R", "green": "G", "blue": "B"}


def read_channel(path: Path, channel: str) -> np.ndarray:
    """One channel of the first frame as [H, W] float32 in [0, 1]; alpha is inverted (1 = transparent)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    band = CHANNELS[channel]
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.getbands() != ("R", "G", "B", "A"):
                image = image.convert("RGBA")
            values = np.asarray(image.getchannel(band), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageFileError(f"{path.name!r} is not a readable image: {exc}") from None
    return 1.0 - values if band == "A" else values


# -------------------------------------------------------------------------------------------------- writing


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """ComfyUI's quantisation: scale by 255, clip, truncate (not round)."""
    return np.clip(255.0 * pixels.astype(np.float32, copy=False), 0, 255).astype(np.uint8)


# Placeholders ComfyUI's SaveImage expands in a filename prefix.
PREFIX_FIELDS: dict[str, Callable[[time.struct_time, int, int], str]] = {
    "%width%": lambda now, w, h: str(w),
    "%height%": lambda now, w, h: str(h),
    "%year%": lambda now, w, h: str(now.tm_year),
    "%month%": lambda now, w, h: f"{now.tm_mon:02}",
    "%day%": lambda now, w, h: f"{now.tm_mday:02}",
    "%hour%": lambda now, w, h: f"{now.tm_hour:02}",
    "%minute%": lambda now, w, h: f"{now.tm_min:02}",
    "%second%": lambda now, w, h: f"{now.tm_sec:02}",
}


@dataclass(frozen=True)
class SaveTarget:
    folder: Path
    name: str  # the file name stem before the counter
    subfolder: str  # '/'-separated, relative to the root; "" for the root itself


def expand_prefix(prefix: str, width: int, height: int, now: time.struct_time | None = None) -> str:
    now = now or time.localtime()
    for field, value in PREFIX_FIELDS.items():
        if field in prefix:
            prefix = prefix.replace(field, value(now, width, height))
    return prefix


def check_prefix(root: Path, prefix: str) -> str | None:
    """Why `prefix` cannot name files inside `root` (None when it can)."""
    try:
        _split_prefix(root, prefix)
    except (PathEscape, ImageFileError) as exc:
        return str(exc)
    return None


def _split_prefix(root: Path, prefix: str) -> tuple[str, str]:
    cleaned = prefix.replace("\\", "/")
    safe_join(root, cleaned)  # refuses '..', absolute paths, NUL, symlinks leading out
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if not parts or cleaned.endswith("/"):
        raise ImageFileError(f"filename prefix {prefix!r} has no file name part")
    return "/".join(parts[:-1]), parts[-1]


def save_target(root: Path, prefix: str, width: int = 0, height: int = 0) -> SaveTarget:
    """Where files for `prefix` go ("portraits/x" → sub-folder portraits, name x), the folder created.

    Raises PathEscape for a prefix that would leave `root`."""
    subfolder, name = _split_prefix(root, expand_prefix(prefix, width, height))
    folder = safe_join(root, subfolder) if subfolder else Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    if subfolder:
        safe_join(root, subfolder)  # again, now that the folder exists: a symlink cannot have slipped in
    return SaveTarget(folder, name, subfolder)


def next_counter(folder: Path, name: str) -> int:
    """1 + the highest counter of files named `{name}_{counter}_…` in the folder (1 when there are none)."""
    pattern = re.compile(re.escape(name) + r"_(\d+)(?:_|$)")
    highest = 0
    for entry in os.scandir(folder):
        match = pattern.match(entry.name)
        if match:
            highest = max(highest, int(match.group(1)))
    return highest + 1


def counter_file_name(name: str, counter: int, extension: str = "png") -> str:
    return f"{name}_{counter:05}_.{extension}"


def write_png(target: SaveTarget, counter: int, pixels: np.ndarray, texts: Mapping[str, str],
              compress_level: int) -> tuple[str, int]:
    """Write `pixels` ([H, W, C] uint8, C = 1, 3 or 4) as the first free counter file at or after `counter`;
    never overwrites a file. Returns (file name, counter used)."""
    from PIL import Image

    from graphcore.metadata import png_info

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    info = png_info(texts)
    while True:
        file_name = counter_file_name(target.name, counter)
        path = target.folder / file_name
        try:
            handle = open(path, "xb")  # noqa: SIM115 - closed below; a half-written file is removed
        except FileExistsError:
            counter += 1
            continue
        try:
            with handle:
                image.save(handle, format="PNG", pnginfo=info, compress_level=compress_level)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return file_name, counter
