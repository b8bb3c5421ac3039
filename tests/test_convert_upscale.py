"""Upscale models: tiny ESRGAN (both key layouts, ×4 and unshuffled ×2) and Real-ESRGAN Compact files written here,
loaded safely from the upscale_models folder, run whole and in tiles, and through a workflow."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from graphcore.executor import Executor
from graphcore.registry import Registry
from nodes.upscale import nodes as upscale_nodes
from nodes.upscale.archs import RRDBNet, SRVGGNetCompact
from nodes.upscale.run import load_upscale_model, upscale


def seeded(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


def picture(h: int = 24, w: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


def expected(module: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(image.movedim(-1, 1)).clamp(0, 1).movedim(1, -1)


def to_old_esrgan(sd: dict, nb: int, upsamples: int) -> dict:
    """BasicSR names → the original ESRGAN ones (model.N, sub.N.RDBM.convK.0), to test reading that layout."""
    out = {}
    last_up = 3 + 3 * (upsamples - 1)
    names = {"conv_first": "model.0", "conv_body": f"model.1.sub.{nb}", "conv_hr": f"model.{last_up + 2}",
             "conv_last": f"model.{last_up + 4}"}
    names.update({f"conv_up{k + 1}": f"model.{3 + 3 * k}" for k in range(upsamples)})
    for key, value in sd.items():
        head, param = key.rsplit(".", 1)
        if head.startswith("body."):
            _, block, rdb, conv = head.split(".")
            out[f"model.1.sub.{block}.RDB{rdb[-1]}.{conv}.0.{param}"] = value
        else:
            out[f"{names[head]}.{param}"] = value
    return out


@pytest.fixture
def upscale_dir(isolated_folders):
    return isolated_folders.models_dir / "upscale_models"


def test_compact_model_from_safetensors_and_pth(upscale_dir):
    module = seeded(SRVGGNetCompact(3, 3, 8, 2, 2))
    save_file(module.state_dict(), upscale_dir / "compact.safetensors")
    torch.save({"params": module.state_dict()}, upscale_dir / "compact.pth")  # Real-ESRGAN's release wrapping
    image = picture()
    for name in ("compact.safetensors", "compact.pth"):
        model = load_upscale_model(upscale_dir / name, name)
        assert (model.scale, model.architecture) == (2, "Real-ESRGAN Compact (SRVGGNetCompact)")
        out = upscale(model, image)
        assert out.shape == (1, 48, 40, 3)
        torch.testing.assert_close(out, expected(module, image))


def test_esrgan_new_and_old_layouts_and_unshuffled_x2(upscale_dir):
    module = seeded(RRDBNet(3, 3, nf=8, nb=2, gc=4, upsamples=2, unshuffle=1))
    sd = module.state_dict()
    save_file(sd, upscale_dir / "esrgan_new.safetensors")
    save_file(to_old_esrgan(sd, nb=2, upsamples=2), upscale_dir / "esrgan_old.safetensors")
    image = picture(12, 10)
    for name in ("esrgan_new.safetensors", "esrgan_old.safetensors"):
        model = load_upscale_model(upscale_dir / name, name)
        assert (model.scale, model.architecture) == (4, "ESRGAN (RRDBNet)")
        torch.testing.assert_close(upscale(model, image), expected(module, image))
    x2 = seeded(RRDBNet(3, 3, nf=8, nb=1, gc=4, upsamples=2, unshuffle=2), seed=3)
    torch.save(x2.state_dict(), upscale_dir / "x2plus.pth")
    model = load_upscale_model(upscale_dir / "x2plus.pth", "x2plus.pth")
    assert model.scale == 2
    torch.testing.assert_close(upscale(model, image), expected(x2, image))


def test_tiles_blend_into_the_whole_picture(upscale_dir):
    module = seeded(SRVGGNetCompact(3, 3, 8, 2, 2))
    save_file(module.state_dict(), upscale_dir / "compact.safetensors")
    model = load_upscale_model(upscale_dir / "compact.safetensors", "compact.safetensors")
    image = picture(80, 72, seed=5)
    steps: list[tuple[int, int]] = []
    tiled = upscale(model, image, tile=32, overlap=16, progress=lambda done, total: steps.append((done, total)))
    whole = expected(module, image)
    assert steps[-1] == (len(steps), len(steps)) and len(steps) == 4 * 4  # starts 0, 16, 32, 48 and 0, 16, 32, 40
    difference = (tiled - whole).abs()
    assert difference.mean() < 2e-3 and difference.max() < 0.05  # zero padding at inner tile edges, faded out


def test_unknown_architecture_corrupt_and_unsafe_files_are_refused(upscale_dir):
    save_file({"encoder.weight": torch.zeros(4, 4)}, upscale_dir / "other.safetensors")
    with pytest.raises(ValueError, match="not an ESRGAN .* 'spandrel' package"):
        load_upscale_model(upscale_dir / "other.safetensors", "other.safetensors")
    (upscale_dir / "broken.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="broken.safetensors: not a readable model file"):
        load_upscale_model(upscale_dir / "broken.safetensors", "broken.safetensors")
    with open(upscale_dir / "code.pth", "wb") as f:  # a pickle that would call a function when loaded
        pickle.dump(SimpleNamespace(x=1), f)
    with pytest.raises(ValueError, match="code.pth: not a readable model file"):
        load_upscale_model(upscale_dir / "code.pth", "code.pth")
    bad = seeded(SRVGGNetCompact(3, 3, 8, 2, 2)).state_dict()
    bad["body.2.weight"] = torch.zeros(8, 8, 1, 1)
    save_file(bad, upscale_dir / "mismatch.safetensors")
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_upscale_model(upscale_dir / "mismatch.safetensors", "mismatch.safetensors")


def test_upscale_workflow_in_comfyui_names(isolated_folders, upscale_dir):
    from nodes.image import load, save

    module = seeded(SRVGGNetCompact(3, 3, 8, 2, 2))
    save_file(module.state_dict(), upscale_dir / "2x-tiny.safetensors")
    pixels = (np.asarray(picture(16, 12)[0]) * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(isolated_folders.input_dir / "small.png")
    registry = Registry().add_all([*upscale_nodes.NODES, *load.NODES, *save.NODES])
    graph = {
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "2x-tiny.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "small.png"}},
        "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["1", 0], "image": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}},
    }
    result = Executor(registry).run(graph)
    assert result.ok, result.error and result.error.exception_message
    (saved,) = result.outputs["4"]["images"]
    with Image.open(isolated_folders.output_dir / saved["filename"]) as image:
        got = np.asarray(image.convert("RGB"))
    want = expected(module, torch.from_numpy(pixels.astype(np.float32) / 255.0)[None])[0].numpy()
    assert got.shape == (32, 24, 3)
    assert np.abs(got.astype(float) - np.round(want * 255)).max() <= 1
