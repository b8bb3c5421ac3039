"""Server settings (from `diffgraph serve` options or given directly by tests and embedders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def _existing(path: Path) -> Path | None:
    return path if path.is_dir() else None


@dataclass
class ServerConfig:
    data_dir: Path  # queue.sqlite3 and workflows/ live here
    host: str = "127.0.0.1"
    port: int = 8188
    auth_token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    web_dir: Path | None = field(default_factory=lambda: _existing(_REPO_ROOT / "web"))
    examples_dir: Path | None = field(default_factory=lambda: _existing(_REPO_ROOT / "workflows"))
    history_size: int = 10_000
    max_json_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    devices: tuple[str, ...] = ("default",)  # one worker thread each
    preview_interval: float = 0.1  # seconds between preview frames per prompt
    preview_max_side: int = 512
    status_debounce: float = 0.02  # seconds: queue status broadcasts are coalesced

    @property
    def queue_path(self) -> Path:
        return Path(self.data_dir) / "queue.sqlite3"

    @property
    def workflows_dir(self) -> Path:
        return Path(self.data_dir) / "workflows"
