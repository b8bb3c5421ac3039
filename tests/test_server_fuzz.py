"""Property-based fuzzing of POST /prompt: every answer is a 200 or a 400 with the documented shape, and
the server (and its worker) still answer afterwards."""

from __future__ import annotations

import http.client
import json
from typing import Any

from engine_nodes import Add, Collect, Fail, Number, Positive, Scale, Text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_support import SrvCheckpoint, SrvNumber, SrvSave, running_server, save_graph, server_config

from graphcore.registry import Registry

FUZZ_NODES = (Number, Add, Scale, Text, Collect, Fail, Positive, SrvNumber, SrvSave, SrvCheckpoint)
CLASS_NAMES = [cls.type_name() for cls in FUZZ_NODES] + ["Plus"]
INPUT_NAMES = sorted({name for cls in FUZZ_NODES for name in cls.inputs} | {"x", "y"})
NODE_IDS = ["1", "2", "3", "4", "10", "a"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
links = st.tuples(st.sampled_from(NODE_IDS + ["99"]), st.integers(min_value=-1, max_value=3)).map(list)
input_values = st.one_of(scalars, links, json_values, st.sampled_from(["srv/img", "upper", "real.safetensors"]))
nodes = st.fixed_dictionaries(
    {"class_type": st.one_of(st.sampled_from(CLASS_NAMES), st.text(max_size=10), json_values)},
    optional={
        "inputs": st.one_of(st.dictionaries(st.sampled_from(INPUT_NAMES), input_values, max_size=5), json_values),
        "_meta": json_values,
    },
)
prompts = st.dictionaries(st.sampled_from(NODE_IDS), st.one_of(nodes, json_values), max_size=5)
bodies = st.one_of(
    st.fixed_dictionaries(
        {"prompt": st.one_of(prompts, json_values)},
        optional={
            "client_id": st.one_of(st.text(max_size=10), json_values),
            "number": st.one_of(st.integers(min_value=-(10**20), max_value=10**20), json_values),
            "front": st.one_of(st.booleans(), json_values),
            "extra_data": st.one_of(st.just({"extra_pnginfo": {"workflow": {}}}), json_values),
            "prompt_id": st.one_of(st.uuids().map(str), st.text(max_size=12), json_values),
            "partial_execution_targets": st.one_of(st.lists(st.sampled_from(NODE_IDS), max_size=3), json_values),
        },
    ).map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
)


def check_shape(status: int, body: Any) -> None:
    assert status in (200, 400), (status, body)
    assert isinstance(body, dict)
    if status == 200:
        assert isinstance(body["prompt_id"], str) and body["node_errors"] == {}
        assert isinstance(body["number"], (int, float)) and not isinstance(body["number"], bool)
        return
    error = body["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], str) and isinstance(error["extra_info"], dict)
    assert isinstance(body["node_errors"], dict)
    for node_error in body["node_errors"].values():
        assert isinstance(node_error["class_type"], str) and isinstance(node_error["dependent_outputs"], list)
        for problem in node_error["errors"]:
            assert {"type", "message", "details", "extra_info"} <= set(problem)


def test_fuzzed_prompts_get_200_or_a_documented_400(isolated_folders, tmp_path):
    (isolated_folders.models_dir / "checkpoints" / "real.safetensors").write_bytes(b"x")
    registry = Registry().add_all(FUZZ_NODES)
    with running_server(server_config(tmp_path / "data"), registry, isolated_folders) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def request(method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())

        statuses: list[int] = []

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(body=bodies)
        def post_prompt(body: bytes) -> None:
            status, answer = request("POST", "/prompt", body)
            check_shape(status, answer)
            statuses.append(status)

        post_prompt()
        assert len(statuses) >= 300 and statuses.count(400) > 0
        status, answer = request("GET", "/prompt")
        assert status == 200 and isinstance(answer["exec_info"]["queue_remaining"], int)
        status, answer = request("POST", "/run", json.dumps({"prompt": save_graph(5)}).encode())
        assert status == 200 and answer["status"]["status_str"] == "success"
        connection.close()
