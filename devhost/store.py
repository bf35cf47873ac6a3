"""SQLite persistence for the engine: instances, history, inbox, activities, timers.

One connection is shared by the engine's threads behind `Store.lock`. Callers
group writes in `transaction()`, so an episode or an activity completion is
committed whole or not at all. WAL with synchronous=NORMAL survives a killed
process (not a power cut) without losing a committed transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

DATABASE_FILE = "devhost.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_time TEXT NOT NULL,
    last_updated_time TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    parent_instance_id TEXT,
    parent_execution_id TEXT,
    parent_name TEXT,
    parent_task_id INTEGER,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS instances_created ON instances (created_time, instance_id);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, position)
);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    is_start INTEGER NOT NULL DEFAULT 0,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_instance ON inbox (instance_id, id);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT
);
CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    timer_id INTEGER NOT NULL,
    fire_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timers_fire_at ON timers (fire_at);
"""


@dataclass
class Instance:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_time: str
    last_updated_time: str
    version: str = ""
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_name: str | None = None
    parent_task_id: int | None = None
    revision: int = 0


@dataclass
class Message:
    id: int
    instance_id: str
    execution_id: str | None
    is_start: bool
    event: dict


@dataclass
class ActivityItem:
    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


@dataclass
class TimerItem:
    id: int
    instance_id: str
    execution_id: str
    timer_id: int
    fire_at: str


_INSTANCE_COLUMNS = [field.name for field in fields(Instance)]


