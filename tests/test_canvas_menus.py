"""In a real browser: the categorised right-click menu, the Tab search over descriptions, the refresh action
(new model files appear in combos), seeds' control-after-generate applied after each queue, and mute/bypass as
the server sees them."""

from __future__ import annotations

import json
import shutil

from playwright.sync_api import expect
from test_canvas_support import TINY_CHECKPOINT, canvas_point, graph, node, shot

pytest_plugins = ["test_canvas_support"]

SAMPLER = "3"


def test_the_right_click_menu_adds_nodes_by_category(page):
    at = canvas_point(page, 0.45, 0.9)
    page.mouse.click(*at, button="right")
    page.locator(".menu-item", has_text="Add node").hover()
    page.locator(".menu-item", has_text="image").first.hover()
    page.locator(".menu-item", has_text="upscaling").hover()
    shot(page, "40-category-menu")
    page.locator(".menu-item", has_text="Upscale Image By").click()
    added = graph(page)["nodes"][-1]
    assert added["type"] == "ImageScaleBy"
    zoom = page.evaluate("diffgraph.editor.view.zoom")
    world = page.evaluate("([x, y]) => diffgraph.editor.view.toWorld(x, y)", list(at))
    assert abs(added["pos"][0] - world[0]) <= 1 and abs(added["pos"][1] - world[1]) <= 1, zoom


def test_tab_opens_a_fuzzy_search_over_names_and_descriptions(page):
    page.locator("#canvas").click(position={"x": 700, "y": 840})
    page.keyboard.press("Tab")
    page.locator(".search-input").wait_for()
    page.keyboard.type("edges detector")  # words of Canny's description, not of its name
    first = page.locator(".search-item").first
    assert first.get_attribute("data-type") == "Canny"
    page.keyboard.press("Control+A")
    page.keyboard.type("ksadv")  # scattered letters of "KSampler (Advanced)"
    assert page.locator(".search-item").first.get_attribute("data-type") == "KSamplerAdvanced"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Escape")
    assert page.locator(".search").count() == 0


def test_refresh_lists_model_files_added_since_the_page_opened(page, canvas_server, tiny_checkpoint):
    combo = node(page, "4").locator("select")
    before = combo.locator("option").all_inner_texts()
    assert before == ["demo.safetensors", TINY_CHECKPOINT]  # the packaged demo model is listed with the user's
    folder = canvas_server.root / "models" / "checkpoints"
    shutil.copy(tiny_checkpoint("sd1").paths["safetensors"], folder / "second.safetensors")
    try:
        page.locator("#btn-refresh").click()
        page.wait_for_function("document.querySelector('.node[data-id=\"4\"] select').options.length === 3")
        assert combo.locator("option").all_inner_texts() == ["demo.safetensors", "second.safetensors", TINY_CHECKPOINT]
    finally:
        (folder / "second.safetensors").unlink()


def test_control_after_generate_moves_the_seed_after_each_queue(page):
    sent = []

    def answer(route):
        sent.append(json.loads(route.request.post_data))
        route.fulfill(json={"prompt_id": f"p{len(sent)}", "number": len(sent), "node_errors": {}})

    page.route("**/prompt", answer)
    seed = node(page, SAMPLER).locator('.widget-row[data-input="seed"]')
    seed.locator(".w-number .w-label").click()
    page.keyboard.press("Control+A")
    page.keyboard.type("5")
    page.keyboard.press("Enter")
    control = seed.locator('select[aria-label="control after generate"]')
    shown = seed.locator(".w-value")

    def queue_and_wait(mode: str) -> None:
        control.select_option(mode)
        count = len(sent)
        page.keyboard.press("Control+Enter")
        for _ in range(200):
            if len(sent) > count:
                break
            page.wait_for_timeout(25)
        page.wait_for_function("() => !document.querySelector('.toast.error')")

    queue_and_wait("increment")
    expect(shown).to_have_text("6")
    queue_and_wait("decrement")
    expect(shown).to_have_text("5")
    queue_and_wait("fixed")
    expect(shown).to_have_text("5")
    queue_and_wait("randomize")
    assert [p["prompt"][SAMPLER]["inputs"]["seed"] for p in sent] == [5, 6, 5, 5]
    # The seed moves when the page has the server's answer, a moment after the request was sent.
    for _ in range(200):
        seed_now = next(n for n in graph(page)["nodes"] if n["id"] == SAMPLER)["values"]["seed"]
        if seed_now != 5:
            break
        page.wait_for_timeout(25)
    assert int(shown.inner_text()) == seed_now != 5
    # What was sent carries the workflow for the PNG, in diffgraph's own format.
    assert sent[0]["extra_data"]["extra_pnginfo"]["workflow"]["format"] == "diffgraph-workflow"
    assert sent[0]["client_id"] == page.evaluate("diffgraph.clientId")


def test_muted_nodes_are_left_out_and_bypassed_ones_pass_their_input_through(page):
    canvas = page.evaluate("fetch('/default_workflow.json').then((r) => r.json()).then((w) => w.canvas)")
    canvas["nodes"].append({"id": "20", "type": "ImageInvert", "pos": [1180, 300], "links": {"image": ["8", 0]}})
    save = next(n for n in canvas["nodes"] if n["id"] == "9")
    save["links"] = {"images": ["20", 0]}
    page.evaluate("(c) => diffgraph.editor.load(c)", canvas)
    node(page, "20").locator(".node-title").click()
    page.keyboard.press("Control+B")
    api = page.evaluate("diffgraph.workflowFile().api")
    assert "20" not in api and api["9"]["inputs"]["images"] == ["8", 0]
    assert "bypass" in node(page, "20").get_attribute("class")
    page.keyboard.press("Control+M")  # mute replaces bypass
    api = page.evaluate("diffgraph.workflowFile().api")
    assert "20" not in api and "images" not in api["9"]["inputs"]
    page.keyboard.press("Control+M")
    assert page.evaluate("diffgraph.workflowFile().api")["9"]["inputs"]["images"] == ["20", 0]
    page.keyboard.press("Alt+C")
    assert "collapsed" in node(page, "20").get_attribute("class")
