"""The queue operations the Ray pool needs beyond `QueueStore.claim`: look at the head of the queue, claim
one chosen prompt, put a prompt back after its worker died (the attempt still counts).

They run on the store's own connection under its lock, like its methods (candidates to become
`QueueStore` methods).
"""

from __future__ import annotations

import json
import time
from typing import Any

from graphcore.server.queue_store import QueuedPrompt, QueueStore, _queued


def pending_ids(store: QueueStore, limit: int) -> list[str]:
    """The first `limit` pending prompt ids, in run order."""
    with store._lock:
        rows = store._db.execute(
            "SELECT prompt_id FROM prompts WHERE state = 'pending' ORDER BY number, seq LIMIT ?", (limit,)
        ).fetchall()
    return [row[0] for row in rows]


def pending_prompt(store: QueueStore, prompt_id: str) -> dict[str, Any] | None:
    with store._lock:
        row = store._db.execute(
            "SELECT prompt FROM prompts WHERE prompt_id = ? AND state = 'pending'", (prompt_id,)
        ).fetchone()
    return json.loads(row[0]) if row else None


def claim_prompt(store: QueueStore, prompt_id: str, worker: str) -> QueuedPrompt | None:
    """Mark this pending prompt running by `worker`; None when it is no longer pending (deleted)."""
    with store._lock, store._transaction():
        row = store._db.execute(
            "UPDATE prompts SET state = 'running', worker = ?, started = ?, attempts = attempts + 1"
            " WHERE prompt_id = ? AND state = 'pending'"
            " RETURNING prompt_id, number, prompt, extra_data, outputs_to_execute, client_id, attempts",
            (worker, time.time(), prompt_id),
        ).fetchone()
    return _queued(row) if row else None


def requeue_after_failure(store: QueueStore, prompt_id: str) -> None:
    """Back to pending at its place in the queue, keeping the attempt (unlike `requeue`, used on a stop)."""
    with store._lock, store._transaction():
        store._db.execute(
            "UPDATE prompts SET state = 'pending', worker = NULL WHERE prompt_id = ? AND state = 'running'",
            (prompt_id,),
        )
