"""Migration from a real LangGraph SqliteStore file, JSONL export/import, and the CLI."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

pytest.importorskip("langgraph")

from langgraph.store.sqlite import SqliteStore as LGSqliteStore
from langgraph.store.sqlite.aio import AsyncSqliteStore as LGAsyncSqliteStore
from tests.conftest import KEYWORD_DIMS, FakeClock, keyword_embed

from memlane import HashingEmbeddings, IndexConfig, IndexConfigError, SqliteStore
from memlane.cli import main, split_fields
from memlane.transfer import (
    JsonlSource,
    LangGraphSqliteSource,
    Progress,
    Record,
    Skipped,
    decode_row,
    migrate,
    open_source,
)

pytestmark = pytest.mark.anyio

INDEX = IndexConfig(dims=KEYWORD_DIMS, embed=keyword_embed, fields=("text",))
CREATED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
UPDATED = datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
NOW = datetime(2030, 1, 1, tzinfo=UTC).timestamp()  # the migrations' clock
EXPIRES = datetime(2030, 1, 1, 2, 0, tzinfo=UTC)  # two hours after NOW

GOOD: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {
    (("users", "u1", "memories"), "m1"): {"text": "likes jazz music", "n": 1},
    (("users", "u1", "memories"), "m2"): {"text": "travel to tokyo", "tags": ["a", "b"]},
    (("users", "u2"), "prefs"): {"text": "pizza food", "nested": {"x": [1, 2.5, None]}},
    (("teams", "t1"), "doc"): {"text": "rain and sun weather"},
    (("teams", "t1"), "ttl"): {"text": "paris"},
}


def make_langgraph_file(path: Path, *, extra: int = 0) -> None:
    """A real LangGraph SqliteStore file (its own API), then timestamps we can check, and a
    few rows memlane must skip, written as LangGraph's own schema allows."""
    with LGSqliteStore.from_conn_string(str(path)) as store:
        store.setup()
        for (namespace, key), value in GOOD.items():
            store.put(namespace, key, value, ttl=120 if key == "ttl" else None)
        for i in range(extra):
            store.put(("bulk",), f"k{i:03d}", {"text": f"item {i}", "i": i})
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE store SET created_at = ?, updated_at = ?",
                     ("2024-01-02 03:04:05", "2024-03-04 05:06:07"))
        conn.execute("UPDATE store SET expires_at = ? WHERE key = 'ttl'", (EXPIRES.isoformat(),))
        rows = [
            ("bad.json", "k", b"{not json", None),
            ("bad.list", "k", b"[1, 2]", None),
            ("langgraph.reserved", "k", b'{"a": 1}', None),
            ("old", "gone", b'{"a": 1}', "2020-01-01 00:00:00"),
        ]
        conn.executemany(
            "INSERT INTO store (prefix, key, value, created_at, updated_at, expires_at)"
            " VALUES (?, ?, ?, '2024-01-02 03:04:05', '2024-01-02 03:04:05', ?)", rows)
    conn.close()


def item_rows(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT namespace, key, value, created_at, updated_at, expires_at FROM items"
            " ORDER BY namespace, key").fetchall()
    finally:
        conn.close()


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "langgraph.db"
    make_langgraph_file(path)
    return path


async def check_destination(dst: Path, clock: FakeClock) -> None:
    clock.now = NOW
    async with SqliteStore.open(dst, index=INDEX, clock=clock) as store:
        for (namespace, key), value in GOOD.items():
            item = await store.aget(namespace, key, refresh_ttl=False)
            assert item is not None, (namespace, key)
            assert item.value == value
            assert (item.created_at, item.updated_at) == (CREATED, UPDATED)
        hits = await store.asearch(("users",), query="music")
        assert hits[0].key == "m1" and hits[0].score is not None  # re-embedded
        assert {("teams",), ("users",)} <= set(await store.alist_namespaces(max_depth=1))
    clock.now = EXPIRES.timestamp() + 1  # the source's expiry was kept, not "now + ttl"
    async with SqliteStore.open(dst, index=INDEX, clock=clock) as store:
        assert await store.aget(("teams", "t1"), "ttl") is None
        assert await store.aget(("teams", "t1"), "doc") is not None


# ---- migrate -----------------------------------------------------------------------------


