"""Routing and file shipping of the Ray pool, without Ray: which models a prompt needs, which idle actor
gets which prompt (affinity, least loaded, bounded overtaking), and files written under free names with
nothing escaping its folder."""

from __future__ import annotations

import pytest
from test_ray_support import registry

from graphcore import types
from graphcore.folders import Folders, ModelChoices, PathEscape
from graphcore.inputs import Combo, String
from graphcore.node import Alias, Node, Output
from graphcore.registry import Registry
from graphcore.server import ray_files
from graphcore.server.ray_routing import ActorLoad, Pending, Router, model_needs


class TheirLoader(Node):
    category = "test"
    inputs = {"ckpt_name": Combo(ModelChoices("checkpoints")), "lora": Combo(ModelChoices("loras")),
              "mode": Combo(("a", "b")), "note": String("")}
    outputs = (Output(types.STRING),)
    aliases = (Alias("OtherLoader", renames={"their_ckpt": "ckpt_name"}),)

    def run(self, ctx, **inputs):
        return ("",)


def test_model_needs_finds_model_combos_through_aliases_and_renames():
    reg = registry(with_library=True).add_all([TheirLoader])
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "2": {"class_type": "OtherLoader", "inputs": {"their_ckpt": "other.safetensors", "lora": "style.safetensors",
                                                     "mode": "a", "note": "base.safetensors"}},
        "3": {"class_type": "KSampler", "inputs": {"sampler_name": "euler", "model": ["1", 0]}},
        "4": {"class_type": "NotANode", "inputs": {"ckpt_name": "ignored.safetensors"}},
        "5": "not a node",
    }
    assert model_needs(prompt, reg) == {
        ("checkpoints", "base.safetensors"), ("checkpoints", "other.safetensors"), ("loras", "style.safetensors"),
    }


def ckpt(name: str) -> frozenset:
    return frozenset({("checkpoints", name)})


def actors(*specs: tuple[str, bool, set]) -> list[ActorLoad]:
    return [ActorLoad(key, idle, set(models)) for key, idle, models in specs]


def test_alternating_checkpoints_go_to_the_actor_holding_them():
    router = Router()
    pool = actors(("x", True, set(ckpt("b"))), ("y", True, set(ckpt("a"))))
    window = [Pending("p1", ckpt("a")), Pending("p2", ckpt("b"))]
    assert router.assign(window, pool) == [("p1", "y"), ("p2", "x")]


def test_a_cold_prompt_goes_to_the_least_loaded_idle_actor():
    router = Router()
    pool = actors(("full", True, set(ckpt("a") | ckpt("b"))), ("empty", True, set()), ("one", True, set(ckpt("c"))))
    assert router.assign([Pending("p", ckpt("new"))], pool) == [("p", "empty")]
    assert pool[1].models == set(ckpt("new"))  # expected loaded from now on: the next such prompt goes there too


def test_a_prompt_warm_on_a_busy_actor_waits_for_it_but_only_so_long():
    """Actor x (idle, holds a) keeps getting warm prompts; b1 waits for busy y (holds b) but is overtaken
    at most max_skips times, then runs on x."""
    router = Router(max_skips=3)
    queue = [Pending("b1", ckpt("b"))] + [Pending(f"a{i}", ckpt("a")) for i in range(10)]
    dispatched = []
    for _ in range(6):
        pool = actors(("x", True, set(ckpt("a"))), ("y", False, set(ckpt("b"))))
        for prompt_id, key in router.assign(queue, pool):
            dispatched.append((prompt_id, key))
            queue = [p for p in queue if p.prompt_id != prompt_id]
    assert dispatched[:4] == [("a0", "x"), ("a1", "x"), ("a2", "x"), ("b1", "x")]
    assert router.skips == {}


def test_idle_actors_never_wait_while_prompts_are_pending():
    router = Router()
    pool = actors(("warm", True, set(ckpt("a"))), ("cold", True, set()))
    window = [Pending("p1", ckpt("a")), Pending("p2", ckpt("a")), Pending("p3", ckpt("a"))]
    assert router.assign(window, pool) == [("p1", "warm"), ("p2", "cold")]


def test_without_affinity_it_is_fifo_onto_the_least_loaded():
    router = Router(affinity=False)
    pool = actors(("x", True, set(ckpt("a"))), ("y", True, set()))
    window = [Pending("p1", ckpt("a")), Pending("p2", ckpt("b")), Pending("p3", ckpt("a"))]
    assert router.assign(window, pool) == [("p1", "y"), ("p2", "x")]


