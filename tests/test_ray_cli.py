"""`diffgraph serve --workers …`: a clear message when Ray is missing or the value is wrong, Ray never
imported without `--workers ray`, and the real command running a prompt on a Ray actor it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_ray_support import TESTS_DIR, make_checkpoints, work_graph

from graphcore.cli import main
from graphcore.server.ray_pool import RayPoolError, RayPoolOptions, parse_workers

REPO = TESTS_DIR.parent


def test_without_ray_installed_workers_ray_says_how_to_get_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["serve", "--workers", "ray", "--port", "0", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "--workers ray needs Ray, which is not installed here" in err and "pip install 'diffgraph[ray]'" in err
    assert not (tmp_path / "queue.sqlite3").exists()  # nothing started


@pytest.mark.parametrize("value", ["rayy", "ray://", "ray:cluster", ""])
def test_a_wrong_workers_value_is_named(tmp_path, capsys, value):
    assert main(["serve", "--workers", value, "--port", "0", "--data-dir", str(tmp_path)]) == 1
    assert f"--workers {value!r}: expected 'local', 'ray' or 'ray://HOST:PORT'" in capsys.readouterr().err


def test_workers_values():
    assert parse_workers("ray") is None
    assert parse_workers("ray://head.example:10001") == "ray://head.example:10001"
    with pytest.raises(RayPoolError):
        parse_workers("local")


def test_options_from_the_environment():
    options = RayPoolOptions.from_env({"DIFFGRAPH_RAY_ACTORS": "3", "DIFFGRAPH_RAY_CPUS_PER_ACTOR": "2.5",
                                       "DIFFGRAPH_RAY_AFFINITY": "0", "DIFFGRAPH_RAY_MODELS_DIR": "/mnt/models"})
    assert (options.actors, options.cpus_per_actor, options.affinity, options.models_dir) == (3, 2.5, False,
                                                                                              "/mnt/models")
    assert RayPoolOptions.from_env({}).affinity
    with pytest.raises(RayPoolError, match="DIFFGRAPH_RAY_ACTORS"):
        RayPoolOptions.from_env({"DIFFGRAPH_RAY_ACTORS": "two"})


def test_ray_is_not_imported_for_the_local_pool(tmp_path):
    code = (
        "import sys\n"
        "from graphcore.server import app, ray_pool, ray_slot, ray_runner\n"
        "from graphcore.server.config import ServerConfig\n"
        f"app.create_app(ServerConfig(data_dir={str(tmp_path)!r}))\n"
        "print('ray' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.timeout(240)
def test_serve_with_ray_workers_runs_a_prompt_on_an_actor(tmp_path):
    """The real command: it starts its own Ray (loopback only), one actor, runs a prompt there, stops cleanly
    (and takes its Ray down with it)."""
    pytest.importorskip("ray")
    make_checkpoints(tmp_path / "models", "cli.safetensors")
    env = {
        **os.environ, "PYTHONPATH": str(TESTS_DIR), "DIFFGRAPH_NODE_MODULES": "test_ray_support:RAY_NODES",
        "DIFFGRAPH_RAY_ACTORS": "1", "DIFFGRAPH_RAY_CPUS_PER_ACTOR": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    env["RAY_ADDRESS"] = "local"  # a private Ray even if this host runs a cluster
    command = [sys.executable, "-m", "graphcore.cli", "serve", "--workers", "ray", "--port", "0",
               "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "models"),
               "--output-dir", str(tmp_path / "out")]
    # Run from the tests folder: Ray puts the driver's folder on its workers' path, so they find the test nodes.
    server = subprocess.Popen(command, cwd=TESTS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        url = None
        for line in server.stdout:
            if "listening on" in line:
                url = line.split("listening on ")[1].strip()
                break
        assert url, "the server did not start"
        body = json.dumps({"prompt": work_graph("cli.safetensors", steps=2, delay=0.01)}).encode()
        request = urllib.request.Request(f"{url}/prompt", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            prompt_id = json.loads(response.read())["prompt_id"]
        deadline = time.monotonic() + 150
        entry = {}
        while time.monotonic() < deadline and not entry:
            entry = _get(f"{url}/history/{prompt_id}").get(prompt_id, {})
            time.sleep(0.2)
        assert entry["status"]["status_str"] == "success", entry
        assert entry["outputs"]["2"]["pid"][0] != server.pid  # it ran in an actor's process
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0
    assert Path(tmp_path / "data" / "queue.sqlite3").exists()
