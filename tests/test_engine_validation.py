"""Validation collects every problem, each with node id, class, input, ComfyUI's type and a sentence."""

from __future__ import annotations

import pytest
from engine_nodes import registry

from graphcore.validation import validate
from graphcore.workflow import Workflow, WorkflowFormatError


def check(graph):
    return validate(Workflow.from_api(graph), registry())


def errors_by_type(report):
    return {(e.node_id, e.error_type, e.input_name) for e in report.errors}


def out(link):
    return {"class_type": "Collect", "inputs": {"value": link}}


def test_valid_workflow_plans_only_nodes_feeding_outputs():
    report = check({
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 3}},
        "3": out(["2", 0]),
        "9": {"class_type": "Number", "inputs": {"value": 99999}},  # invalid but unused: not validated
    })
    assert report.ok, report.sentences()
    assert report.plan.order == ["1", "2", "3"]
    assert set(report.plan.nodes) == {"1", "2", "3"}
    assert report.plan.nodes["2"].constants == {"b": 3}


def test_all_errors_are_collected_at_once():
    report = check({
        "1": {"class_type": "Number", "inputs": {}},  # required_input_missing
        "2": {"class_type": "Add", "inputs": {"a": ["1"], "b": 1}},  # bad_linked_input
        "3": {"class_type": "Scale", "inputs": {"value": ["7", 0], "factor": 1, "enabled": True}},  # no node 7
        "4": {"class_type": "Scale", "inputs": {"value": ["1", 3], "factor": 1, "enabled": True}},  # no output 3
        "5": {"class_type": "Scale", "inputs": {"value": ["6", 0], "factor": 1, "enabled": True}},  # type mismatch
        "6": {"class_type": "Text", "inputs": {"text": "x", "mode": "sideways"}},  # not in list
        "8": {"class_type": "Number", "inputs": {"value": -5000}},  # below min
        "10": {"class_type": "Number", "inputs": {"value": 5000}},  # above max
        "11": {"class_type": "Number", "inputs": {"value": "many"}},  # invalid type
        "12": {"class_type": "Nope", "inputs": {}},  # unknown
        "13": {"class_type": "Positive", "inputs": {"value": -1}},  # custom validation
        **{f"o{i}": out([src, 0]) for i, src in enumerate(["2", "3", "4", "5", "6", "8", "10", "11", "13"])},
    })
    assert not report.ok
    found = errors_by_type(report)
    assert ("1", "required_input_missing", "value") in found
    assert ("2", "bad_linked_input", "a") in found
    assert ("3", "bad_linked_input", "value") in found
    assert ("4", "bad_linked_input", "value") in found
    assert ("5", "return_type_mismatch", "value") in found
    assert ("6", "value_not_in_list", "mode") in found
    assert ("8", "value_smaller_than_min", "value") in found
    assert ("10", "value_bigger_than_max", "value") in found
    assert ("11", "invalid_input_type", "value") in found
    assert ("12", "invalid_prompt", None) in found
    assert ("13", "custom_validation_failed", "value") in found


def test_messages_say_what_was_expected():
    report = check({
        "5": {"class_type": "Scale", "inputs": {"value": ["6", 0], "factor": 1, "enabled": True}},
        "6": {"class_type": "Text", "inputs": {"text": "x", "mode": "sideways"}},
        "7": out(["5", 0]),
    })
    by_type = {e.error_type: e for e in report.errors}
    mismatch = by_type["return_type_mismatch"]
    assert "STRING" in mismatch.details and "INT" in mismatch.details
    not_in_list = by_type["value_not_in_list"]
    assert "'sideways'" in not_in_list.details and "'upper'" in not_in_list.details
    sentence = not_in_list.sentence()
    assert sentence.startswith("node 6 (Text), input 'mode': Value not in list")


def test_bool_strings_coerce_by_meaning():
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 2}},
        "2": {"class_type": "Scale", "inputs": {"value": ["1", 0], "factor": 2, "enabled": "false"}},
        "3": out(["2", 0]),
    }
    report = check(graph)
    assert report.ok
    assert report.plan.nodes["2"].constants["enabled"] is False
    graph["2"]["inputs"]["enabled"] = "maybe"
    assert ("2", "invalid_input_type", "enabled") in errors_by_type(check(graph))


