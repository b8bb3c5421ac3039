"""Shared by the browser tests of the canvas (tests/test_canvas_*.py): a real `diffgraph serve` in a subprocess
with its own folders (the tiny SD1 checkpoint in its models folder, the pure-Python `Srv*` test nodes loaded
next to the built-in ones), Debian's chromium driven by Playwright's sync API, and mouse helpers.

Use the fixtures in a test module with:
    pytest_plugins = ["test_canvas_support"]
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.fixtures import tiny_checkpoint  # noqa: F401

TESTS_DIR = Path(__file__).resolve().parent
ARTIFACTS = TESTS_DIR.parent / "test-artifacts" / "canvas"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1440, "height": 900}
TINY_CHECKPOINT = "tiny_sd1.safetensors"


def diffgraph_command() -> list[str]:
    script = Path(sys.executable).parent / "diffgraph"
    return [str(script)] if script.exists() else [sys.executable, "-m", "graphcore.cli"]


@dataclass
class CanvasServer:
    url: str
    process: subprocess.Popen
    root: Path

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def input_dir(self) -> Path:
        return self.root / "input"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(root: Path, models_dir: Path, extra_args: tuple[str, ...] = ()) -> CanvasServer:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    env["DIFFGRAPH_NODE_MODULES"] = "test_server_support:node_classes"
    env["HF_HUB_OFFLINE"] = "1"
    for name in ("output", "input", "data"):
        (root / name).mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [*diffgraph_command(), "serve", "--port", "0", "--data-dir", str(root / "data"), "--models-dir",
         str(models_dir), "--output-dir", str(root / "output"), "--input-dir", str(root / "input"), *extra_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )
    deadline = time.monotonic() + 60
    lines: list[str] = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # never let the pipe fill up
            return CanvasServer(match.group(1), process, root)
    process.kill()
    raise AssertionError("diffgraph serve did not start:\n" + "".join(lines))


@pytest.fixture(scope="module")
def canvas_server(tmp_path_factory, tiny_checkpoint) -> Iterator[CanvasServer]:  # noqa: F811
    root = tmp_path_factory.mktemp("canvas")
    models = root / "models"
    tiny_checkpoint("sd1").link_into(models / "checkpoints")
    server = start_server(root, models)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageErrors(list):
    """Uncaught errors and console errors of a page; a test fails if any happened."""


@pytest.fixture
def context(browser) -> Iterator[Any]:
    ctx = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    yield ctx
    ctx.close()


def open_canvas(ctx, url: str, errors: PageErrors | None = None) -> Any:
    page = ctx.new_page()
    if errors is not None:
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and errors.append(f"console: {msg.text}"))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=15000)
    return page


@pytest.fixture
def page(context, canvas_server) -> Iterator[Any]:
    errors = PageErrors()
    page = open_canvas(context, canvas_server.url, errors)
    page.errors = errors
    yield page
    unexpected = [e for e in errors if "the server responded with a status of 400" not in e]
    assert not unexpected, unexpected


# ---------------------------------------------------------------------------------------------- helpers


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def node(page, node_id: str):
    return page.locator(f'.node[data-id="{node_id}"]')


def out_dot(page, node_id: str, slot: int = 0):
    return page.locator(f'.node[data-id="{node_id}"] .slot.out[data-slot="{slot}"] .dot')


def in_dot(page, node_id: str, input_name: str):
    return page.locator(f'.node[data-id="{node_id}"] [data-input="{input_name}"] .dot').first


def center(locator) -> tuple[float, float]:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not on screen"
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def drag(page, source, target, steps: int = 12) -> None:
    """A real mouse drag from `source` to `target`: the centre of a locator, or a point."""
    x0, y0 = source if isinstance(source, tuple) else center(source)
    x1, y1 = target if isinstance(target, tuple) else center(target)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=steps // 2)
    page.mouse.move(x1, y1, steps=steps // 2)
    page.mouse.up()


def graph(page) -> dict[str, Any]:
    return page.evaluate("diffgraph.editor.graph.toJSON()")


def workflow(page) -> dict[str, Any]:
    return page.evaluate("diffgraph.workflowFile()")


def nodes_by_type(page, type_name: str) -> list[dict[str, Any]]:
    return [n for n in graph(page)["nodes"] if n["type"] == type_name]


def load_workflow(page, canvas: dict[str, Any]) -> None:
    """Puts a graph on the canvas directly (set-up, not the behaviour under test)."""
    page.evaluate("(c) => diffgraph.editor.load(c, {view: {x: 40, y: 40, zoom: 1}})", canvas)


def add_by_search(page, query: str, at: tuple[float, float], pick: str | None = None) -> str:
    """Double-clicks the canvas at `at`, types `query`, picks the first result (or the one of type `pick`);
    returns the new node's id."""
    before = {n["id"] for n in graph(page)["nodes"]}
    page.mouse.dblclick(*at)
    search = page.locator(".search-input")
    try:
        search.wait_for(timeout=5000)
    except Exception:
        shot(page, "failed-search")
        raise
    page.keyboard.type(query)
    if pick:
        page.locator(f'.search-item[data-type="{pick}"]').click()
    else:
        page.keyboard.press("Enter")
    added = [n["id"] for n in graph(page)["nodes"] if n["id"] not in before]
    assert len(added) == 1, f"search for {query!r} added {added}"
    return added[0]


def drop_file(page, target_selector: str, name: str, mime: str, data: bytes, point: tuple[float, float]) -> None:
    """Drops a file on an element the way a browser does (dragover, then drop, with a DataTransfer)."""
    page.evaluate(
        """([selector, name, mime, b64, x, y]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: mime}));
            const target = document.querySelector(selector);
            const init = {dataTransfer: transfer, clientX: x, clientY: y, bubbles: true, cancelable: true};
            target.dispatchEvent(new DragEvent("dragover", init));
            target.dispatchEvent(new DragEvent("drop", init));
        }""",
        [target_selector, name, mime, base64.b64encode(data).decode(), point[0], point[1]],
    )


def canvas_point(page, fx: float, fy: float) -> tuple[float, float]:
    """A point on the canvas as fractions of its size."""
    box = page.locator("#canvas").bounding_box()
    return box["x"] + box["width"] * fx, box["y"] + box["height"] * fy
