"""The diffgraph command: exit codes and readable messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from engine_nodes import RUNS, registry

from graphcore import cli


@pytest.fixture(autouse=True)
def test_registry(monkeypatch):
    monkeypatch.setattr(cli, "_REGISTRY", registry())
    RUNS.clear()


def write(tmp_path, graph, name="wf.json"):
    path = tmp_path / name
    path.write_text(json.dumps(graph))
    return str(path)


GOOD = {
    "1": {"class_type": "Number", "inputs": {"value": 2}},
    "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 3}},
    "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
}


def test_run_ok(tmp_path, capsys):
    assert cli.main(["run", write(tmp_path, GOOD), "--quiet"]) == 0
    assert RUNS["Collect"] == 1


def test_run_with_set_override(tmp_path, capsys):
    assert cli.main(["run", write(tmp_path, GOOD), "--quiet", "--set", "2.b=40"]) == 0
    assert RUNS["Add"] == 1


def test_run_invalid_exits_1_with_readable_errors(tmp_path, capsys):
    bad = json.loads(json.dumps(GOOD))
    bad["1"]["inputs"]["value"] = 99999
    bad["2"]["class_type"] = "Addd"
    code = cli.main(["run", write(tmp_path, bad), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "node 1 (Number), input 'value': Value 99999 bigger than max of 1000" in err
    assert "node 2 (Addd): Cannot execute because node Addd does not exist." in err
    assert "Traceback" not in err
    assert RUNS["Number"] == 0


def test_run_node_failure_exits_1(tmp_path, capsys):
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "fail": True}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    assert cli.main(["run", write(tmp_path, graph), "--quiet"]) == 1
    assert "node 2 (Fail) failed: cannot handle 2" in capsys.readouterr().err


def test_bad_set_syntax_and_missing_file(tmp_path, capsys):
    assert cli.main(["run", write(tmp_path, GOOD), "--set", "nonsense"]) == 1
    assert "expected NODE_ID.INPUT=VALUE" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "missing.json")]) == 1
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert cli.main(["run", str(tmp_path / "broken.json")]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert cli.main(["run", write(tmp_path, GOOD), "--set", "9.value=1"]) == 1
    assert "no node '9'" in capsys.readouterr().err


def test_validate_json_gives_comfy_body(tmp_path, capsys):
    bad = json.loads(json.dumps(GOOD))
    del bad["1"]["inputs"]["value"]
    assert cli.main(["validate", write(tmp_path, bad), "--json"]) == 1
    body = json.loads(capsys.readouterr().out)
    assert body["node_errors"]["1"]["errors"][0]["type"] == "required_input_missing"
    assert cli.main(["validate", write(tmp_path, GOOD)]) == 0
    assert "valid" in capsys.readouterr().out


def test_nodes_json_is_object_info(tmp_path, capsys):
    assert cli.main(["nodes", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    add = info["Add"]
    assert add["input"]["required"]["a"] == ["INT", {"default": 0, "step": 1, "min": -10**9, "max": 10**9}]
    assert add["input_order"] == {"required": ["a", "b"]}
    assert add["output"] == ["INT"] and add["output_is_list"] == [False]
    assert add["aliases"] == ["Plus"]
    assert info["Text"]["input"]["required"]["mode"] == [["upper", "lower", "keep"], {"default": "keep"}]
    assert info["Collect"]["output_node"] is True
    assert info["Collect"]["input_order"]["optional"] == ["label"]


def test_console_script_is_installed_and_starts_without_torch():
    code = (
        "import sys, graphcore.cli, graphcore.executor, graphcore.validation, nodes; "
        "nodes.node_classes(); "
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
