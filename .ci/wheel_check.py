"""Checks an installed wheel is the whole product: run with the python of a venv that holds only the wheel and its
locked dependencies, from a folder outside the repository. Starts `diffgraph serve`, fetches the canvas, one of its
JS modules and /object_info, and runs the txt2img example shipped in the wheel to a PNG."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, body: dict | None = None, timeout: float = 300) -> tuple[str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return reply.headers.get("Content-Type", ""), reply.read()


def main() -> int:
    import graphcore

    package = Path(graphcore.__file__).resolve().parent
    assert "site-packages" in package.parts, f"graphcore imported from {package}, not from an installed wheel"
    diffgraph = Path(sys.executable).parent / "diffgraph"  # the venv's own command, whatever PATH says
    assert diffgraph.is_file(), f"the wheel installed no {diffgraph}"
    work = Path(tempfile.mkdtemp(prefix="diffgraph-wheel-"))
    port = free_port()
    server = subprocess.Popen(
        [str(diffgraph), "serve", "--port", str(port), "--data-dir", str(work / "data"),
         "--output-dir", str(work / "out")],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                fetch(base + "/system_stats", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"diffgraph serve exited:\n{server.stdout.read()}") from None
                time.sleep(0.2)
        kind, page = fetch(base + "/")
        assert kind.startswith("text/html") and b'type="module"' in page, (kind, page[:200])
        kind, module = fetch(base + "/js/main.js")
        assert "javascript" in kind and b"import" in module, (kind, module[:200])
        _, info = fetch(base + "/object_info")
        node_types = json.loads(info)
        assert {"KSampler", "LoadCheckpoint", "SaveImage"} <= node_types.keys(), sorted(node_types)[:10]
        _, listing = fetch(base + "/workflows")
        examples = {w["name"] for w in json.loads(listing)["workflows"] if w["source"] == "example"}
        assert "txt2img" in examples, examples
        _, reply = fetch(base + "/workflows/txt2img/run", {"wait": True})
        outputs = json.loads(reply)
        images = [image for node in outputs["outputs"].values() for image in node.get("images", [])]
        assert images, outputs
        image = images[0]
        query = urllib.parse.urlencode({key: image.get(key, "") for key in ("filename", "subfolder", "type")})
        kind, png = fetch(f"{base}/view?{query}")
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), (kind, png[:16])
        print(f"wheel check: canvas, /js/main.js, {len(node_types)} node types, txt2img example → "
              f"{image['filename']} ({len(png)} bytes PNG) from {package}")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
