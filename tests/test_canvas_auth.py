"""In a real browser against a server started with --auth-token: the canvas opened with ?token= works end to end
(the server keeps the token in a cookie: page files, API calls, the event stream and /view images all pass)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from test_canvas_support import load_workflow, node, open_canvas, start_server

pytest_plugins = ["test_canvas_support"]

TOKEN = "canvas-test-token"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("canvas-auth")
    server = start_server(root, root / "models", ("--auth-token", TOKEN))
    yield server
    server.stop()


def test_the_canvas_runs_a_workflow_on_a_server_that_needs_a_token(context, token_server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{token_server.url}/object_info")
    assert refused.value.code == 401

    page = open_canvas(context, f"{token_server.url}/?token={TOKEN}")
    assert "token" not in page.url  # the token went into a cookie, out of the address bar
    page.wait_for_function("document.getElementById('connection').classList.contains('online')")
    load_workflow(page, {"name": "auth", "nodes": [
        {"id": "1", "type": "SrvNumber", "pos": [0, 0], "values": {"value": 7}},
        {"id": "2", "type": "SrvSave", "pos": [320, 0], "values": {"filename_prefix": "auth/img", "size": 16},
         "links": {"value": ["1", 0]}},
    ]})
    page.keyboard.press("Control+Enter")
    image = node(page, "2").locator(".node-media img.main")
    image.wait_for(timeout=30_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 16", arg=image.element_handle())
    assert (token_server.output_dir / "auth").is_dir()
