"""Session-wide pytest fixtures for tiny checkpoints.

Import them into a conftest or test module:
    from support.fixtures import tiny_checkpoint, tiny_controlnet  # noqa: F401

Builds are cached per process (one directory per session), so every test module shares them. The files are
read-only by convention: copy one before changing it (see ``support.tiny_models.make_corrupt_file``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from support.tiny_models import FORMATS, TinyCheckpoint, TinyControlNet, build, build_controlnet
from support.tiny_specs import tiny_spec

_built: dict[tuple[str, int], TinyCheckpoint] = {}
_controlnets: dict[int, TinyControlNet] = {}


def _root(factory: pytest.TempPathFactory) -> Path:
    return factory.getbasetemp() / "tiny_models"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TinyCheckpoint]:
    """``tiny_checkpoint(family, formats=("safetensors",), seed=0) -> TinyCheckpoint``, built once per session.

    Families: sd1, sd1_inpaint, sd2_v, sdxl (alias sdxl_base), sdxl_refiner. Formats: safetensors, ckpt, diffusers.
    """

    def get(family: str, formats: Iterable[str] = ("safetensors",), seed: int = 0) -> TinyCheckpoint:
        name = tiny_spec(family).family
        built = _built.get((name, seed))
        wanted = set(formats)
        if built is None or not wanted <= set(built.paths):
            # Rebuild with every format asked for so far; the same seed gives the same tensors.
            formats_now = sorted(wanted | (set(built.paths) & set(FORMATS) if built else set()))
            dest = _root(tmp_path_factory) / f"{name}-seed{seed}-{'-'.join(formats_now)}"
            _built[name, seed] = build(name, dest, formats_now, seed=seed)
        return _built[name, seed]

    return get


@pytest.fixture(scope="session")
def tiny_controlnet(tmp_path_factory: pytest.TempPathFactory) -> TinyControlNet:
    """The tiny ControlNet for the tiny sd1 model (seed 0): single file (control_model.*) and diffusers folder."""
    if 0 not in _controlnets:
        _controlnets[0] = build_controlnet(_root(tmp_path_factory) / "controlnet-seed0")
    return _controlnets[0]
