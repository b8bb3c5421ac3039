"""LoadCheckpoint on every tiny family and file format, model sharing and offloading, and bad input.

Every tiny checkpoint (tests/support/tiny_models.py) is written from diffusers modules; loading it back through the
LoadCheckpoint node must give modules with exactly those tensors, the right family and prediction type.
"""

from __future__ import annotations

import json
import os
import pickletools
import shutil
from pathlib import Path

import pytest
import torch
from support import parity_helpers as ph
from support.tiny_models import FORMATS, make_corrupt_file

from graphcore import types

FAMILIES = {  # tiny family → (our family name, prediction, scaling factor)
    "sd1": ("sd1", "epsilon", 0.18215),
    "sd1_inpaint": ("sd1_inpaint", "epsilon", 0.18215),
    "sd2_v": ("sd2_v", "v_prediction", 0.18215),
    "sdxl": ("sdxl", "epsilon", 0.13025),
    "sdxl_refiner": ("sdxl_refiner", "epsilon", 0.13025),
}
TEXT_COMPONENTS = {"sdxl_refiner": ("text_encoder_2",), "sdxl": ("text_encoder", "text_encoder_2")}


def load_through_node(ckpt_name: str) -> tuple:
    """MODEL, CLIP, VAE of LoadCheckpoint, run by the executor."""
    wf = {"1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": ckpt_name}}}
    for index, (kind, tag) in enumerate(((types.MODEL, "model"), (types.CLIP, "clip"), (types.VAE, "vae"))):
        ph.capture(wf, str(10 + index), ["1", index], kind, tag)
    ph.run_ok(ph.executor(), wf)
    return ph.captured("model"), ph.captured("clip"), ph.captured("vae")


def assert_same_weights(module: torch.nn.Module, reference: torch.nn.Module, what: str, extra_ok: str = "") -> None:
    ours, ref = module.state_dict(), reference.state_dict()
    missing = [k for k in ref if k not in ours]
    different = [k for k in ref if k in ours and not torch.equal(ours[k], ref[k])]
    extra = [k for k in ours if k not in ref and not (extra_ok and extra_ok in k)]
    assert (missing, different, extra) == ([], [], []), what


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_and_format_loads_the_fixture_weights(tiny_checkpoint, isolated_folders, family, fmt):
    checkpoint = tiny_checkpoint(family, FORMATS)
    names = ph.link_formats(checkpoint, isolated_folders.models_dir / "checkpoints", [fmt], f"m_{family}")
    model, clip, vae = load_through_node(names[fmt])
    family_name, prediction, scale = FAMILIES[family]
    assert (model.family.name, model.prediction, clip.family.name) == (family_name, prediction, family_name)
    assert model.latent_scale == pytest.approx(scale) and vae.scaling_factor == pytest.approx(scale)
    assert_same_weights(model.unet.module, checkpoint.unet, f"{family} {fmt} UNet")
    assert_same_weights(vae.vae.module, checkpoint.vae, f"{family} {fmt} VAE")
    components = TEXT_COMPONENTS.get(family, ("text_encoder",))
    assert len(clip.encoders) == len(components)
    for slot, name in zip(clip.encoders, components, strict=True):
        # SD2 single files carry OpenCLIP-H's 24th block (diffusers drops it; the default layer −2 skips it).
        extra = "layers.23." if family == "sd2_v" and fmt != "diffusers" else ""
        assert_same_weights(slot.module.module, checkpoint.components[name], f"{family} {fmt} {name}", extra)
        if extra:
            tower_key = "cond_stage_model.model.transformer.resblocks.23.ln_1.weight"
            loaded = slot.module.module.state_dict()
            last = next(k for k in loaded if k.endswith("layers.23.layer_norm1.weight"))
            assert torch.equal(loaded[last], checkpoint.single_file[tower_key])
        assert slot.tokenizer.pad_token == checkpoint.components[name.replace("text_encoder", "tokenizer")].pad_token


