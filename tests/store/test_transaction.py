"""The writer's SQL stage alone: ``transaction.apply`` against a bare sqlite3 connection."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memlane.store.ops import prepare_put
from memlane.store.sqlite import changelog, lease
from memlane.store.sqlite.schema import apply_migrations
from memlane.store.sqlite.transaction import Batch, Changes, Entry, Layout, SweepPlan, apply

INDEXED = Layout(indexed=True, log=True)
PLAIN = Layout(indexed=False)
NOW = 1_000_000.0


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    raw = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    apply_migrations(raw, 0)
    yield raw
    raw.close()


def put(key: str, value: dict[str, Any] | None, ns: str = "u", ttl: float | None = None,
        vector: list[float] | None = None) -> Entry:
    prepared = prepare_put((ns,), key, value, None, ttl, None)
    vectors = None if vector is None else np.array([vector], dtype=np.float32)
    return Entry(0, prepared, vectors)


def commit(conn: sqlite3.Connection, layout: Layout, *entries: Entry, **batch: Any) -> Changes:
    conn.execute("BEGIN IMMEDIATE")
    changes = apply(conn, Batch(list(entries), [1] * len(entries), now=NOW, **batch), layout)
    conn.execute("COMMIT")
    return changes


def ids(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT key, id FROM items"))


def test_new_items_take_ids_from_the_file_and_overwrites_keep_theirs(
    conn: sqlite3.Connection,
) -> None:
    first = commit(conn, INDEXED, put("a", {"t": 1}, vector=[1, 0]), put("b", {"t": 2}))
    assert ids(conn) == {"a": 1, "b": 2}
    assert changelog.next_item_id(conn) == 3
    assert [item_id for item_id, _ in first.upserted] == [1] and first.removed == [2]
    again = commit(conn, INDEXED, put("a", {"t": 3}, vector=[0, 1]), put("c", {"t": 4}))
    assert ids(conn) == {"a": 1, "b": 2, "c": 3}  # "a" kept its id; only "c" took one
    assert changelog.next_item_id(conn) == 4
    assert again.joined == [("u", 1), ("u", 3)]


def test_a_deleted_items_id_is_never_given_again(conn: sqlite3.Connection) -> None:
    commit(conn, INDEXED, put("a", {"t": 1}))
    gone = commit(conn, INDEXED, put("a", None))
    assert gone.left == [("u", 1)] and gone.removed == [1]
    commit(conn, INDEXED, put("a", {"t": 2}))
    assert ids(conn) == {"a": 2}
    commit(conn, PLAIN, put("z", {"t": 1}))  # without an index too: ids from the file
    assert ids(conn)["z"] == 3


def test_each_transaction_logs_what_it_changed(conn: sqlite3.Connection) -> None:
    wrote = commit(conn, INDEXED, put("a", {"t": 1}, vector=[1, 0]), put("b", {"t": 2}))
    deleted = commit(conn, INDEXED, put("b", None))
    touched_only = commit(conn, INDEXED, touches=[(NOW, 1)])
    assert (wrote.seq, deleted.seq, touched_only.seq) == (1, 2, 0)
    log = changelog.read_since(conn, 0)
    assert [change.item_ids.tolist() for change in log] == [[1, 2], [2]]
    assert [change.removed for change in log] == [[], [("u", 2)]]
    assert [change.added for change in log] == [[("u", 1), ("u", 2)], []]
    assert [change.seq for change in changelog.read_since(conn, 1)] == [2]
    rewrite = commit(conn, INDEXED, put("a", {"t": 9}), put("c", {"t": 1}))
    assert changelog.read_since(conn, 2)[0].added == [("u", 3)]  # "a" kept its id
    assert rewrite.seq == 3
    assert commit(conn, PLAIN, put("c", {"t": 3})).seq == 0  # no log without Layout.log


def test_a_rolled_back_transaction_takes_no_ids_and_logs_nothing(
    conn: sqlite3.Connection,
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    apply(conn, Batch([put("a", {"t": 1})], [1], now=NOW), INDEXED)
    conn.execute("ROLLBACK")
    assert changelog.next_item_id(conn) == 1 and changelog.latest_seq(conn) == 0


def test_a_periodic_sweep_runs_only_under_the_lease(conn: sqlite3.Connection) -> None:
    commit(conn, INDEXED, put("old", {"t": 1}, ttl=1.0))
    conn.execute("UPDATE items SET expires_at = ?", (NOW - 1,))
    conn.execute("BEGIN IMMEDIATE")
    assert lease.claim(conn, "other", 60, NOW)
    conn.execute("COMMIT")
    held = commit(conn, INDEXED, sweep=SweepPlan(False, ("me", 60)))
    assert not held.swept_now and ids(conn) == {"old": 1}
    forced = commit(conn, INDEXED, sweep=SweepPlan(True, None))  # asweep_expired()
    assert forced.swept_now and forced.swept == 1 and forced.left == [("u", 1)]
    conn.execute("UPDATE memlane_meta SET value = json_set(value, '$.until', 0)"
                 " WHERE name = 'sweeper'")  # the other holder's lease ran out
    taken = commit(conn, INDEXED, sweep=SweepPlan(False, ("me", 60)))
    assert taken.swept_now
    held_now = lease.holder(conn)
    assert held_now is not None and held_now[0] == "me"
