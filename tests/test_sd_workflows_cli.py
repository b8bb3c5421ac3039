"""ComfyUI's default txt2img workflow in API format (node ids 3–9, ComfyUI's class and input names, `_meta` titles)
runs unchanged from the command line on a tiny checkpoint; the PNG carries the prompt, quantises like ComfyUI's
SaveImage (truncation), and re-running the PNG itself gives the same pixels."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from support import parity_helpers as ph

from graphcore import types
from graphcore.metadata import png_text_chunks


def comfy_default_workflow(ckpt_name: str) -> dict:
    """ComfyUI's default graph as "Save (API)" exports it, made small (64×64, 4 steps)."""
    return {
        "3": {"inputs": {"seed": 156680208700286, "steps": 4, "cfg": 8, "sampler_name": "euler",
                         "scheduler": "normal", "denoise": 1, "model": ["4", 0], "positive": ["6", 0],
                         "negative": ["7", 0], "latent_image": ["5", 0]},
              "class_type": "KSampler", "_meta": {"title": "KSampler"}},
        "4": {"inputs": {"ckpt_name": ckpt_name}, "class_type": "CheckpointLoaderSimple",
              "_meta": {"title": "Load Checkpoint"}},
        "5": {"inputs": {"width": 64, "height": 64, "batch_size": 1}, "class_type": "EmptyLatentImage",
              "_meta": {"title": "Empty Latent Image"}},
        "6": {"inputs": {"text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
                         "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)"}},
        "7": {"inputs": {"text": "text, watermark", "clip": ["4", 1]}, "class_type": "CLIPTextEncode",
              "_meta": {"title": "CLIP Text Encode (Prompt)"}},
        "8": {"inputs": {"samples": ["3", 0], "vae": ["4", 2]}, "class_type": "VAEDecode",
              "_meta": {"title": "VAE Decode"}},
        "9": {"inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}, "class_type": "SaveImage",
              "_meta": {"title": "Save Image"}},
    }  # fmt: skip


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).parent / "diffgraph"), "run", "--quiet", *args]  # the installed command
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_comfyui_default_workflow_runs_unchanged_from_the_cli(tiny_checkpoint, tmp_path, isolated_folders):
    checkpoint = tiny_checkpoint("sd1")
    models, output = tmp_path / "models", tmp_path / "out"
    ph.link_formats(checkpoint, models / "checkpoints", ["safetensors"], "v1-5-tiny")
    workflow = comfy_default_workflow("v1-5-tiny.safetensors")
    workflow_file = tmp_path / "wf.json"
    workflow_file.write_text(json.dumps(workflow))

    done = run_cli(str(workflow_file), "--models-dir", str(models), "--output-dir", str(output))
    assert done.returncode == 0, done.stderr
    png = output / "ComfyUI_00001_.png"
    assert done.stdout.strip().splitlines() == [str(png)]
    texts = png_text_chunks(png)
    assert json.loads(texts["prompt"]) == workflow  # the graph as run, ids, names, titles and all
    assert "Steps: 4, Sampler: Euler" in texts["parameters"] and "Seed: 156680208700286" in texts["parameters"]

    # Same pixels as an in-process run of the same graph, quantised by truncation like ComfyUI's SaveImage.
    graph = copy.deepcopy(workflow)
    del graph["9"]
    ph.capture(graph, "9", ["8", 0], types.IMAGE, "image")
    ph.link_formats(checkpoint, isolated_folders.models_dir / "checkpoints", ["safetensors"], "v1-5-tiny")
    ph.run_ok(ph.executor(), graph)
    image = ph.captured("image")[0].numpy()
    truncated = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    assert np.array_equal(png_pixels(png), truncated)
    assert not np.array_equal(truncated, np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8))  # rounding differs

    assert "workflow" not in texts  # a plain API graph brings no editor workflow: no empty chunk

    # The PNG is itself a workflow: running it again reproduces the picture.
    again = run_cli(str(png), "--models-dir", str(models), "--output-dir", str(output))
    assert again.returncode == 0, again.stderr
    assert np.array_equal(png_pixels(output / "ComfyUI_00002_.png"), png_pixels(png))


def test_saved_png_carries_the_ui_workflow_when_given(tiny_checkpoint, isolated_folders):
    """extra_pnginfo (what the editor sends with a prompt) becomes the PNG's `workflow` chunk, next to `prompt`."""
    checkpoint = tiny_checkpoint("sd1")
    ph.link_formats(checkpoint, isolated_folders.models_dir / "checkpoints", ["safetensors"], "v1-5-tiny")
    workflow = comfy_default_workflow("v1-5-tiny.safetensors")
    ui_workflow = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": [], "version": 0.4}
    ex = ph.executor()
    report = ex.validate(workflow)
    assert report.ok
    result = ex.execute(report.plan, extra_data={"extra_pnginfo": {"workflow": ui_workflow}})
    assert result.ok, result.error and result.error.exception_message
    (saved,) = result.outputs["9"]["images"]
    png = isolated_folders.output_dir / saved["subfolder"] / saved["filename"]
    texts = png_text_chunks(png)
    assert json.loads(texts["workflow"]) == ui_workflow
    assert json.loads(texts["prompt"]) == workflow


def test_cli_reports_a_bad_checkpoint_as_one_line(tiny_checkpoint, tmp_path):
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "checkpoints" / "broken.safetensors").write_bytes(b"not a model")
    workflow_file = tmp_path / "wf.json"
    workflow_file.write_text(json.dumps(comfy_default_workflow("broken.safetensors")))
    done = run_cli(str(workflow_file), "--models-dir", str(models), "--output-dir", str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.strip().startswith(
        "node 4 (CheckpointLoaderSimple) failed: broken.safetensors: not a readable .safetensors file (")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_cli_embeds_a_saved_diffgraph_workflow_and_a_prompt_bodys_extra_data(tiny_checkpoint, tmp_path):
    """A workflow saved by the canvas embeds itself (layout and all) in the PNGs it makes from the command line;
    a `{prompt, extra_data}` body keeps its extra data."""
    models, output = tmp_path / "models", tmp_path / "out"
    ph.link_formats(tiny_checkpoint("sd1"), models / "checkpoints", ["safetensors"], "v1-5-tiny")
    api = comfy_default_workflow("v1-5-tiny.safetensors")
    saved = {"format": "diffgraph-workflow", "version": 1, "api": api,
             "canvas": {"name": "mine", "nodes": [{"id": "3", "type": "KSampler", "pos": [10, 20]}], "groups": []}}
    (tmp_path / "saved.json").write_text(json.dumps(saved))
    done = run_cli(str(tmp_path / "saved.json"), "--models-dir", str(models), "--output-dir", str(output))
    assert done.returncode == 0, done.stderr
    assert json.loads(png_text_chunks(output / "ComfyUI_00001_.png")["workflow"]) == saved

    body = {"prompt": api, "extra_data": {"extra_pnginfo": {"workflow": {"nodes": [], "version": 0.4}}}}
    (tmp_path / "body.json").write_text(json.dumps(body))
    done = run_cli(str(tmp_path / "body.json"), "--models-dir", str(models), "--output-dir", str(output))
    assert done.returncode == 0, done.stderr
    assert json.loads(png_text_chunks(output / "ComfyUI_00002_.png")["workflow"]) == {"nodes": [], "version": 0.4}
