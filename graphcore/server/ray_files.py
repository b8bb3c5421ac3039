"""Files that travel with a prompt between the server and a worker that may be on another host.

Only the models folder must be shared (same path on every worker). The rest travels:

* input images a prompt names (COMBO inputs with an upload button, e.g. LoadImage's `image`, also
  ComfyUI's "x.png [output]" annotations) go with the prompt and are written into the worker's scratch
  folders before it runs;
* files a node saves (its UI entries `{"filename", "subfolder", "type": "output"|"temp"}`) come back
  with that node's `node_done` event and are written into the server's output/temp folder, under a free
  name: two workers both count `img_00001_.png`, so the server renumbers on a clash and rewrites the
  names in the events and the history. The worker keeps an empty file under each shipped name so its own
  counters keep going up, and a cached re-run reports the same names, which the server maps again.

Every name from the other side goes through `safe_join`: nothing escapes its folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphcore.folders import Folders, safe_join
from graphcore.inputs import Combo
from graphcore.registry import Registry

FileKey = tuple[str, str, str]  # (folder type, subfolder, filename)
ShippedFile = tuple[str, str, str, bytes]  # (folder type, subfolder, filename, content)
ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}
SHIPPED_TYPES = ("output", "temp")
MAX_INPUT_BYTES = 512 * 1024 * 1024  # all input files of one prompt together
MAX_REMEMBERED_FILES = 100_000  # shipped names a worker / the server keeps for cached re-runs


def folder_root(folders: Folders, folder_type: str) -> Path:
    roots = {"input": folders.input_dir, "output": folders.output_dir, "temp": folders.temp_dir}
    if folder_type not in roots:
        raise ValueError(f"unknown folder type {folder_type!r}")
    return roots[folder_type]


# -- inputs: server → worker -----------------------------------------------------------------------------------


def _upload_names(prompt: dict[str, Any], registry: Registry) -> Iterator[str]:
    for node in prompt.values():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        resolved = registry.resolve(str(node.get("class_type")))
        if resolved is None:
            continue
        for name, value in node["inputs"].items():
            spec = resolved.cls.inputs.get(resolved.renames.get(name, name))
            if isinstance(value, str) and isinstance(spec, Combo) and spec.allow_upload:
                yield value


def split_annotation(name: str) -> tuple[str, str]:
    """("input"|"output"|"temp", bare name) for a LoadImage-style name."""
    for suffix, folder_type in ANNOTATIONS.items():
        if name.endswith(suffix):
            return folder_type, name[: -len(suffix)]
    return "input", name


def input_files(prompt: dict[str, Any], registry: Registry, folders: Folders) -> list[ShippedFile]:
    """The files the prompt's upload inputs name, read on the server (missing ones are left out: the
    worker's validation then names them)."""
    shipped: list[ShippedFile] = []
    total = 0
    for name in dict.fromkeys(_upload_names(prompt, registry)):
        folder_type, bare = split_annotation(name)
        try:
            path = safe_join(folder_root(folders, folder_type), bare)
        except ValueError:
            continue
        if not path.is_file():
            continue
        content = path.read_bytes()
        total += len(content)
        if total > MAX_INPUT_BYTES:
            raise ValueError(f"the prompt's input files exceed {MAX_INPUT_BYTES // 2**20} MiB")
        subfolder, _, filename = bare.replace("\\", "/").rpartition("/")
        shipped.append((folder_type, subfolder, filename, content))
    return shipped


def write_files(folders: Folders, files: list[ShippedFile]) -> list[Path]:
    """Write shipped files into these folders (replacing same-named ones); returns the paths written."""
    written = []
    for folder_type, subfolder, filename, content in files:
        directory = safe_join(folder_root(folders, folder_type), subfolder)
        directory.mkdir(parents=True, exist_ok=True)
        path = safe_join(directory, filename)
        path.write_bytes(content)
        written.append(path)
    return written


# -- outputs: worker → server ----------------------------------------------------------------------------------


def is_file_entry(entry: Any) -> bool:
    """A saved-file entry of a UI payload: {"filename", "subfolder", "type": "output"|"temp"}."""
    return (
        isinstance(entry, dict) and isinstance(entry.get("filename"), str)
        and entry.get("type", "output") in SHIPPED_TYPES and isinstance(entry.get("subfolder", ""), str)
    )


