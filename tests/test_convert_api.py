"""convert_payload (what POST /convert calls) and `diffgraph convert`: UI JSON, API JSON, wrappers, and images
carrying a UI workflow, an API prompt or A1111 parameters."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from graphcore.cli import main
from graphcore.convert import ConvertError, convert_payload
from graphcore.metadata import png_info
from graphcore.registry import Registry

DATA = Path(__file__).parent / "data" / "comfy_ui"
CHECKPOINT = "v1-5-pruned-emaonly.safetensors"


def registry() -> Registry:
    from nodes.catalog import all_node_classes
    from nodes.image import load, save, transform

    return Registry().add_all(dict.fromkeys([*all_node_classes(), *load.NODES, *save.NODES, *transform.NODES]))


REGISTRY = registry()
UI = json.loads((DATA / "txt2img_v04.json").read_text())


@pytest.fixture(autouse=True)
def checkpoint(isolated_folders):
    (isolated_folders.models_dir / "checkpoints" / CHECKPOINT).write_bytes(b"")


def png_with(texts: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG", pnginfo=png_info(texts))
    return buffer.getvalue()


def test_ui_dict_and_json_bytes():
    prompt, report = convert_payload(UI, REGISTRY)
    assert prompt["3"]["inputs"]["seed"] == 156680208700286 and prompt["9"]["inputs"]["images"] == ["8", 0]
    assert report["source"] == "comfyui-ui-0.4" and report["ok"] is True
    assert report["mapped"]["CheckpointLoaderSimple"] == "LoadCheckpoint"
    json.dumps(report)
    same, _ = convert_payload(json.dumps(UI).encode(), REGISTRY)
    assert same == prompt


def test_api_graphs_and_wrappers_pass_through_with_a_report(isolated_folders):
    api, _ = convert_payload(UI, REGISTRY)
    api["10"] = {"class_type": "FaceDetailer", "inputs": {"image": ["8", 0]}}
    api["4"]["inputs"]["ckpt_name"] = "elsewhere.safetensors"
    for body, source in ((api, "api"), ({"prompt": api, "client_id": "x"}, "api"), ({"api": api}, "diffgraph"),
                         ({"workflow": UI}, "comfyui-ui-0.4")):
        prompt, report = convert_payload(body, REGISTRY)
        assert report["source"] == source
        if source != "comfyui-ui-0.4":
            assert prompt == api and prompt is not api
            assert report["unknown"] == {"FaceDetailer": ["10"]}
            assert [m["name"] for m in report["missing_models"]] == ["elsewhere.safetensors"]
            assert report["ok"] is False


def test_png_with_only_a_ui_workflow_is_converted():
    prompt, report = convert_payload(png_with({"workflow": json.dumps(UI)}), REGISTRY)
    assert report["source"] == "image:comfyui:comfyui-ui-0.4"
    assert prompt == convert_payload(UI, REGISTRY)[0]


def test_png_prompt_chunk_wins_over_its_workflow():
    api = {"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}}
    prompt, report = convert_payload(png_with({"prompt": json.dumps(api), "workflow": json.dumps(UI)}), REGISTRY)
    assert prompt == api and report["source"] == "image:comfyui"


def test_png_with_a1111_parameters(isolated_folders):
    text = ("a cat\nNegative prompt: dog\nSteps: 12, Sampler: Euler a, CFG scale: 6, Seed: 3, Size: 64x64, "
            "Model: v1-5-pruned-emaonly")
    prompt, report = convert_payload(png_with({"parameters": text}), REGISTRY)
    assert report["source"] == "image:a1111"
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]
    assert (sampler["steps"], sampler["sampler_name"], sampler["cfg"], sampler["seed"]) == (
        12, "euler_ancestral", 6.0, 3)
    loader = next(n for n in prompt.values() if n["class_type"] == "LoadCheckpoint")["inputs"]
    assert loader["ckpt_name"] == CHECKPOINT  # the A1111 model name found among the checkpoints
    assert report["missing_models"] == [] and report["unknown"] == {}


@pytest.mark.parametrize("body, message", [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "carries no workflow"),
    (b"\xff\xfe not json", "neither an image nor JSON"),
    (b"[1, 2]", "expected a JSON object"),
    ({"hello": "world"}, "not a workflow"),
    ({"nodes": [{"id": 1}]}, "UI-format workflow"),
])
def test_bad_payloads_raise_convert_error(body, message):
    with pytest.raises(ConvertError, match=message):
        convert_payload(body, REGISTRY)


# -------------------------------------------------------------------------------------------------------- CLI


def test_cli_convert_json_and_png_with_report(tmp_path, isolated_folders, capsys):
    models = ["--models-dir", str(isolated_folders.models_dir)]
    assert main(["convert", str(DATA / "txt2img_v04.json"), "--report", *models]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == convert_payload(UI, REGISTRY)[0]
    assert "source: comfyui-ui-0.4, 7 nodes" in err and "CheckpointLoaderSimple → LoadCheckpoint" in err
    image = tmp_path / "shared.png"
    image.write_bytes(png_with({"workflow": json.dumps(UI)}))
    target = tmp_path / "out.json"
    assert main(["convert", str(image), "--our-names", "--map", f"{CHECKPOINT}=other.safetensors", "-o",
                 str(target), "--report", *models]) == 0
    out, err = capsys.readouterr()
    graph = json.loads(target.read_text())
    assert out == "" and graph["4"] == {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": "other.safetensors"},
                                        "_meta": {"title": "Load Checkpoint"}}
    assert "missing model: checkpoints/other.safetensors" in err


def test_cli_convert_errors(tmp_path, isolated_folders, capsys):
    models = ["--models-dir", str(isolated_folders.models_dir)]
    assert main(["convert", str(tmp_path / "nope.json"), *models]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert main(["convert", str(bad), *models]) == 1
    assert "not a workflow" in capsys.readouterr().err
    assert main(["convert", str(DATA / "txt2img_v04.json"), "--map", "oops", *models]) == 1
    assert "expected OLD_NAME=NEW_NAME" in capsys.readouterr().err
