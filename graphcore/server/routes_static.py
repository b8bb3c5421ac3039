"""The web canvas: files of the `web/` folder at `/` (index.html for `/`), or a placeholder page when the
folder has no index.html yet."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from graphcore.folders import PathEscape, safe_join

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": "application/json",
    ".svg": "image/svg+xml", ".png": "image/png",
    ".jpg": "image/jpeg", ".webp": "image/webp", ".ico": "image/x-icon", ".woff2": "font/woff2", ".txt": "text/plain",
    ".map": "application/json",
}

PLACEHOLDER = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffgraph</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 4em auto">
<h1>diffgraph</h1>
<p>The server is running. The web canvas is not installed in this build; the API is available:
<code>POST /prompt</code>, <code>GET /object_info</code>, <code>GET /history</code>, <code>/ws</code>.</p>
</body></html>
"""


def add_routes(app: web.Application, web_dir: Path | None) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        return _serve(web_dir, request.match_info.get("path", "") or "index.html")

    app.router.add_get("/", page)
    app.router.add_get("/{path:.+}", page)


def _serve(web_dir: Path | None, relative: str) -> web.StreamResponse:
    if relative.startswith("api/"):
        raise web.HTTPNotFound(reason="no such API route")
    if web_dir is None or not (web_dir / "index.html").is_file():
        if relative == "index.html":
            return web.Response(text=PLACEHOLDER, content_type="text/html")
        raise web.HTTPNotFound()
    try:
        path = safe_join(web_dir, relative)
    except PathEscape:
        raise web.HTTPNotFound() from None
    if path.is_dir():
        path = path / "index.html"
    if not path.is_file():
        raise web.HTTPNotFound()
    content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
