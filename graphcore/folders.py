"""Where files live: model folders (with ComfyUI/A1111 installs mapped in), input, output, temp.

Every name a workflow or a request gives is resolved *inside* one of these roots; `PathEscape` is raised
for anything else (`..`, absolute paths, NUL bytes, symlinks out of user-writable folders).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

MODEL_FILE_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft")


@dataclass(frozen=True)
class FolderKind:
    name: str
    extensions: tuple[str, ...] = MODEL_FILE_EXTENSIONS
    # A directory holding one of these files is a model in its own right (a diffusers folder).
    folder_markers: tuple[str, ...] = ()


MODEL_KINDS: dict[str, FolderKind] = {
    kind.name: kind
    for kind in (
        FolderKind("checkpoints", folder_markers=("model_index.json",)),
        FolderKind("loras", (".safetensors", ".pt", ".bin", ".ckpt")),
        FolderKind("controlnet", folder_markers=("config.json",)),
        FolderKind("ipadapter", (".safetensors", ".bin")),
        FolderKind("clip_vision", folder_markers=("config.json",)),
        FolderKind("vae", folder_markers=("config.json",)),
        FolderKind("upscale_models", (".pth", ".safetensors", ".pt")),
        FolderKind("embeddings", (".safetensors", ".pt", ".bin")),
        FolderKind("safety_checker", (), folder_markers=("config.json", "model_index.json")),
    )
}

# How other tools name the same folders (A1111 install layout, relative to its root).
A1111_LAYOUT = {
    "checkpoints": ["models/Stable-diffusion"],
    "loras": ["models/Lora", "models/LyCORIS"],
    "controlnet": ["models/ControlNet", "extensions/sd-webui-controlnet/models"],
    "vae": ["models/VAE"],
    "upscale_models": ["models/ESRGAN", "models/RealESRGAN"],
    "embeddings": ["embeddings"],
    "clip_vision": ["models/clip_vision"],
    "ipadapter": ["models/ipadapter"],
}
COMFY_FOLDER_ALIASES = {"ipadapter": "ipadapter", "clip_vision": "clip_vision", "controlnet": "controlnet",
                        "t2i_adapter": "controlnet"}

_builtin_roots: dict[str, list[Path]] = {}


def register_builtin_root(kind: str, path: Path) -> None:
    """Node packages add folders of files they ship (e.g. the demo model) to every model listing."""
    roots = _builtin_roots.setdefault(kind, [])
    if path not in roots:
        roots.append(path)


class PathEscape(ValueError):
    """A requested name would leave the folder it must stay in."""


def safe_join(root: Path, relative: str, *, allow_symlinks_out: bool = False) -> Path:
    """`root/relative`, refusing names that would end up outside `root`."""
    if not isinstance(relative, str) or "\x00" in relative:
        raise PathEscape("invalid file name")
    cleaned = relative.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise PathEscape(f"absolute paths are not allowed: {relative!r}")
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathEscape(f"'..' is not allowed in {relative!r}")
    root = Path(root)
    candidate = root.joinpath(*parts)
    if not allow_symlinks_out:
        real_root = os.path.realpath(root)
        real = os.path.realpath(candidate)
        if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
            raise PathEscape(f"{relative!r} points outside its folder")
    return candidate


@dataclass
class Folders:
    models_dir: Path
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    extra_roots: dict[str, list[Path]] = field(default_factory=dict)

    def create(self) -> Folders:
        for path in (self.input_dir, self.output_dir, self.temp_dir):
            path.mkdir(parents=True, exist_ok=True)
        for kind in MODEL_KINDS:
            (self.models_dir / kind).mkdir(parents=True, exist_ok=True)
        return self

    def model_roots(self, kind: str) -> list[Path]:
        if kind not in MODEL_KINDS:
            raise KeyError(f"unknown model folder {kind!r}; known: {', '.join(MODEL_KINDS)}")
        roots = [self.models_dir / kind, *self.extra_roots.get(kind, []), *_builtin_roots.get(kind, [])]
        unique: list[Path] = []
        for root in roots:
            if root not in unique:
                unique.append(root)
        return unique

    def list_models(self, kind: str) -> list[str]:
        """Model names in a folder kind: relative paths with '/' (sub-folders included), sorted."""
        spec = MODEL_KINDS[kind]
        names: set[str] = set()
        for root in self.model_roots(kind):
            if root.is_dir():
                names.update(_walk_models(root, spec))
        return sorted(names, key=str.lower)

    def resolve_model(self, kind: str, name: str) -> Path:
        """The file or folder for a listed model name; FileNotFoundError if it is in no root."""
        spec = MODEL_KINDS[kind]
        for root in self.model_roots(kind):
            try:
                # Users symlink big model files into their folders: allowed for model roots.
                path = safe_join(root, name, allow_symlinks_out=True)
            except PathEscape:
                raise
            if path.is_file() and path.suffix.lower() in spec.extensions:
                return path
            if path.is_dir() and any((path / marker).is_file() for marker in spec.folder_markers):
                return path
        roots = ", ".join(str(r) for r in self.model_roots(kind))
        raise FileNotFoundError(f"no {kind} model named {name!r} in {roots}")

    def add_extra_roots(self, mapping: dict[str, Iterable[Path]]) -> None:
        for kind, paths in mapping.items():
            if kind in MODEL_KINDS:
                roots = self.extra_roots.setdefault(kind, [])
                roots.extend(p for p in paths if p not in roots)


def _walk_models(root: Path, spec: FolderKind) -> Iterable[str]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames.sort()
        keep = []
        for d in dirnames:
            if d.startswith("."):
                continue
            sub = here / d
            if any((sub / marker).is_file() for marker in spec.folder_markers):
                yield sub.relative_to(root).as_posix()
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            if f.lower().endswith(spec.extensions) and not f.startswith("."):
                yield (here / f).relative_to(root).as_posix()


def a1111_roots(install: Path) -> dict[str, list[Path]]:
    """Model folders of an AUTOMATIC1111 install."""
    return {kind: [install / rel for rel in rels] for kind, rels in A1111_LAYOUT.items()}


def comfy_extra_model_paths(yaml_path: Path) -> dict[str, list[Path]]:
    """Folders named by a ComfyUI `extra_model_paths.yaml` (each section: base_path + kind: paths)."""
    data = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    found: dict[str, list[Path]] = {}
    for section in data.values():
        if not isinstance(section, dict):
            continue
        base = Path(os.path.expanduser(str(section.get("base_path", ""))))
        if not base.is_absolute():
            base = yaml_path.parent / base
        for key, value in section.items():
            kind = COMFY_FOLDER_ALIASES.get(key, key)
            if kind not in MODEL_KINDS or not isinstance(value, str):
                continue
            for line in value.splitlines():
                if line.strip():
                    found.setdefault(kind, []).append(base / os.path.expanduser(line.strip()))
    return found


def default_data_dir() -> Path:
    env = os.environ.get("DIFFGRAPH_DATA_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(xdg) / "diffgraph"


def folders_from_options(
    models_dir: str | None = None,
    output_dir: str | None = None,
    input_dir: str | None = None,
    extra_model_paths: Iterable[str] = (),
) -> Folders:
    """Folders from command-line options, falling back to environment variables and the data folder."""
    data = default_data_dir()
    models = Path(models_dir or os.environ.get("DIFFGRAPH_MODELS_DIR") or data / "models")
    output = Path(output_dir or os.environ.get("DIFFGRAPH_OUTPUT_DIR") or data / "output")
    inputs = Path(input_dir or os.environ.get("DIFFGRAPH_INPUT_DIR") or data / "input")
    folders = Folders(models.expanduser(), inputs.expanduser(), output.expanduser(), data / "temp")
    extras = list(extra_model_paths)
    env_extra = os.environ.get("DIFFGRAPH_EXTRA_MODEL_PATHS")
    if env_extra:
        extras.extend(env_extra.split(os.pathsep))
    for extra in extras:
        path = Path(extra).expanduser()
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            folders.add_extra_roots(comfy_extra_model_paths(path))
        elif path.is_dir():
            folders.add_extra_roots(a1111_roots(path))
        else:
            raise FileNotFoundError(f"extra model path {extra!r} is neither a yaml file nor an A1111 folder")
    return folders


_current: Folders | None = None


def configure(folders: Folders) -> Folders:
    global _current
    _current = folders
    return folders


def current() -> Folders:
    global _current
    if _current is None:
        _current = folders_from_options()
    return _current


def model_file_stamp(kind: str, name: str) -> tuple[int, int] | None:
    """(mtime, size) of a model file or folder: changes when it is replaced, so nodes loading it re-run.
    No hashing: model files are gigabytes. None when the name resolves to nothing (validation reports it)."""
    try:
        path = current().resolve_model(kind, name)
    except (FileNotFoundError, ValueError):
        return None
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file()]
        return (max((f.stat().st_mtime_ns for f in files), default=0), sum(f.stat().st_size for f in files))
    stat = path.stat()
    return (stat.st_mtime_ns, stat.st_size)


class ModelChoices:
    """COMBO choices listing a model folder, evaluated each time they are asked for."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self) -> list[str]:
        return current().list_models(self.kind)

    def missing_hint(self) -> str:
        """Where a name that is not listed was looked for (validation errors say it, so a user knows where the
        file goes)."""
        roots = ", ".join(str(root) for root in current().model_roots(self.kind))
        return f"looked in the {self.kind} folder(s): {roots}"

    def __repr__(self) -> str:
        return f"ModelChoices({self.kind!r})"
