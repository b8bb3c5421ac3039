"""IP-Adapter and CLIP vision: base and plus files (.safetensors, weights-only .bin), parity with diffusers'
load_ip_adapter + set_ip_adapter_scale, stacking, start/end on the σ rule, the model never left patched, and clear
errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from support import adapter_harness as ah
from support import tiny_adapters as ta
from support.fixtures import tiny_checkpoint  # noqa: F401
from support.tiny_models import make_corrupt_file

from graphcore.executor import Executor, WorkflowInvalid
from nodes.adapters.clip_vision import config_from_shapes, encode, load_clip_vision
from nodes.adapters.ip_adapter import load_ip_adapter
from nodes.adapters.ip_adapter_attention import IPAdapterPatch
from nodes.sd.loading import load_checkpoint
from nodes.sd.state_dicts import ModelFileError

CKPT = "tiny_sd1.safetensors"
WEIGHT = 0.6


@pytest.fixture(scope="module")
def files(tiny_checkpoint, tmp_path_factory):  # noqa: F811
    sd1, sdxl = tiny_checkpoint("sd1"), tiny_checkpoint("sdxl")
    dest = tmp_path_factory.mktemp("ipadapters")
    return {
        "vision": ta.build_clip_vision(dest / "clip_vision"),
        "vision_other": ta.build_clip_vision(dest / "clip_vision", projection_dim=16),
        "base": ta.build_ip_adapter(sd1.unet, dest / "ipadapter"),
        "base_bin": ta.build_ip_adapter(sd1.unet, dest / "ipadapter", fmt="bin"),
        "plus": ta.build_ip_adapter(sd1.unet, dest / "ipadapter", kind="plus", seed=3),
        "sdxl": ta.build_ip_adapter(sdxl.unet, dest / "ipadapter", name="tiny_ip_adapter_sdxl.safetensors"),
    }


def reference_array(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3)).astype(np.uint8)


@pytest.fixture
def models(tiny_checkpoint, isolated_folders, files):  # noqa: F811
    tiny_checkpoint("sd1").link_into(isolated_folders.models_dir / "checkpoints")
    tiny_checkpoint("sdxl").link_into(isolated_folders.models_dir / "checkpoints")
    for key in ("base", "base_bin", "plus", "sdxl"):
        (isolated_folders.models_dir / "ipadapter" / files[key].path.name).symlink_to(files[key].path)
    for vision in (files["vision"], files["vision_other"]):
        for path in (vision.folder, vision.file, vision.file.with_suffix(".json")):
            (isolated_folders.models_dir / "clip_vision" / path.name).symlink_to(path)
    for seed in (0, 1):
        Image.fromarray(reference_array(seed)).save(isolated_folders.input_dir / f"ref{seed}.png")
    return isolated_folders


def with_ip_adapter(graph: dict, adapter: str, weight: float = WEIGHT, start: float = 0.0, end: float = 1.0,
                    image: str = "ref0.png", vision: str = "tiny_clip_vision", node: str = "ip",
                    source: list | None = None, class_type: str = "IPAdapter", **extra) -> dict:
    graph = copy.deepcopy(graph)
    graph[f"{node}_loader"] = {"class_type": "IPAdapterModelLoader", "inputs": {"ipadapter_file": adapter}}
    graph[f"{node}_vision"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": vision}}
    graph[f"{node}_image"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    graph[node] = {"class_type": class_type, "inputs": {
        "model": source or ["ckpt", 0], "ipadapter": [f"{node}_loader", 0], "clip_vision": [f"{node}_vision", 0],
        "image": [f"{node}_image", 0], "weight": weight, "start_at": start, "end_at": end, **extra}}
    graph["sampler"]["inputs"]["model"] = [node, 0]
    return graph


def run(graph: dict) -> torch.Tensor:
    ah.run_graph(Executor(ah.registry()), graph)
    return ah.Grab.values["out"]


def ip_pipe(checkpoint, files, adapters: list[str]):
    vision = files["vision"]
    pipe = checkpoint.pipeline(unet=copy.deepcopy(checkpoint.unet), image_encoder=vision.model,
                               feature_extractor=vision.processor)
    paths = [files[a].path for a in adapters]
    pipe.load_ip_adapter(str(paths[0].parent), subfolder="", weight_name=[p.name for p in paths],
                         local_files_only=True)
    return pipe


def our_embeds(files, image: torch.Tensor, penultimate: bool) -> torch.Tensor:
    return encode(load_clip_vision(files["vision"].folder), image, penultimate)


def as_image(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)[None].float() / 255


def test_base_ip_adapter_matches_diffusers(models, files, tiny_checkpoint):  # noqa: F811
    """Everything on diffusers' side is its own: CLIPImageProcessor, image encoder, zero negative, processors."""
    ours = run(with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name))
    pipe = ip_pipe(tiny_checkpoint("sd1"), files, ["base"])
    pipe.set_ip_adapter_scale(WEIGHT)
    reference = ah.reference_image(pipe, steps=2, ip_adapter_image=Image.fromarray(reference_array(0)))
    assert (ours - reference).abs().max().item() < 1e-4
    plain = run(ah.txt2img(CKPT, steps=2))
    assert (ours - plain).abs().max().item() > 0.05  # the image prompt changes the picture