async def test_migrate_keeps_everything_and_reports_skips(
    source_file: Path, tmp_path: Path, clock: FakeClock
) -> None:
    dst = tmp_path / "memlane.db"
    seen: list[Progress] = []
    source = open_source(source_file)
    assert isinstance(source, LangGraphSqliteSource)
    report = await migrate(source, dst, index=INDEX, chunk_size=3, now=NOW,
                           on_progress=lambda p: seen.append(Progress(**vars_of(p))))
    source.close()
    assert (report.read, report.written, report.unchanged) == (9, 5, 0)
    reasons = {entry.namespace: entry.reason for entry in report.skipped}
    assert set(reasons) == {("bad", "json"), ("bad", "list"), ("langgraph", "reserved"), ("old",)}
    assert reasons["bad", "json"].startswith("unreadable row")
    assert reasons["bad", "list"] == "the value is a list, not a JSON object"
    assert "'langgraph'" in reasons["langgraph", "reserved"]
    assert reasons["old",] == "expired in the source"
    assert [p.read for p in seen] == [3, 6, 9] and seen[-1].total == 9
    await check_destination(dst, clock)


def vars_of(progress: Progress) -> dict[str, Any]:
    return {name: getattr(progress, name) for name in Progress.__slots__}


async def test_rerun_is_idempotent_and_picks_up_source_changes(
    source_file: Path, tmp_path: Path, clock: FakeClock
) -> None:
    dst = tmp_path / "memlane.db"
    await migrate(open_source(source_file), dst, index=INDEX, now=NOW)
    before = item_rows(dst)
    again = await migrate(open_source(source_file), dst, index=INDEX, now=NOW)
    assert (again.written, again.unchanged, len(again.skipped)) == (0, 5, 4)
    assert item_rows(dst) == before

    with LGSqliteStore.from_conn_string(str(source_file)) as store:
        store.put(("users", "u2"), "prefs", {"text": "rock music"})
    third = await migrate(open_source(source_file), dst, index=INDEX, now=NOW)
    assert (third.written, third.unchanged) == (1, 4)
    assert len(item_rows(dst)) == 5
    async with SqliteStore.open(dst, index=INDEX) as store:
        item = await store.aget(("users", "u2"), "prefs")
        assert item is not None and item.value == {"text": "rock music"}
        assert item.created_at > CREATED  # LangGraph's overwrite restamped both
        assert (await store.asearch(("users", "u2"), query="rock"))[0].key == "prefs"


class Interrupted(Exception):
    pass


async def test_an_interrupted_migration_finishes_on_rerun_without_duplicates(
    tmp_path: Path, clock: FakeClock
) -> None:
    source_file = tmp_path / "big.db"
    make_langgraph_file(source_file, extra=40)

    def stop_after_two_chunks(progress: Progress) -> None:
        if progress.read >= 20:
            raise Interrupted

    dst = tmp_path / "memlane.db"
    with pytest.raises(Interrupted):
        await migrate(open_source(source_file), dst, index=INDEX, chunk_size=10, now=NOW,
                      on_progress=stop_after_two_chunks)
    partial = len(item_rows(dst))
    assert 0 < partial < 45

    report = await migrate(open_source(source_file), dst, index=INDEX, chunk_size=10, now=NOW)
    assert report.unchanged == partial  # whole chunks, written with their source timestamps
    assert report.written == 45 - partial
    rows = item_rows(dst)
    assert len(rows) == 45 == len({(ns, key) for ns, key, *_ in rows})
    await check_destination(dst, clock)


async def test_an_embedding_refused_for_one_item_skips_only_that_item(
    source_file: Path, tmp_path: Path
) -> None:
    def picky(texts: list[str]) -> list[list[float]]:
        vectors = keyword_embed(texts)
        return [[float("nan")] * KEYWORD_DIMS if "tokyo" in t else v
                for t, v in zip(texts, vectors, strict=True)]

    index = IndexConfig(dims=KEYWORD_DIMS, embed=picky, fields=("text",))
    report = await migrate(open_source(source_file), tmp_path / "m.db", index=index, now=NOW)
    failed = [e for e in report.skipped if e.reason.startswith("embedding failed")]
    assert [(e.namespace, e.key) for e in failed] == [(("users", "u1", "memories"), "m2")]
    assert report.written == 4


