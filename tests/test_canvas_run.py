"""In a real browser: build txt2img on an empty canvas with the node search and dragged links, type the prompt,
queue with Ctrl+Enter from the prompt box, watch it run (highlight, progress, live preview) until the image shows;
then drop the generated PNG on a cleared canvas and get the same workflow back. The queue panel: history,
cancel a waiting run, stop the running one."""

from __future__ import annotations

import json

from test_canvas_support import add_by_search as search_add
from test_canvas_support import (
    canvas_point,
    drag,
    drop_file,
    graph,
    in_dot,
    load_workflow,
    node,
    out_dot,
    shot,
)

from graphcore.metadata import png_text_chunks

pytest_plugins = ["test_canvas_support"]  # the server, browser and page fixtures

WATCH_RUN = """() => {
  window.__seen = {running: [], progress: 0};
  new MutationObserver((records) => {
    for (const r of records) {
      const t = r.target;
      if (t.classList?.contains("running")) window.__seen.running.push(t.dataset.id);
      if (t.parentElement?.classList.contains("node-progress")) {
        window.__seen.progress = Math.max(window.__seen.progress, parseFloat(t.style.width) || 0);
      }
    }
  }).observe(document.getElementById("nodes"), {attributes: true, subtree: true, attributeFilter: ["class", "style"]});
}"""


def type_number(page, node_id: str, name: str, value: str) -> None:
    page.locator(f'.node[data-id="{node_id}"] .widget-row[data-input="{name}"] .w-label').click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


def build_txt2img(page) -> dict[str, str]:
    at = lambda fx, fy: canvas_point(page, fx, fy)  # noqa: E731
    ids = {
        "ckpt": search_add(page, "checkpoint", at(0.015, 0.30), pick="LoadCheckpoint"),
        "pos": search_add(page, "clip text", at(0.215, 0.02), pick="CLIPEncode"),
        "neg": search_add(page, "clip text", at(0.215, 0.28), pick="CLIPEncode"),
        "latent": search_add(page, "empty latent", at(0.215, 0.56), pick="EmptyLatent"),
        "sampler": search_add(page, "ksampler", at(0.49, 0.02), pick="KSampler"),
        "decode": search_add(page, "vae decode", at(0.70, 0.02), pick="VAEDecode"),
        "save": search_add(page, "save image", at(0.70, 0.30), pick="SaveImage"),
    }
    wires = [
        (("ckpt", 0), ("sampler", "model")), (("ckpt", 1), ("pos", "clip")), (("ckpt", 1), ("neg", "clip")),
        (("ckpt", 2), ("decode", "vae")), (("pos", 0), ("sampler", "positive")), (("neg", 0), ("sampler", "negative")),
        (("latent", 0), ("sampler", "latent_image")), (("sampler", 0), ("decode", "samples")),
        (("decode", 0), ("save", "images")),
    ]
    for (src, slot), (dst, name) in wires:
        drag(page, out_dot(page, ids[src], slot), in_dot(page, ids[dst], name))
    return ids


