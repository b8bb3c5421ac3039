"""Make the README's pictures from a fresh start (run by hand after the demo files change):

- docs/canvas.png: `diffgraph serve` with an empty models folder, the default workflow queued once in Debian's
  chromium, screenshot when its picture is shown;
- docs/examples.png: every demo-only example workflow run by `diffgraph run`, its saved pictures side by side
  (scaled 3x with nearest neighbour: the demo model makes 64x64 images).

    python docs/make_pictures.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
EXAMPLES = ("txt2img", "img2img", "inpaint", "outpaint", "hires_fix", "lora", "controlnet_canny")
SCALE = 3


def diffgraph() -> str:
    return str(Path(sys.executable).parent / "diffgraph")


def canvas_picture(root: Path) -> None:
    from playwright.sync_api import sync_playwright

    server = subprocess.Popen([diffgraph(), "serve", "--port", "0", "--data-dir", str(root / "data"),
                               "--models-dir", str(root / "models"), "--output-dir", str(root / "output")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        url = None
        while url is None:
            line = server.stdout.readline()
            if not line:
                raise SystemExit("diffgraph serve stopped")
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            url = found.group(0) if found else None
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 800})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]", timeout=15000)
            page.locator("#btn-queue").click()
            saved = page.locator('.node[data-id="9"] .node-media img.main')  # the default workflow's SaveImage
            saved.wait_for(timeout=120_000)
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=saved.element_handle())
            time.sleep(0.5)
            page.screenshot(path=str(DOCS / "canvas.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(20)


def examples_picture(root: Path) -> None:
    tiles: list[tuple[str, Image.Image]] = []
    env = {**os.environ, "DIFFGRAPH_DATA_DIR": str(root / "data")}
    for name in EXAMPLES:
        output = root / "examples" / name
        done = subprocess.run([diffgraph(), "run", "--quiet", str(REPO / "workflows" / f"{name}.json"),
                               "--output-dir", str(output)], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{name}: {done.stderr}")
        for path in map(Path, done.stdout.split()):
            with Image.open(path) as image:
                label = path.stem.rsplit("_", 2)[0] if path.parent == output else f"{name} (preview)"
                tiles.append((label, image.convert("RGB")))
    cell = 64 * SCALE + 8  # bigger pictures (outpaint, hires fix) are shrunk to fit
    sheet = Image.new("RGB", (cell * 6, (cell + 24) * ((len(tiles) + 5) // 6)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (label, image) in enumerate(tiles):
        x, y = cell * (index % 6), (cell + 24) * (index // 6)
        scaled = image.resize((image.width * SCALE, image.height * SCALE), Image.NEAREST)
        scaled.thumbnail((cell - 8, cell - 8), Image.NEAREST)
        sheet.paste(scaled, (x + (cell - scaled.width) // 2, y + 4))
        draw.text((x + 6, y + cell + 2), label, fill="black")
    sheet.save(DOCS / "examples.png", optimize=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        canvas_picture(root)
        examples_picture(root)
    for name in ("canvas.png", "examples.png"):
        print(f"docs/{name}: {(DOCS / name).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
