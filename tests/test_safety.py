"""SafetyCheck: the same flags and black images as diffusers' StableDiffusionSafetyChecker on a batch where chosen
images are made to be flagged (directly, or only through the special-care adjustment), sensitivity, both folder
layouts, and validation errors that name the folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from support import adapter_harness as ah
from support import tiny_adapters as ta

from graphcore.executor import Executor, WorkflowInvalid
from nodes.adapters.safety import check, load_checker

# A batch of 5 pictures (48×40: the processor resizes and crops them): 1 is flagged outright, 2 only because of
# the special-care adjustment, 3 only at a raised sensitivity, 0 and 4 never.
ARRAYS = [np.random.default_rng(seed).integers(0, 256, (40, 48, 3)).astype(np.uint8) for seed in range(5)]
PICTURES = [Image.fromarray(a) for a in ARRAYS]
IMAGES = torch.from_numpy(np.stack(ARRAYS)).float() / 255


@pytest.fixture(scope="module")
def checkers(tmp_path_factory):
    dest = tmp_path_factory.mktemp("checkers")
    design = {"flag": [PICTURES[1]], "special": [PICTURES[2]], "borderline": [PICTURES[3]]}
    return {
        "folder": ta.build_safety_checker(dest / "folder", **design),
        "pipeline": ta.build_safety_checker(dest / "pipeline", layout="pipeline", **design),
    }


@pytest.fixture
def folders(isolated_folders, checkers):
    for name, built in checkers.items():
        (isolated_folders.models_dir / "safety_checker" / name).symlink_to(built.path, target_is_directory=True)
    for index, picture in enumerate(PICTURES):
        picture.save(isolated_folders.input_dir / f"p{index}.png")
    return isolated_folders


def diffusers_check(built: ta.TinySafetyChecker) -> tuple[np.ndarray, list[bool]]:
    clip_input = built.processor(PICTURES, return_tensors="pt").pixel_values
    images, flags = built.checker(clip_input=clip_input, images=np.stack(ARRAYS).astype(np.float64) / 255)
    return np.stack(images), list(flags)


@pytest.mark.parametrize("layout", ["folder", "pipeline"])
def test_same_flags_and_images_as_diffusers(folders, checkers, layout):
    theirs, their_flags = diffusers_check(checkers[layout])
    assert their_flags == [False, True, True, False, False]  # the batch is built to be flagged this way
    handle = load_checker(folders.models_dir / "safety_checker" / layout, layout)
    ours, flags = check(handle, IMAGES, 0.5)
    assert flags == their_flags
    assert np.abs(ours.numpy() - theirs).max() < 1e-6
    assert torch.equal(ours[1], torch.zeros_like(ours[1])) and torch.equal(ours[0], IMAGES[0])
    assert torch.equal(IMAGES, torch.from_numpy(np.stack(ARRAYS)).float() / 255)  # input not modified


def test_sensitivity_shifts_every_score(folders):
    handle = load_checker(folders.models_dir / "safety_checker" / "folder")
    assert check(handle, IMAGES, 1.0)[1] == [False, True, True, True, False]  # +0.05 reaches the borderline one
    # −0.05: the direct hit (+0.01) and the special-care case (−0.005 + 0.01) drop below zero.
    assert check(handle, IMAGES, 0.0)[1] == [False, False, False, False, False]
    # −0.005: the direct hit keeps +0.005; the special-care case reaches exactly 0, which is not > 0.
    assert check(handle, IMAGES, 0.45)[1] == [False, True, False, False, False]
    assert check(handle, IMAGES, 0.55)[1] == [False, True, True, False, False]


def test_safety_check_node_outputs_images_flags_and_any(folders):
    graph = {"image": {"class_type": "LoadImage", "inputs": {"image": "p1.png"}}}
    for index in (0, 2):
        graph[f"image{index}"] = {"class_type": "LoadImage", "inputs": {"image": f"p{index}.png"}}
    graph["batch"] = {"class_type": "ImageBatch", "inputs": {"image1": ["image0", 0], "image2": ["image", 0]}}
    graph["check"] = {"class_type": "SafetyCheck", "inputs": {"images": ["batch", 0], "sensitivity": 0.5,
                                                              "checker": "folder"}}
    for slot, tag in enumerate(("images", "flags", "any")):
        graph[tag] = {"class_type": "Grab", "inputs": {"value": ["check", slot], "tag": tag}}
    ah.run_graph(Executor(ah.registry()), graph)
    assert ah.Grab.values["flags"] == (False, True) and ah.Grab.values["any"] is True
    images = ah.Grab.values["images"]
    assert torch.equal(images[1], torch.zeros_like(images[1])) and torch.equal(images[0], IMAGES[0])


def validation_message(graph: dict) -> str:
    with pytest.raises(WorkflowInvalid) as caught:
        Executor(ah.registry()).run(graph)
    return str(caught.value) + repr(caught.value.report.__dict__)


def safety_graph(checker: str) -> dict:
    return {
        "image": {"class_type": "LoadImage", "inputs": {"image": "p0.png"}},
        "check": {"class_type": "SafetyCheck", "inputs": {"images": ["image", 0], "sensitivity": 0.5,
                                                          "checker": checker}},
        "out": {"class_type": "Grab", "inputs": {"value": ["check", 0]}},
    }


def test_a_missing_checker_is_a_validation_error_naming_the_folder(folders):
    message = validation_message(safety_graph("no_such_checker"))
    assert "no_such_checker" in message and str(folders.models_dir / "safety_checker") in message


def test_a_checker_folder_without_weights_is_a_validation_error(folders):
    empty = folders.models_dir / "safety_checker" / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    message = validation_message(safety_graph("empty"))
    assert "empty: no weights" in message and str(empty) in message
