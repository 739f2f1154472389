"""PostgreSQL write-statement shapes for a batching writer: upsert rows/s, one run.

One async psycopg connection, one transaction per batch of puts (upserts into ``items``,
``RETURNING id, (xmax = 0) AS inserted``, ~50% new keys and ~50% overwrites, ~70-byte
JSON values, 1,000 namespaces), batches of 64 and 1,024 rows, against a local server
(``LocalPostgres(durable=False)``). Shapes, without vectors:

    a     executemany of a one-row INSERT (psycopg pipelines it)
    b     one INSERT ... SELECT FROM json_to_recordset(one json parameter, built by orjson)
    c     one INSERT ... SELECT FROM unnest(text[], bigint[], ... parameters)
    c-bin c with %b placeholders (binary arrays; psycopg escapes text arrays in Python)
    d     binary COPY into a temp table, then INSERT ... SELECT FROM it
    *-np  the same with prepared statements off (prepare_threshold=None)
    b-pipe  b in pipeline mode (BEGIN, INSERT and COMMIT queued, one sync)

and with a 384-dim float32 vector per row upserted into ``vectors`` in the same
statement (a data-modifying CTE): b' (vectors as '[...]' text inside the json), c'
(unnest of a text[] of '[...]' cast to vector[]), c'-bin (c-bin plus ONE binary vector[]
parameter built by numpy), d' (binary COPY, pgvector's binary format), e (json for the
scalars plus the binary vector[] parameter).
Every shape is verified once, then all run interleaved (order rotated per round, tables
truncated before each cell); each cell is the median rows/s over the rounds (min-max).
Also: the round trip of SELECT 1, an empty transaction, and psycopg's cost of dumping
Python lists of floats as an array parameter.

    .venv/bin/python benchmarks/postgres_statements.py            # full run (~1.5 min)
    .venv/bin/python benchmarks/postgres_statements.py --quick    # ~20 s
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from memlane.store.postgres.local_server import LocalPostgres

DIMS = 384
NAMESPACES = 1000
SIZES = (64, 1024)

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
DROP TABLE IF EXISTS vectors, items;
CREATE TABLE items (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  namespace text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  value json NOT NULL,
  created_at bigint NOT NULL, updated_at bigint NOT NULL,
  ttl_minutes double precision, expires_at double precision,
  UNIQUE (namespace, key));
CREATE TABLE vectors (
  item_id bigint PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
  embedding vector(384));
CREATE TEMP TABLE stage (
  o int, n text, k text, v json, c bigint, u bigint, t float8, e float8, emb vector(384)
) ON COMMIT DELETE ROWS;
"""

# ---- SQL -------------------------------------------------------------------------------

COLUMNS = "namespace, key, value, created_at, updated_at, ttl_minutes, expires_at"
ON_CONFLICT = (
    "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
    "updated_at = excluded.updated_at, ttl_minutes = excluded.ttl_minutes, "
    "expires_at = excluded.expires_at"
)
RECORD = 'n text, k text, v json, c bigint, u bigint, t float8, e float8'
JSON_SOURCE = (
    f"ROWS FROM (json_to_recordset(%s::json) AS ({RECORD}))"
    " WITH ORDINALITY AS r(n, k, v, c, u, t, e, o)"
)
JSON_VEC_SOURCE = (
    f"ROWS FROM (json_to_recordset(%s::json) AS ({RECORD}, emb vector(384)))"
    " WITH ORDINALITY AS r(n, k, v, c, u, t, e, emb, o)"
)
JSON_BIN_SOURCE = (
    f"ROWS FROM (json_to_recordset(%s::json) AS ({RECORD}), unnest(%s::vector[]))"
    " WITH ORDINALITY AS r(n, k, v, c, u, t, e, emb, o)"
)
UNNEST_ARGS = (
    "%s::text[], %s::text[], %s::json[], %s::int8[], %s::int8[], %s::float8[], %s::float8[]"
)
UNNEST_SOURCE = f"unnest({UNNEST_ARGS}) WITH ORDINALITY AS r(n, k, v, c, u, t, e, o)"
UNNEST_VEC_SOURCE = (
    f"unnest({UNNEST_ARGS}, %s::vector[]) WITH ORDINALITY AS r(n, k, v, c, u, t, e, emb, o)"
)
# The same with %b placeholders: psycopg sends the arrays in binary (no text escaping).
UNNEST_BIN_SOURCE = UNNEST_SOURCE.replace("%s", "%b")
UNNEST_BIN_VEC_SOURCE = UNNEST_VEC_SOURCE.replace("%s", "%b")
STAGE_SOURCE = "stage AS r"
COPY_ITEMS = "COPY stage (o, n, k, v, c, u, t, e) FROM STDIN (FORMAT BINARY)"
COPY_VEC = "COPY stage (o, n, k, v, c, u, t, e, emb) FROM STDIN (FORMAT BINARY)"
COPY_TYPES = ["int4", "text", "text", "bytea", "int8", "int8", "float8", "float8"]

