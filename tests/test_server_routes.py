"""Every HTTP route with ComfyUI's request and response shapes: submission variants, queue, history,
object_info, system_stats, models, free, saved workflows, uploads, /view and the static canvas."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import pytest
import pytest_asyncio
from PIL import Image
from test_server_support import (
    history_entry,
    next_event,
    registry,
    save_graph,
    server_config,
    slow_graph,
    submit,
    until_done,
)

from graphcore import hooks
from graphcore.server.app import create_app

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client(aiohttp_client, isolated_folders, tmp_path):
    app = create_app(server_config(tmp_path / "data"), registry(), isolated_folders)
    return await aiohttp_client(app)


@pytest.fixture
def free_calls():
    calls: list[tuple[bool, bool]] = []

    def hook(unload_models: bool, free_memory: bool) -> None:
        calls.append((unload_models, free_memory))

    hooks.on_free(hook)
    yield calls
    hooks.remove_free(hook)


# -- submission variants ------------------------------------------------------------------------------------


async def test_invalid_prompts_get_400_with_node_errors(client):
    graph = save_graph(5)
    graph["1"]["inputs"]["value"] = 10**13
    response = await client.post("/prompt", json={"prompt": graph})
    body = await response.json()
    assert response.status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    error = body["node_errors"]["1"]
    assert error["class_type"] == "SrvNumber" and error["dependent_outputs"] == ["2"]
    assert error["errors"][0]["type"] == "value_bigger_than_max"
    assert error["errors"][0]["extra_info"]["input_name"] == "value"

    response = await client.post("/prompt", json={"prompt": {"1": {"class_type": "Number", "inputs": {"value": 1}}}})
    assert response.status == 400 and (await response.json())["error"]["type"] == "prompt_no_outputs"
    response = await client.post("/prompt", json={"client_id": "x"})
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "no_prompt" and body["node_errors"] == {}
    assert (await (await client.get("/queue")).json())["queue_pending"] == []


async def test_wait_and_run_return_outputs_with_urls_and_base64(client, isolated_folders):
    response = await client.post("/prompt", json={"prompt": save_graph(21), "wait": True, "base64": True})
    body = await response.json()
    assert response.status == 200 and body["status"]["status_str"] == "success"
    image = body["outputs"]["2"]["images"][0]
    assert image["url"] == "/view?filename=img_00001_.png&subfolder=srv&type=output"
    assert base64.b64decode(image["base64"]) == (isolated_folders.output_dir / "srv" / image["filename"]).read_bytes()
    fetched = await client.get(image["url"])
    assert await fetched.read() == base64.b64decode(image["base64"])

    response = await client.post("/run", json={"prompt": save_graph(22)})
    body = await response.json()
    assert body["status"]["completed"] is True and "base64" not in body["outputs"]["2"]["images"][0]

    failing = {
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "fail": True}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    body = await (await client.post("/api/run", json={"prompt": failing})).json()
    assert body["status"]["status_str"] == "error" and body["error"]["exception_message"] == "cannot handle 1"


async def test_wait_with_timeout_answers_202_while_still_running(client):
    response = await client.post(
        "/run", json={"prompt": slow_graph(steps=100, delay=0.01, preview=False), "timeout": 0.05}
    )
    body = await response.json()
    assert response.status == 202 and body["status"]["status_str"] == "pending"
    await client.post("/interrupt", json={"prompt_id": body["prompt_id"]})


async def test_queue_lists_orders_and_deletes_pending_prompts(client):
    ws = await client.ws_connect("/ws?clientId=q")
    blocker = await submit(client, slow_graph(value=1, steps=300, delay=0.01, preview=False), client_id="q")
    await next_event(ws, "progress")
    later = [await submit(client, save_graph(value)) for value in (31, 32, 33)]
    first = await submit(client, save_graph(34), front=True)
    queue = await (await client.get("/queue")).json()
    assert [item[1] for item in queue["queue_running"]] == [blocker]
    assert [item[1] for item in queue["queue_pending"]] == [first, *later]
    number, prompt_id, prompt, extra_data, outputs = queue["queue_pending"][1]
    assert (prompt_id, prompt, extra_data, outputs) == (later[0], save_graph(31), {}, ["2"])
    assert queue["queue_pending"][0][0] < 0 < number
    assert await (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 5}}

    response = await client.post("/queue", json={"delete": [later[1]]})
    assert await response.json() == {"deleted": [later[1]]}
    response = await client.post("/api/queue", json={"clear": True})
    assert sorted((await response.json())["deleted"]) == sorted([first, later[0], later[2]])
    queue = await (await client.get("/queue")).json()
    assert queue["queue_pending"] == [] and len(queue["queue_running"]) == 1
    await client.post("/interrupt", json={})
    await until_done(ws, blocker)
    assert await (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}


async def test_duplicate_prompt_id_and_partial_targets(client):
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 4}},
        "2": {"class_type": "Collect", "inputs": {"value": ["1", 0], "label": "a"}},
        "3": {"class_type": "Collect", "inputs": {"value": ["1", 0], "label": "b"}},
    }
    body = await (await client.post("/run", json={"prompt": graph, "prompt_id": "fixed-id-1",
                                                  "partial_execution_targets": ["3"]})).json()
    assert body["prompt_id"] == "fixed-id-1" and list(body["outputs"]) == ["3"]
    response = await client.post("/prompt", json={"prompt": graph, "prompt_id": "fixed-id-1"})
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "duplicate_prompt_id" and body["node_errors"] == {}
    response = await client.post("/prompt", json={"prompt": graph, "partial_execution_targets": ["1"]})
    assert response.status == 400 and (await response.json())["error"]["type"] == "prompt_no_outputs"


async def test_history_listing_limits_and_deletion(client):
    ids = [(await (await client.post("/run", json={"prompt": save_graph(v)})).json())["prompt_id"]
           for v in (41, 42, 43)]
    history = await (await client.get("/history")).json()
    assert list(history) == ids
    assert list(await (await client.get("/history?max_items=2")).json()) == ids[1:]
    assert list(await (await client.get("/api/history?max_items=1&offset=0")).json()) == ids[:1]
    assert (await client.get("/history?max_items=abc")).status == 400
    assert await (await client.post("/history", json={"delete": [ids[0]]})).json() == {"deleted": 1}
    assert list(await (await client.get("/history")).json()) == ids[1:]
    assert await (await client.post("/history", json={"clear": True})).json() == {"deleted": 2}
    assert await (await client.get("/history")).json() == {}
    assert await (await client.get(f"/history/{ids[1]}")).json() == {}


# -- information routes -----------------------------------------------------------------------------------


async def test_object_info_for_all_nodes_one_node_and_an_alias(client):
    info = await (await client.get("/object_info")).json()
    assert {"Number", "Add", "SrvSave", "SrvSlow"} <= set(info)
    save = info["SrvSave"]
    assert save["output_node"] is True and save["input"]["required"]["filename_prefix"] == ["STRING",
                                                                                          {"default": "srv/img"}]
    assert save["input_order"] == {"required": ["value", "filename_prefix", "size"]}
    one = await (await client.get("/api/object_info/Add")).json()
    assert list(one) == ["Add"] and one["Add"]["output"] == ["INT"]
    alias = await (await client.get("/object_info/Plus")).json()
    assert list(alias["Plus"]["input"]["required"]) == ["x", "y"]
    assert await (await client.get("/object_info/Nope")).json() == {}


async def test_system_stats_models_embeddings_extensions(client, isolated_folders, without_builtin_models):
    stats = await (await client.get("/system_stats")).json()
    assert stats["system"]["python_version"] and stats["system"]["ram_total"] > 0
    assert stats["devices"] and {"name", "type", "vram_total", "vram_free"} <= set(stats["devices"][0])
    (isolated_folders.models_dir / "checkpoints" / "sub").mkdir()
    (isolated_folders.models_dir / "checkpoints" / "sub" / "b.safetensors").write_bytes(b"x")
    (isolated_folders.models_dir / "checkpoints" / "a.ckpt").write_bytes(b"x")
    (isolated_folders.models_dir / "checkpoints" / "notes.txt").write_text("x")
    (isolated_folders.models_dir / "embeddings" / "style.pt").write_bytes(b"x")
    kinds = await (await client.get("/models")).json()
    assert "checkpoints" in kinds and "loras" in kinds
    assert await (await client.get("/models/checkpoints")).json() == ["a.ckpt", "sub/b.safetensors"]
    assert (await client.get("/models/nonsense")).status == 404
    assert await (await client.get("/embeddings")).json() == ["style"]
    assert await (await client.get("/api/extensions")).json() == []


async def test_free_reaches_the_registered_hooks(client, free_calls):
    response = await client.post("/free", json={"unload_models": True, "free_memory": False})
    assert response.status == 200
    for _ in range(100):
        if free_calls:
            break
        await asyncio.sleep(0.02)
    assert free_calls == [(True, False)]


async def test_out_of_memory_frees_models_reports_and_keeps_serving(client, free_calls):
    oom = {
        "1": {"class_type": "SrvNumber", "inputs": {"value": 1}},
        "2": {"class_type": "SrvOOM", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    body = await (await client.post("/run", json={"prompt": oom})).json()
    assert body["status"]["status_str"] == "error"
    assert body["error"]["exception_type"] == "MemoryError" and body["error"]["node_id"] == "2"
    assert free_calls == [(True, True)]
    body = await (await client.post("/run", json={"prompt": save_graph(8)})).json()
    assert body["status"]["status_str"] == "success"


# -- saved workflows --------------------------------------------------------------------------------------


async def test_saved_workflows_list_read_run_with_overrides_delete(aiohttp_client, isolated_folders, tmp_path):
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "example-save.json").write_text(json.dumps({"prompt": save_graph(1)}))
    config = server_config(tmp_path / "data", examples_dir=examples)
    client = await aiohttp_client(create_app(config, registry(), isolated_folders))

    assert (await client.post("/workflows/mine", json={"api": save_graph(2, prefix="mine/x")})).status == 200
    assert (tmp_path / "data" / "workflows" / "mine.json").is_file()
    listing = (await (await client.get("/workflows")).json())["workflows"]
    assert [(w["name"], w["source"]) for w in listing] == [("example-save", "example"), ("mine", "user")]
    assert await (await client.get("/workflows/mine")).json() == {"api": save_graph(2, prefix="mine/x")}

    body = await (await client.post("/workflows/mine/run", json={"overrides": {"1.value": 77}, "wait": True})).json()
    assert body["status"]["status_str"] == "success"
    entry = await history_entry(client, body["prompt_id"])
    assert entry["prompt"][2]["1"]["inputs"]["value"] == 77
    saved = isolated_folders.output_dir / "mine" / body["outputs"]["2"]["images"][0]["filename"]
    assert Image.open(saved).getpixel((0, 0)) == (77, 0, 200)

    body = await (await client.post("/api/workflows/example-save/run", json={"wait": True})).json()
    assert body["status"]["status_str"] == "success"
    response = await client.post("/workflows/mine/run", json={"overrides": {"9.value": 1}})
    body = await response.json()
    assert response.status == 400 and "no node '9'" in body["error"]["message"] and body["node_errors"] == {}
    response = await client.post("/workflows/mine/run", json={"overrides": {"1.value": "abc"}})
    assert response.status == 400 and "1" in (await response.json())["node_errors"]
    assert (await client.post("/workflows/missing/run", json={})).status == 404
    assert (await client.delete("/workflows/example-save")).status == 403
    assert (await client.delete("/workflows/mine")).status == 200
    assert (await client.get("/workflows/mine")).status == 404
    assert (await client.put("/workflows/..%2Fescape", json={})).status in (400, 404)
    assert (await client.post("/workflows/bad$name", json={})).status == 400


# -- files ------------------------------------------------------------------------------------------------


def png_bytes(size=(8, 8), colour=(10, 20, 30, 255), mode="RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour[: len(mode)]).save(buffer, format="PNG")
    return buffer.getvalue()


def form(data: bytes, filename: str, **fields: str):
    from aiohttp import FormData

    payload = FormData()
    payload.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        payload.add_field(key, value)
    return payload


async def test_upload_image_names_duplicates_and_view_options(client, isolated_folders):
    first = png_bytes(colour=(1, 2, 3, 128))
    body = await (await client.post("/upload/image", data=form(first, "photo.png"))).json()
    assert body == {"name": "photo.png", "subfolder": "", "type": "input"}
    assert (isolated_folders.input_dir / "photo.png").read_bytes() == first
    again = await (await client.post("/upload/image", data=form(first, "photo.png"))).json()
    assert again["name"] == "photo.png"  # identical bytes: the same file
    other = png_bytes(colour=(9, 9, 9, 255))
    renamed = await (await client.post("/api/upload/image", data=form(other, "photo.png"))).json()
    assert renamed["name"] == "photo (1).png"
    replaced = await (await client.post("/upload/image", data=form(other, "photo.png", overwrite="true"))).json()
    assert replaced["name"] == "photo.png" and (isolated_folders.input_dir / "photo.png").read_bytes() == other
    nested = await (await client.post("/upload/image", data=form(first, "p.png", subfolder="a/b", type="temp"))).json()
    assert nested == {"name": "p.png", "subfolder": "a/b", "type": "temp"}
    assert (isolated_folders.temp_dir / "a" / "b" / "p.png").is_file()

    query = {"filename": "p.png", "subfolder": "a/b", "type": "temp"}
    alpha = await client.get("/view", params={**query, "channel": "a"})
    assert Image.open(io.BytesIO(await alpha.read())).getchannel("A").getpixel((0, 0)) == 128
    rgb = await client.get("/view", params={**query, "channel": "rgb"})
    assert Image.open(io.BytesIO(await rgb.read())).mode == "RGB"
    preview = await client.get("/view", params={**query, "preview": "jpeg;50"})
    assert preview.content_type == "image/jpeg"
    assert (await client.get("/view", params={**query, "channel": "bogus"})).status == 400
    assert (await client.get("/view", params={"filename": "none.png"})).status == 404


async def test_upload_mask_puts_the_mask_into_the_originals_alpha(client, isolated_folders):
    original = png_bytes(size=(6, 4), colour=(200, 100, 50, 255))
    await client.post("/upload/image", data=form(original, "base.png"))
    mask = io.BytesIO()
    Image.new("RGBA", (6, 4), (0, 0, 0, 77)).save(mask, format="PNG")
    fields = {"original_ref": json.dumps({"filename": "base.png", "type": "input"})}
    body = await (await client.post("/upload/mask", data=form(mask.getvalue(), "clipspace-mask.png", **fields))).json()
    assert body["type"] == "input" and body["name"] == "clipspace-mask.png"
    result = Image.open(isolated_folders.input_dir / body["name"])
    assert result.mode == "RGBA" and result.getpixel((1, 1)) == (200, 100, 50, 77)
    missing = {"original_ref": json.dumps({"filename": "nope.png"})}
    assert (await client.post("/upload/mask", data=form(mask.getvalue(), "m.png", **missing))).status == 404


async def test_static_canvas_and_placeholder(aiohttp_client, isolated_folders, tmp_path):
    placeholder = await aiohttp_client(create_app(server_config(tmp_path / "a"), registry(), isolated_folders))
    page = await placeholder.get("/")
    assert page.status == 200 and "diffgraph" in await page.text()
    web_dir = tmp_path / "web"
    (web_dir / "js").mkdir(parents=True)
    (web_dir / "index.html").write_text("<!doctype html><title>canvas</title>")
    (web_dir / "js" / "app.js").write_text("export const x = 1;")
    config = server_config(tmp_path / "b", web_dir=web_dir)
    canvas = await aiohttp_client(create_app(config, registry(), isolated_folders))
    assert "canvas" in await (await canvas.get("/")).text()
    script = await canvas.get("/js/app.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert (await canvas.get("/js/missing.js")).status == 404
    assert (await canvas.get("/api/not-a-route")).status == 404
    assert (await canvas.get("/object_info/Add")).status == 200  # the API is not shadowed


UI_WORKFLOW = {
    "last_node_id": 2, "last_link_id": 1,
    "nodes": [
        {"id": 1, "type": "SrvNumber", "pos": [0, 0], "size": [100, 60], "mode": 0, "inputs": [],
         "outputs": [{"name": "value", "type": "INT", "links": [1], "slot_index": 0}], "widgets_values": [5],
         "properties": {}},
        {"id": 2, "type": "SrvResult", "pos": [200, 0], "size": [100, 60], "mode": 0,
         "inputs": [{"name": "value", "type": "INT", "link": 1}], "outputs": [], "widgets_values": [],
         "properties": {}},
    ],
    "links": [[1, 1, 0, 2, 0, "INT"]], "groups": [], "extra": {}, "version": 0.4,
}


async def test_convert_and_run_a_saved_ui_format_workflow(client, isolated_folders):
    response = await client.post("/convert", json=UI_WORKFLOW)
    body = await response.json()
    assert response.status == 200 and body["report"]["ok"] is True
    assert body["prompt"]["1"]["inputs"] == {"value": 5}
    assert body["prompt"]["2"]["inputs"] == {"value": ["1", 0]}
    response = await client.post("/api/convert", data=b'{"not": "a workflow"}')
    assert response.status == 400 and (await response.json())["error"]["type"] == "invalid_workflow"
    assert (await client.post("/convert", data=b"[[[")).status == 400
    assert (await client.post("/convert?map=broken", json=UI_WORKFLOW)).status == 400

    await client.post("/workflows/ui-flow", json=UI_WORKFLOW)
    body = await (await client.post("/workflows/ui-flow/run", json={"overrides": {"1.value": 12}})).json()
    assert body["node_errors"] == {}
    body = await (await client.post("/workflows/ui-flow/run", json={"overrides": {"1.value": 13}, "wait": True})).json()
    assert body["outputs"] == {"2": {"value": [13]}}
    entry = await history_entry(client, body["prompt_id"])
    assert entry["prompt"][3]["extra_pnginfo"]["workflow"] == UI_WORKFLOW  # embedded for output files
