"""ComfyUI UI-format workflows (written by hand from the documented schema) → API format → validation.

Each file under tests/data/comfy_ui covers rules: links (v0.4 arrays, version-1 objects), widget order with
control_after_generate and upload entries, PrimitiveNode, Reroute chains, bypass, mute, Note/MarkdownNote,
subgraphs (nested, promoted widgets), dict widgets_values, unknown types and model files.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from graphcore.convert import UiFormatError, ui_to_api
from graphcore.registry import Registry
from graphcore.validation import validate
from graphcore.workflow import Workflow

DATA = Path(__file__).parent / "data" / "comfy_ui"


def full_registry() -> Registry:
    from nodes.catalog import all_node_classes
    from nodes.conditioning import combine
    from nodes.image import load, save, transform
    from nodes.latent import scale
    from nodes.sampling import custom

    classes = [*all_node_classes(), *load.NODES, *save.NODES, *transform.NODES, *combine.NODES, *scale.NODES,
               *custom.NODES]
    return Registry().add_all(dict.fromkeys(classes))


REGISTRY = full_registry()


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def convert(data: dict, **kwargs):
    return ui_to_api(data, REGISTRY, **kwargs)


def put_model(folders, kind: str, name: str) -> None:
    path = folders.models_dir / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


@pytest.fixture(autouse=True)
def default_checkpoint(isolated_folders):
    """The checkpoint the hand-written files name (empty: only its presence is checked here)."""
    put_model(isolated_folders, "checkpoints", "v1-5-pruned-emaonly.safetensors")


def errors_of(prompt: dict) -> list[tuple[str, str, str | None]]:
    report = validate(Workflow.from_api(prompt), REGISTRY)
    return [(e.node_id, e.error_type, e.input_name) for e in report.errors]


# ------------------------------------------------------------------------------------------------ v0.4 basics


def test_default_workflow_v04_links_and_widget_order():
    result = convert(load("txt2img_v04.json"))
    assert result.prompt["3"] == {
        "class_type": "KSampler",
        "inputs": {
            "seed": 156680208700286, "steps": 3, "cfg": 8, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
        },
        "_meta": {"title": "KSampler"},
    }
    assert result.prompt["4"]["inputs"] == {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}
    assert result.prompt["5"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert result.prompt["7"]["inputs"] == {"text": "text, watermark", "clip": ["4", 1]}
    assert result.prompt["8"]["inputs"] == {"samples": ["3", 0], "vae": ["4", 2]}
    assert result.prompt["9"]["inputs"] == {"filename_prefix": "ComfyUI", "images": ["8", 0]}
    report = result.report
    assert report.source == "comfyui-ui-0.4"
    assert report.mapped["CLIPTextEncode"] == "CLIPEncode" and report.mapped["KSampler"] == "KSampler"
    assert report.unknown == {} and report.missing_models == [] and report.warnings == []
    assert errors_of(result.prompt) == []


def test_version_1_object_links_dict_widgets_and_titles():
    result = convert(load("txt2img_v1.json"))
    assert result.report.source == "comfyui-ui-1"
    assert result.prompt["5"]["inputs"] == {"width": 64, "height": 48, "batch_size": 2}  # dict widgets_values
    sampler = result.prompt["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        42, 3, 6.5, "dpmpp_2m", "karras")
    assert result.prompt["7"]["inputs"]["clip"] == ["4", 1]  # the link that has a native reroute on it
    assert result.prompt["6"]["_meta"] == {"title": "Positive"}
    assert result.prompt["9"]["inputs"]["filename_prefix"] == "v1/result"
    assert result.report.warnings == []
    assert errors_of(result.prompt) == []


def test_v04_and_v1_give_the_same_graph_shape():
    v04 = convert(load("txt2img_v04.json")).prompt
    v1 = convert(load("txt2img_v1.json")).prompt
    assert set(v04) == set(v1)
    for node_id in v04:
        links04 = {k: v for k, v in v04[node_id]["inputs"].items() if isinstance(v, list)}
        links1 = {k: v for k, v in v1[node_id]["inputs"].items() if isinstance(v, list)}
        assert links04 == links1


# ------------------------------------------------------------------------------ widgets_values edge cases


def _ksampler_ui(widgets) -> dict:
    data = load("txt2img_v04.json")
    data = copy.deepcopy(data)
    for node in data["nodes"]:
        if node["id"] == 3:
            node["widgets_values"] = widgets
    return data


def test_control_after_generate_missing_in_older_files():
    result = convert(_ksampler_ui([7, 20, 5.5, "heun", "karras", 0.8]))
    inputs = result.prompt["3"]["inputs"]
    assert (inputs["seed"], inputs["steps"], inputs["cfg"], inputs["sampler_name"], inputs["denoise"]) == (
        7, 20, 5.5, "heun", 0.8)
    assert result.report.warnings == []


def test_short_and_long_widgets_values_are_warned():
    short = convert(_ksampler_ui([7, "fixed", 20]))
    assert short.prompt["3"]["inputs"]["steps"] == 20 and "cfg" not in short.prompt["3"]["inputs"]
    assert any("cfg, sampler_name, scheduler, denoise left at their defaults" in w for w in short.report.warnings)
    assert ("3", "required_input_missing", "cfg") in errors_of(short.prompt)
    data = load("txt2img_v04.json")
    next(n for n in data["nodes"] if n["id"] == 5)["widgets_values"] = [64, 48, 1, "surplus"]
    long = convert(data)
    assert long.prompt["5"]["inputs"] == {"width": 64, "height": 48, "batch_size": 1}
    assert any("node 5 (EmptyLatentImage): widgets_values has 1 more entries" in w for w in long.report.warnings)


def test_dict_widgets_values_ignore_ui_only_keys_and_report_unknown_names():
    data = _ksampler_ui({"seed": 11, "control_after_generate": "fixed", "steps": 4, "cfg": 2.0, "bogus": 1,
                         "sampler_name": "euler", "scheduler": "simple", "denoise": 0.5})
    result = convert(data)
    assert result.prompt["3"]["inputs"]["seed"] == 11 and result.prompt["3"]["inputs"]["scheduler"] == "simple"
    assert "control_after_generate" not in result.prompt["3"]["inputs"]
    assert any("'bogus'" in w for w in result.report.warnings)


def test_load_image_upload_entry_and_ksampler_advanced_order():
    result = convert(load("load_image.json"))
    assert result.prompt["20"]["inputs"] == {"image": "example.png"}
    assert result.prompt["21"]["inputs"] == {"image": "example.png", "channel": "alpha"}
    assert result.prompt["3"]["inputs"] == {
        "add_noise": "enable", "noise_seed": 5, "steps": 3, "cfg": 8, "sampler_name": "euler",
        "scheduler": "normal", "start_at_step": 1, "end_at_step": 10000, "return_with_leftover_noise": "disable",
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["23", 0],
    }
    assert result.report.warnings == []


# -------------------------------------------------------------------- primitives, reroutes, notes, bypass, mute


def test_primitives_and_reroute_chains_are_resolved():
    result = convert(load("primitive_reroute.json"))
    prompt = result.prompt
    assert set(prompt) == {"4", "5", "6", "7", "3", "8", "9"}  # no Reroute, PrimitiveNode, Note, MarkdownNote
    sampler = prompt["3"]["inputs"]
    assert sampler["model"] == ["4", 0]  # through two reroutes
    assert sampler["seed"] == 424242  # the primitive wins over the stale widget value 1
    assert sampler["sampler_name"] == "dpmpp_2m"  # a COMBO primitive
    assert prompt["6"]["inputs"] == {"text": "a red fox in the snow", "clip": ["4", 1]}  # primitive → reroute
    assert prompt["7"]["inputs"]["clip"] == ["4", 1]
    reasons = {d.node_id: d.reason for d in result.report.dropped}
    assert reasons == {"20": "reroute", "21": "reroute", "22": "reroute", "23": "reroute", "30": "primitive",
                       "31": "primitive", "32": "primitive", "40": "comment", "41": "comment"}
    assert errors_of(prompt) == []


def test_bypassed_nodes_pass_their_input_of_the_same_type_through():
    result = convert(load("bypass.json"))
    prompt = result.prompt
    assert {"10", "11", "12"}.isdisjoint(prompt)
    assert prompt["3"]["inputs"]["positive"] == ["6", 0]  # ConditioningCombine bypassed: its first input
    # LatentUpscaleBy (same index) and a KSampler (first LATENT input, index 3) bypassed in a row:
    assert prompt["8"]["inputs"]["samples"] == ["3", 0]
    assert {d.node_id: d.reason for d in result.report.dropped} == {"10": "bypassed", "11": "bypassed",
                                                                      "12": "bypassed"}
    assert errors_of(prompt) == []


def test_muted_nodes_are_dropped_and_their_consumers_reported_by_the_validator():
    result = convert(load("mute.json"))
    prompt = result.prompt
    assert "15" not in prompt and "16" not in prompt
    assert "vae" not in prompt["8"]["inputs"]
    assert any("input 'vae' is linked to a muted, bypassed or missing node" in w for w in result.report.warnings)
    assert {d.node_id: d.reason for d in result.report.dropped} == {"15": "muted", "16": "muted"}
    assert errors_of(prompt) == [("8", "required_input_missing", "vae")]


def test_bypass_without_a_matching_input_leaves_the_input_unconnected():
    data = load("txt2img_v04.json")
    for node in data["nodes"]:
        if node["id"] == 8:  # VAEDecode bypassed: no IMAGE input to pass through
            node["mode"] = 4
    result = convert(data)
    assert "images" not in result.prompt["9"]["inputs"]
    assert errors_of(result.prompt) == [("9", "required_input_missing", "images")]


# ---------------------------------------------------------------------------------------------- subgraphs


def test_nested_subgraphs_are_expanded_with_unique_ids():
    result = convert(load("subgraph.json"))
    prompt = result.prompt
    assert set(prompt) == {"4", "5", "10:1", "11:1", "12:1", "12:2:1", "8", "9"}
    assert prompt["10:1"]["inputs"] == {"text": "a castle on a hill", "clip": ["4", 1]}  # promoted widget value
    assert prompt["11:1"]["inputs"] == {"text": "blurry", "clip": ["4", 1]}
    assert prompt["12:1"]["inputs"] == {
        "seed": 99, "steps": 3, "cfg": 6, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
        "model": ["4", 0], "positive": ["10:1", 0], "negative": ["11:1", 0], "latent_image": ["5", 0],
    }
    assert prompt["12:2:1"]["inputs"] == {"upscale_method": "nearest-exact", "scale_by": 1.0, "samples": ["12:1", 0]}
    assert prompt["8"]["inputs"]["samples"] == ["12:2:1", 0]
    dropped = {d.node_id: d.reason for d in result.report.dropped}
    assert dropped == {"10": "subgraph", "11": "subgraph", "12": "subgraph", "12:2": "subgraph"}
    assert errors_of(prompt) == []


def test_subgraph_input_without_link_or_promoted_value_keeps_the_inner_widget():
    data = load("subgraph.json")
    for node in data["nodes"]:
        if node["id"] == 11:
            del node["widgets_values"]
    assert convert(data).prompt["11:1"]["inputs"]["text"] == "inner default"


def test_bypassed_and_muted_subgraph_instances():
    data = load("subgraph.json")
    for node in data["nodes"]:
        if node["id"] == 12:
            node["mode"] = 4  # the sampler block bypassed: VAEDecode gets the empty latent
    bypassed = convert(data)
    assert bypassed.prompt["8"]["inputs"]["samples"] == ["5", 0]
    assert "12:1" not in bypassed.prompt and "12:2:1" not in bypassed.prompt
    for node in data["nodes"]:
        if node["id"] == 12:
            node["mode"] = 2
    muted = convert(data)
    assert "12:1" not in muted.prompt and "samples" not in muted.prompt["8"]["inputs"]


def test_a_subgraph_that_contains_itself_is_not_expanded_forever():
    data = load("subgraph.json")
    inner = data["definitions"]["subgraphs"][1]["definitions"]["subgraphs"][0]
    inner["nodes"][0]["type"] = "1f3c9d2e-0000-4000-8000-00000000000b"  # C now holds B, which holds C
    inner["nodes"][0]["inputs"] = []
    result = convert(data)
    assert any("contains itself" in w for w in result.report.warnings)


# ------------------------------------------------------------------------------- unknown types and models


def test_unknown_types_are_kept_and_reported(isolated_folders):
    put_model(isolated_folders, "checkpoints", "SD15/dreamshaper_8.safetensors")
    put_model(isolated_folders, "checkpoints", "realisticVision_v60.safetensors")
    put_model(isolated_folders, "vae", "vae-ft-mse.safetensors")
    result = convert(load("unknown_and_models.json"))
    report = result.report
    assert report.unknown == {"UltimateSDUpscale": ["30"], "Image Save": ["31"]}
    assert result.prompt["30"] == {"class_type": "UltimateSDUpscale",
                                   "inputs": {"image": ["8", 0], "model": ["4", 0]},
                                   "_meta": {"title": "UltimateSDUpscale"}}
    assert result.prompt["31"]["inputs"] == {"output_path": "[time(%Y-%m-%d)]", "filename_prefix": "upscaled",
                                             "images": ["30", 0]}
    assert result.prompt["4"]["inputs"]["ckpt_name"] == "SD15/dreamshaper_8.safetensors"
    assert result.prompt["15"]["inputs"]["vae_name"] == "vae-ft-mse.safetensors"
    remapped = {(r.node_id, r.old, r.new, r.why) for r in report.remapped_models}
    assert remapped == {("4", "SD15\\dreamshaper_8.safetensors", "SD15/dreamshaper_8.safetensors", "path separators"),
                        ("15", "old/vae-ft-mse.safetensors", "vae-ft-mse.safetensors", "same file name")}
    (missing,) = report.missing_models
    assert (missing.node_id, missing.folder, missing.name) == ("16", "checkpoints", "realisticVision_v51.safetensors")
    assert missing.suggestions == ["realisticVision_v60.safetensors"]
    assert any("node 8 (VAEDecodeTiled): widgets_values has 2 more entries" in w for w in report.warnings)
    assert not report.ok
    kinds = {(e[0], e[1]) for e in errors_of(result.prompt)}
    assert ("30", "invalid_prompt") in kinds and ("31", "invalid_prompt") in kinds
    text = "\n".join(report.lines())
    assert "unknown node type UltimateSDUpscale (node 30)" in text
    assert "missing model: checkpoints/realisticVision_v51.safetensors" in text
    json.dumps(report.to_json())  # JSON-able


def test_model_map_and_our_names(isolated_folders):
    put_model(isolated_folders, "checkpoints", "tiny.safetensors")
    result = convert(load("txt2img_v04.json"), model_map={"v1-5-pruned-emaonly.safetensors": "tiny.safetensors"},
                     our_names=True)
    assert result.prompt["4"] == {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "tiny.safetensors"},
                                  "_meta": {"title": "Load Checkpoint"}}
    assert result.prompt["6"]["class_type"] == "CLIPEncode" and result.prompt["5"]["class_type"] == "EmptyLatent"
    assert result.report.missing_models == []
    assert [(r.old, r.why) for r in result.report.remapped_models] == [("v1-5-pruned-emaonly.safetensors", "asked")]
    assert errors_of(result.prompt) == []


def test_output_slot_is_remapped_when_our_node_orders_outputs_differently():
    data = load("txt2img_v04.json")
    for node in data["nodes"]:
        if node["id"] == 4:  # a file from a tool that lists VAE first
            node["outputs"] = [node["outputs"][2], node["outputs"][0], node["outputs"][1]]
    for link in data["links"]:
        if link[1] == 4:
            link[2] = {"VAE": 0, "MODEL": 1, "CLIP": 2}[link[5]]
    result = convert(data)
    assert result.prompt["8"]["inputs"]["vae"] == ["4", 2]
    assert result.prompt["3"]["inputs"]["model"] == ["4", 0]
    assert result.prompt["6"]["inputs"]["clip"] == ["4", 1]
    assert sum("which is output" in w for w in result.report.warnings) == 4


@pytest.mark.parametrize("bad", [{"nodes": [{"id": 1}]}, {"nodes": [], "links": [[1, 2]]}, {"nodes": "x"}])
def test_malformed_ui_json_raises_a_clear_error(bad):
    with pytest.raises(UiFormatError):
        convert(bad)


def test_ksampler_family_widget_orders_match_comfyui():
    """Positional widgets only work if our inputs are declared in ComfyUI's order (facts from ComfyUI's nodes)."""
    from graphcore.convert.schema import build_schema

    comfy_orders = {
        "KSampler": ["seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
        "KSamplerAdvanced": ["add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler",
                             "start_at_step", "end_at_step", "return_with_leftover_noise"],
        "EmptyLatentImage": ["width", "height", "batch_size"],
        "CLIPTextEncode": ["text"],
        "CheckpointLoaderSimple": ["ckpt_name"],
        "VAELoader": ["vae_name"],
        "CLIPSetLastLayer": ["stop_at_clip_layer"],
        "LoadImage": ["image"],
        "LoadImageMask": ["image", "channel"],
        "SaveImage": ["filename_prefix"],
        "ImageScale": ["upscale_method", "width", "height", "crop"],
        "ImageScaleBy": ["upscale_method", "scale_by"],
        "VAEEncodeForInpaint": ["grow_mask_by"],
        "ConditioningSetArea": ["width", "height", "x", "y", "strength"],
        "ConditioningSetMask": ["strength", "set_cond_area"],
        "ConditioningAverage": ["conditioning_to_strength"],
        "ConditioningSetTimestepRange": ["start", "end"],
        "LatentUpscale": ["upscale_method", "width", "height", "crop"],
        "LatentUpscaleBy": ["upscale_method", "scale_by"],
        "SamplerCustom": ["add_noise", "noise_seed", "cfg"],
        "BasicScheduler": ["scheduler", "steps", "denoise"],
        "KarrasScheduler": ["steps", "sigma_max", "sigma_min", "rho"],
        "RandomNoise": ["noise_seed"],
        "CFGGuider": ["cfg"],
        "KSamplerSelect": ["sampler_name"],
        "SplitSigmas": ["step"],
    }
    for comfy_type, order in comfy_orders.items():
        schema = build_schema(REGISTRY, comfy_type)
        assert schema is not None, comfy_type
        ours = schema.real_slots
        assert [s.name for s in ours[:len(order)]] == order, comfy_type
        assert all(s.optional for s in ours[len(order):]), f"{comfy_type}: extra widgets of ours must be optional"


def test_graphcore_convert_imports_neither_torch_nor_nodes():
    import subprocess
    import sys

    code = "import sys, graphcore.convert; print(sorted(m for m in ('torch', 'nodes') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
