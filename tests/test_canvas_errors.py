"""In a real browser: the server's validation errors (a 400 from POST /prompt) and a runtime execution_error
appear on the node and input they are about, with the server's message."""

from __future__ import annotations

from test_canvas_support import drag, in_dot, load_workflow, node, shot

pytest_plugins = ["test_canvas_support"]

SAMPLER = "3"


def empty_spot(page) -> tuple[float, float]:
    box = page.locator("#canvas").bounding_box()
    return box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.93


def test_a_missing_required_input_is_shown_on_the_sampler_and_its_input(page):
    drag(page, in_dot(page, SAMPLER, "positive"), empty_spot(page))  # take the link away
    page.keyboard.press("Control+Enter")
    sampler = node(page, SAMPLER)
    sampler.locator('.slot.in[data-input="positive"].has-error').wait_for()
    assert sampler.evaluate("(el) => el.classList.contains('has-error')")
    message = sampler.locator(".node-errors").inner_text()
    assert "positive" in message and "required" in message.lower()
    assert page.locator(".node.has-error").count() == 1  # only the node the error is about
    toast = page.locator(".toast.error").first.inner_text()
    assert "KSampler" in toast and "positive" in toast
    shot(page, "20-validation-error")


def test_a_model_file_that_is_not_there_is_shown_on_its_widget(page):
    canvas = page.evaluate("fetch('/default_workflow.json').then((r) => r.json()).then((w) => w.canvas)")
    checkpoint = next(n for n in canvas["nodes"] if n["type"] == "LoadCheckpoint")
    checkpoint["values"]["ckpt_name"] = "gone/nowhere.safetensors"
    load_workflow(page, canvas)
    combo = node(page, checkpoint["id"]).locator(".w-combo")
    assert "missing" in combo.get_attribute("class")
    assert combo.locator("select").input_value() == "gone/nowhere.safetensors"
    page.locator("#btn-queue").click()
    row = node(page, checkpoint["id"]).locator('.widget-row[data-input="ckpt_name"]')
    row.locator(".widget-error").wait_for()
    assert "nowhere.safetensors" in row.locator(".widget-error").inner_text()
    assert node(page, checkpoint["id"]).evaluate("(el) => el.classList.contains('has-error')")


def test_a_runtime_error_is_shown_on_the_node_that_raised_it(page):
    load_workflow(page, {"name": "oom", "nodes": [
        {"id": "1", "type": "SrvNumber", "pos": [0, 0], "values": {"value": 3}},
        {"id": "2", "type": "SrvOOM", "pos": [320, 0], "links": {"value": ["1", 0]}},
        {"id": "3", "type": "SrvResult", "pos": [640, 0], "links": {"value": ["2", 0]}},
    ]})
    page.locator("#btn-queue").click()
    failed = node(page, "2")
    failed.locator(".node-errors").wait_for()
    page.wait_for_function("document.querySelector('.node[data-id=\"2\"] .node-errors').textContent.length > 0")
    assert "simulated out of memory" in failed.locator(".node-errors").inner_text()
    assert failed.evaluate("(el) => el.classList.contains('has-error')")
    assert page.locator(".node.has-error").count() == 1
    assert "SrvOOM" in page.locator(".toast.error").last.inner_text()
    shot(page, "21-runtime-error")