ONE_ROW = (
    f"INSERT INTO items ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) {ON_CONFLICT} "
    "RETURNING id, (xmax = 0) AS inserted"
)


def items_sql(source: str) -> str:
    """Upsert the rows of ``source`` (columns n, k, v, c, u, t, e, o) in input order."""
    return (
        f"INSERT INTO items ({COLUMNS}) SELECT n, k, v, c, u, t, e FROM {source} ORDER BY o "
        f"{ON_CONFLICT} RETURNING id, (xmax = 0) AS inserted"
    )


def items_vectors_sql(source: str) -> str:
    """The same, and each row's ``emb`` upserted into vectors under the item's id."""
    return (
        f"WITH r AS MATERIALIZED (SELECT * FROM {source}), "
        f"up AS (INSERT INTO items ({COLUMNS}) SELECT n, k, v, c, u, t, e FROM r ORDER BY o "
        f"{ON_CONFLICT} RETURNING id, namespace, key, (xmax = 0) AS inserted), "
        "vec AS (INSERT INTO vectors (item_id, embedding) SELECT up.id, r.emb FROM up "
        'JOIN r ON r.n COLLATE "C" = up.namespace AND r.k COLLATE "C" = up.key '
        "ON CONFLICT (item_id) DO UPDATE SET embedding = excluded.embedding) "
        "SELECT id, inserted FROM up"
    )


# ---- adapters: pre-serialized payloads passed through untouched --------------------------


class JsonText(bytes):
    """JSON text already written by orjson, sent as a json parameter as is."""


class JsonTextDumper(Dumper):
    oid = 114  # json
    format = Format.TEXT

    def dump(self, obj: Any) -> Any:
        return obj


class JsonTextBinaryDumper(JsonTextDumper):
    format = Format.BINARY  # json's binary form is its text


class VectorArray(bytes):
    """A vector[] in PostgreSQL's binary array format (built by numpy)."""


def vector_array_dumper(array_oid: int) -> type[Dumper]:
    class VectorArrayDumper(Dumper):
        oid = array_oid
        format = Format.BINARY

        def dump(self, obj: Any) -> Any:
            return obj

    return VectorArrayDumper


def binary_vector_array(vectors: np.ndarray, vector_oid: int) -> VectorArray:
    """``vectors`` (n x d float32) as one binary vector[]: the array header (1 dim, no
    nulls, element oid, n, lower bound 1), then per element its length and pgvector's
    binary form (int16 dim, int16 unused, d big-endian float4)."""
    n, dims = vectors.shape
    elements = np.empty(n, dtype=[("len", ">i4"), ("dim", ">i2"), ("unused", ">i2"),
                                  ("v", ">f4", (dims,))])
    elements["len"] = 4 + 4 * dims
    elements["dim"] = dims
    elements["unused"] = 0
    elements["v"] = vectors
    return VectorArray(struct.pack(">iiIii", 1, 0, vector_oid, n, 1) + elements.tobytes())


def binary_vector(vector: np.ndarray) -> bytes:
    """One vector in pgvector's binary format (what COPY ... FORMAT BINARY reads)."""
    return struct.pack(">hh", vector.shape[0], 0) + vector.astype(">f4").tobytes()


# ---- data ------------------------------------------------------------------------------

Row = tuple[str, str, JsonText, int, int, float | None, float | None]


@dataclass
class Batch:
    rows: list[Row]
    vectors: np.ndarray  # len(rows) x DIMS float32
    new: list[bool]  # whether each row's key is new to the table


@dataclass
class Workload:
    size: int
    seed: Batch
    batches: list[Batch] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(b.rows) for b in self.batches)


