"""Each security rule: auth token (header, query, cookie, constant time), loopback by default, cross-origin
writes, DNS rebinding, paths that never leave their folder, upload checks, safe content types, body caps
and hostile JSON."""

from __future__ import annotations

import io
import json

import pytest
import pytest_asyncio
from aiohttp import FormData, WSServerHandshakeError
from PIL import Image
from test_server_support import registry, save_graph, server_config

from graphcore.cli import main
from graphcore.server import security
from graphcore.server.app import create_app
from graphcore.server.security import InsecureBinding, check_binding, resolve_token, token_matches

pytestmark = pytest.mark.asyncio
TOKEN = "t0ken-for-tests-1234567890"


@pytest_asyncio.fixture
async def client(aiohttp_client, isolated_folders, tmp_path):
    return await aiohttp_client(create_app(server_config(tmp_path / "data"), registry(), isolated_folders))


@pytest_asyncio.fixture
async def locked(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data", auth_token=TOKEN)
    return await aiohttp_client(create_app(config, registry(), isolated_folders))


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def png(size=(8, 8), noise=False) -> bytes:
    image = Image.effect_noise(size, 80).convert("RGB") if noise else Image.new("RGB", size, (1, 2, 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(data: bytes, filename: str, **fields: str) -> FormData:
    form = FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


async def pending(client) -> int:
    body = await (await client.get("/prompt", headers=bearer())).json()
    return body["exec_info"]["queue_remaining"]


# -- binding and tokens -----------------------------------------------------------------------------------


async def test_loopback_is_the_default_and_other_addresses_need_a_token(tmp_path, capsys):
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        check_binding(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(InsecureBinding, match="--auth-token"):
            check_binding(host, None)
        check_binding(host, TOKEN)
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path)]) == 1
    assert "without an auth token" in capsys.readouterr().err


async def test_token_from_the_environment_and_constant_time_comparison(monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_AUTH_TOKEN", "from-env")
    assert resolve_token(None) == "from-env" and resolve_token("cli") == "cli"
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN[:-1], TOKEN) and not token_matches(None, TOKEN)
    assert len(calls) == 2  # both comparisons went through hmac.compare_digest


async def test_every_route_requires_the_token(locked):
    for method, path in (("GET", "/prompt"), ("GET", "/api/object_info"), ("GET", "/history"), ("GET", "/"),
                         ("POST", "/prompt"), ("GET", "/view?filename=x.png"), ("POST", "/interrupt")):
        response = await locked.request(method, path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await locked.get("/prompt", headers=bearer("wrong-token"))).status == 401
    assert (await locked.get("/prompt", headers=bearer())).status == 200
    response = await locked.post("/prompt", json={"prompt": save_graph(1)}, headers=bearer())
    assert response.status == 200


async def test_query_token_only_where_a_browser_cannot_send_a_header(locked, isolated_folders):
    assert (await locked.get(f"/prompt?token={TOKEN}")).status == 401
    (isolated_folders.output_dir / "a.png").write_bytes(png())
    assert (await locked.get(f"/view?filename=a.png&token={TOKEN}")).status == 200
    assert (await locked.get("/view?filename=a.png&token=nope")).status == 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await locked.ws_connect("/ws?clientId=x")
    assert refused.value.status == 401
    ws = await locked.ws_connect(f"/ws?clientId=x&token={TOKEN}")
    assert json.loads((await ws.receive()).data)["type"] == "status"
    await ws.close()


async def test_canvas_login_sets_an_http_only_cookie(locked):
    response = await locked.get(f"/?token={TOKEN}", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "diffgraph_token=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    locked.session.cookie_jar.clear()  # send cookies by hand below
    response = await locked.get("/object_info/Add", headers={"Cookie": f"diffgraph_token={TOKEN}"})
    assert response.status == 200
    assert (await locked.get("/object_info/Add", headers={"Cookie": "diffgraph_token=bad"})).status == 401


# -- cross-origin and DNS rebinding ------------------------------------------------------------------------


async def test_cross_origin_writes_are_refused(client):
    own = f"http://127.0.0.1:{client.port}"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{client.port + 1}", f"https://127.0.0.1:{client.port}",
                   f"http://localhost:{client.port}"):
        response = await client.post("/prompt", json={"prompt": save_graph(1)}, headers={"Origin": origin})
        assert response.status == 403, origin
        assert (await response.json())["error"]["type"] == "cross_origin"
    for method, path in (("POST", "/interrupt"), ("POST", "/free"), ("POST", "/queue"), ("POST", "/history"),
                         ("PUT", "/workflows/x"), ("DELETE", "/workflows/x"), ("POST", "/upload/image")):
        response = await client.request(method, path, headers={"Origin": "http://evil.example"})
        assert response.status == 403, path
    assert await pending(client) == 0 and await (await client.get("/history")).json() == {}
    assert (await client.get("/object_info/Add", headers={"Origin": "http://evil.example"})).status == 200
    response = await client.post("/prompt", json={"prompt": save_graph(2)}, headers={"Origin": own})
    assert response.status == 200
    response = await client.post("/prompt", json={"prompt": save_graph(3)})  # scripts send no Origin
    assert response.status == 200


async def test_cross_origin_websocket_is_refused(client):
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    ws = await client.ws_connect("/ws", headers={"Origin": f"http://127.0.0.1:{client.port}"})
    await ws.close()


async def test_configured_origins_may_write(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data", allowed_origins=("http://localhost:5173",))
    client = await aiohttp_client(create_app(config, registry(), isolated_folders))
    headers = {"Origin": "http://localhost:5173"}
    assert (await client.post("/prompt", json={"prompt": save_graph(1)}, headers=headers)).status == 200


async def test_dns_rebinding_is_refused_without_a_token(client, locked):
    response = await client.get("/object_info/Add", headers={"Host": f"evil.example:{client.port}"})
    assert response.status == 403 and (await response.json())["error"]["type"] == "forbidden_host"
    for host in (f"localhost:{client.port}", f"[::1]:{client.port}", f"127.0.0.1:{client.port}"):
        assert (await client.get("/object_info/Add", headers={"Host": host})).status == 200
    # With a token the name does not matter: a rebinding page cannot present the token.
    headers = {"Host": "studio.lan:8188", **bearer()}
    assert (await locked.get("/object_info/Add", headers=headers)).status == 200


async def test_security_headers(client):
    for path in ("/object_info/Add", "/"):
        response = await client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


# -- paths ------------------------------------------------------------------------------------------------


async def test_view_never_leaves_its_folder(client, isolated_folders, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png())
    (isolated_folders.output_dir / "link.png").symlink_to(secret)
    (isolated_folders.output_dir / "linkdir").symlink_to(tmp_path)
    (isolated_folders.output_dir / "ok.png").write_bytes(png())
    refused = [
        "filename=../secret.png", "filename=..%2Fsecret.png", "filename=..%5Csecret.png", "filename=/etc/passwd",
        "filename=%2Fetc%2Fpasswd", "filename=secret.png&subfolder=..", "filename=secret.png&subfolder=%2E%2E",
        "filename=secret.png&subfolder=/tmp", "filename=ok.png%00.txt", "filename=link.png",
        "filename=secret.png&subfolder=linkdir", "filename=ok.png&type=models", "filename=ok.png&type=..",
        "filename=", "filename=..%2F..%2F..%2Fetc%2Fpasswd&type=input",
    ]
    for query in refused:
        response = await client.get(f"/view?{query}")
        assert response.status == 400, query
        assert (await response.json())["error"]["type"] in ("invalid_path", "invalid_request"), query
    # Double encoding arrives as a literal name: no such file.
    assert (await client.get("/view?filename=%252e%252e%252fsecret.png")).status == 404
    assert (await client.get("/view?filename=ok.png")).status == 200


async def test_served_files_get_safe_content_types(client, isolated_folders):
    (isolated_folders.output_dir / "page.html").write_text("<script>alert(1)</script>")
    (isolated_folders.output_dir / "vector.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (isolated_folders.output_dir / "image.png").write_bytes(png())
    for name in ("page.html", "vector.svg"):
        response = await client.get(f"/view?filename={name}")
        assert response.status == 200
        assert response.content_type == "application/octet-stream"
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert "sandbox" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = await client.get("/view?filename=image.png")
    assert response.content_type == "image/png" and response.headers["Content-Disposition"].startswith("inline")


async def test_uploads_stay_in_their_folder_with_sanitised_names(client, isolated_folders, tmp_path):
    body = await (await client.post("/upload/image", data=upload(png(), "../../evil.png"))).json()
    assert body == {"name": "evil.png", "subfolder": "", "type": "input"}
    assert (isolated_folders.input_dir / "evil.png").is_file() and not (tmp_path / "evil.png").exists()
    body = await (await client.post("/upload/image", data=upload(png(), "..\\..\\win.png"))).json()
    assert body["name"] == "win.png"
    body = await (await client.post("/upload/image", data=upload(png(), "page.html"))).json()
    assert body["name"] == "page.png"  # the stored extension is the real format's
    body = await (await client.post("/upload/image", data=upload(png(), ".hidden;rm -rf $HOME.png"))).json()
    assert body["name"] == "hidden_rm -rf _HOME.png"
    for fields in ({"subfolder": "../x"}, {"subfolder": "/abs"}, {"subfolder": "a/../../b"}, {"type": "../"},
                   {"type": "models"}):
        response = await client.post("/upload/image", data=upload(png(), "x.png", **fields))
        assert response.status == 400, fields
    outside = isolated_folders.input_dir / "linked"
    outside.symlink_to(tmp_path)
    response = await client.post("/upload/image", data=upload(png(), "x.png", subfolder="linked"))
    assert response.status == 400 and not (tmp_path / "x.png").exists()


async def test_uploads_must_be_images_within_the_caps(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data", max_upload_bytes=4096, max_image_pixels=20_000)
    client = await aiohttp_client(create_app(config, registry(), isolated_folders))
    for data in (b"<html><script>alert(1)</script></html>", b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                 png()[:40], b""):
        response = await client.post("/upload/image", data=upload(data, "x.png"))
        assert response.status == 400 and (await response.json())["error"]["type"] == "invalid_image"
    response = await client.post("/upload/image", data=upload(png((64, 64), noise=True), "big.png"))
    assert response.status == 413
    response = await client.post("/upload/image", data=upload(png((200, 150)), "wide.png"))
    assert response.status == 400 and "pixels" in (await response.json())["error"]["message"]
    assert (await client.post("/upload/image", data=b"not a form")).status == 400
    assert list(isolated_folders.input_dir.iterdir()) == []


async def test_model_names_and_filename_prefixes_cannot_escape(client, isolated_folders):
    (isolated_folders.models_dir / "checkpoints" / "real.safetensors").write_bytes(b"x")

    def graph(name):
        return {"1": {"class_type": "SrvCheckpoint", "inputs": {"ckpt_name": name}},
                "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}

    for name in ("../../etc/passwd", "/etc/passwd", "..%2Freal.safetensors", "real.safetensors\x00"):
        response = await client.post("/prompt", json={"prompt": graph(name)})
        body = await response.json()
        assert response.status == 400 and body["node_errors"]["1"]["errors"][0]["type"] == "value_not_in_list"
    body = await (await client.post("/run", json={"prompt": graph("real.safetensors")})).json()
    assert body["status"]["status_str"] == "success"
    response = await client.post("/prompt", json={"prompt": save_graph(1, prefix="../../escape")})
    body = await response.json()
    assert response.status == 400 and body["node_errors"]["2"]["errors"][0]["type"] == "custom_validation_failed"


# -- bodies ---------------------------------------------------------------------------------------------


async def test_bodies_are_size_capped(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data", max_json_bytes=2048)
    client = await aiohttp_client(create_app(config, registry(), isolated_folders))
    big = {"prompt": save_graph(1), "extra_data": {"pad": "x" * 4000}}
    response = await client.post("/prompt", json=big)
    body = await response.json()
    assert response.status == 413 and body["error"]["type"] == "too_large" and body["node_errors"] == {}

    async def chunks():
        yield b'{"prompt": {}, "pad": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = await client.post("/prompt", data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await client.post("/prompt", json={"prompt": save_graph(1)})).status == 200


HOSTILE_BODIES = [
    b"{not json", b"\xff\xfe\x00garbage", b"", b"[]", b'"prompt"', b"null", b"42",
    b'{"prompt": []}', b'{"prompt": "text"}', b'{"prompt": {"1": "node"}}', b'{"prompt": {"1": {"inputs": []}}}',
    b'{"prompt": {}, "client_id": 5}', b'{"prompt": {}, "number": "first"}', b'{"prompt": {}, "number": 1e300}',
    b'{"prompt": {}, "front": "yes"}', b'{"prompt": {}, "extra_data": []}', b'{"prompt": {}, "prompt_id": "a/b"}',
    b'{"prompt": {}, "prompt_id": 7}', b'{"prompt": {}, "partial_execution_targets": {"a": 1}}',
    b'{"prompt": {"1": {"class_type": "SrvNumber", "inputs": {"value": NaN}}}}',
    b'{"prompt": {"1": {"class_type": "SrvNumber", "inputs": {"value": Infinity}}}}',
    b'{"prompt": {"1": {"class_type": "SrvNumber", "inputs": {"value": 1e999}}}}',
    b'{"prompt": {"1": {"class_type": "SrvNumber", "inputs": {"value": 1' + b"0" * 5000 + b"}}}}",
    b'{"prompt": {"1": {"class_type": "SrvNumber", "inputs": {"value": 1' + b"0" * 4000 + b"}}}}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"prompt": ' + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}",
    json.dumps({"prompt": {**save_graph(1), "2": {"class_type": "SrvSave", "inputs": {"value": [1, 0, 0]}}}}).encode(),
    json.dumps({"prompt": {"1": {"class_type": ["list"], "inputs": {}}}}).encode(),
]


async def test_hostile_json_gets_400_with_a_clear_message(client):
    for raw in HOSTILE_BODIES:
        response = await client.post("/prompt", data=raw, headers={"Content-Type": "application/json"})
        body = await response.json()
        assert response.status == 400, raw[:80]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"], raw[:80]
        assert isinstance(body["node_errors"], dict), raw[:80]
    for path in ("/queue", "/history", "/interrupt", "/free"):
        hostile = b'{"delete": "everything", "clear": 1, "prompt_id": [], "unload_models": "yes"}'
        response = await client.post(path, data=hostile)
        assert response.status == 400, path
        assert "error" in await response.json()
    assert await pending(client) == 0
    assert (await client.get("/prompt")).status == 200