def test_prompts_without_models_run_in_queue_order():
    router = Router()
    pool = actors(("x", True, set()), ("y", False, set()))
    window = [Pending("p1"), Pending("p2")]
    assert router.assign(window, pool) == [("p1", "x")]
    router.forget(["p2"])
    assert router.skips == {}


def folders(root) -> Folders:
    return Folders(root / "models", root / "input", root / "output", root / "temp").create()


def test_files_from_two_actors_get_free_names_and_the_ui_is_rewritten(tmp_path):
    server = folders(tmp_path / "server")
    png = b"\x89PNG fake"
    first, second = ray_files.OutputPlacer(server), ray_files.OutputPlacer(server)
    first.place([("output", "run", "img_00001_.png", png + b"1"), ("temp", "", "preview.png", b"t1")])
    second.place([("output", "run", "img_00001_.png", png + b"2"), ("temp", "", "preview.png", b"t2")])
    assert (server.output_dir / "run" / "img_00001_.png").read_bytes() == png + b"1"
    assert (server.output_dir / "run" / "img_00002_.png").read_bytes() == png + b"2"
    assert (server.temp_dir / "preview_2.png").read_bytes() == b"t2"
    ui = {"images": [{"filename": "img_00001_.png", "subfolder": "run", "type": "output"},
                     {"filename": "preview.png", "subfolder": "", "type": "temp"},
                     {"filename": "in.png", "subfolder": "", "type": "input"}], "text": ["kept"]}
    rewritten = second.rewrite(ui)
    assert [entry["filename"] for entry in rewritten["images"]] == ["img_00002_.png", "preview_2.png", "in.png"]
    assert rewritten["text"] == ["kept"] and ui["images"][0]["filename"] == "img_00001_.png"  # a copy
    # A later file of the second actor continues after the highest counter on the server.
    second.place([("output", "run", "img_00002_.png", png + b"3")])
    assert (server.output_dir / "run" / "img_00003_.png").read_bytes() == png + b"3"


@pytest.mark.parametrize("subfolder, filename", [("../escape", "x.png"), ("", "../x.png"), ("/etc", "x.png"),
                                                 ("", "a\x00.png")])
def test_shipped_names_cannot_leave_their_folder(tmp_path, subfolder, filename):
    server = folders(tmp_path / "server")
    with pytest.raises(PathEscape):
        ray_files.OutputPlacer(server).place([("output", subfolder, filename, b"x")])
    with pytest.raises(PathEscape):
        ray_files.write_files(server, [("input", subfolder, filename, b"x")])
    assert not (tmp_path / "server" / "escape").exists() and not (tmp_path / "server" / "x.png").exists()


def test_input_images_named_by_upload_combos_travel_to_the_worker(tmp_path):
    reg: Registry = registry(with_library=True)
    server, worker = folders(tmp_path / "server"), folders(tmp_path / "worker")
    (server.input_dir / "sub").mkdir()
    (server.input_dir / "sub" / "pic.png").write_bytes(b"input picture")
    (server.output_dir / "made.png").write_bytes(b"an output")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "sub/pic.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "made.png [output]"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}},
    }
    shipped = ray_files.input_files(prompt, reg, server)
    assert shipped == [("input", "sub", "pic.png", b"input picture"), ("output", "", "made.png", b"an output")]
    written = ray_files.write_files(worker, shipped)
    assert written == [worker.input_dir / "sub" / "pic.png", worker.output_dir / "made.png"]
    assert (worker.input_dir / "sub" / "pic.png").read_bytes() == b"input picture"


def test_the_worker_ships_each_file_once_and_keeps_its_name(tmp_path):
    worker = folders(tmp_path / "worker")
    (worker.output_dir / "a_00001_.png").write_bytes(b"pixels")
    ui = {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"},
                     {"filename": "gone.png", "subfolder": "", "type": "output"}]}
    shipped: dict = {}
    assert ray_files.collect_outputs(worker, ui, shipped) == [("output", "", "a_00001_.png", b"pixels")]
    assert ray_files.collect_outputs(worker, ui, shipped) == []
    ray_files.empty_shipped(worker, list(shipped))
    assert (worker.output_dir / "a_00001_.png").stat().st_size == 0