WORDS = ["alpha", "beta", "gamma", "delta", "tea", "coffee", "likes", "prefers", "dark", "mode",
         "email", "weekly", "the", "a", "of"]


def make_rows(rng: np.random.Generator, keys: list[tuple[str, str]], now: int) -> list[Row]:
    rows: list[Row] = []
    for namespace, key in keys:
        words = " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), 5))
        value = orjson.dumps({"text": words, "score": int(rng.integers(0, 1000)),
                              "tags": ["pref", "note"]})
        ttl = 60.0 if rng.random() < 0.25 else None
        expires = now / 1000 + 3600.0 if ttl is not None else None
        rows.append((namespace, key, JsonText(value), now, now, ttl, expires))
    return rows


def make_workload(size: int, batches: int, seed: int) -> Workload:
    """``batches`` batches of ``size`` rows: half overwrite keys of a seed set (each once),
    half are new keys; unique keys within a batch, shuffled."""
    rng = np.random.default_rng(seed)
    namespaces = [f"users.u{i}" for i in range(NAMESPACES)]

    def fresh(n: int) -> list[tuple[str, str]]:
        return [(namespaces[int(rng.integers(0, NAMESPACES))],
                 f"k{int(rng.integers(0, 2**62)):016x}") for _ in range(n)]

    def vectors(n: int) -> np.ndarray:
        return rng.standard_normal((n, DIMS), dtype=np.float32)

    half = size // 2
    seed_keys = fresh(half * batches)
    now = 1_760_000_000_000
    load = Workload(size, Batch(make_rows(rng, seed_keys, now), vectors(len(seed_keys)),
                                [True] * len(seed_keys)))
    for index in range(batches):
        keys = seed_keys[index * half:(index + 1) * half] + fresh(size - half)
        new = [False] * half + [True] * (size - half)
        order = rng.permutation(size)
        keys = [keys[i] for i in order]
        new = [new[i] for i in order]
        load.batches.append(Batch(make_rows(rng, keys, now + 1 + index), vectors(size), new))
    return load


# ---- the shapes ------------------------------------------------------------------------

Result = list[tuple[int, bool]]


def json_batch(rows: list[Row], vectors: np.ndarray | None = None) -> JsonText:
    records: list[dict[str, Any]] = [
        {"n": n, "k": k, "v": orjson.Fragment(bytes(v)), "c": c, "u": u, "t": t, "e": e}
        for n, k, v, c, u, t, e in rows
    ]
    if vectors is not None:
        for record, vector in zip(records, vectors, strict=True):
            record["emb"] = vector
        return JsonText(orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY))
    return JsonText(orjson.dumps(records))


