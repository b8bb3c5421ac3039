"""VAELoader (single file with its yaml, diffusers folder), tiled encode/decode, EmptyLatent."""

from __future__ import annotations

import torch
from safetensors.torch import save_file
from support import parity_helpers as ph

from graphcore import types
from nodes.sd import vae_ops
from nodes.sd.ldm_layout import vae_to_ldm


def vae_graph(vae_name: str) -> dict:
    graph = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 2}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 0]}},
    }
    ph.capture(graph, "4", ["3", 0], types.IMAGE, "image")
    return graph


def reference_decode(vae, latent: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ((vae.decode(latent).sample + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1)


def test_vae_loader_single_file_and_folder(tiny_checkpoint, isolated_folders):
    checkpoint = tiny_checkpoint("sd1")
    vae = checkpoint.components["vae"]
    folder = isolated_folders.models_dir / "vae"
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), prefix="").items()},
              folder / "tiny_vae.safetensors")
    (folder / "tiny_vae.yaml").symlink_to(checkpoint.paths["yaml"])  # the VAE's sizes, A1111's convention
    vae.save_pretrained(folder / "tiny_vae_folder")
    expected = reference_decode(vae, torch.zeros(2, 4, 6, 8))
    for name in ("tiny_vae.safetensors", "tiny_vae_folder"):
        ph.run_ok(ph.executor(), vae_graph(name))
        image = ph.captured("image")
        assert image.shape == (2, 48, 64, 3)
        assert (image - expected).abs().max().item() < 1e-5, name


def test_a_checkpoint_file_is_not_a_vae(tiny_checkpoint, isolated_folders):
    link = isolated_folders.models_dir / "vae" / "whole.safetensors"
    link.symlink_to(tiny_checkpoint("sd1").paths["safetensors"])
    result = ph.executor().run(vae_graph("whole.safetensors"))
    assert result.status == "error"
    assert "whole.safetensors" in result.error.exception_message


def test_tiled_blending_is_exact_for_a_local_function():
    """With a function that only looks at each pixel, overlapping tiles blend back to the whole result."""
    x = torch.randn(1, 3, 40, 56)

    def upsample(t: torch.Tensor) -> torch.Tensor:
        return (t * 2 + 1).repeat_interleave(8, dim=-1).repeat_interleave(8, dim=-2)

    tiled = vae_ops.tiled(upsample, x, tile=16, overlap=4, scale=8, out_channels=3)
    assert torch.allclose(tiled, upsample(x), atol=1e-5)
    shrunk = vae_ops.tiled(lambda t: t[..., ::8, ::8] - 1, upsample(x), tile=128, overlap=32, scale=1 / 8,
                           out_channels=3)
    assert torch.allclose(shrunk, x * 2, atol=1e-5)


def test_tiled_nodes_equal_whole_ones_when_one_tile_covers_the_image(tiny_checkpoint, isolated_folders):
    ph.link_formats(tiny_checkpoint("sd1"), isolated_folders.models_dir / "checkpoints", ["safetensors"], "tiny")
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny.safetensors"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "VAEEncodeTiled", "inputs": {"pixels": ["2", 0], "vae": ["1", 2], "tile_size": 512,
                                                          "overlap": 64}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 2]}},
        "6": {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["4", 0], "vae": ["1", 2], "tile_size": 512,
                                                          "overlap": 64}},
    }
    ph.capture(graph, "7", ["5", 0], types.IMAGE, "whole")
    ph.capture(graph, "8", ["6", 0], types.IMAGE, "tiled")
    ph.run_ok(ph.executor(), graph)
    whole, tiled = ph.captured("whole"), ph.captured("tiled")
    assert whole.shape == tiled.shape == (1, 64, 64, 3)
    assert (whole - tiled).abs().max().item() < 1e-5


def test_tiled_overlap_must_be_under_half_the_tile():
    report = ph.executor().validate({
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "x"}},
        "3": {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["1", 0], "vae": ["2", 0], "tile_size": 256,
                                                          "overlap": 128}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    })
    found = {(e.node_id, e.error_type, e.input_name) for e in report.errors}
    assert ("3", "custom_validation_failed", "overlap") in found
    assert ("2", "value_not_in_list", "vae_name") in found
