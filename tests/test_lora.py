"""LoRA: kohya / LoCon / LDM names / SDXL te1-te2 / diffusers-peft files, parity with diffusers, patches that never
leave the shared modules changed, stacking, branches, caching, and clear errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from support import adapter_harness as ah
from support import tiny_adapters as ta
from support.fixtures import tiny_checkpoint  # noqa: F401
from support.tiny_models import make_corrupt_file

from graphcore.executor import Executor
from nodes.adapters.lora import apply_lora, read_lora
from nodes.adapters.lora_keys import LoraFileError
from nodes.sd.loading import load_checkpoint
from nodes.sd.model_manager import manager

CKPT = "tiny_sd1.safetensors"


@pytest.fixture(scope="module")
def loras(tiny_checkpoint, tmp_path_factory):  # noqa: F811
    sd1, sdxl = tiny_checkpoint("sd1"), tiny_checkpoint("sdxl")
    dest = tmp_path_factory.mktemp("loras")
    return {
        "kohya": ta.build_lora(sd1, dest),
        "kohya_ldm": ta.build_lora(sd1, dest, unet_naming="ldm"),
        "peft": ta.build_lora(sd1, dest, fmt="peft"),
        "second": ta.build_lora(sd1, dest, seed=7, rank=2, alpha=3.0, name="second.safetensors"),
        "sdxl": ta.build_lora(sdxl, dest, unet_naming="ldm"),
    }


@pytest.fixture
def models(tiny_checkpoint, isolated_folders, loras):  # noqa: F811
    tiny_checkpoint("sd1").link_into(isolated_folders.models_dir / "checkpoints")
    tiny_checkpoint("sdxl").link_into(isolated_folders.models_dir / "checkpoints")
    for lora in loras.values():
        (isolated_folders.models_dir / "loras" / lora.path.name).symlink_to(lora.path)
    return isolated_folders


def with_lora(graph: dict, lora_name: str, strength_model: float, strength_clip: float, node: str = "lora",
              source: str = "ckpt") -> dict:
    graph = copy.deepcopy(graph)
    graph[node] = {"class_type": "LoraLoader", "inputs": {
        "model": [source, 0], "clip": [source, 1], "lora_name": lora_name,
        "strength_model": strength_model, "strength_clip": strength_clip}}
    graph["sampler"]["inputs"]["model"] = [node, 0]
    graph["pos"]["inputs"]["clip"] = [node, 1]
    graph["neg"]["inputs"]["clip"] = [node, 1]
    return graph


def diffusers_pipe(checkpoint, lora_path: Path, adapter: str = "a"):
    """The reference pipeline on copies of the modules (diffusers injects peft layers into them)."""
    overrides = {name: copy.deepcopy(checkpoint.components[name])
                 for name in ("unet", "text_encoder", "text_encoder_2") if checkpoint.components.get(name)}
    pipe = checkpoint.pipeline(**overrides)
    pipe.load_lora_weights(load_file(str(lora_path)), adapter_name=adapter)
    return pipe


def lora_module_count(module) -> int:
    return sum(1 for _, m in module.named_modules() if hasattr(m, "lora_A"))


def test_kohya_lora_matches_diffusers_at_strength_0_7(models, loras, tiny_checkpoint):  # noqa: F811
    checkpoint, lora = tiny_checkpoint("sd1"), loras["kohya"]
    ah.run_graph(Executor(ah.registry()), with_lora(ah.txt2img(CKPT), lora.path.name, 0.7, 0.7))
    ours = ah.Grab.values["out"]
    pipe = diffusers_pipe(checkpoint, lora.path)
    # diffusers loads kohya files silently partially: check it hit every layer (incl. LoCon convs) before comparing.
    assert lora_module_count(pipe.unet) == len(lora.modules("unet")) == 108
    assert lora_module_count(pipe.text_encoder) == len(lora.modules("text_encoder")) == 18
    reference = ah.reference_image(pipe, cross_attention_kwargs={"scale": 0.7})  # UNet and text encoder alike
    assert (ours - reference).abs().max().item() < 1e-4
    base = ah.reference_image(checkpoint.pipeline())
    assert (ours - base).abs().max().item() > 0.02  # the LoRA changes the picture


def test_model_and_clip_strengths_are_separate(models, loras, tiny_checkpoint):  # noqa: F811
    checkpoint, lora = tiny_checkpoint("sd1"), loras["kohya"]
    ah.run_graph(Executor(ah.registry()), with_lora(ah.txt2img(CKPT), lora.path.name, 0.7, -0.3))
    pipe = diffusers_pipe(checkpoint, lora.path)
    pipe.set_adapters(["a"], adapter_weights=[{"unet": 0.7, "text_encoder": -0.3}])
    reference = ah.reference_image(pipe)
    assert (ah.Grab.values["out"] - reference).abs().max().item() < 1e-4


def merged_expectation(lora: ta.TinyLora, component: str, module: torch.nn.Module, strength: float) -> dict:
    expected = {}
    for name in lora.modules(component):
        weight = module.get_submodule(name).weight
        expected[name] = weight.detach().clone() + strength * lora.delta(component, name).reshape(weight.shape)
    return expected


def assert_patched(module: torch.nn.Module, expected: dict, tolerance: float = 1e-6) -> None:
    for name, value in expected.items():
        assert (module.get_submodule(name).weight - value).abs().max().item() < tolerance, name


@pytest.mark.parametrize("fmt", ["kohya", "kohya_ldm", "peft"])
def test_every_format_merges_the_hand_computed_update(models, loras, fmt):
    lora = loras[fmt]
    model, clip, _ = load_checkpoint(models.models_dir / "checkpoints" / CKPT)
    model2, clip2 = apply_lora(read_lora(lora.path), model, clip, 0.7, 0.4)
    unet, text = model.unet.module, clip.encoders[0].module.module
    expected_unet = merged_expectation(lora, "unet", unet, 0.7)
    expected_text = merged_expectation(lora, "text_encoder", text, 0.4)
    (unet_patch,), (text_patch,) = model2.patches, clip2.patches
    with unet_patch.applied(unet, {"role": "unet"}):
        assert_patched(unet, expected_unet)
    with text_patch.applied(text, {"role": "text_encoder", "index": 0}):
        assert_patched(text, expected_text)
    assert model.patches == () and clip.patches == ()  # the input handles are untouched


def test_sdxl_kohya_te1_te2_matches_diffusers_fused_weights(models, loras, tiny_checkpoint):  # noqa: F811
    checkpoint, lora = tiny_checkpoint("sdxl"), loras["sdxl"]
    model, clip, _ = load_checkpoint(models.models_dir / "checkpoints" / "tiny_sdxl.safetensors")
    model2, clip2 = apply_lora(read_lora(lora.path), model, clip, 0.7, 0.7)
    pipe = diffusers_pipe(checkpoint, lora.path)
    components = ("unet", "text_encoder", "text_encoder_2")
    assert [lora_module_count(getattr(pipe, c)) for c in components] == [len(lora.modules(c)) for c in components]
    pipe.fuse_lora(lora_scale=0.7)
    pairs = [(model.unet.module, pipe.unet, model2.patches[0], {"role": "unet"})]
    for index, name in enumerate(("text_encoder", "text_encoder_2")):
        pairs.append((clip.encoders[index].module.module, getattr(pipe, name), clip2.patches[0],
                      {"role": "text_encoder", "index": index}))
    for ours, theirs, patch, context in pairs:
        fused = {k.replace(".base_layer", ""): v for k, v in theirs.state_dict().items() if "lora_" not in k}
        before = {k: v.clone() for k, v in ours.state_dict().items()}
        with patch.applied(ours, context):
            state = ours.state_dict()
            assert max((state[k] - fused[k]).abs().max().item() for k in state) < 1e-5
            assert sum(not torch.equal(state[k], before[k]) for k in state) > 10


def snapshot(*modules: torch.nn.Module) -> list[dict]:
    return [{k: (v.data_ptr(), v.detach().clone()) for k, v in m.state_dict().items()} for m in modules]


def assert_same(modules, before) -> None:
    for module, saved in zip(modules, before, strict=True):
        state = module.state_dict()
        assert sorted(state) == sorted(saved)
        for key, (pointer, value) in saved.items():
            assert state[key].data_ptr() == pointer, key  # the very same tensor is back
            assert torch.equal(state[key], value), key


def test_stacked_loras_add_up_and_restore_bit_exactly(models, loras):
    model, clip, _ = load_checkpoint(models.models_dir / "checkpoints" / CKPT)
    one, two = loras["kohya"], loras["second"]
    model1, clip1 = apply_lora(read_lora(one.path), model, clip, 0.7, 1.0)
    model2, clip2 = apply_lora(read_lora(two.path), model1, clip1, -0.4, 0.5)
    unet, text = model.unet.module, clip.encoders[0].module.module
    before = snapshot(unet, text)
    expected = merged_expectation(one, "unet", unet, 0.7)
    for name in two.modules("unet"):
        shape = expected[name].shape
        expected[name] = expected[name] - 0.4 * two.delta("unet", name).reshape(shape)
    with model2.patches[0].applied(unet, {"role": "unet"}), model2.patches[1].applied(unet, {"role": "unet"}):
        assert_patched(unet, expected)
        with clip2.patches[0].applied(text, {"role": "text_encoder", "index": 0}):
            assert not torch.equal(text.state_dict()["encoder.layers.0.mlp.fc1.weight"],
                                   before[1]["encoder.layers.0.mlp.fc1.weight"][1])
    assert_same([unet, text], before)


def test_patch_restores_after_an_error_inside_the_run(models, loras):
    model, clip, _ = load_checkpoint(models.models_dir / "checkpoints" / CKPT)
    patched, _ = apply_lora(read_lora(loras["kohya"].path), model, None, 1.0, 0.0)
    unet = model.unet.module
    before = snapshot(unet)
    with pytest.raises(RuntimeError, match="boom"), patched.patches[0].applied(unet, {"role": "unet"}):
        raise RuntimeError("boom")
    assert_same([unet], before)


def test_two_branches_with_different_loras_each_get_their_own_result(models, loras):
    base = ah.txt2img(CKPT, tag="base", steps=2)
    branch_a = with_lora(ah.txt2img(CKPT, tag="a", steps=2), loras["kohya"].path.name, 0.7, 0.7)
    branch_b = with_lora(ah.txt2img(CKPT, tag="b", steps=2), loras["second"].path.name, 1.5, 0.2)
    combined = {**base}
    for prefix, branch in (("a_", branch_a), ("b_", branch_b)):
        for node_id, node in branch.items():
            if node_id == "ckpt":
                continue
            node = copy.deepcopy(node)
            for name, value in node["inputs"].items():
                if isinstance(value, list) and value[0] != "ckpt":
                    node["inputs"][name] = [prefix + value[0], value[1]]
            combined[prefix + node_id] = node
    ah.run_graph(Executor(ah.registry()), combined)
    together = {tag: ah.Grab.values[tag] for tag in ("base", "a", "b")}
    model, clip, _ = load_checkpoint(models.models_dir / "checkpoints" / CKPT)
    modules = [model.unet.module, clip.encoders[0].module.module]
    before = snapshot(*modules)
    for graph, tag in ((branch_b, "b"), (branch_a, "a")):  # alone, in another order
        ah.run_graph(Executor(ah.registry()), graph)
        assert torch.equal(ah.Grab.values[tag], together[tag]), tag
    assert not torch.equal(together["a"], together["base"]) and not torch.equal(together["a"], together["b"])
    assert_same(modules, before)


@pytest.mark.parametrize("node", ["LoraLoader", "LoraLoaderModelOnly"])
def test_changing_only_a_strength_reruns_only_what_depends_on_it(models, loras, node):
    graph = ah.txt2img(CKPT, steps=2)
    if node == "LoraLoader":
        graph = with_lora(graph, loras["kohya"].path.name, 0.7, 0.7)
        strength_inputs = ("strength_model", "strength_clip")
        rerun = {"lora", "pos", "neg", "sampler", "decode", "out"}
    else:
        graph["lora"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
            "model": ["ckpt", 0], "lora_name": loras["kohya"].path.name, "strength_model": 0.7}}
        graph["sampler"]["inputs"]["model"] = ["lora", 0]
        strength_inputs = ("strength_model",)
        rerun = {"lora", "sampler", "decode", "out"}
    executor = Executor(ah.registry())
    ah.run_graph(executor, graph)
    first = ah.Grab.values["out"]
    loads = manager().loads
    for input_name in strength_inputs:
        graph["lora"]["inputs"][input_name] = 0.3
        result = ah.run_graph(executor, graph)
        assert set(result.executed) == rerun
        assert "ckpt" in result.cached
    assert manager().loads == loads  # no checkpoint (or any module) loaded again
    assert not torch.equal(first, ah.Grab.values["out"])


def run_error(graph: dict) -> str:
    result = Executor(ah.registry()).run(graph)
    assert result.status == "error"
    return result.error.exception_message


def test_a_lora_for_another_family_is_a_clear_error(models, loras):
    message = run_error(with_lora(ah.txt2img(CKPT), loras["sdxl"].path.name, 1.0, 1.0))
    assert loras["sdxl"].path.name in message and "SDXL" in message and "does not fit" in message
    sdxl_graph = with_lora(ah.txt2img("tiny_sdxl.safetensors"), loras["kohya"].path.name, 1.0, 1.0)
    message = run_error(sdxl_graph)
    assert loras["kohya"].path.name in message and "does not fit" in message


@pytest.mark.parametrize("corruption", ["truncated", "garbage", "bad_header"])
def test_a_corrupt_lora_file_is_a_clear_error(models, loras, corruption):
    broken = make_corrupt_file(loras["kohya"].path, models.models_dir / "loras" / "broken.safetensors", corruption)
    message = run_error(with_lora(ah.txt2img(CKPT), broken.name, 1.0, 1.0))
    assert "broken.safetensors" in message


@pytest.mark.parametrize(("extra", "expected"), [
    ({"lora_unet_x.hada_w1_a": torch.zeros(2, 2)}, "LoHa"),
    ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_mid.weight": torch.zeros(2, 2)}, "lora_mid"),
    ({"some_other_tensor": torch.zeros(2)}, "not kohya LoRA weights"),
    ({"lora_unet_down_blocks_9_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32, 1, 1),
      "lora_unet_down_blocks_9_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4, 1, 1)}, "does not fit"),
])
def test_unusable_layers_are_named_never_skipped(models, loras, extra, expected):
    tensors = {**load_file(str(loras["kohya"].path)), **extra}
    path = models.models_dir / "loras" / "odd.safetensors"
    save_file(tensors, str(path))
    message = run_error(with_lora(ah.txt2img(CKPT), path.name, 1.0, 1.0))
    assert "odd.safetensors" in message and expected in message


def test_a_checkpoint_is_not_a_lora(models, tiny_checkpoint):  # noqa: F811
    (models.models_dir / "loras" / "ckpt.safetensors").symlink_to(tiny_checkpoint("sd1").paths["safetensors"])
    with pytest.raises(LoraFileError, match="ckpt.safetensors: not a LoRA"):
        read_lora(models.models_dir / "loras" / "ckpt.safetensors")
