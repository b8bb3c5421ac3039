"""Image nodes: exact pixels through load/save, masks, naming, traversal, metadata, resize/pad/invert/Canny."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from graphcore import types
from graphcore.context import NodeContext
from graphcore.executor import Executor
from graphcore.inputs import Float, Int, Socket, String
from graphcore.metadata import png_text_chunks
from graphcore.node import Node, Output, Result
from graphcore.registry import Registry
from nodes.image import files, load, ops, save, transform
from nodes.image.generation_info import settings_from_prompt

CAPTURED: dict[str, tuple] = {}


class Capture(Node):
    """Test output node keeping what it receives."""

    inputs = {"key": String("x", optional=True), "image": Socket(types.IMAGE, optional=True),
              "mask": Socket(types.MASK, optional=True)}
    output_node = True

    def run(self, ctx, key="x", image=None, mask=None):
        CAPTURED[key] = (image, mask)
        return Result((), {"captured": [key]})


def _stub(name, inputs, outputs, value=None):
    def run(self, ctx, **kwargs):
        return tuple(value for _ in outputs)

    return type(name, (Node,), {"inputs": inputs, "outputs": tuple(Output(t) for t in outputs), "run": run})


GENERATION_STUBS = [
    _stub("LoadCheckpoint", {"ckpt_name": String("")}, (types.MODEL, types.CLIP, types.VAE)),
    _stub("CLIPSetLastLayer", {"clip": Socket(types.CLIP), "stop_at_clip_layer": Int(-1, min=-24, max=-1)},
          (types.CLIP,)),
    _stub("CLIPEncode", {"text": String(""), "clip": Socket(types.CLIP)}, (types.CONDITIONING,)),
    _stub("KSampler", {"model": Socket(types.MODEL), "seed": Int(0), "steps": Int(20), "cfg": Float(8.0),
                       "sampler_name": String(""), "scheduler": String(""), "positive": Socket(types.CONDITIONING),
                       "negative": Socket(types.CONDITIONING), "denoise": Float(1.0)}, (types.LATENT,)),
    _stub("VAEDecode", {"samples": Socket(types.LATENT), "vae": Socket(types.VAE)}, (types.IMAGE,),
          value=torch.full((1, 8, 12, 3), 0.25)),
]


def registry() -> Registry:
    return Registry().add_all([*load.NODES, *save.NODES, *transform.NODES, Capture, *GENERATION_STUBS])


def run(graph, **kwargs):
    result = Executor(registry()).run(graph, **kwargs)
    assert result.ok, result.error
    return result


def ctx_for(folders, class_type="SaveImage", prompt=None, extra=None) -> NodeContext:
    return NodeContext("1", class_type, "p", folders, prompt=prompt or {}, extra_data=extra or {})


def write_image(path, array, mode=None, **save_args):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **save_args)
    return path


RNG = np.random.default_rng(7)
RGBA = RNG.integers(0, 256, size=(5, 6, 4), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------- loading


def test_load_rgba_gives_exact_pixels_and_inverted_alpha_mask(isolated_folders):
    write_image(isolated_folders.input_dir / "sub" / "a.png", RGBA)
    run({"1": {"class_type": "LoadImage", "inputs": {"image": "sub/a.png"}},
         "2": {"class_type": "Capture", "inputs": {"key": "a", "image": ["1", 0], "mask": ["1", 1]}}})
    image, mask = CAPTURED["a"]
    assert image.dtype == torch.float32 and image.shape == (1, 5, 6, 3)
    assert torch.equal(image[0], torch.from_numpy(RGBA[..., :3].astype(np.float32) / 255.0))
    assert mask.shape == (1, 5, 6)
    assert torch.equal(mask[0], torch.from_numpy(1.0 - RGBA[..., 3].astype(np.float32) / 255.0))


def test_opaque_palette_16bit_and_exif_images(isolated_folders):
    folder = isolated_folders.input_dir
    write_image(folder / "rgb.png", RGBA[..., :3])
    image, mask = ops.frames_to_tensors(files.read_frames(folder / "rgb.png"))
    assert torch.equal(mask, torch.zeros(1, 5, 6))  # our choice: the image's size (ComfyUI: 64×64)
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putdata([0, 1, 1, 0, 1, 1])
    palette.save(folder / "p.png", transparency=0)
    _, mask = ops.frames_to_tensors(files.read_frames(folder / "p.png"))
    assert mask[0].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    deep = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    Image.fromarray(deep).save(folder / "deep.png")
    image, _ = ops.frames_to_tensors(files.read_frames(folder / "deep.png"))
    assert torch.equal(image[0, ..., 1], torch.from_numpy(deep.astype(np.float32) / 65535.0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    write_image(folder / "turned.png", RGBA[..., :3], exif=exif)
    image, _ = ops.frames_to_tensors(files.read_frames(folder / "turned.png"))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(folder / "turned.png")), dtype=np.float32) / 255.0
    assert image.shape == (1, 6, 5, 3) and torch.equal(image[0], torch.from_numpy(expected))


def test_animated_gif_gives_one_batch_entry_per_frame(isolated_folders):
    frames = [Image.new("RGB", (4, 4), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(isolated_folders.input_dir / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    image, mask = ops.frames_to_tensors(files.read_frames(isolated_folders.input_dir / "anim.gif"))
    assert image.shape == (3, 4, 4, 3) and mask.shape == (3, 4, 4)
    assert image[:, 0, 0].argmax(dim=1).tolist() == [0, 1, 2]


def test_listing_and_names_that_are_refused(isolated_folders, tmp_path_factory):
    folder = isolated_folders.input_dir
    for name in ("b.png", "A/c.jpg", ".hidden.png", ".cache/d.png"):
        write_image(folder / name, RGBA[..., :3])
    (folder / "notes.txt").write_text("not an image")
    outside = write_image(tmp_path_factory.mktemp("elsewhere") / "secret.png", RGBA[..., :3])
    os.symlink(outside, folder / "link.png")
    assert files.list_input_images(folder) == ["A/c.jpg", "b.png"]
    info = registry().object_info()["LoadImage"]["input"]["required"]["image"]
    assert info == [["A/c.jpg", "b.png"], {"tooltip": load.LoadImage.inputs["image"].tooltip, "image_upload": True}]
    ex = Executor(registry())
    for bad in ("missing.png", "../secret.png", "link.png", "/etc/hosts", ".hidden.png", "notes.txt", "b.png\x00"):
        report = ex.validate({"1": {"class_type": "LoadImage", "inputs": {"image": bad}},
                              "2": {"class_type": "Capture", "inputs": {"image": ["1", 0]}}})
        assert [(e.error_type, e.input_name) for e in report.errors] == [("value_not_in_list", "image")], bad


def test_corrupt_image_is_a_clear_error(isolated_folders):
    (isolated_folders.input_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = Executor(registry()).run({"1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
                                       "2": {"class_type": "Capture", "inputs": {"image": ["1", 0]}}})
    assert result.status == "error" and result.error.node_id == "1"
    assert result.error.exception_message.startswith("LoadImage: 'broken.png' is not a readable image")


def test_annotated_names_reach_the_output_folder(isolated_folders):
    write_image(isolated_folders.output_dir / "done_00001_.png", RGBA)
    run({"1": {"class_type": "LoadImage", "inputs": {"image": "done_00001_.png [output]"}},
         "2": {"class_type": "Capture", "inputs": {"key": "o", "image": ["1", 0]}}})
    assert CAPTURED["o"][0].shape == (1, 5, 6, 3)


def test_fingerprint_is_the_file_hash_computed_once_per_version(isolated_folders, monkeypatch):
    path = write_image(isolated_folders.input_dir / "f.png", RGBA)
    hashed = []
    real_sha256 = files.hashlib.sha256
    monkeypatch.setattr(files.hashlib, "sha256", lambda: hashed.append(1) or real_sha256())
    first = load.LoadImage.fingerprint({"image": "f.png"})
    assert first == real_sha256(path.read_bytes()).hexdigest()
    assert load.LoadImage.fingerprint({"image": "f.png"}) == first and len(hashed) == 1
    write_image(path, 255 - RGBA)
    os.utime(path, ns=(1, 1))  # a new version, whatever the clock's resolution
    assert load.LoadImage.fingerprint({"image": "f.png"}) != first and len(hashed) == 2


def test_changed_input_file_reruns_load(isolated_folders):
    path = write_image(isolated_folders.input_dir / "g.png", RGBA)
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "g.png"}},
             "2": {"class_type": "Capture", "inputs": {"key": "g", "image": ["1", 0]}}}
    ex = Executor(registry())
    assert ex.run(graph).executed == ["1", "2"]
    assert ex.run(graph).executed == []
    write_image(path, 255 - RGBA)
    os.utime(path, ns=(5, 5))
    assert ex.run(graph).executed == ["1", "2"]


CHANNEL_VALUES = RGBA.astype(np.float32) / 255.0  # float32 arithmetic, as the node does it


@pytest.mark.parametrize(("channel", "expected"), [("red", CHANNEL_VALUES[..., 0]), ("blue", CHANNEL_VALUES[..., 2]),
                                                   ("alpha", 1.0 - CHANNEL_VALUES[..., 3])])
def test_load_image_mask_channels(isolated_folders, channel, expected):
    write_image(isolated_folders.input_dir / "m.png", RGBA)
    (mask,) = load.LoadImageMask().run(ctx_for(isolated_folders), image="m.png", channel=channel)
    assert mask.shape == (1, 5, 6)
    assert mask.dtype == torch.float32 and torch.equal(mask[0], torch.from_numpy(expected))
    write_image(isolated_folders.input_dir / "rgb.png", RGBA[..., :3])
    (mask,) = load.LoadImageMask().run(ctx_for(isolated_folders), image="rgb.png", channel="alpha")
    assert torch.equal(mask, torch.zeros(1, 5, 6))


# ---------------------------------------------------------------------------------------------------- saving


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_load_save_round_trip_is_exact(isolated_folders):
    write_image(isolated_folders.input_dir / "rt.png", RGBA[..., :3])
    result = run({"1": {"class_type": "LoadImage", "inputs": {"image": "rt.png"}},
                  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "rt"}}})
    assert result.outputs["2"] == {"images": [{"filename": "rt_00001_.png", "subfolder": "", "type": "output"}]}
    assert np.array_equal(read_png(isolated_folders.output_dir / "rt_00001_.png"), RGBA[..., :3])


def test_quantisation_truncates_like_comfyui(isolated_folders):
    values = torch.tensor([0.0, 0.5, 0.999, 1 / 255, 0.99999, 1.2, -0.3, 0.3], dtype=torch.float32)
    images = values.reshape(1, 1, 8, 1).repeat(1, 1, 1, 3)
    save.SaveImage().run(ctx_for(isolated_folders), images=images, filename_prefix="q")
    saved = read_png(isolated_folders.output_dir / "q_00001_.png")[0, :, 0]
    assert saved.tolist() == [0, 127, 254, 1, 254, 255, 0, 76]
    assert saved.tolist() == np.clip(255.0 * values.numpy(), 0, 255).astype(np.uint8).tolist()


def test_counter_continues_after_existing_files_and_subfolders(isolated_folders):
    out = isolated_folders.output_dir
    for name in ("diffgraph_00007_.png", "diffgraph_00003_.png", "diffgraph_00012", "other_00099_.png",
                 "diffgraph_x_00050_.png", "diffgraph_00200.png"):
        (out / name).write_bytes(b"")
    images = torch.rand(2, 4, 4, 3)
    result = save.SaveImage().run(ctx_for(isolated_folders), images=images, filename_prefix="diffgraph")
    assert [i["filename"] for i in result.ui["images"]] == ["diffgraph_00013_.png", "diffgraph_00014_.png"]
    result = save.SaveImage().run(ctx_for(isolated_folders), images=images[:1], filename_prefix="portraits/x")
    assert result.ui == {"images": [{"filename": "x_00001_.png", "subfolder": "portraits", "type": "output"}]}
    assert (out / "portraits" / "x_00001_.png").is_file()
    result = save.SaveImage().run(ctx_for(isolated_folders), images=images[:1], filename_prefix="s/%width%x%height%")
    assert result.ui["images"][0]["filename"] == "4x4_00001_.png"


@pytest.mark.parametrize("prefix", ["../x", "/abs/x", "a/../../b", "a\x00b", "link/x", "..", "dir/", ""])
def test_prefixes_leaving_the_output_folder_are_refused(isolated_folders, tmp_path_factory, prefix):
    outside = tmp_path_factory.mktemp("outside")
    os.symlink(outside, isolated_folders.output_dir / "link")
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}
    report = Executor(registry()).validate(graph)
    assert [(e.error_type, e.input_name) for e in report.errors] == [("custom_validation_failed", "filename_prefix")]
    with pytest.raises(ValueError, match="not allowed"):
        save.SaveImage().run(ctx_for(isolated_folders), images=torch.zeros(1, 4, 4, 3), filename_prefix=prefix)
    assert list(outside.iterdir()) == [] and not (isolated_folders.output_dir.parent / "x_00001_.png").exists()


def test_png_carries_prompt_workflow_and_parameters(isolated_folders):
    graph = {
        "4": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "sd15/dreamshaper_8.safetensors"}},
        "10": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2}},
        "6": {"class_type": "CLIPEncode", "inputs": {"text": "a fox, in snow\nnight", "clip": ["10", 0]}},
        "7": {"class_type": "CLIPEncode", "inputs": {"text": "blurry", "clip": ["10", 0]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": 42, "steps": 12, "cfg": 6.5,
                                                   "sampler_name": "dpmpp_2m", "scheduler": "karras",
                                                   "positive": ["6", 0], "negative": ["7", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "meta"}},
    }
    ui_workflow = {"nodes": [{"id": 9, "type": "SaveImage"}], "links": [], "version": 0.4}
    run(graph, extra_data={"extra_pnginfo": {"workflow": ui_workflow}})
    texts = png_text_chunks(isolated_folders.output_dir / "meta_00001_.png")
    assert set(texts) == {"prompt", "workflow", "parameters", "Software"}
    assert json.loads(texts["prompt"]) == graph and json.loads(texts["workflow"]) == ui_workflow
    assert texts["parameters"] == (
        "a fox, in snow\nnight\nNegative prompt: blurry\nSteps: 12, Sampler: DPM++ 2M, Schedule type: Karras, "
        "CFG scale: 6.5, Seed: 42, Size: 12x8, Model: dreamshaper_8, Clip skip: 2, Version: diffgraph")
    from graphcore.metadata import read_image_workflow

    assert read_image_workflow(isolated_folders.output_dir / "meta_00001_.png").api == graph


def test_settings_from_a_comfyui_graph_through_other_nodes():
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.ckpt"}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "hello", "clip": ["2", 1]}},
        "4": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["3", 0], "conditioning_2": ["3", 0]}},
        "5": {"class_type": "PrimitiveSeed", "inputs": {}},
        "6": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["2", 0], "noise_seed": ["5", 0], "steps": 8, "cfg": 1.0, "sampler_name": "lcm",
            "scheduler": "sgm_uniform", "positive": ["4", 0], "negative": ["3", 0]}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}},
        "8": {"class_type": "ImageScaleBy", "inputs": {"image": ["7", 0], "scale_by": 2.0}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}},
        "11": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
    }
    assert settings_from_prompt(prompt, "9") == {
        "steps": 8, "cfg": 1.0, "sampler_name": "lcm", "scheduler": "sgm_uniform", "prompt": "hello",
        "negative_prompt": "hello", "model": "x.ckpt"}  # the seed comes from a link: left out
    assert settings_from_prompt(prompt, "10") is None


def test_preview_goes_to_temp(isolated_folders):
    result = save.PreviewImage().run(ctx_for(isolated_folders, "PreviewImage"), images=torch.rand(1, 3, 3, 3))
    (entry,) = result.ui["images"]
    assert entry["type"] == "temp" and entry["subfolder"] == ""
    assert entry["filename"].startswith("diffgraph_temp_") and entry["filename"].endswith("_00001_.png")
    assert (isolated_folders.temp_dir / entry["filename"]).is_file()
    assert list(isolated_folders.output_dir.iterdir()) == []
    with pytest.raises(ValueError, match=r"images must be an IMAGE tensor"):
        save.PreviewImage().run(ctx_for(isolated_folders, "PreviewImage"), images=torch.rand(1, 3, 3, 2))


# ------------------------------------------------------------------------------------------------- transforms


def test_image_scale_aspect_rule_and_crop(isolated_folders):
    image = torch.rand(1, 50, 100, 3)
    node = transform.ImageScale()
    assert node.run(None, image, "bilinear", 0, 20, "disabled")[0].shape == (1, 20, 40, 3)
    assert node.run(None, image, "bilinear", 30, 0, "disabled")[0].shape == (1, 15, 30, 3)
    assert node.run(None, image, "bilinear", 0, 0, "disabled")[0] is image
    cropped = node.run(None, image, "nearest-exact", 50, 50, "center")[0]
    assert torch.equal(cropped, image[:, :, 25:75])
    assert transform.ImageScaleBy().run(None, torch.rand(1, 6, 10, 3), "area", 1.5)[0].shape == (1, 9, 15, 3)
    by_pixels = transform.ImageScaleToTotalPixels()
    assert by_pixels.run(None, image, "bilinear", 0.01)[0].shape == (1, 72, 145, 3)
    assert by_pixels.run(None, image, "bilinear", 0.01, 8)[0].shape == (1, 72, 144, 3)


def test_resize_values():
    row = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1)
    assert ops.resize(row, 4, 1, "bilinear")[0, 0, :, 0].tolist() == [0.0, 0.25, 0.75, 1.0]
    assert ops.resize(row, 4, 1, "nearest-exact")[0, 0, :, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    block = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4, 1) / 16
    assert ops.resize(block, 2, 2, "area")[0, ..., 0].tolist() == [[2.5 / 16, 4.5 / 16], [10.5 / 16, 12.5 / 16]]
    grey = torch.full((1, 3, 3, 3), 0.5)
    assert torch.equal(ops.resize(grey, 7, 5, "lanczos"), torch.full((1, 5, 7, 3), 127 / 255))
    step = torch.tensor([0.0, 0.0, 1.0, 1.0]).reshape(1, 1, 4, 1)
    raw = torch.nn.functional.interpolate(step.movedim(-1, 1), size=(1, 8), mode="bicubic")
    assert raw.min() < 0 and raw.max() > 1  # bicubic overshoots…
    ours = ops.resize(step, 8, 1, "bicubic")
    assert ours.min() == 0 and ours.max() == 1  # …and ours is clamped back


def test_pad_for_outpaint_feathered_mask():
    image = torch.rand(1, 20, 20, 3)
    canvas, mask = transform.ImagePadForOutpaint().run(None, image, left=8, top=0, right=0, bottom=8, feathering=4)
    assert canvas.shape == (1, 28, 28, 3) and mask.shape == (1, 28, 28)
    assert torch.equal(canvas[:, :20, 8:], image)
    assert (canvas[:, :, :8] == 0.5).all() and (canvas[:, 20:] == 0.5).all()
    assert (mask[0, :, :8] == 1).all() and (mask[0, 20:] == 1).all()
    assert mask[0, 10, 8:13].tolist() == [1.0, 0.5625, 0.25, 0.0625, 0.0]  # left side: d = column
    assert mask[0, 15:20, 18].tolist() == [0.0, 0.0, 0.0625, 0.25, 0.5625]  # bottom side: d = 20 − row
    assert mask[0, 19, 8] == 1.0 and mask[0, 0, 15] == 0.0  # the top was not padded: no feather there
    _, wide = ops.pad_for_outpaint(image, 8, 0, 0, 0, 10)  # 2 × 10 ≥ 20: no feather at all
    assert (wide[0, :, 8:] == 0).all()


def test_composite_masked_pastes_through_the_mask_and_clips_at_the_edges():
    destination, source = torch.zeros(2, 6, 8, 3), torch.ones(1, 4, 4, 3)
    mask = torch.zeros(1, 4, 4)
    mask[0, :, 2:] = 1.0
    mask[0, 0, 0] = 0.25
    (out,) = transform.ImageCompositeMasked().run(None, destination, source, 6, 3, False, mask)
    assert out.shape == (2, 6, 8, 3) and torch.equal(destination, torch.zeros(2, 6, 8, 3))  # input untouched
    expected = torch.zeros(6, 8)
    expected[3, 6] = 0.25  # the source's (0, 0), through a quarter mask; columns 2-3 and rows 3- fall outside
    assert torch.equal(out[1, ..., 0], expected) and torch.equal(out[0], out[1])  # the source repeats per image
    (plain,) = transform.ImageCompositeMasked().run(None, destination, source, 1, 1, False)
    assert plain[0, 1:5, 1:5].eq(1).all() and plain[0].sum() == 16 * 3
    (resized,) = transform.ImageCompositeMasked().run(None, destination, source, 0, 0, True)
    assert resized.eq(1).all()
    assert torch.equal(ops.composite_masked(destination, source, 8, 0), destination)  # entirely outside


def test_invert_batch_and_empty_image():
    image = torch.rand(2, 3, 4, 3)
    assert torch.equal(transform.ImageInvert().run(None, image)[0], 1.0 - image)
    joined = transform.ImageBatch().run(None, image, torch.rand(1, 6, 8, 3))[0]
    assert joined.shape == (3, 3, 4, 3) and torch.equal(joined[:2], image)
    (solid,) = transform.EmptyImage().run(None, 3, 2, 2, 0xFF8000)
    assert solid.shape == (2, 2, 3, 3) and torch.equal(solid[1, 1, 2], torch.tensor([1.0, 128 / 255, 0.0]))


def test_canny_finds_a_squares_edges():
    square = torch.zeros(1, 32, 32, 3)
    square[:, 8:24, 8:24] = 1.0
    (edges,) = transform.Canny().run(None, square, 0.4, 0.8)
    assert edges.shape == (1, 32, 32, 3) and torch.equal(edges[..., 0], edges[..., 2])
    assert set(edges.unique().tolist()) == {0.0, 1.0}
    # The square's sides lie between pixels 7|8 and 23|24: every edge pixel is one of those, on a side.
    side_lines = {7, 8, 23, 24}
    for r, c in torch.nonzero(edges[0, ..., 0]).tolist():
        assert 7 <= r <= 24 and 7 <= c <= 24 and (r in side_lines or c in side_lines), (r, c)
    found = edges[0, ..., 0]
    for side in (found[7:9, 10:22], found[23:25, 10:22], found[10:22, 7:9].T, found[10:22, 23:25].T):
        assert (side.sum(dim=0) >= 1).all()  # every column along each side has its edge pixel
    faint = square * 0.1
    assert transform.Canny().run(None, faint, 0.4, 0.8)[0].sum() == 0  # a 0.1 step is below the thresholds
    assert transform.Canny().run(None, faint, 0.05, 0.1)[0].sum() > 0