def test_the_same_file_twice_shares_the_modules(tiny_checkpoint, isolated_folders):
    from nodes.sd.model_manager import manager

    checkpoint = tiny_checkpoint("sd1", ("safetensors",))
    folder = isolated_folders.models_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".yaml"):  # a copy is a file no earlier test has loaded
        shutil.copy(checkpoint.paths["safetensors"].with_suffix(suffix), folder / f"copy{suffix}")
    (folder / "alias.safetensors").symlink_to(folder / "copy.safetensors")
    (folder / "alias.yaml").symlink_to(folder / "copy.yaml")
    before = manager().loads
    first = load_through_node("copy.safetensors")
    after_first = manager().loads
    second = load_through_node("copy.safetensors")  # a new executor: no output cache; the manager shares
    third = load_through_node("alias.safetensors")  # another name for the same file
    assert after_first - before == 3  # UNet, VAE, text encoder built once
    assert manager().loads == after_first
    for handles in (second, third):
        assert handles[0] is not first[0]  # light handles are new …
        assert handles[0].unet is first[0].unet and handles[2].vae is first[2].vae  # … over the same modules
        assert handles[1].encoders[0].module is first[1].encoders[0].module
    for suffix in (".safetensors", ".yaml"):
        shutil.copy(folder / f"copy{suffix}", folder / f"copy2{suffix}")
    other = load_through_node("copy2.safetensors")  # another file is another identity, even with equal tensors
    assert other[0].unet is not first[0].unet and manager().loads == after_first + 3


# ----------------------------------------------------------------------------------------- model manager
class FakeAcceleratorModule(torch.nn.Module):
    """A module whose "accelerator" is the meta device: moving there drops the data, moving back to the CPU
    restores it from a host copy — the memory behaviour of a GPU, which this machine does not have."""

    def __init__(self, size: int, seed: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(size, generator=torch.Generator().manual_seed(seed)))
        self._host: dict[str, torch.Tensor] | None = None

    def to(self, device, *args, **kwargs):  # noqa: D102 - mirrors nn.Module.to for the two devices used here
        device = torch.device(device)
        if device.type == "meta" and self.weight.device.type != "meta":
            self._host = {k: v.clone() for k, v in self.state_dict().items()}
            return super().to(device)
        if device.type == "cpu" and self.weight.device.type == "meta":
            self.to_empty(device="cpu")
            self.load_state_dict(self._host)
            return self
        return super().to(device, *args, **kwargs)


def test_manager_offloads_least_recently_used_under_a_budget():
    """Bookkeeping of the budget with a simulated accelerator (meta). Not testable without a GPU: real CUDA
    allocations, torch.cuda.empty_cache and fp16 placement."""
    from nodes.sd.model_manager import ModelManager

    size = 1000  # 4000 bytes each
    mm = ModelManager(device=torch.device("meta"), budget_bytes=2 * 4000 + 100)
    records = [mm.load(("fake", i), f"m{i}", lambda i=i: FakeAcceleratorModule(size, i)) for i in range(3)]
    assert [r.nbytes for r in records] == [4000] * 3 and mm.loads == 3
    assert mm.load(("fake", 0), "again", lambda: pytest.fail("rebuilt a loaded module")) is records[0]
    expected = [r.module.weight.detach().clone() for r in records]

    def resident() -> list[int]:
        return [i for i, r in enumerate(records) if r.device.type == "meta"]

    with mm.use(records[0]):
        pass
    with mm.use(records[1]):
        pass
    assert resident() == [0, 1] and mm.offloads == 0 and mm.resident_bytes() == 8000
    with mm.use(records[2]) as (module,):
        assert module is records[2].module
    assert resident() == [1, 2] and mm.offloads == 1  # 0 was the least recently used
    with mm.use(records[1]):
        pass
    with mm.use(records[0]):  # brings 0 back, evicting 2 (1 was used more recently)
        pass
    assert resident() == [0, 1] and mm.offloads == 2
    with mm.use(records[2]):  # evicts 1 (0 is newer)
        pass
    assert resident() == [0, 2]
    for record, weight in zip(records, expected, strict=True):
        record.module.to("cpu")
        assert torch.equal(record.module.weight, weight)  # offloading kept every value


def test_manager_never_offloads_a_module_in_use():
    from nodes.sd.model_manager import ModelManager

    mm = ModelManager(device=torch.device("meta"), budget_bytes=4000)
    a, b = (mm.load(("busy", i), f"m{i}", lambda i=i: FakeAcceleratorModule(1000, i)) for i in range(2))
    with mm.use(a), mm.use(b):  # over budget, but a is in use: both stay
        assert a.device.type == "meta" and b.device.type == "meta" and a.users == 1
    with mm.use(a, b):  # asked together: neither evicts the other
        assert a.device.type == b.device.type == "meta"
    assert a.users == b.users == 0


