"""The SQLite queue and history: order, claims, duplicates, recovery after a stop, history trimming."""

from __future__ import annotations

import sqlite3

import pytest

from graphcore.server.queue_store import MAX_ATTEMPTS, DuplicatePromptId, Finished, QueuedPrompt, QueueStore


def item(prompt_id: str, number: float, value: int = 1) -> QueuedPrompt:
    return QueuedPrompt(prompt_id, number, {"1": {"class_type": "Number", "inputs": {"value": value}}},
                        {"client_id": "c"}, ["1"], "c")


def test_claims_follow_the_number_order_and_survive_reopening(tmp_path):
    store = QueueStore(tmp_path / "q.sqlite3")
    assert store.add_many([item("b", 2), item("a", 1), item("front", -3)]) == {"a", "b", "front"}
    with pytest.raises(DuplicatePromptId):
        store.add(item("a", 9))
    assert store.remaining() == 3 and store.max_number() == 3
    store.close()

    store = QueueStore(tmp_path / "q.sqlite3")
    claimed = store.claim("w0")
    assert claimed.prompt_id == "front" and claimed.attempts == 1 and claimed.extra_data == {"client_id": "c"}
    running, pending = store.queue()
    assert [p.prompt_id for p in running] == ["front"] and [p.prompt_id for p in pending] == ["a", "b"]
    assert running[0].queue_item() == [-3, "front", claimed.prompt, {"client_id": "c"}, ["1"]]
    store.finish("front", Finished("success", True, {"1": {"values": [1]}}, [["execution_success", {}]]))
    assert store.state_of("front") == "done" and store.remaining() == 2
    entry = store.history_item("front")["front"]
    assert entry["status"] == {"status_str": "success", "completed": True, "messages": [["execution_success", {}]]}
    assert entry["outputs"] == {"1": {"values": [1]}}
    assert store.delete_pending(["b", "front"]) == ["b"]
    assert store.claim("w0").prompt_id == "a" and store.claim("w0") is None


def test_running_prompts_go_back_to_pending_after_a_stop_until_they_keep_killing_the_server(tmp_path):
    path = tmp_path / "q.sqlite3"
    store = QueueStore(path)
    store.add_many([item("killer", 1), item("next", 2)])
    for start in range(1, MAX_ATTEMPTS + 1):
        claimed = store.claim("w0")
        assert claimed.prompt_id == "killer" and claimed.attempts == start
        store.close()  # the process dies while running it
        store = QueueStore(path)
        requeued, failed = store.recover()
        if start < MAX_ATTEMPTS:
            assert (requeued, failed) == (["killer"], [])
            assert store.state_of("killer") == "pending"
    assert failed == ["killer"]
    entry = store.history_item("killer")["killer"]
    assert entry["status"]["status_str"] == "error"
    assert "stopped 3 times" in entry["status"]["messages"][0][1]["exception_message"]
    assert store.claim("w0").prompt_id == "next"


def test_requeue_keeps_the_place_and_the_attempt_count(tmp_path):
    store = QueueStore(tmp_path / "q.sqlite3")
    store.add_many([item("a", 1), item("b", 2)])
    assert store.claim("w0").attempts == 1
    store.requeue("a")
    again = store.claim("w0")
    assert again.prompt_id == "a" and again.attempts == 1


def test_history_keeps_the_newest_entries(tmp_path):
    store = QueueStore(tmp_path / "q.sqlite3", history_size=3)
    for index in range(5):
        store.add(item(f"p{index}", index))
        store.claim("w0")
        store.finish(f"p{index}", Finished("success", True))
    assert list(store.history()) == ["p2", "p3", "p4"]
    assert list(store.history(max_items=2)) == ["p3", "p4"]
    assert list(store.history(max_items=1, offset=1)) == ["p3"]
    assert store.delete_history(["p3", "missing"]) == 1
    assert store.delete_history() == 2 and store.history() == {}


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path):
    QueueStore(tmp_path / "q.sqlite3").close()
    db = sqlite3.connect(tmp_path / "q.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
