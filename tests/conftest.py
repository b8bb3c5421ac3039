from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models gain nothing from a second thread, and tests share the machine's cores (also with the servers
# and workers they start, which inherit this).
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

from support.fixtures import tiny_checkpoint, tiny_controlnet  # noqa: E402, F401

from graphcore import folders as folder_config  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def isolated_folders(tmp_path_factory, monkeypatch):
    """Every test gets its own models/input/output folders and data folder."""
    root = tmp_path_factory.mktemp("diffgraph")
    monkeypatch.setenv("DIFFGRAPH_DATA_DIR", str(root / "data"))
    for var in ("DIFFGRAPH_MODELS_DIR", "DIFFGRAPH_OUTPUT_DIR", "DIFFGRAPH_INPUT_DIR", "DIFFGRAPH_EXTRA_MODEL_PATHS"):
        monkeypatch.delenv(var, raising=False)
    folders = folder_config.Folders(
        models_dir=root / "models", input_dir=root / "input", output_dir=root / "output", temp_dir=root / "temp"
    ).create()
    previous = folder_config._current
    folder_config.configure(folders)
    yield folders
    folder_config._current = previous


@pytest.fixture
def without_builtin_models(monkeypatch):
    """Hide the packaged demo files, for tests that assert a folder's exact listing."""
    monkeypatch.setattr(folder_config, "_builtin_roots", {})


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