def test_cpu_manager_keeps_everything_resident():
    from nodes.sd.model_manager import ModelManager

    mm = ModelManager(device=torch.device("cpu"), budget_bytes=1)
    records = [mm.load(("cpu", i), "m", lambda i=i: torch.nn.Linear(8, 8)) for i in range(2)]
    for record in records:
        with mm.use(record):
            pass
    assert mm.offloads == 0 and all(r.device.type == "cpu" for r in records)


# --------------------------------------------------------------------------------------------- bad input
class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {Path(self.marker)}",))


def _write_bad_files(checkpoint, folder: Path, marker: Path) -> dict[str, str]:
    """name → what the error must say about it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    expectations = {}
    for kind in ("truncated", "garbage", "bad_header"):
        make_corrupt_file(checkpoint.paths["safetensors"], folder / f"corrupt_{kind}.safetensors", kind)
        expectations[f"corrupt_{kind}.safetensors"] = "not a readable .safetensors file"
    make_corrupt_file(checkpoint.paths["ckpt"], folder / "corrupt.ckpt", "truncated")
    expectations["corrupt.ckpt"] = "not a readable checkpoint"
    lora = {  # kohya naming
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0),
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 32),
    }
    save_file(lora, folder / "a_lora.safetensors")
    expectations["a_lora.safetensors"] = "this is a LoRA, not a checkpoint"
    from support.tiny_models import build_controlnet

    controlnet = build_controlnet(folder.parent / "cn_build", formats=("safetensors",))
    shutil.copy(controlnet.paths["safetensors"], folder / "a_controlnet.safetensors")
    expectations["a_controlnet.safetensors"] = "this is a ControlNet, not a checkpoint"
    save_file({"model.weight": torch.zeros(3), "head.bias": torch.zeros(2)}, folder / "unknown.safetensors")
    expectations["unknown.safetensors"] = "unknown model family"
    tensors = {k: v for k, v in checkpoint.single_file.items() if not k.startswith("model.diffusion_model.out.2.")}
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "missing.safetensors")
    shutil.copy(checkpoint.paths["yaml"], folder / "missing.yaml")
    expectations["missing.safetensors"] = "2 tensors missing (e.g. conv_out.weight, conv_out.bias)"
    _RunsCode.marker = str(marker)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _RunsCode()}, folder / "runs_code.ckpt")
    expectations["runs_code.ckpt"] = "refused — it holds pickled Python objects other than tensors"
    return expectations


def test_bad_checkpoints_are_clear_execution_errors(tiny_checkpoint, isolated_folders, tmp_path):
    checkpoint = tiny_checkpoint("sd1", ("safetensors", "ckpt"))
    marker = tmp_path / "code_ran"
    expectations = _write_bad_files(checkpoint, isolated_folders.models_dir / "checkpoints", marker)
    ex = ph.executor()
    for name, expected in expectations.items():
        wf = {"1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": name}}}
        ph.capture(wf, "2", ["1", 0], types.MODEL)
        result = ex.run(wf)
        assert result.status == "error", name
        error = result.error
        assert (error.node_id, error.node_type) == ("1", "LoadCheckpoint")
        assert error.exception_message.startswith(f"{name}: "), error.exception_message
        assert expected in error.exception_message, error.exception_message
        assert error.exception_type == "nodes.sd.state_dicts.ModelFileError"
    assert not marker.exists()  # the pickled os.system call never ran


def test_pickled_code_is_refused_by_the_reader_itself(tmp_path):
    from nodes.sd.state_dicts import ModelFileError, read_state_dict

    marker = tmp_path / "ran"
    # A hand-made pickle: builtins.exec("open(marker, 'w')") — no torch.save involved.
    payload = (b"\x80\x02cbuiltins\nexec\nq\x00X" + len(f"open({str(marker)!r}, 'w')").to_bytes(4, "little")
               + f"open({str(marker)!r}, 'w')".encode() + b"q\x01\x85q\x02Rq\x03.")
    path = tmp_path / "raw.ckpt"
    path.write_bytes(payload)
    opcodes = [op.name for op, _, _ in pickletools.genops(payload)]  # a valid pickle, read without running it
    assert opcodes[1:3] == ["GLOBAL", "BINPUT"] and "REDUCE" in opcodes
    with pytest.raises(ModelFileError, match=r"raw.ckpt: (refused|not a readable checkpoint)"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_files_fail_validation_or_name_the_file(tiny_checkpoint, isolated_folders):
    from graphcore.executor import WorkflowInvalid

    checkpoint = tiny_checkpoint("sd1")
    folder = isolated_folders.models_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint.paths["safetensors"], folder / "vanishing.safetensors")
    ex = ph.executor()
    wf = {"1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "not_there.safetensors"}}}
    ph.capture(wf, "2", ["1", 0], types.MODEL)
    with pytest.raises(WorkflowInvalid, match="not_there.safetensors"):
        ex.run(wf)
    for escape in ("../vanishing.safetensors", "/etc/passwd"):
        with pytest.raises(WorkflowInvalid):
            ex.run({**wf, "1": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": escape}}})
    wf["1"]["inputs"]["ckpt_name"] = "vanishing.safetensors"
    report = ex.validate(wf)
    assert report.ok
    (folder / "vanishing.safetensors").unlink()  # deleted between validation and the run
    result = ex.execute(report.plan)
    assert result.status == "error" and result.error.node_id == "1"
    assert "vanishing.safetensors" in result.error.exception_message


def test_a_diffusers_folder_without_its_unet_config_is_named(tiny_checkpoint, isolated_folders):
    checkpoint = tiny_checkpoint("sd1", ("diffusers",))
    folder = isolated_folders.models_dir / "checkpoints" / "broken_folder"
    shutil.copytree(checkpoint.paths["diffusers"], folder)
    (folder / "unet" / "config.json").unlink()
    from nodes.sd.loading import load_checkpoint
    from nodes.sd.state_dicts import ModelFileError

    with pytest.raises(ModelFileError, match=r"broken_folder: diffusers folder without unet/config.json"):
        load_checkpoint(folder)


# ------------------------------------------------------------------------ real-size layouts on the meta device
CONFIGS = Path(__file__).resolve().parents[1] / "nodes" / "data" / "configs"
REAL = {"sd15": ("sd1", "sd1"), "sd15_inpaint": ("sd1", "sd1_inpaint"), "sdxl_base": ("sdxl", "sdxl"),
        "sdxl_refiner": ("sdxl_refiner", "sdxl_refiner")}  # fmt: skip


def _meta_single_file(config_family: str, layout: str) -> dict[str, torch.Tensor]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodes.sd.ldm_layout import pipeline_to_single_file

    def config(component: str) -> dict:
        return json.loads((CONFIGS / config_family / component / "config.json").read_text())

    with init_empty_weights():
        components = {"unet": UNet2DConditionModel.from_config(config("unet")),
                      "vae": AutoencoderKL.from_config(config("vae"))}
        for name in ("text_encoder", "text_encoder_2"):
            if (CONFIGS / config_family / name).is_dir():
                cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
                components[name] = cls(CLIPTextConfig(**config(name)))
    return pipeline_to_single_file(components, layout)


@pytest.mark.parametrize("config_family", sorted(REAL))
def test_real_size_key_layouts_are_detected_and_covered(config_family):
    """Full-size SD1.5 / SDXL key lists (meta tensors, no weights): our detection names the family and our
    converters produce exactly the tensors (names and shapes) the modules built from our configs expect."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodes.sd import conversion, ldm_configs
    from nodes.sd.state_dicts import detect_family

    layout, expected = REAL[config_family]
    single = _meta_single_file(config_family, layout)
    family = detect_family(Path(f"{config_family}.safetensors"), single)
    assert family.name == expected
    unet_config = ldm_configs.unet_config(family, None, single)
    vae_config = ldm_configs.vae_config(family, None, single)
    with init_empty_weights():
        modules = {"unet": UNet2DConditionModel.from_config(unet_config), "vae": AutoencoderKL.from_config(vae_config)}
    converted = {"unet": conversion.unet_state_dict(single, unet_config),
                 "vae": conversion.vae_state_dict(single, vae_config)}
    for index, spec in enumerate(family.text_encoders):
        config = ldm_configs.text_encoder_config(family, spec, index, None, single)
        cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
        with init_empty_weights():
            modules[f"text{index}"] = cls(CLIPTextConfig(**config))
        converted[f"text{index}"] = conversion.TEXT_CONVERTERS[spec.layout](single, spec)
    def shapes(state_dict) -> dict[str, tuple[int, ...]]:
        return {k.removeprefix("text_model."): tuple(v.shape) for k, v in state_dict.items()
                if not k.endswith("position_ids")}

    for name, module in modules.items():
        expected_shapes, got = shapes(module.state_dict()), shapes(converted[name])
        assert got == expected_shapes, name
    assert unet_config["in_channels"] == (9 if "inpaint" in config_family else 4)
