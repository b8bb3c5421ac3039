"""In a real browser: Ctrl+S then Ctrl+O round-trips a workflow exactly; a reload keeps it; ComfyUI API-format
JSON and PNGs (zTXt/iTXt chunks too) open laid out; ComfyUI UI-format files go through POST /convert and show
its import report; images without a workflow become Load Image nodes; Load Image takes uploads by button,
drop and paste."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from test_canvas_support import canvas_point, drop_file, graph, load_workflow, node, shot

from graphcore.cli import unwrap_api_graph

pytest_plugins = ["test_canvas_support"]

COMFY_API = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox in the snow", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}
OUR_TYPES = {"4": "LoadCheckpoint", "6": "CLIPEncode", "7": "CLIPEncode", "5": "EmptyLatent", "3": "KSampler",
             "8": "VAEDecode", "9": "SaveImage"}


def default_canvas(page) -> dict:
    return page.evaluate("fetch('/default_workflow.json').then((r) => r.json()).then((w) => w.canvas)")


def rich_canvas(page) -> dict:
    canvas = default_canvas(page)
    by_id = {n["id"]: n for n in canvas["nodes"]}
    by_id["8"]["collapsed"] = True
    by_id["3"]["color"] = "purple"
    by_id["5"]["title"] = "Canvas size"
    by_id["9"]["size"] = [420, 260]
    canvas["nodes"].append({"id": "10", "type": "SaveImage", "title": "Spare save", "pos": [1180, 400],
                            "size": [300, 0], "mode": "muted", "values": {"filename_prefix": "spare"},
                            "links": {"images": ["8", 0]}})
    canvas["groups"] = [{"id": "g1", "title": "Prompts", "bounds": [270, -60, 380, 640], "color": "green"}]
    canvas["name"] = "rich"
    return canvas


def clear_canvas(page) -> None:
    page.locator("#canvas").click(position={"x": 700, "y": 840})
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    assert graph(page)["nodes"] == []


def png_bytes(texts: dict[str, str] | None = None, compressed: str = "", size=(16, 12)) -> bytes:
    info = PngInfo()
    for key, text in (texts or {}).items():
        if compressed == "itxt":
            info.add_itxt(key, text, zip=True)
        else:
            info.add_text(key, text, zip=compressed == "ztxt")
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_save_then_open_round_trips_the_workflow_exactly(page, tmp_path):
    load_workflow(page, rich_canvas(page))
    with page.expect_download() as download:
        page.keyboard.press("Control+S")
    assert download.value.suggested_filename == "rich.json"
    first = tmp_path / "first.json"
    download.value.save_as(first)
    saved = json.loads(first.read_text())
    assert saved["format"] == "diffgraph-workflow" and saved["version"] == 1
    assert saved["canvas"]["nodes"] == graph(page)["nodes"] and saved["canvas"]["groups"] == graph(page)["groups"]
    # The API graph runs headless (`diffgraph run` reads the "api" key); the muted node is left out of it.
    assert unwrap_api_graph(saved) == saved["api"]
    assert set(saved["api"]) == {"3", "4", "5", "6", "7", "8", "9"}
    assert saved["api"]["3"]["inputs"]["positive"] == ["6", 0] and saved["api"]["5"]["_meta"]["title"] == "Canvas size"
    sampler = next(n for n in saved["canvas"]["nodes"] if n["id"] == "3")
    assert sampler["values"]["steps"] == 20 and sampler["values"]["sampler_name"] == "euler"  # by name

    clear_canvas(page)
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Control+O")
    chooser.value.set_files(str(first))
    page.wait_for_function("diffgraph.editor.graph.nodes.size === 8")
    assert node(page, "8").evaluate("(el) => el.classList.contains('collapsed')")
    assert node(page, "10").evaluate("(el) => el.classList.contains('muted')")
    assert page.locator(".group.color-green .group-title").inner_text() == "Prompts"
    shot(page, "30-opened-rich-workflow")
    with page.expect_download() as again:
        page.keyboard.press("Control+S")
    second = tmp_path / "second.json"
    again.value.save_as(second)
    assert json.loads(second.read_text()) == saved


def test_a_reload_keeps_the_workflow_and_the_view(page):
    box = node(page, "6").locator("textarea")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("a blue square at the bottom right")
    page.mouse.move(*canvas_point(page, 0.5, 0.95))
    page.mouse.wheel(0, -300)  # zoom in a little
    before, view = graph(page), page.evaluate("diffgraph.editor.view.toJSON()")
    page.reload()  # at once: the page saves as it goes away
    page.wait_for_selector("body[data-ready=true]")
    assert graph(page) == before
    assert page.evaluate("diffgraph.editor.view.toJSON()") == view
    assert node(page, "6").locator("textarea").input_value() == "a blue square at the bottom right"


def test_comfyui_api_json_opens_with_our_node_types_laid_out_in_columns(page):
    drop_file(page, "#canvas", "comfy_api.json", "application/json", json.dumps(COMFY_API).encode(),
              canvas_point(page, 0.5, 0.5))
    page.wait_for_function("diffgraph.editor.graph.nodes.size === 7 && diffgraph.editor.graph.name === 'comfy_api'")
    nodes = {n["id"]: n for n in graph(page)["nodes"]}
    assert {i: n["type"] for i, n in nodes.items()} == OUR_TYPES
    assert nodes["3"]["links"] == {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                   "latent_image": ["5", 0]}
    assert nodes["3"]["values"]["seed"] == 156680208700286 and nodes["3"]["controls"]["seed"] == "fixed"
    x = {i: n["pos"][0] for i, n in nodes.items()}
    assert x["4"] < x["6"] == x["7"] == x["5"] < x["3"] < x["8"] < x["9"]
    # ComfyUI's names went through the server's converter; its report names them and the model that is not here.
    report = page.locator(".import-report")
    text = report.inner_text()
    assert "CheckpointLoaderSimple → LoadCheckpoint" in text and "v1-5-pruned-emaonly.safetensors" in text
    shot(page, "31-api-import")
    report.locator("button", has_text="OK").click()
    assert page.locator(".import-report").count() == 0


def test_pngs_with_compressed_chunks_restore_their_workflow(page, tmp_path):
    canvas = rich_canvas(page)
    load_workflow(page, canvas)
    saved = page.evaluate("diffgraph.workflowFile()")
    clear_canvas(page)
    own = png_bytes({"workflow": json.dumps(saved), "prompt": json.dumps(saved["api"])}, compressed="itxt")
    drop_file(page, "#canvas", "made_here.png", "image/png", own, canvas_point(page, 0.5, 0.5))
    page.wait_for_function("diffgraph.editor.graph.nodes.size === 8")
    assert graph(page)["nodes"] == saved["canvas"]["nodes"] and graph(page)["groups"] == saved["canvas"]["groups"]

    comfy = png_bytes({"prompt": json.dumps(COMFY_API)}, compressed="ztxt")
    drop_file(page, "#canvas", "comfy.png", "image/png", comfy, canvas_point(page, 0.5, 0.5))
    page.wait_for_function("diffgraph.editor.graph.name === 'comfy'")
    assert {n["id"]: n["type"] for n in graph(page)["nodes"]} == OUR_TYPES
    assert next(n for n in graph(page)["nodes"] if n["id"] == "6")["values"]["text"] == "a fox in the snow"


UI_WORKFLOW = {
    "last_node_id": 9, "last_link_id": 9, "version": 0.4,
    "nodes": [
        {"id": 4, "type": "CheckpointLoaderSimple", "pos": [26, 474], "size": [315, 98], "mode": 0, "inputs": [],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0},
                     {"name": "CLIP", "type": "CLIP", "links": [3, 5], "slot_index": 1},
                     {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2}],
         "widgets_values": ["v1-5-pruned-emaonly.safetensors"], "properties": {}},
        {"id": 6, "type": "CLIPTextEncode", "pos": [415, 186], "size": [422, 164], "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}],
         "widgets_values": ["a fox in the snow"], "properties": {}},
        {"id": 7, "type": "CLIPTextEncode", "pos": [413, 389], "size": [425, 180], "mode": 0,
         "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
         "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
         "widgets_values": ["blurry"], "properties": {}},
        {"id": 5, "type": "EmptyLatentImage", "pos": [473, 609], "size": [315, 106], "mode": 0, "inputs": [],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
         "widgets_values": [512, 512, 1], "properties": {}},
        {"id": 3, "type": "KSampler", "pos": [863, 186], "size": [315, 262], "mode": 0,
         "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                    {"name": "positive", "type": "CONDITIONING", "link": 4},
                    {"name": "negative", "type": "CONDITIONING", "link": 6},
                    {"name": "latent_image", "type": "LATENT", "link": 2}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
         "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1], "properties": {}},
        {"id": 8, "type": "VAEDecode", "pos": [1209, 188], "size": [210, 46], "mode": 0,
         "inputs": [{"name": "samples", "type": "LATENT", "link": 7}, {"name": "vae", "type": "VAE", "link": 8}],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}], "properties": {}},
        {"id": 9, "type": "SaveImage", "pos": [1451, 189], "size": [210, 58], "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 9}], "outputs": [], "widgets_values": ["ComfyUI"],
         "properties": {}},
    ],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"],
              [4, 6, 0, 3, 1, "CONDITIONING"], [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"],
              [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"], [9, 8, 0, 9, 0, "IMAGE"]],
    "groups": [{"title": "Sampling", "bounding": [840, 100, 360, 380], "color": "#3f789e"}],
    "config": {}, "extra": {},
}


def test_comfyui_ui_format_goes_through_the_server_and_shows_its_import_report(page):
    drop_file(page, "#canvas", "comfy_ui.json", "application/json", json.dumps(UI_WORKFLOW).encode(),
              canvas_point(page, 0.5, 0.5))
    report = page.locator(".import-report")
    report.wait_for()
    text = report.inner_text()
    assert "CheckpointLoaderSimple → LoadCheckpoint" in text and "EmptyLatentImage → EmptyLatent" in text
    assert "missing model files" in text.lower() and "checkpoints/v1-5-pruned-emaonly.safetensors" in text
    nodes = {n["id"]: n for n in graph(page)["nodes"]}
    assert {i: n["type"] for i, n in nodes.items()} == OUR_TYPES
    assert nodes["4"]["pos"] == [26, 474] and nodes["3"]["pos"] == [863, 186]  # the file's own layout
    assert nodes["3"]["values"]["seed"] == 156680208700286 and nodes["7"]["values"]["text"] == "blurry"
    assert graph(page)["groups"][0]["title"] == "Sampling"
    shot(page, "32-ui-import-report")


def test_images_become_load_image_nodes_and_take_uploads_by_button_drop_and_paste(page, canvas_server, tmp_path):
    clear_canvas(page)
    drop_file(page, "#canvas", "plain.png", "image/png", png_bytes(size=(40, 30)), canvas_point(page, 0.3, 0.3))
    page.wait_for_function("[...diffgraph.editor.graph.nodes.values()][0]?.values.image === 'plain.png'")
    loader = graph(page)["nodes"][0]
    assert loader["type"] == "LoadImage" and loader["values"]["image"] == "plain.png"
    assert (canvas_server.input_dir / "plain.png").is_file()
    thumb = node(page, loader["id"]).locator("img.thumb")
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 40", arg=thumb.element_handle())

    picked = tmp_path / "picked.png"
    picked.write_bytes(png_bytes(size=(24, 24)))
    with page.expect_file_chooser() as chooser:
        node(page, loader["id"]).locator("button", has_text="Upload").click()
    chooser.value.set_files(str(picked))
    page.wait_for_function(f"diffgraph.editor.graph.get('{loader['id']}').values.image === 'picked.png'")
    assert node(page, loader["id"]).locator("select").input_value() == "picked.png"

    box = node(page, loader["id"]).bounding_box()
    drop_file(page, f'.node[data-id="{loader["id"]}"] .node-title', "dropped.png", "image/png",
              png_bytes(size=(20, 20)), (box["x"] + 30, box["y"] + 15))
    page.wait_for_function(f"diffgraph.editor.graph.get('{loader['id']}').values.image === 'dropped.png'")
    assert len(graph(page)["nodes"]) == 1  # into the node, not a new one

    node(page, loader["id"]).locator(".node-title").click()
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "image.png", {type: "image/png"}));
        document.body.dispatchEvent(new ClipboardEvent("paste", {clipboardData: data, bubbles: true}));
    }""", base64.b64encode(png_bytes(size=(10, 10))).decode())
    page.wait_for_function(f"diffgraph.editor.graph.get('{loader['id']}').values.image.startsWith('image')")
    pasted = graph(page)["nodes"][0]["values"]["image"]
    assert (canvas_server.input_dir / pasted).is_file()
    page.keyboard.press("Control+Z")
    assert graph(page)["nodes"][0]["values"]["image"] == "dropped.png"
    shot(page, "33-load-image")


def test_without_a_converter_on_the_server_a_ui_format_file_gets_a_clear_message(page):
    page.route("**/convert*", lambda route: route.fulfill(status=404, body="Not Found"))
    before = graph(page)
    drop_file(page, "#canvas", "comfy_ui.json", "application/json", json.dumps(UI_WORKFLOW).encode(),
              canvas_point(page, 0.5, 0.5))
    message = page.locator(".toast.error")
    message.wait_for()
    assert "cannot convert ComfyUI UI-format workflows" in message.inner_text()
    assert graph(page) == before  # the canvas is left as it was
    assert page.errors == ["console: Failed to load resource: the server responded with a status of 404 (Not Found)"]
    page.errors.clear()  # that 404 was the point
