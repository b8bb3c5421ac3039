"""The persistent queue and history: one SQLite table (WAL) under the data folder.

A prompt row moves pending → running → done and is never deleted while it is pending or running, so
a crash or a restart loses nothing. Rows found `running` at start-up go back to `pending` (a prompt
that was running during MAX_ATTEMPTS server stops is finished as an error instead, so one prompt that
kills the process cannot keep it from serving). Done rows are the history, trimmed to the newest N.

Durability: submissions are committed with synchronous=FULL, so an accepted prompt is on disk even
through a power cut; the other writes use NORMAL, which in WAL mode survives a killed process, and whose
loss in a power cut only means that a prompt runs again.

One connection, guarded by a lock: the server's database thread and the workers share it; each call
is a short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MAX_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done')),
    client_id TEXT,
    prompt TEXT NOT NULL,
    extra_data TEXT NOT NULL,
    outputs_to_execute TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    done_seq INTEGER,
    status_str TEXT,
    completed INTEGER,
    outputs TEXT,
    messages TEXT,
    meta TEXT
);
CREATE INDEX IF NOT EXISTS prompts_queue ON prompts (state, number, seq);
CREATE INDEX IF NOT EXISTS prompts_history ON prompts (state, done_seq);
"""


class DuplicatePromptId(ValueError):
    """A prompt with this id is already queued or in the history."""