def test_plus_ip_adapter_matches_diffusers_given_the_same_negative(models, files, tiny_checkpoint):  # noqa: F811
    """plus reads the penultimate hidden states; its negative is a black image's (ComfyUI IPAdapter-plus), which
    diffusers does not compute by itself (it encodes zeros of the normalised pixels): pass both embeddings."""
    ours = run(with_ip_adapter(ah.txt2img(CKPT, steps=2), files["plus"].path.name))
    cond = our_embeds(files, as_image(reference_array(0)), penultimate=True)
    black = our_embeds(files, torch.zeros(1, 32, 32, 3), penultimate=True)
    vision = files["vision"]
    pixels = vision.processor(Image.fromarray(reference_array(0)), return_tensors="pt").pixel_values
    with torch.no_grad():
        theirs = vision.model(pixels, output_hidden_states=True).hidden_states[-2]
    assert (cond - theirs).abs().max().item() < 1e-5  # same preprocessing and encoder output
    pipe = ip_pipe(tiny_checkpoint("sd1"), files, ["plus"])
    pipe.set_ip_adapter_scale(WEIGHT)
    reference = ah.reference_image(pipe, steps=2, ip_adapter_image_embeds=[torch.cat([black, cond])[:, None]])
    assert (ours - reference).abs().max().item() < 1e-4


def test_a_negative_image_replaces_the_default_negative(models, files, tiny_checkpoint):  # noqa: F811
    graph = with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name)
    graph["neg_image"] = {"class_type": "LoadImage", "inputs": {"image": "ref1.png"}}
    graph["ip"]["inputs"]["image_negative"] = ["neg_image", 0]
    ours = run(graph)
    cond = our_embeds(files, as_image(reference_array(0)), penultimate=False)
    negative = our_embeds(files, as_image(reference_array(1)), penultimate=False)
    pipe = ip_pipe(tiny_checkpoint("sd1"), files, ["base"])
    pipe.set_ip_adapter_scale(WEIGHT)
    reference = ah.reference_image(pipe, steps=2, ip_adapter_image_embeds=[torch.cat([negative, cond])[:, None]])
    assert (ours - reference).abs().max().item() < 1e-4


def test_two_ip_adapters_stack_like_diffusers(models, files, tiny_checkpoint):  # noqa: F811
    graph = with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name, weight=0.6)
    graph = with_ip_adapter(graph, files["plus"].path.name, weight=0.4, image="ref1.png", node="ip2",
                            source=["ip", 0])
    ours = run(graph)
    base_cond = our_embeds(files, as_image(reference_array(0)), penultimate=False)
    plus_cond = our_embeds(files, as_image(reference_array(1)), penultimate=True)
    plus_black = our_embeds(files, torch.zeros(1, 32, 32, 3), penultimate=True)
    pipe = ip_pipe(tiny_checkpoint("sd1"), files, ["base", "plus"])
    pipe.set_ip_adapter_scale([0.6, 0.4])
    embeds = [torch.cat([torch.zeros_like(base_cond), base_cond])[:, None], torch.cat([plus_black, plus_cond])[:, None]]
    reference = ah.reference_image(pipe, steps=2, ip_adapter_image_embeds=embeds)
    assert (ours - reference).abs().max().item() < 1e-4


def test_end_at_is_measured_on_sigma(models, files, tiny_checkpoint):  # noqa: F811
    """end_at 0.5 of 2 steps: active at t = 999 only (σ(499) < σ(499.5)). Reference: diffusers with its scale set
    to 0 after step 0 (its processors skip a zero scale)."""
    ours = run(with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name, end=0.5))
    pipe = ip_pipe(tiny_checkpoint("sd1"), files, ["base"])
    pipe.set_ip_adapter_scale(WEIGHT)

    def switch_off(pipeline, step, timestep, kwargs):
        pipeline.set_ip_adapter_scale(0.0)
        return kwargs

    reference = ah.reference_image(pipe, steps=2, ip_adapter_image=Image.fromarray(reference_array(0)),
                                   callback_on_step_end=switch_off)
    assert (ours - reference).abs().max().item() < 1e-4
    whole = run(with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name))
    assert (ours - whole).abs().max().item() > 1e-3


def test_bin_and_safetensors_load_the_same_weights(models, files):
    folder = models.models_dir / "ipadapter"
    one = load_ip_adapter(folder / files["base"].path.name).record.module.state_dict()
    two = load_ip_adapter(folder / files["base_bin"].path.name).record.module.state_dict()
    assert sorted(one) == sorted(two) and all(torch.equal(one[k], two[k]) for k in one)
    layers = [k for k in files["base"].tensors if k.startswith("ip_adapter.")]
    assert len([k for k in one if k.startswith(("to_k_ip", "to_v_ip"))]) == len(layers) == 12