def columns(rows: list[Row]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


class Shapes:
    def __init__(self, conn: psycopg.AsyncConnection[Any], vector_oid: int) -> None:
        self.conn = conn
        self.vector_oid = vector_oid
        self.cur = conn.cursor()

    async def _one(self, sql: str, params: list[Any]) -> Result:
        async with self.conn.transaction():
            await self.cur.execute(sql, params)
            return await self.cur.fetchall()

    async def a(self, batch: Batch) -> Result:
        async with self.conn.transaction():
            await self.cur.executemany(ONE_ROW, batch.rows, returning=True)
            out: Result = []
            while True:
                out.extend(await self.cur.fetchall())
                if not self.cur.nextset():
                    return out

    async def b(self, batch: Batch) -> Result:
        return await self._one(items_sql(JSON_SOURCE), [json_batch(batch.rows)])

    async def b_pipe(self, batch: Batch) -> Result:
        async with self.conn.pipeline(), self.conn.transaction():
            await self.cur.execute(items_sql(JSON_SOURCE), [json_batch(batch.rows)])
        return await self.cur.fetchall()

    async def c(self, batch: Batch) -> Result:
        return await self._one(items_sql(UNNEST_SOURCE), columns(batch.rows))

    async def c_bin(self, batch: Batch) -> Result:
        return await self._one(items_sql(UNNEST_BIN_SOURCE), columns(batch.rows))

    async def c_bin_vec(self, batch: Batch) -> Result:
        return await self._one(items_vectors_sql(UNNEST_BIN_VEC_SOURCE),
                               [*columns(batch.rows),
                                binary_vector_array(batch.vectors, self.vector_oid)])

    async def _copy(self, batch: Batch, vectors: bool) -> None:
        sql = COPY_VEC if vectors else COPY_ITEMS
        async with self.cur.copy(sql) as copy:
            copy.set_types([*COPY_TYPES, "bytea"] if vectors else COPY_TYPES)
            if vectors:
                for o, (row, vector) in enumerate(zip(batch.rows, batch.vectors, strict=True)):
                    await copy.write_row((o, *row, binary_vector(vector)))
            else:
                for o, row in enumerate(batch.rows):
                    await copy.write_row((o, *row))

    async def d(self, batch: Batch) -> Result:
        async with self.conn.transaction():
            await self._copy(batch, vectors=False)
            await self.cur.execute(items_sql(STAGE_SOURCE))
            return await self.cur.fetchall()

    async def b_vec(self, batch: Batch) -> Result:
        return await self._one(items_vectors_sql(JSON_VEC_SOURCE),
                               [json_batch(batch.rows, batch.vectors)])

    async def c_vec(self, batch: Batch) -> Result:
        texts = [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()
                 for v in batch.vectors]
        return await self._one(items_vectors_sql(UNNEST_VEC_SOURCE),
                               [*columns(batch.rows), texts])

    async def d_vec(self, batch: Batch) -> Result:
        async with self.conn.transaction():
            await self._copy(batch, vectors=True)
            await self.cur.execute(items_vectors_sql(STAGE_SOURCE))
            return await self.cur.fetchall()

    async def e(self, batch: Batch) -> Result:
        return await self._one(items_vectors_sql(JSON_BIN_SOURCE),
                               [json_batch(batch.rows),
                                binary_vector_array(batch.vectors, self.vector_oid)])


@dataclass(frozen=True)
class Shape:
    name: str
    run: Callable[[Shapes, Batch], Awaitable[Result]]
    vectors: bool
    prepare: bool = True


SHAPES = [
    Shape("a executemany", Shapes.a, False),
    Shape("a-np", Shapes.a, False, prepare=False),
    Shape("b json_to_recordset", Shapes.b, False),
    Shape("b-np", Shapes.b, False, prepare=False),
    Shape("b-pipe", Shapes.b_pipe, False),
    Shape("c unnest arrays", Shapes.c, False),
    Shape("c-np", Shapes.c, False, prepare=False),
    Shape("c-bin unnest, %b arrays", Shapes.c_bin, False),
    Shape("d binary COPY", Shapes.d, False),
    Shape("b' json, vec text", Shapes.b_vec, True),
    Shape("b'-np", Shapes.b_vec, True, prepare=False),
    Shape("c' unnest, vec text[]", Shapes.c_vec, True),
    Shape("c'-bin %b arrays+vector[]", Shapes.c_bin_vec, True),
    Shape("d' binary COPY", Shapes.d_vec, True),
    Shape("e json + binary vector[]", Shapes.e, True),
    Shape("e-np", Shapes.e, True, prepare=False),
]
REFERENCE = {False: "b json_to_recordset", True: "b' json, vec text"}


# ---- running ---------------------------------------------------------------------------


async def reset(conn: psycopg.AsyncConnection[Any], load: Workload, vectors: bool) -> None:
    """Empty tables, then the seed rows (the keys the batches overwrite), untimed."""
    await conn.execute("TRUNCATE items, vectors RESTART IDENTITY")
    for start in range(0, len(load.seed.rows), 4096):
        rows = load.seed.rows[start:start + 4096]
        vecs = load.seed.vectors[start:start + 4096]
        source = JSON_VEC_SOURCE if vectors else JSON_SOURCE
        sql = (items_vectors_sql(source) if vectors else items_sql(source)) + " -- seed"
        await conn.execute(sql, [json_batch(rows, vecs if vectors else None)], prepare=False)


async def run_cell(conn: psycopg.AsyncConnection[Any], shapes: Shapes, shape: Shape,
                   load: Workload) -> tuple[float, list[Result]]:
    await reset(conn, load, shape.vectors)
    conn.prepare_threshold = 5 if shape.prepare else None
    results = []
    try:
        start = time.perf_counter()
        for batch in load.batches:
            results.append(await shape.run(shapes, batch))
        elapsed = time.perf_counter() - start
    finally:
        conn.prepare_threshold = 5
    return load.rows / elapsed, results


async def verify(conn: psycopg.AsyncConnection[Any], shapes: Shapes, shape: Shape,
                 load: Workload) -> None:
    """Returned ids and inserted flags match the table row for row; values, counts and
    (with vectors) every batch row's vector are what was written."""
    _, results = await run_cell(conn, shapes, shape, load)
    where = f"shape {shape.name!r}, {load.size} rows"
    for batch, result in zip(load.batches, results, strict=True):
        assert len(result) == len(batch.rows), f"{where}: {len(result)} rows returned"
        assert [bool(r[1]) for r in result] == batch.new, f"{where}: inserted flags differ"
        got = await (await conn.execute(
            "SELECT i.id, i.value::text, v.embedding::text FROM unnest(%s::text[], %s::text[])"
            " WITH ORDINALITY AS q(n, k, o) JOIN items i ON i.namespace = q.n AND i.key = q.k"
            " LEFT JOIN vectors v ON v.item_id = i.id ORDER BY q.o",
            [[r[0] for r in batch.rows], [r[1] for r in batch.rows]], prepare=False,
        )).fetchall()
        assert [g[0] for g in got] == [r[0] for r in result], f"{where}: ids differ"
        assert [g[1].encode() for g in got] == [r[2] for r in batch.rows], f"{where}: values"
        if shape.vectors:
            stored = np.array([orjson.loads(g[2]) for g in got], dtype=np.float32)
            assert np.array_equal(stored, batch.vectors), f"{where}: vectors differ"
    items, vecs = await (await conn.execute(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM vectors)")).fetchone()
    expected = len(load.seed.rows) + sum(sum(b.new) for b in load.batches)
    assert items == expected, f"{where}: {items} items, expected {expected}"
    assert vecs == (expected if shape.vectors else 0), f"{where}: {vecs} vectors"


async def round_trips(conn: psycopg.AsyncConnection[Any], n: int) -> dict[str, float]:
    """Median microseconds of SELECT 1 (unprepared and prepared) and of BEGIN; COMMIT."""
    out: dict[str, float] = {}
    for label, prepare in (("SELECT 1 unprepared", False), ("SELECT 1 prepared", True)):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await (await conn.execute("SELECT 1", prepare=prepare)).fetchone()
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times) * 1e6
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with conn.transaction():
            pass
        times.append(time.perf_counter() - t0)
    out["empty transaction (BEGIN; COMMIT)"] = statistics.median(times) * 1e6
    return out


async def list_dump_cost(conn: psycopg.AsyncConnection[Any], rows: int) -> float:
    """Microseconds per row to send Python lists of 384 floats as one real[][] parameter."""
    vectors = np.random.default_rng(1).standard_normal((rows, DIMS), dtype=np.float32)
    times = []
    for _ in range(3):
        lists = vectors.tolist()
        t0 = time.perf_counter()
        await (await conn.execute("SELECT cardinality(%s::real[])", [lists],
                                  prepare=False)).fetchone()
        times.append(time.perf_counter() - t0)
    return min(times) / rows * 1e6


def build_costs(load: Workload, vector_oid: int) -> dict[str, float]:
    """Client-side microseconds per row to build each shape's payload (no I/O)."""
    batch = load.batches[0]
    builders: dict[str, Callable[[], Any]] = {
        "b json": lambda: json_batch(batch.rows),
        "c columns": lambda: columns(batch.rows),
        "b' json with vector text": lambda: json_batch(batch.rows, batch.vectors),
        "d' binary vectors": lambda: [binary_vector(v) for v in batch.vectors],
        "e binary vector[]": lambda: binary_vector_array(batch.vectors, vector_oid),
    }
    out = {}
    for label, build in builders.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            build()
            times.append(time.perf_counter() - t0)
        out[label] = min(times) / len(batch.rows) * 1e6
    return out


def statement_label(statement: str) -> str:
    if "VALUES" in statement:
        return "a"
    vectors = "INSERT INTO vectors" in statement
    if "FROM stage" in statement:
        return "d'" if vectors else "d"
    if "json_to_recordset" in statement:
        return "e" if "::vector[]" in statement else "b'" if vectors else "b"
    if "::text[]" in statement:
        return "c'" if vectors else "c"
    return ""


async def plan_counts(conn: psycopg.AsyncConnection[Any]) -> str:
    """How often PostgreSQL used a generic or a custom plan for each prepared shape."""
    rows = await (await conn.execute(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")).fetchall()
    counts: dict[str, list[int]] = {}
    for statement, generic, custom in rows:
        if label := statement_label(statement):
            total = counts.setdefault(label, [0, 0, 0])
            total[0] += 1
            total[1] += generic
            total[2] += custom
    return ", ".join(f"{label} ({n} stmt) {g} generic/{c} custom"
                     for label, (n, g, c) in sorted(counts.items()))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):>9,.0f} ({min(values):,.0f}-{max(values):,.0f})"


async def main_async(dsn: str, args: argparse.Namespace) -> None:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await conn.execute(SCHEMA)
        conn.adapters.register_dumper(JsonText, JsonTextBinaryDumper)  # for %b
        conn.adapters.register_dumper(JsonText, JsonTextDumper)  # last: the one for %s
        vector_oid, array_oid = await (await conn.execute(
            "SELECT 'vector'::regtype::oid::int, '_vector'::regtype::oid::int")).fetchone()
        conn.adapters.register_dumper(VectorArray, vector_array_dumper(array_oid))
        server, pgvector = await (await conn.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector')")).fetchone()
        print(f"CPU: {cpu_model()} ({len(os.sched_getaffinity(0))} cores)")
        print(f"Python {platform.python_version()}, psycopg {psycopg.__version__} "
              f"({psycopg.pq.__impl__}, libpq {psycopg.pq.version()}), PostgreSQL {server}, "
              f"pgvector {pgvector}, orjson {orjson.__version__}, numpy {np.__version__}")
        print(f"fsync off (durable=False), 127.0.0.1 TCP; {args.rounds} rounds; "
              f"batches per cell: {dict(zip(SIZES, args.batches, strict=True))}\n")

        shapes = Shapes(conn, vector_oid)
        loads = {size: make_workload(size, batches, seed=size)
                 for size, batches in zip(SIZES, args.batches, strict=True)}
        for shape in SHAPES:  # correctness once; also the warm-up (statements prepared)
            for load in loads.values():
                await verify(conn, shapes, shape, load)
        print(f"verified: {len(SHAPES)} shapes x {len(SIZES)} sizes (ids, inserted flags, "
              "values, counts, vectors)\n")

        rtt = await round_trips(conn, args.rtt)
        for label, micros in rtt.items():
            print(f"round trip, {label}: {micros:.0f} us (median of {args.rtt})")
        print(f"Python lists of {DIMS} floats as one real[][] parameter: "
              f"{await list_dump_cost(conn, 64):.0f} us/row (dump + send + parse)")
        costs = build_costs(loads[1024], vector_oid)
        print("client-side payload build, us/row (1,024-row batch): "
              + ", ".join(f"{label} {micros:.2f}" for label, micros in costs.items()) + "\n")

        cells = [(shape, size) for shape in SHAPES for size in SIZES]
        rates: dict[tuple[str, int], list[float]] = {(s.name, n): [] for s, n in cells}
        started = time.perf_counter()
        for index in range(args.rounds):
            shift = index * 3 % len(cells)
            for shape, size in cells[shift:] + cells[:shift]:
                rate, _ = await run_cell(conn, shapes, shape, loads[size])
                rates[shape.name, size].append(rate)
        print(f"timed {args.rounds} rounds in {time.perf_counter() - started:.0f} s")
        print(f"prepared statements' plans (whole run): {await plan_counts(conn)}\n")

        for with_vectors in (False, True):
            reference = REFERENCE[with_vectors]
            title = "with a 384-dim vector per row" if with_vectors else "items only"
            print(f"upsert rows/s, {title}: median (min-max); ratio = median / {reference}'s")
            print(f"{'shape':<26}" + "".join(f"{f'{n} rows/batch':>30}{'ratio':>7}"
                                             for n in SIZES))
            for shape in SHAPES:
                if shape.vectors != with_vectors:
                    continue
                line = f"{shape.name:<26}"
                for size in SIZES:
                    values = rates[shape.name, size]
                    ratio = statistics.median(values) / statistics.median(
                        rates[reference, size])
                    line += f"{spread(values):>30}{ratio:>6.2f}x"
                print(line)
            print()
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~20 s run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.batches, args.rtt = 5, (8, 1), 300
    else:
        args.rounds, args.batches, args.rtt = 9, (48, 4), 2000
    server = LocalPostgres(durable=False).start()
    try:
        asyncio.run(main_async(server.dsn, args))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
