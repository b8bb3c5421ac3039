"""A first run, in a real browser: `diffgraph serve` with an empty models folder opens on the txt2img demo
workflow, the built-in demo checkpoint is already chosen, and one click on Queue makes a picture that matches
the prompt (scored by the analytic checker)."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from test_canvas_support import CanvasServer, graph, node, shot, start_server

from training import checker

pytest_plugins = ["test_canvas_support"]  # browser, context


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory) -> Iterator[CanvasServer]:
    root = tmp_path_factory.mktemp("first-run")
    server = start_server(root, root / "models")  # nothing in it: only the packaged demo files exist
    yield server
    server.stop()


def test_default_workflow_makes_the_prompted_picture_with_one_click(context, fresh_server):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(fresh_server.url)
    page.wait_for_selector("body[data-ready=true]", timeout=15000)

    nodes = {n["type"]: n for n in graph(page)["nodes"]}
    assert nodes["LoadCheckpoint"]["values"]["ckpt_name"] == "demo.safetensors"
    positive = [n for n in graph(page)["nodes"] if n["type"] == "CLIPEncode" and n["values"]["text"]]
    assert len(positive) == 1
    prompt = positive[0]["values"]["text"]
    assert prompt == "a red circle at the top left on a blue background"

    page.locator("#btn-queue").click()
    save = node(page, nodes["SaveImage"]["id"]).locator(".node-media img.main")
    save.wait_for(timeout=120_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=save.element_handle())
    shot(page, "first-run")
    filename = save.get_attribute("src").split("filename=")[1].split("&")[0]
    with Image.open(BytesIO((fresh_server.output_dir / filename).read_bytes())) as png:
        result = checker.analyse(np.asarray(png.convert("RGB")))
    assert (result.colour, result.shape, result.position, result.background) == ("red", "circle", "top left", "blue")
    assert not errors, errors
