"""The example workflows in workflows/: every one that needs only the built-in demo files runs as is and saves
its pictures; the ones that need real model files fail validation with a message naming each missing file and
the folder it belongs in. `diffgraph run workflows/txt2img.json` works on a fresh install (no configuration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import parity_helpers as ph

from graphcore.cli import load_workflow_document
from training import checker

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
DEMO_ONLY = ("txt2img", "img2img", "inpaint", "outpaint", "hires_fix", "lora", "controlnet_canny")
# workflow → (node id, input, the file it names) for every real file it needs
NEEDS_REAL_FILES = {
    "sdxl_base_refiner": [("4", "ckpt_name", "sd_xl_base_1.0.safetensors"),
                          ("12", "ckpt_name", "sd_xl_refiner_1.0.safetensors")],
    "ip_adapter": [("4", "ckpt_name", "v1-5-pruned-emaonly.safetensors"), ("10", "image", "reference.png"),
                   ("11", "clip_name", "CLIP-ViT-H-14-laion2B-s32B-b79K"),
                   ("12", "ipadapter_file", "ip-adapter_sd15.safetensors")],
    "safety_check": [("20", "checker", "stable-diffusion-safety-checker")],
}


def test_every_workflow_is_classified():
    assert {p.stem for p in WORKFLOWS.glob("*.json")} == set(DEMO_ONLY) | set(NEEDS_REAL_FILES)


@pytest.mark.parametrize("name", DEMO_ONLY)
def test_demo_workflow_runs_as_is(name, isolated_folders):
    document = json.loads((WORKFLOWS / f"{name}.json").read_text())
    assert document["description"]
    prompt, extra = load_workflow_document(str(WORKFLOWS / f"{name}.json"))
    saves = sorted(k for k, v in prompt.items() if v["class_type"] == "SaveImage")
    result = ph.run_ok(ph.executor(), prompt, extra_data=extra)
    written = [isolated_folders.output_dir / image["subfolder"] / image["filename"]
               for node in saves for image in result.outputs[node]["images"]]
    assert len(written) >= len(saves) and all(p.is_file() for p in written)
    for path in written:
        with Image.open(path) as png:
            pixels = np.asarray(png.convert("RGB"))
            assert "prompt" in png.info  # the PNG carries its workflow
        assert pixels.std() > 10  # a picture, not a blank
        if pixels.shape != (64, 64, 3):  # outpaint and hires fix: the checker reads 64x64
            pixels = np.asarray(Image.fromarray(pixels).resize((64, 64), Image.BOX))
        assert checker.analyse(pixels).shape is not None  # with a shape on a background in it


@pytest.mark.parametrize("name", sorted(NEEDS_REAL_FILES))
def test_real_file_workflow_names_the_missing_files(name, isolated_folders):
    document = json.loads((WORKFLOWS / f"{name}.json").read_text())
    prompt, _ = load_workflow_document(str(WORKFLOWS / f"{name}.json"))
    report = ph.executor().validate(prompt)
    assert not report.ok
    problems = {(error.node_id, error.input_name): error.details for error in report.errors}
    for node_id, input_name, file_name in NEEDS_REAL_FILES[name]:
        details = problems[(node_id, input_name)]
        assert file_name in details
        assert file_name in document["description"]  # the description tells the user what to get
    for node_id, input_name, _ in NEEDS_REAL_FILES[name]:
        kind = prompt[node_id]["class_type"]
        if kind != "LoadImage":
            assert "looked in the" in problems[(node_id, input_name)]
    assert len(problems) == len(NEEDS_REAL_FILES[name])  # nothing else is wrong with it


def test_txt2img_runs_from_the_command_line_without_configuration(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DIFFGRAPH_DATA_DIR": str(tmp_path / "data")}
    for var in ("DIFFGRAPH_MODELS_DIR", "DIFFGRAPH_OUTPUT_DIR", "DIFFGRAPH_INPUT_DIR", "DIFFGRAPH_EXTRA_MODEL_PATHS"):
        env.pop(var, None)
    command = [str(Path(sys.executable).parent / "diffgraph"), "run", str(WORKFLOWS / "txt2img.json"),
               "--output-dir", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    files = sorted((tmp_path / "out").glob("txt2img_*.png"))
    batch = json.loads((WORKFLOWS / "txt2img.json").read_text())["api"]["5"]["inputs"]["batch_size"]
    assert len(files) == batch
    with Image.open(files[0]) as png:
        result = checker.analyse(np.asarray(png.convert("RGB")))
    assert (result.colour, result.shape, result.position) == ("red", "circle", "top left")