def test_build_txt2img_from_empty_canvas_queue_with_ctrl_enter_and_see_the_image(page, canvas_server):
    page.locator("#canvas").click(position={"x": 700, "y": 820})
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    assert graph(page)["nodes"] == []
    assert page.locator("#empty-hint").is_visible()
    shot(page, "01-empty")

    ids = build_txt2img(page)
    nodes = {n["id"]: n for n in graph(page)["nodes"]}
    assert nodes[ids["sampler"]]["links"] == {
        "model": [ids["ckpt"], 0], "positive": [ids["pos"], 0], "negative": [ids["neg"], 0],
        "latent_image": [ids["latent"], 0]}
    assert nodes[ids["save"]]["links"] == {"images": [ids["decode"], 0]}
    assert nodes[ids["ckpt"]]["values"]["ckpt_name"] == "demo.safetensors"  # the first listed: the packaged demo
    assert page.locator("#links path.link").count() == 9

    type_number(page, ids["latent"], "width", "64")
    type_number(page, ids["latent"], "height", "70")  # not on the step grid of 8: snapped to 72
    type_number(page, ids["sampler"], "steps", "3")
    control = page.locator(f'.node[data-id="{ids["sampler"]}"] select[aria-label="control after generate"]')
    control.select_option("fixed")
    values = {n["id"]: n["values"] for n in graph(page)["nodes"]}
    assert values[ids["latent"]]["width"] == 64 and values[ids["latent"]]["height"] == 72
    assert values[ids["sampler"]]["steps"] == 3

    prompt_box = page.locator(f'.node[data-id="{ids["pos"]}"] textarea')
    prompt_box.click()
    page.keyboard.type("a red circle on a blue background")
    shot(page, "02-built")
    page.evaluate(WATCH_RUN)
    queued_workflow = page.evaluate("diffgraph.workflowFile()")
    page.keyboard.press("Control+Enter")  # focus is still in the prompt box

    save_image = node(page, ids["save"]).locator(".node-media img.main")
    save_image.wait_for(timeout=120_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=save_image.element_handle())
    assert save_image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]") == [64, 72]
    seen = page.evaluate("window.__seen")
    assert ids["sampler"] in seen["running"] and ids["decode"] in seen["running"]
    assert seen["progress"] > 0
    assert node(page, ids["sampler"]).locator(".node-media img.preview").count() == 1  # the last live preview
    assert page.locator(".node.running").count() == 0
    shot(page, "03-finished")

    src = save_image.get_attribute("src")
    assert "/view?" in src and "type=output" in src
    filename = src.split("filename=")[1].split("&")[0]
    png = (canvas_server.output_dir / filename).read_bytes()
    texts = png_text_chunks(png)
    embedded = json.loads(texts["workflow"])
    assert embedded["format"] == "diffgraph-workflow"
    assert embedded["canvas"]["nodes"] == queued_workflow["canvas"]["nodes"]
    assert json.loads(texts["prompt"])[ids["pos"]]["inputs"]["text"] == "a red circle on a blue background"

    # Clear the canvas, then drop the generated PNG on it: the whole layout comes back.
    page.locator("#canvas").click(position={"x": 700, "y": 840})
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    assert graph(page)["nodes"] == []
    drop_file(page, "#canvas", filename, "image/png", png, canvas_point(page, 0.5, 0.5))
    page.wait_for_function("diffgraph.editor.graph.nodes.size === 7")
    assert graph(page)["nodes"] == queued_workflow["canvas"]["nodes"]
    assert page.locator("#links path.link").count() == 9
    shot(page, "04-png-dropped")
    page.keyboard.press("Control+Z")  # the drop is one undo step
    assert graph(page)["nodes"] == []


SLOW_GRAPH = {
    "name": "slow",
    "nodes": [
        {"id": "1", "type": "SrvNumber", "pos": [0, 0], "values": {"value": 1}},
        {"id": "2", "type": "SrvSlow", "pos": [320, 0], "values": {"steps": 400, "delay": 0.05, "preview": True},
         "links": {"value": ["1", 0]}},
        {"id": "3", "type": "SrvSave", "pos": [660, 0], "values": {"filename_prefix": "slow", "size": 8},
         "links": {"value": ["2", 0]}},
    ],
}


def test_queue_panel_cancels_a_waiting_run_and_stops_the_running_one(page):
    load_workflow(page, SLOW_GRAPH)
    page.locator("#btn-queue-panel").click()
    history = page.locator("#queue-panel .qp-section:nth-child(3)")
    history.locator("h3").wait_for()
    if history.locator("button", has_text="Clear").count():  # runs of other tests on this server
        history.locator("button", has_text="Clear").click()
    history.locator(".qp-empty").wait_for()
    page.locator("#btn-queue").click()
    running = page.locator("#queue-panel .qp-item.running")
    running.wait_for(timeout=20_000)
    node(page, "2").locator(".node-media img.preview").wait_for(timeout=20_000)  # live previews arrive
    assert page.locator('.node[data-id="2"].running').count() == 1
    type_value = page.locator('.node[data-id="1"] .widget-row[data-input="value"] .w-label')
    type_value.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    page.locator("#btn-queue").click()
    pending = page.locator("#queue-panel .qp-section:nth-child(2) .qp-item")
    pending.wait_for(timeout=10_000)
    shot(page, "05-queue-panel")
    pending.locator("button", has_text="✕").click()
    page.wait_for_function("!document.querySelector('#queue-panel .qp-section:nth-child(2) .qp-item')")
    running.locator("button", has_text="Stop").click()
    page.wait_for_function("!document.querySelector('#queue-panel .qp-item.running')", timeout=20_000)
    page.wait_for_function("document.querySelectorAll('.node.running').length === 0")
    finished = history.locator(".qp-item")
    finished.first.wait_for()
    assert finished.count() == 1  # the cancelled run never ran
    assert finished.first.locator(".sub").inner_text().startswith("error")  # stopped: ComfyUI's status_str
