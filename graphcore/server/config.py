"""Server settings (from `diffgraph serve` options or given directly by tests and embedders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # graphcore/: web/ and examples/ are here in a wheel
_REPO_ROOT = _PACKAGE_ROOT.parent  # a source checkout keeps them at the top: web/, workflows/


def _shipped(packaged: str, in_checkout: str) -> Path | None:
    for path in (_PACKAGE_ROOT / packaged, _REPO_ROOT / in_checkout):
        if (path / "index.html").is_file() or any(path.glob("*.json")):
            return path
    return None


@dataclass
class ServerConfig:
    data_dir: Path  # queue.sqlite3 and workflows/ live here
    host: str = "127.0.0.1"
    port: int = 8188
    auth_token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    web_dir: Path | None = field(default_factory=lambda: _shipped("web", "web"))
    examples_dir: Path | None = field(default_factory=lambda: _shipped("examples", "workflows"))
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