@dataclass
class QueuedPrompt:
    """A prompt as it waits or runs: ComfyUI's queue tuple plus what the server needs to run it."""

    prompt_id: str
    number: float
    prompt: dict[str, Any]
    extra_data: dict[str, Any] = field(default_factory=dict)
    outputs_to_execute: list[str] = field(default_factory=list)
    client_id: str | None = None
    attempts: int = 0

    def queue_item(self) -> list[Any]:
        """[number, prompt_id, prompt, extra_data, outputs_to_execute], as ComfyUI's /queue lists it."""
        return [_number(self.number), self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


@dataclass
class Finished:
    """How a prompt ended, as stored in the history."""

    status_str: str  # "success" | "error"
    completed: bool
    outputs: dict[str, Any] = field(default_factory=dict)
    messages: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class QueueStore:
    def __init__(self, path: Path, history_size: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.history_size = history_size
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        row = self._db.execute("SELECT COALESCE(MAX(done_seq), 0) FROM prompts").fetchone()
        self._done_seq = int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- submission ---------------------------------------------------------------------------------

    def add_many(self, prompts: Iterable[QueuedPrompt]) -> set[str]:
        """Queue prompts in one transaction; returns the ids that were new (the others are duplicates)."""
        now = time.time()
        added: set[str] = set()
        with self._lock, self._transaction(durable=True):
            for item in prompts:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO prompts (prompt_id, number, state, client_id, prompt, extra_data,"
                    " outputs_to_execute, created) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?)",
                    (
                        item.prompt_id, float(item.number), item.client_id, _dumps(item.prompt),
                        _dumps(item.extra_data), _dumps(item.outputs_to_execute), now,
                    ),
                )
                if cursor.rowcount == 1:
                    added.add(item.prompt_id)
        return added

    def add(self, item: QueuedPrompt) -> None:
        if item.prompt_id not in self.add_many([item]):
            raise DuplicatePromptId(f"a prompt with id {item.prompt_id!r} already exists")

    def max_number(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT MAX(ABS(number)) FROM prompts").fetchone()
        return float(row[0] or 0)

    # -- the workers' side -------------------------------------------------------------------------

    def claim(self, worker: str) -> QueuedPrompt | None:
        """The next pending prompt (lowest number first), now marked running by `worker`."""
        with self._lock, self._transaction():
            row = self._db.execute(
                "UPDATE prompts SET state = 'running', worker = ?, started = ?, attempts = attempts + 1"
                " WHERE seq = (SELECT seq FROM prompts WHERE state = 'pending' ORDER BY number, seq LIMIT 1)"
                " RETURNING prompt_id, number, prompt, extra_data, outputs_to_execute, client_id, attempts",
                (worker, time.time()),
            ).fetchone()
        return _queued(row) if row else None

    def finish(self, prompt_id: str, finished: Finished) -> None:
        with self._lock, self._transaction():
            self._done_seq += 1
            self._db.execute(
                "UPDATE prompts SET state = 'done', finished = ?, done_seq = ?, status_str = ?, completed = ?,"
                " outputs = ?, messages = ?, meta = ? WHERE prompt_id = ?",
                (
                    time.time(), self._done_seq, finished.status_str, int(finished.completed),
                    _dumps(finished.outputs), _dumps(finished.messages), _dumps(finished.meta), prompt_id,
                ),
            )
            self._trim()

    def requeue(self, prompt_id: str) -> None:
        """Put a running prompt back at its place in the queue (the server is stopping)."""
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE prompts SET state = 'pending', worker = NULL, attempts = MAX(attempts - 1, 0)"
                " WHERE prompt_id = ? AND state = 'running'",
                (prompt_id,),
            )

    def recover(self) -> tuple[list[str], list[str]]:
        """At start-up: prompts left running by a stopped server go back to pending (ids returned), or
        are finished as errors after MAX_ATTEMPTS starts (ids returned second)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT prompt_id, attempts FROM prompts WHERE state = 'running' ORDER BY seq"
            ).fetchall()
        requeued, failed = [], []
        for prompt_id, attempts in rows:
            if attempts >= MAX_ATTEMPTS:
                message = f"the server stopped {attempts} times while running this prompt; it was not retried"
                self.finish(prompt_id, Finished(
                    "error", False,
                    messages=[["execution_error", {
                        "prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
                        "exception_message": message, "exception_type": "ServerRestart", "traceback": [],
                        "current_inputs": {}, "current_outputs": {}, "timestamp": int(time.time() * 1000),
                    }]],
                ))
                failed.append(prompt_id)
            else:
                with self._lock, self._transaction():
                    self._db.execute(
                        "UPDATE prompts SET state = 'pending', worker = NULL WHERE prompt_id = ?", (prompt_id,)
                    )
                requeued.append(prompt_id)
        return requeued, failed

    # -- the queue -----------------------------------------------------------------------------------

    def queue(self) -> tuple[list[QueuedPrompt], list[QueuedPrompt]]:
        """(running, pending), each in run order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT prompt_id, number, prompt, extra_data, outputs_to_execute, client_id, attempts, state"
                " FROM prompts WHERE state IN ('running', 'pending') ORDER BY number, seq"
            ).fetchall()
        running = [_queued(row) for row in rows if row[7] == "running"]
        pending = [_queued(row) for row in rows if row[7] == "pending"]
        return running, pending

    def remaining(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM prompts WHERE state IN ('running', 'pending')").fetchone()
        return int(row[0])

    def state_of(self, prompt_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM prompts WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return row[0] if row else None

    def delete_pending(self, prompt_ids: Iterable[str] | None = None) -> list[str]:
        """Remove pending prompts (all when `prompt_ids` is None); returns the ids removed."""
        with self._lock, self._transaction():
            if prompt_ids is None:
                rows = self._db.execute(
                    "DELETE FROM prompts WHERE state = 'pending' RETURNING prompt_id"
                ).fetchall()
            else:
                rows = []
                for prompt_id in prompt_ids:
                    rows.extend(self._db.execute(
                        "DELETE FROM prompts WHERE state = 'pending' AND prompt_id = ? RETURNING prompt_id",
                        (prompt_id,),
                    ).fetchall())
        return [row[0] for row in rows]

    # -- the history ---------------------------------------------------------------------------------

    def history(self, max_items: int | None = None, offset: int | None = None) -> dict[str, Any]:
        """Finished prompts, oldest first: the newest `max_items`, or `max_items` from `offset` (0 = oldest)."""
        columns = _HISTORY_COLUMNS
        with self._lock:
            if offset is not None and offset >= 0:
                limit = -1 if max_items is None else max_items
                rows = self._db.execute(
                    f"SELECT {columns} FROM prompts WHERE state = 'done' ORDER BY done_seq LIMIT ? OFFSET ?",
                    (limit, offset),
                ).fetchall()
            elif max_items is not None:
                rows = self._db.execute(
                    f"SELECT {columns} FROM prompts WHERE state = 'done' ORDER BY done_seq DESC LIMIT ?",
                    (max_items,),
                ).fetchall()[::-1]
            else:
                rows = self._db.execute(
                    f"SELECT {columns} FROM prompts WHERE state = 'done' ORDER BY done_seq"
                ).fetchall()
        return {row[1]: _history_entry(row) for row in rows}

    def history_item(self, prompt_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_HISTORY_COLUMNS} FROM prompts WHERE state = 'done' AND prompt_id = ?", (prompt_id,)
            ).fetchone()
        return {row[1]: _history_entry(row)} if row else {}

    def delete_history(self, prompt_ids: Iterable[str] | None = None) -> int:
        with self._lock, self._transaction():
            if prompt_ids is None:
                return self._db.execute("DELETE FROM prompts WHERE state = 'done'").rowcount
            return sum(
                self._db.execute("DELETE FROM prompts WHERE state = 'done' AND prompt_id = ?", (pid,)).rowcount
                for pid in prompt_ids
            )

    # --- picking prompts out of order (the Ray pool routes by loaded model) ----------------------------
    def pending_ids(self, limit: int) -> list[str]:
        """The first `limit` pending prompt ids, in run order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT prompt_id FROM prompts WHERE state = 'pending' ORDER BY number, seq LIMIT ?", (limit,)
            ).fetchall()
        return [row[0] for row in rows]

    def pending_prompt(self, prompt_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT prompt FROM prompts WHERE prompt_id = ? AND state = 'pending'", (prompt_id,)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def claim_prompt(self, prompt_id: str, worker: str) -> QueuedPrompt | None:
        """Mark this pending prompt running by `worker`; None when it is no longer pending (deleted)."""
        with self._lock, self._transaction():
            row = self._db.execute(
                "UPDATE prompts SET state = 'running', worker = ?, started = ?, attempts = attempts + 1"
                " WHERE prompt_id = ? AND state = 'pending'"
                " RETURNING prompt_id, number, prompt, extra_data, outputs_to_execute, client_id, attempts",
                (worker, time.time(), prompt_id),
            ).fetchone()
        return _queued(row) if row else None

    def requeue_after_failure(self, prompt_id: str) -> None:
        """Back to pending at its place in the queue, keeping the attempt (unlike `requeue`, used on a stop)."""
        with self._lock, self._transaction():
            self._db.execute(
                "UPDATE prompts SET state = 'pending', worker = NULL WHERE prompt_id = ? AND state = 'running'",
                (prompt_id,),
            )

    def _trim(self) -> None:
        self._db.execute(
            "DELETE FROM prompts WHERE state = 'done' AND done_seq <= ?",
            (self._done_seq - self.history_size,),
        )

    def _transaction(self, durable: bool = False) -> _Transaction:
        return _Transaction(self._db, durable)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT; a durable one is fsynced (submissions are group-committed, so one fsync
    covers everything submitted meanwhile)."""

    def __init__(self, db: sqlite3.Connection, durable: bool) -> None:
        self.db = db
        self.durable = durable

    def __enter__(self) -> None:
        if self.durable:
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            if self.durable:
                self.db.execute("PRAGMA synchronous=NORMAL")


_HISTORY_COLUMNS = (
    "number, prompt_id, prompt, extra_data, outputs_to_execute, status_str, completed, outputs, messages, meta"
)


def _queued(row: tuple) -> QueuedPrompt:
    return QueuedPrompt(
        prompt_id=row[0], number=row[1], prompt=json.loads(row[2]), extra_data=json.loads(row[3]),
        outputs_to_execute=json.loads(row[4]), client_id=row[5], attempts=row[6],
    )


def _history_entry(row: tuple) -> dict[str, Any]:
    number, prompt_id, prompt, extra_data, outputs_to_execute, status_str, completed, outputs, messages, meta = row
    return {
        "prompt": [_number(number), prompt_id, json.loads(prompt), json.loads(extra_data),
                   json.loads(outputs_to_execute)],
        "outputs": json.loads(outputs or "{}"),
        "status": {"status_str": status_str, "completed": bool(completed), "messages": json.loads(messages or "[]")},
        "meta": json.loads(meta or "{}"),
    }