def test_the_model_is_never_left_patched(models, files):
    model, _, _ = load_checkpoint(models.models_dir / "checkpoints" / CKPT)
    unet = model.unet.module
    processors = dict(unet.attn_processors)
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    adapter = load_ip_adapter(models.models_dir / "ipadapter" / files["base"].path.name)
    cond = torch.randn(1, 4, 32)
    first = IPAdapterPatch(adapter, cond, torch.zeros_like(cond), 0.6)
    second = IPAdapterPatch(adapter, cond, cond, 0.2)
    context = {"role": "unet", "call_state": {}}
    with pytest.raises(RuntimeError, match="inside"), first.applied(unet, context):
        with second.applied(unet, context):
            inner = unet.attn_processors
            assert sum(len(getattr(p, "branches", ())) == 2 for p in inner.values()) == 6  # stacked on all layers
        raise RuntimeError("inside")
    assert all(unet.attn_processors[k] is v for k, v in processors.items())
    assert all(torch.equal(unet.state_dict()[k], v) for k, v in state.items())


def test_clip_vision_single_file_and_folder_agree(models, files):
    image = as_image(reference_array(0))
    folder = encode(load_clip_vision(files["vision"].folder), image, penultimate=False)
    single = encode(load_clip_vision(models.models_dir / "clip_vision" / files["vision"].file.name), image, False)
    assert torch.equal(folder, single)


def test_real_clip_vision_sizes_need_no_config():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    vit_h = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
             "patch_size": 14, "image_size": 224, "projection_dim": 1024, "hidden_act": "gelu", "layer_norm_eps": 1e-5}
    with torch.device("meta"):
        state = CLIPVisionModelWithProjection(CLIPVisionConfig(**vit_h)).state_dict()
    assert config_from_shapes(state, "vit-h.safetensors") == vit_h


def test_a_tiny_single_file_without_its_config_asks_for_it(models, files):
    lonely = models.models_dir / "clip_vision" / "lonely.safetensors"
    lonely.write_bytes(files["vision"].file.read_bytes())  # a copy: a file of its own, with no .json beside
    with pytest.raises(ModelFileError, match="lonely.json"):
        load_clip_vision(lonely)


def run_error(graph: dict) -> str:
    result = Executor(ah.registry()).run(graph)
    assert result.status == "error"
    return result.error.exception_message


def test_an_ip_adapter_for_another_family_is_a_clear_error(models, files):
    message = run_error(with_ip_adapter(ah.txt2img(CKPT, steps=1), files["sdxl"].path.name))
    assert "tiny_ip_adapter_sdxl.safetensors" in message and "cross-attention layers" in message


def test_a_mismatched_clip_vision_is_a_clear_error(models, files):
    graph = with_ip_adapter(ah.txt2img(CKPT, steps=1), files["base"].path.name,
                            vision=files["vision_other"].folder.name)
    message = run_error(graph)
    assert "24-wide" in message and "16-wide" in message and files["vision_other"].folder.name in message


class NotWeights:
    pass


def test_corrupt_and_unsafe_files_are_refused(models, files):
    folder = models.models_dir / "ipadapter"
    broken = make_corrupt_file(files["base"].path, folder / "broken.safetensors", "truncated")
    with pytest.raises(ModelFileError, match="broken.safetensors"):
        load_ip_adapter(broken)
    unsafe = folder / "unsafe.bin"
    torch.save({"image_proj": {"proj.weight": torch.zeros(1)}, "payload": NotWeights()}, unsafe)
    with pytest.raises(ModelFileError, match="unsafe.bin: refused"):
        load_ip_adapter(unsafe)
    not_one = folder / "lora.safetensors"
    from safetensors.torch import save_file

    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(not_one))
    with pytest.raises(ModelFileError, match="lora.safetensors: not an IP-Adapter"):
        load_ip_adapter(not_one)


def test_ip_adapter_advanced_alias_accepts_its_inputs_and_limits_them(models, files):
    options = {"weight_type": "linear", "combine_embeds": "concat", "embeds_scaling": "V only"}
    graph = with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name, class_type="IPAdapterAdvanced",
                            **options)
    assert torch.equal(run(graph), run(with_ip_adapter(ah.txt2img(CKPT, steps=2), files["base"].path.name)))
    graph["ip"]["inputs"]["weight_type"] = "ease in"
    with pytest.raises(WorkflowInvalid, match="weight_type"):
        Executor(ah.registry()).run(graph)


def test_image_tokens_are_reused_only_for_the_same_inputs(models, files):
    from nodes.adapters.ip_adapter import image_tokens

    adapter = load_ip_adapter(models.models_dir / "ipadapter" / files["base"].path.name)
    vision = load_clip_vision(files["vision"].folder)
    image = as_image(reference_array(0))
    first = image_tokens(adapter, vision, image, None)
    assert image_tokens(adapter, vision, image, None) is first  # e.g. only a LoRA upstream changed
    other = image_tokens(adapter, vision, image.clone(), None)
    assert other is not first and torch.equal(other[0], first[0])
    assert not torch.equal(image_tokens(adapter, vision, as_image(reference_array(1)), None)[0], first[0])