@pytest.mark.parametrize("value,ok", [(3, True), ("3", True), (3.0, True), (3.5, False), (True, False), ([1], False)])
def test_int_coercion(value, ok):
    graph = {"1": {"class_type": "Number", "inputs": {"value": value}}, "2": out(["1", 0])}
    assert check(graph).ok is ok


def test_cycle_reports_its_node_ids():
    report = check({
        "1": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": 1}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
        "4": out(["3", 0]),
    })
    cycle = [e for e in report.errors if e.error_type == "dependency_cycle"]
    assert len(cycle) == 1
    assert set(cycle[0].extra["cycle"]) == {"1", "2", "3"}
    assert "→" in cycle[0].details


def test_no_outputs():
    report = check({"1": {"class_type": "Number", "inputs": {"value": 1}}})
    assert not report.ok
    body = report.to_comfy()
    assert body["error"]["type"] == "prompt_no_outputs"
    assert body["node_errors"] == {}


def test_comfy_400_body_shape():
    report = check({
        "1": {"class_type": "Number", "inputs": {"value": 5000}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 0}},
        "3": out(["2", 0]),
    })
    body = report.to_comfy()
    assert body["error"] == {
        "type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
        "details": "", "extra_info": {},
    }
    entry = body["node_errors"]["1"]
    assert entry["class_type"] == "Number"
    assert entry["dependent_outputs"] == ["3"]
    (err,) = entry["errors"]
    assert err["type"] == "value_bigger_than_max"
    assert err["message"] == "Value 5000 bigger than max of 1000"
    assert err["extra_info"]["input_name"] == "value"


def test_unknown_node_alone_gives_invalid_prompt_top_error():
    body = check({"1": {"class_type": "Nope", "inputs": {}}, "2": out(["1", 0])}).to_comfy()
    assert body["error"]["type"] == "invalid_prompt"
    assert "Nope does not exist" in body["error"]["message"]


def test_alias_names_and_input_renames():
    report = check({
        "1": {"class_type": "Plus", "inputs": {"x": 2, "y": 3}},
        "2": out(["1", 0]),
    })
    assert report.ok, report.sentences()
    node = report.plan.nodes["1"]
    assert node.cls.__name__ == "Add"
    assert node.constants == {"a": 2, "b": 3}


def test_literal_list_wrapper_and_link_to_widget():
    report = check({
        "1": {"class_type": "Number", "inputs": {"value": 4}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["1", 0]}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0], "label": {"__value__": ["x"]}}},
    })
    assert report.plan is None
    assert report.workflow.nodes["3"].inputs["label"] == ["x"]  # unwrapped literal, not a link
    assert errors_by_type(report) == {("3", "invalid_input_type", "label")}  # a list is not a STRING
    del report.workflow.nodes["3"].inputs["label"]
    report = validate(report.workflow, registry())
    assert report.ok
    assert report.plan.nodes["2"].links["b"].node_id == "1"


def test_format_errors():
    with pytest.raises(WorkflowFormatError):
        Workflow.from_api([1, 2])
    with pytest.raises(WorkflowFormatError, match="UI-format"):
        Workflow.from_api({"nodes": [], "links": []})
    with pytest.raises(WorkflowFormatError):
        Workflow.from_api({"1": "KSampler"})


def test_round_trip_to_api():
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 4}, "_meta": {"title": "four"}},
        "2": {"class_type": "Collect", "inputs": {"value": ["1", 0], "label": {"__value__": [1, 2]}}},
    }
    assert Workflow.from_api(graph).to_api() == graph


def test_overrides():
    wf = Workflow.from_api({"1": {"class_type": "Number", "inputs": {"value": 4}}})
    changed = wf.with_overrides({"1.value": 7})
    assert changed.nodes["1"].inputs["value"] == 7
    assert wf.nodes["1"].inputs["value"] == 4
    with pytest.raises(KeyError):
        wf.with_overrides({"9.value": 1})