def file_entries(ui: Any) -> Iterator[dict[str, Any]]:
    """The saved-file entries of a node's UI payload (in any of its lists)."""
    if not isinstance(ui, dict):
        return
    for value in ui.values():
        if isinstance(value, list):
            yield from (entry for entry in value if is_file_entry(entry))


def entry_key(entry: dict[str, Any]) -> FileKey:
    return (entry.get("type", "output"), entry.get("subfolder", ""), entry["filename"])


def collect_outputs(folders: Folders, ui: Any, shipped: dict[FileKey, None]) -> list[ShippedFile]:
    """On the worker: the content of the files a node's UI names and that were not shipped before
    (`shipped` remembers the newest MAX_REMEMBERED_FILES names, oldest first)."""
    files: list[ShippedFile] = []
    for entry in file_entries(ui):
        key = entry_key(entry)
        if key in shipped:
            continue
        folder_type, subfolder, filename = key
        try:
            path = safe_join(safe_join(folder_root(folders, folder_type), subfolder), filename)
        except ValueError:
            continue
        if path.is_file():
            files.append((folder_type, subfolder, filename, path.read_bytes()))
            shipped[key] = None
            while len(shipped) > MAX_REMEMBERED_FILES:
                del shipped[next(iter(shipped))]
    return files


def empty_shipped(folders: Folders, keys: list[FileKey]) -> None:
    """On the worker, after a prompt: keep the names (counters) but not the bytes."""
    for folder_type, subfolder, filename in keys:
        try:
            path = safe_join(safe_join(folder_root(folders, folder_type), subfolder), filename)
            if path.is_file():
                os.truncate(path, 0)
        except (OSError, ValueError):
            continue


_COUNTER = re.compile(r"^(?P<stem>.*_)(?P<counter>\d+)(?P<tail>_?\.[^./]+)$")


class OutputPlacer:
    """On the server, for one worker incarnation: writes its files under free names and remembers them."""

    def __init__(self, folders: Folders) -> None:
        self.folders = folders
        self.names: dict[FileKey, str] = {}

    def place(self, files: list[ShippedFile]) -> None:
        for folder_type, subfolder, filename, content in files:
            directory = safe_join(folder_root(self.folders, folder_type), subfolder)
            directory.mkdir(parents=True, exist_ok=True)
            self.names[(folder_type, subfolder, filename)] = _write_new(directory, filename, content)
            while len(self.names) > MAX_REMEMBERED_FILES:  # the oldest: long gone from the worker's cache
                del self.names[next(iter(self.names))]

    def rewrite(self, ui: Any) -> Any:
        """The UI payload with the server's names for the worker's files (a copy; other values as they are)."""
        if not isinstance(ui, dict):
            return ui
        copy = {key: (list(value) if isinstance(value, list) else value) for key, value in ui.items()}
        for value in copy.values():
            if not isinstance(value, list):
                continue
            for index, entry in enumerate(value):
                if is_file_entry(entry):
                    name = self.names.get(entry_key(entry))
                    if name is not None:
                        value[index] = {**entry, "filename": name}
        return copy

    def rewrite_outputs(self, outputs: dict[str, Any]) -> dict[str, Any]:
        return {node_id: self.rewrite(ui) for node_id, ui in outputs.items()}


def _write_new(directory: Path, filename: str, content: bytes) -> str:
    """Create `filename` in `directory`, or the next free counter name when it exists; never overwrites."""
    for candidate in _candidates(directory, filename):
        path = safe_join(directory, candidate)
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        return candidate
    raise FileExistsError(f"no free name for {filename!r} in {directory}")


def _candidates(directory: Path, filename: str) -> Iterator[str]:
    yield filename
    match = _COUNTER.match(filename)
    if match:  # ComfyUI-style {prefix}_{counter:05}_.png: continue after the highest counter there
        stem, width, tail = match["stem"], len(match["counter"]), match["tail"]
        pattern = re.compile(re.escape(stem) + r"(\d+)")
        highest = max((int(m[1]) for n in os.listdir(directory) if (m := pattern.match(n))), default=0)
        for counter in range(highest + 1, highest + 10_000):
            yield f"{stem}{counter:0{width}d}{tail}"
    else:
        stem, dot, suffix = filename.rpartition(".")
        stem, dot = (stem, dot) if stem else (filename, "")
        for counter in range(2, 10_000):
            yield f"{stem}_{counter}{dot}{suffix if dot else ''}"