async def test_destination_that_is_not_a_memlane_file_is_refused(source_file: Path) -> None:
    before = await anyio.Path(source_file).read_bytes()
    with pytest.raises(ValueError, match="not a memlane store"):
        await migrate(open_source(source_file), source_file, now=NOW)
    assert await anyio.Path(source_file).read_bytes() == before


async def test_async_langgraph_store_files_migrate_too(tmp_path: Path) -> None:
    path = tmp_path / "async.db"
    async with LGAsyncSqliteStore.from_conn_string(str(path)) as store:
        await store.setup()
        await store.aput(("a", "b"), "k", {"text": "sun"})
    report = await migrate(open_source(path), tmp_path / "m.db")
    assert (report.written, report.skipped) == (1, [])


# ---- rows from other sources -------------------------------------------------------------


def test_postgres_shaped_rows_decode() -> None:
    eastern = datetime(2024, 1, 2, 5, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    row = decode_row(("a",), "k", {"x": 1}, eastern, eastern, 30, None)
    assert isinstance(row, Record)
    assert row.created_at == datetime(2024, 1, 2, 5, 0, tzinfo=UTC)
    assert row.created_at.tzinfo == UTC and row.ttl_minutes == 30.0
    assert isinstance(decode_row(("a",), "k", {"x": 1}, "yesterday", None, None, None), Skipped)


def test_postgres_url_without_psycopg_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    code = main(["migrate", "postgresql://me:secret@db/agents", str(tmp_path / "m.db")])
    assert code == 1
    assert "psycopg" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()


# ---- export / import and the CLI ---------------------------------------------------------


def test_cli_migrate_export_import_round_trip(
    source_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.db"
    args = ["--embed", f"hashing:{KEYWORD_DIMS}", "--fields", "text"]
    assert main(["migrate", str(source_file), str(first), *args]) == 0
    out, err = capsys.readouterr()
    assert "read 9, written 5, unchanged 0, skipped 4" in out
    assert "expired in the source" in out and "9/9 read" in err

    backup = tmp_path / "backup.jsonl"
    assert main(["export", str(first), str(backup)]) == 0
    lines = [orjson.loads(line) for line in backup.read_bytes().splitlines()]
    assert lines[0]["memlane_export"] == 1 and len(lines) == 6
    assert {(tuple(line["namespace"]), line["key"]) for line in lines[1:]} == set(GOOD)
    assert next(line for line in lines[1:] if line["key"] == "ttl")["expires_at"] == (
        EXPIRES.isoformat())

    second = tmp_path / "second.db"
    assert main(["import", str(backup), str(second), "-q", *args]) == 0
    assert "written 5" in capsys.readouterr().out
    copied, original = item_rows(second), item_rows(first)
    assert [row[:5] for row in copied] == [row[:5] for row in original]
    assert [row[5] for row in copied] == pytest.approx([row[5] for row in original])
    hashing = {"dims": KEYWORD_DIMS, "embed": HashingEmbeddings(KEYWORD_DIMS), "fields": ["text"]}
    with SqliteStore.open_sync(second, index=hashing) as store:
        hits = store.search(("users",), query="likes jazz music")
        assert hits[0].key == "m1" and hits[0].score is not None  # import re-embedded


async def test_jsonl_of_langgraph_item_dicts_imports_and_bad_lines_are_reported(
    tmp_path: Path
) -> None:
    with LGSqliteStore.from_conn_string(":memory:") as store:
        store.setup()
        store.put(("a",), "k1", {"text": "one"})
        store.put(("a", "b"), "k2", {"text": "two"})
        lines = [orjson.dumps(item.dict()) for item in store.search(("a",))]
    lines += [b"{broken", b'{"namespace": "a", "key": "x"}', b""]
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = JsonlSource(path)
    report = await migrate(source, tmp_path / "m.db")
    source.close()
    assert report.written == 2
    assert sorted(e.reason.split(":")[0] for e in report.skipped) == [
        "bad namespace 'a'", "not valid JSON"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dims", "8"], "need --embed"),
        (["--embed", "hashing:zero"], "hashing:<dims>"),
        (["--embed", "hashing:8", "--dims", "9"], "disagrees"),
        (["--embed", "nosuchprovider:model", "--dims", "8"], "nosuchprovider"),
    ],
)
def test_cli_index_option_errors(
    source_file: Path, tmp_path: Path, argv: list[str], message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate", str(source_file), str(tmp_path / "m.db"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_split_fields_keeps_braces_together() -> None:
    assert split_fields("text, meta.title,{a,b},list[*]") == [
        "text", "meta.title", "{a,b}", "list[*]"]


def test_migrate_records_the_distance_given_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source.db"
    with SqliteStore.open_sync(source) as store:
        store.put(("u",), "near", {"text": "jazz"})
        store.put(("u",), "far", {"text": "rain weather"})
    target = tmp_path / "target.db"
    args = ["--embed", "hashing:32", "--fields", "text", "--distance", "l2", "-q"]
    assert main(["migrate", str(source), str(target), *args]) == 0
    capsys.readouterr()
    hashing = HashingEmbeddings(32)
    l2 = IndexConfig(dims=32, embed=hashing, fields=["text"], distance="l2")
    with SqliteStore.open_sync(target, index=l2) as store:
        hits = store.search(("u",), query="jazz")
        assert hits[0].key == "near" and hits[0].score == pytest.approx(0.0, abs=1e-6)
        assert all(hit.score is not None and hit.score <= 0 for hit in hits)  # -distance
    cosine = IndexConfig(dims=32, embed=hashing, fields=["text"])
    with pytest.raises(IndexConfigError, match="distance"), SqliteStore.open_sync(
        target, index=cosine
    ):
        pass
    assert main(["migrate", str(source), str(tmp_path / "x.db"), "--distance", "l2"]) == 2
    assert "--distance need --embed" in capsys.readouterr().err


# ---- into PostgresStore --------------------------------------------------------------


async def test_migrate_into_postgres_keeps_everything_and_reruns_unchanged(
    source_file: Path, postgres_dsn: str, clock: FakeClock
) -> None:
    """The same source, the same report, into a PostgresStore schema; a re-run writes
    nothing; the items keep their timestamps and are found by meaning."""
    from tests.conftest import fresh_schema

    from memlane import PostgresStore

    schema = fresh_schema()
    report = await migrate(open_source(source_file), postgres_dsn, index=INDEX, now=NOW,
                           schema=schema)
    assert (report.read, report.written, report.unchanged) == (9, 5, 0)
    again = await migrate(open_source(source_file), postgres_dsn, index=INDEX, now=NOW,
                          schema=schema)
    assert (again.written, again.unchanged) == (0, 5)
    async with PostgresStore.open(postgres_dsn, schema=schema, index=INDEX) as store:
        item = await store.aget(("users", "u1", "memories"), "m1")
        assert item is not None and item.value == GOOD[("users", "u1", "memories"), "m1"]
        assert item.created_at == CREATED and item.updated_at == UPDATED
        hits = await store.asearch(("users",), query="jazz", limit=1)
        assert [hit.key for hit in hits] == ["m1"]


def test_cli_imports_a_jsonl_export_into_postgres(
    source_file: Path, tmp_path: Path, postgres_dsn: str
) -> None:
    from tests.conftest import fresh_schema

    schema = fresh_schema()
    exported = tmp_path / "backup.jsonl"
    assert main(["export", str(source_file), str(exported)]) == 0
    assert main(["import", str(exported), postgres_dsn, "--schema", schema,
                 "--embed", "hashing:64", "-q"]) == 0
    assert main(["import", str(exported), postgres_dsn, "--schema", "Bad-Name", "-q"]) == 1


def test_cli_exports_a_postgres_store_and_imports_it_into_a_file(
    source_file: Path, tmp_path: Path, postgres_dsn: str
) -> None:
    """PostgreSQL -> JSONL -> SQLite keeps every live item, timestamps included."""
    from tests.conftest import fresh_schema

    schema = fresh_schema()
    assert main(["migrate", str(source_file), postgres_dsn, "--schema", schema, "-q"]) == 0
    exported = tmp_path / "from-postgres.jsonl"
    assert main(["export", postgres_dsn, str(exported), "--schema", schema]) == 0
    lines = [orjson.loads(line) for line in exported.read_text().splitlines()]
    items = [line for line in lines if "key" in line]
    assert {(tuple(item["namespace"]), item["key"]) for item in items} == set(GOOD)
    dst = tmp_path / "back.db"
    assert main(["import", str(exported), str(dst), "-q"]) == 0
    rows = item_rows(dst)
    assert len(rows) == len(GOOD)