class Store:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DATABASE_FILE
        self.lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the block in one IMMEDIATE transaction; nested blocks join it."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def _execute(self, sql: str, parameters: tuple | list = ()) -> int:
        """Run one statement and return the number of rows it changed."""
        with self.lock:
            return self._conn.execute(sql, parameters).rowcount

    def _fetchall(self, sql: str, parameters: tuple | list = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, parameters).fetchall()

    def _fetchone(self, sql: str, parameters: tuple | list = ()) -> sqlite3.Row | None:
        with self.lock:
            return self._conn.execute(sql, parameters).fetchone()

    # meta

    def read_meta(self, key: str) -> str | None:
        row = self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row["value"]

    def write_meta(self, key: str, value: str) -> None:
        self._execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # instances

    def get_instance(self, instance_id: str) -> Instance | None:
        row = self._fetchone(
            "SELECT * FROM instances WHERE instance_id = ?", (instance_id,)
        )
        return None if row is None else Instance(**dict(row))

    def put_instance(self, instance: Instance) -> None:
        placeholders = ", ".join("?" for _ in _INSTANCE_COLUMNS)
        values = [getattr(instance, name) for name in _INSTANCE_COLUMNS]
        self._execute(
            f"INSERT OR REPLACE INTO instances ({', '.join(_INSTANCE_COLUMNS)}) "
            f"VALUES ({placeholders})",
            values,
        )

    def update_instance(self, instance_id: str, **changes: object) -> None:
        """Update columns of an instance and increase its revision by one."""
        assignments = ", ".join(f"{name} = ?" for name in changes)
        self._execute(
            f"UPDATE instances SET {assignments}, revision = revision + 1 "
            "WHERE instance_id = ?",
            [*changes.values(), instance_id],
        )

    def delete_instance(self, instance_id: str) -> None:
        """Delete an instance with its history, messages, activities and timers."""
        for table in ("instances", "history", "inbox", "activities", "timers"):
            self._execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))

    def query_instances(
        self,
        *,
        created_from: str | None = None,
        created_to: str | None = None,
        statuses: list[str] | None = None,
        prefix: str | None = None,
        after: tuple[str, str] | None = None,
        limit: int | None = None,
    ) -> list[Instance]:
        """List instances ordered by created time and id, with optional filters."""
        conditions: list[str] = []
        parameters: list[object] = []
        if created_from:
            conditions.append("created_time >= ?")
            parameters.append(created_from)
        if created_to:
            conditions.append("created_time <= ?")
            parameters.append(created_to)
        if statuses:
            conditions.append(f"status IN ({', '.join('?' for _ in statuses)})")
            parameters.extend(statuses)
        if prefix:
            conditions.append("substr(instance_id, 1, ?) = ?")
            parameters.extend([len(prefix), prefix])
        if after:
            conditions.append("(created_time, instance_id) > (?, ?)")
            parameters.extend(after)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = f"SELECT * FROM instances {where} ORDER BY created_time, instance_id"
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        rows = self._fetchall(sql, parameters)
        return [Instance(**dict(row)) for row in rows]

    # history

    def load_history(self, instance_id: str) -> list[dict]:
        rows = self._fetchall(
            "SELECT event FROM history WHERE instance_id = ? ORDER BY position",
            (instance_id,),
        )
        return [json.loads(row["event"]) for row in rows]

    def append_history(self, instance_id: str, events: list[dict]) -> None:
        row = self._fetchone(
            "SELECT COALESCE(MAX(position), -1) AS last FROM history "
            "WHERE instance_id = ?",
            (instance_id,),
        )
        position = row["last"] + 1
        for offset, event in enumerate(events):
            self._execute(
                "INSERT INTO history (instance_id, position, event) VALUES (?, ?, ?)",
                (instance_id, position + offset, json.dumps(event)),
            )

    def replace_history(self, instance_id: str, events: list[dict]) -> None:
        self.clear_history(instance_id)
        self.append_history(instance_id, events)

    def clear_history(self, instance_id: str) -> None:
        self._execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))

    # inbox

    def enqueue(
        self,
        instance_id: str,
        execution_id: str | None,
        event: dict,
        *,
        is_start: bool = False,
    ) -> None:
        self._execute(
            "INSERT INTO inbox (instance_id, execution_id, is_start, event) "
            "VALUES (?, ?, ?, ?)",
            (instance_id, execution_id, int(is_start), json.dumps(event)),
        )

    def next_message(self) -> Message | None:
        """Return the oldest message of an instance that is not suspended.

        Within that instance an ExecutionStarted message goes first, so events
        raised before an instance (or its next execution) started wait for it.
        """
        with self.lock:
            row = self._conn.execute(
                "SELECT inbox.instance_id FROM inbox "
                "LEFT JOIN instances USING (instance_id) "
                "WHERE instances.status IS NULL OR instances.status != 'Suspended' "
                "ORDER BY inbox.id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            row = self._conn.execute(
                "SELECT * FROM inbox WHERE instance_id = ? "
                "ORDER BY is_start DESC, id LIMIT 1",
                (row["instance_id"],),
            ).fetchone()
        return _message(row)

    def messages_for(self, instance_id: str) -> list[Message]:
        rows = self._fetchall(
            "SELECT * FROM inbox WHERE instance_id = ? ORDER BY id", (instance_id,)
        )
        return [_message(row) for row in rows]

    def message_exists(self, message_id: int) -> bool:
        row = self._fetchone("SELECT 1 FROM inbox WHERE id = ?", (message_id,))
        return row is not None

    def delete_message(self, message_id: int) -> None:
        self._execute("DELETE FROM inbox WHERE id = ?", (message_id,))

    def delete_messages(self, instance_id: str) -> None:
        self._execute("DELETE FROM inbox WHERE instance_id = ?", (instance_id,))

    def count_messages(self) -> int:
        return self._fetchone("SELECT COUNT(*) AS n FROM inbox")["n"]

    # activities

    def add_activity(
        self,
        instance_id: str,
        execution_id: str,
        task_id: int,
        name: str,
        input_json: str | None,
    ) -> None:
        self._execute(
            "INSERT INTO activities (instance_id, execution_id, task_id, name, input) "
            "VALUES (?, ?, ?, ?, ?)",
            (instance_id, execution_id, task_id, name, input_json),
        )

    def pending_activities(self, exclude: set[int], limit: int) -> list[ActivityItem]:
        excluded = ", ".join(str(int(item_id)) for item_id in exclude) or "-1"
        rows = self._fetchall(
            f"SELECT * FROM activities WHERE id NOT IN ({excluded}) "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        return [ActivityItem(**dict(row)) for row in rows]

    def delete_activity(self, item_id: int) -> bool:
        """Delete an activity work item; return False when it was already gone."""
        return self._execute("DELETE FROM activities WHERE id = ?", (item_id,)) > 0

    def delete_activities(self, instance_id: str) -> None:
        self._execute("DELETE FROM activities WHERE instance_id = ?", (instance_id,))

    def count_activities(self) -> int:
        return self._fetchone("SELECT COUNT(*) AS n FROM activities")["n"]

    # timers

    def add_timer(
        self, instance_id: str, execution_id: str, timer_id: int, fire_at: str
    ) -> None:
        self._execute(
            "INSERT INTO timers (instance_id, execution_id, timer_id, fire_at) "
            "VALUES (?, ?, ?, ?)",
            (instance_id, execution_id, timer_id, fire_at),
        )

    def due_timers(self, now: str) -> list[TimerItem]:
        rows = self._fetchall(
            "SELECT * FROM timers WHERE fire_at <= ? ORDER BY fire_at, id", (now,)
        )
        return [TimerItem(**dict(row)) for row in rows]

    def next_timer(self) -> TimerItem | None:
        row = self._fetchone("SELECT * FROM timers ORDER BY fire_at, id LIMIT 1")
        return None if row is None else TimerItem(**dict(row))

    def timers_for(self, instance_id: str) -> list[TimerItem]:
        rows = self._fetchall(
            "SELECT * FROM timers WHERE instance_id = ? ORDER BY fire_at, id",
            (instance_id,),
        )
        return [TimerItem(**dict(row)) for row in rows]

    def delete_timer(self, item_id: int) -> None:
        self._execute("DELETE FROM timers WHERE id = ?", (item_id,))

    def delete_timers(
        self, instance_id: str, timer_ids: set[int] | None = None
    ) -> None:
        """Delete an instance's timers, or only those with the given sequence ids."""
        if timer_ids is None:
            self._execute("DELETE FROM timers WHERE instance_id = ?", (instance_id,))
            return
        for timer_id in timer_ids:
            self._execute(
                "DELETE FROM timers WHERE instance_id = ? AND timer_id = ?",
                (instance_id, timer_id),
            )


def _message(row: sqlite3.Row | None) -> Message | None:
    if row is None:
        return None
    return Message(
        id=row["id"],
        instance_id=row["instance_id"],
        execution_id=row["execution_id"],
        is_start=bool(row["is_start"]),
        event=json.loads(row["event"]),
    )
