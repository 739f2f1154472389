"""Several processes on one SqliteStore file: puts/s, catch-up, search beside writers.

Real child processes (multiprocessing, "spawn") share one store file, each with its own
writer, readers and vector index. Four measurements, in one run:

1. aggregate puts/s of 1,000 writer tasks split over 1, 2 and 4 processes (fresh file each
   time), without and with an index, timed from a common start instant to the last
   process done; next to raw ``sqlite3.executemany`` in one process (1,000 rows per
   transaction, WAL, synchronous=NORMAL) on the same rows;
2. catch-up latency: process A commits 64 puts (one ``abatch``) into a 100k-item indexed
   file and sends the time of the ack; process B catches up and searches for the new item;
3. search p50/p99 in B (one user's namespace, and the whole store) idle, while process C
   runs 1,000 writer tasks overwriting items of another file (the machine's share: B has
   nothing to follow), and while A runs them on B's file;
4. the single-process cost of following: puts/s and search p50 in a child process with
   this code and with the code before multi-process stores (a git worktree at
   ``--before-rev``), interleaved, 3 rounds, medians.

The index is 384 dims with the lookup "embedding" of ``writes.py`` and ``search.py``: an
item's text ``#<row> ...`` names a row of seeded random unit vectors (a query ``?<q>`` an
item's vector with noise), so embedding cost is not what is measured.

    .venv/bin/python benchmarks/processes.py            # full run (~3-4 minutes on 2 cores)
    .venv/bin/python benchmarks/processes.py --quick    # a smaller run (~30 s)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import numpy as np

DIMS = 384
WRITERS = 1_000  # writer tasks in all, split evenly over the processes
USERS = 1_000  # namespaces ("users", f"u{n % USERS}")
BATCH = 64  # puts per commit in the catch-up measurement
RAW_BATCH = 1_000  # rows per transaction of the raw sqlite3 ceiling
QUERIES = 256
WARMUP_PUTS = 200
REPO = Path(__file__).resolve().parents[1]
BEFORE_REV = "441e60c"

Item = tuple[tuple[str, ...], str, dict[str, Any]]


# ---- data -------------------------------------------------------------------------------


def lookup_vectors(rows: int) -> Any:
    """The lookup embedding every memlane benchmark uses (``memlane.bench.workloads``):
    ``#row`` -> a seeded unit vector, ``?q`` -> a query vector near an item. Imported here,
    once ``--src`` has chosen which memlane this process measures."""
    from memlane.bench.workloads import Dataset

    return Dataset(size=rows, dims=DIMS, extra_rows=0, queries_count=QUERIES)


def item(row: int, prefix: str = "m", n: int | None = None) -> Item:
    """A small JSON value (~70 bytes) in user ``row % USERS``'s namespace."""
    value = {"text": f"#{row} user prefers short direct answers", "n": row if n is None else n}
    return ("users", f"u{row % USERS}"), f"{prefix}{row}", value


def task_items(rank: int, procs: int, per_task: int, prefix: str) -> list[list[Item]]:
    """This process's share of the 1,000 writer tasks, each with ``per_task`` new keys."""
    tasks = WRITERS // procs
    first = rank * tasks
    return [[item((first + t) * per_task + j, prefix) for j in range(per_task)]
            for t in range(tasks)]


def rows_needed(fill: int, catchup_iterations: int, per_task: int) -> int:
    return max(fill + BATCH * (catchup_iterations + 20), WRITERS * per_task)


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


# ---- the work every process can do -------------------------------------------------------


async def run_writers(store: Any, tasks: list[list[Item]]) -> None:
    """Each task puts its items one after another; all tasks at once."""

    async def one(items: list[Item]) -> None:
        for namespace, key, value in items:
            await store.aput(namespace, key, value)

    await asyncio.gather(*(one(items) for items in tasks))


async def fill(store: Any, count: int, chunk: int = 5_000) -> None:
    from memlane.store.types import PutOp

    for start in range(0, count, chunk):
        await store.abatch([PutOp(*item(row)) for row in range(start, min(count, start + chunk))])


async def search_times(store: Any, count: int, scoped: bool, offset: int = 0) -> list[float]:
    """Sequential searches: one user's namespace, or the whole store."""
    times: list[float] = []
    for j in range(offset, offset + count):
        prefix: tuple[str, ...] = ("users", f"u{(j * 7) % USERS}") if scoped else ()
        t0 = time.perf_counter()
        hits = await store.asearch(prefix, query=f"?{j % QUERIES}", limit=10)
        times.append(time.perf_counter() - t0)
        assert len(hits) == 10, f"{len(hits)} results"
    return times


def raw_insert(path: Path, rows: int, per_task: int, vectors: Any | None) -> float:
    """rows/s of plain executemany, ``RAW_BATCH`` rows per transaction (plus the vectors'
    blobs and a FAISS add with an index, as ``memlane.bench``'s ceiling does)."""
    import faiss
    import orjson

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE items (namespace TEXT, key TEXT, value TEXT, vector BLOB,"
                 " created_at INTEGER, updated_at INTEGER, PRIMARY KEY (namespace, key))")
    flat = faiss.IndexFlatIP(DIMS)
    items = [it for task in task_items(0, 1, per_task, "r") for it in task][:rows]
    started = time.perf_counter()
    for start in range(0, len(items), RAW_BATCH):
        chunk = items[start : start + RAW_BATCH]
        now = time.time_ns() // 1000
        if vectors is not None:
            embedded = vectors.embed([value["text"] for _, _, value in chunk])
            blobs: list[bytes | None] = [v.tobytes() for v in embedded]
            flat.add(embedded)
        else:
            blobs = [None] * len(chunk)
        batch = [(".".join(ns), key, orjson.dumps(value).decode(), blob, now, now)
                 for (ns, key, value), blob in zip(chunk, blobs, strict=True)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)", batch)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return len(items) / seconds


# ---- pool workers (parts 1-3) --------------------------------------------------------------


async def arecv(conn: Connection) -> Any:
    """``conn.recv()`` without blocking the loop while nothing has arrived."""
    loop = asyncio.get_running_loop()
    while not conn.poll():
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())
    return conn.recv()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def sleep_until(moment: float) -> None:
    """Sleep to ``moment`` (time.monotonic, system-wide), the last millisecond spinning."""
    left = moment - time.monotonic()
    if left > 0.002:
        await asyncio.sleep(left - 0.002)
    while time.monotonic() < moment:
        pass


class Worker:
    """One child process: opens the store when told, runs what the parent asks."""

    def __init__(self, rank: int, cmd: Connection, peer: Connection | None, rows: int,
                 profile: str | None) -> None:
        self.rank = rank
        self.cmd = cmd
        self.peer = peer
        self.vectors = lookup_vectors(rows)
        self.profile = Path(profile) if profile else None
        self.store: Any = None
        self.tasks: list[list[Item]] = []
        self.stop = asyncio.Event()
        self.background: list[asyncio.Task[None]] = []
        self.written = 0
        self.writing_since = 0.0

    async def serve(self) -> None:
        try:
            while True:
                try:
                    name, kwargs = await arecv(self.cmd)
                except EOFError:
                    return  # the parent is gone
                if name == "exit":
                    return
                try:
                    result = await getattr(self, f"do_{name}")(**kwargs)
                    self.cmd.send(("ok", result))
                except Exception:
                    self.cmd.send(("error", traceback.format_exc()))
        finally:
            self.stop.set()
            if self.store is not None:
                await self.store.aclose(give_up_after=10)

    async def do_info(self) -> dict[str, Any]:
        import faiss

        import memlane

        return {"memlane": getattr(memlane, "__version__", "?"), "file": memlane.__file__,
                "faiss": faiss.__version__, "numpy": np.__version__,
                "sqlite": sqlite3.sqlite_version, "python": platform.python_version()}

    async def do_open(self, path: str, indexed: bool) -> None:
        from memlane import SqliteStore

        index = self.vectors.index_config() if indexed else None
        self.store = await SqliteStore.open(path, index=index)

    async def do_close(self) -> dict[str, int]:
        batches = self.store.writer_batches
        await self.store.aclose()
        self.store = None
        return {"batches": batches}

    async def do_warm(self, prefix: str) -> None:
        await run_writers(self.store, [[item(j, prefix)] for j in range(WARMUP_PUTS)])

    async def do_fill(self, count: int) -> None:
        await fill(self.store, count)

    async def do_prepare_writes(self, procs: int, per_task: int, prefix: str) -> None:
        self.tasks = task_items(self.rank, procs, per_task, prefix)

    async def do_run_writes(self, start_at: float) -> dict[str, float]:
        batches = self.store.writer_batches
        await sleep_until(start_at)
        started = time.monotonic()
        if self.profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        await run_writers(self.store, self.tasks)
        end = time.monotonic()
        if self.profile is not None:
            profiler.disable()
            profiler.dump_stats(self.profile / f"writes-r{self.rank}-{int(start_at * 1e3)}.prof")
        puts = sum(len(t) for t in self.tasks)
        self.tasks = []
        return {"late": started - start_at, "end": end, "puts": puts,
                "batches": self.store.writer_batches - batches}

    async def do_raw(self, path: str, rows: int, per_task: int, indexed: bool) -> float:
        return raw_insert(Path(path), rows, per_task, self.vectors if indexed else None)

    async def do_catchup_writer(self, iterations: int, base: int) -> None:
        """Part 2, process A: commit 64 puts, send the ack's time, wait for B."""
        from memlane.store.types import PutOp

        assert self.peer is not None
        for it in range(iterations):
            ops = [PutOp(*item(base + it * BATCH + j, "c")) for j in range(BATCH)]
            await self.store.abatch(ops)
            self.peer.send((it, time.monotonic()))
            reply = await arecv(self.peer)
            assert reply == it, reply

    async def do_catchup_reader(self, iterations: int, base: int) -> dict[str, Any]:
        """Part 2, process B: on each ack, catch up, then search for a new item."""
        assert self.peer is not None
        follower = self.store._readers._follower
        out: dict[str, list[float]] = {"pipe": [], "catch_up": [], "search": [], "total": []}
        missed = 0
        for it in range(iterations):
            got, acked = await arecv(self.peer)
            received = time.monotonic()
            assert got == it, got
            await follower.catch_up()
            caught = time.monotonic()
            _, key, value = item(base + it * BATCH, "c")
            hits = await self.store.asearch(("users",), query=value["text"], limit=10)
            done = time.monotonic()
            missed += key not in {hit.key for hit in hits}
            self.peer.send(it)
            for name, seconds in (("pipe", received - acked), ("catch_up", caught - received),
                                  ("search", done - caught), ("total", done - acked)):
                out[name].append(seconds)
        return {**out, "missed": missed, "followed": follower.followed,
                "reloads": follower.reloads}

    async def do_searches(self, scoped: int, whole: int, offset: int) -> dict[str, list[float]]:
        return {"scoped": await search_times(self.store, scoped, True, offset),
                "whole": await search_times(self.store, whole, False, offset)}

    async def do_write_start(self, tasks: int, rows: int) -> None:
        """Part 3, process A: ``tasks`` writers overwrite random items until stopped."""
        self.stop.clear()
        self.written = 0

        async def writer(w: int) -> None:
            rng = random.Random(w)
            while not self.stop.is_set():
                row = rng.randrange(rows)
                await self.store.aput(*item(row, n=-row))
                self.written += 1

        self.background = [asyncio.create_task(writer(w)) for w in range(tasks)]
        self.writing_since = time.monotonic()

    async def do_write_stop(self) -> float:
        self.stop.set()
        await asyncio.gather(*self.background)
        self.background = []
        return self.written / (time.monotonic() - self.writing_since)


def worker_main(rank: int, cmd: Connection, peer: Connection | None, rows: int, src: str,
                profile: str | None) -> None:
    """A pool worker's life; it exits even when a store's threads would hold it open."""
    sys.path.insert(0, src)
    code = 1
    try:
        asyncio.run(Worker(rank, cmd, peer, rows, profile).serve())
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class Pool:
    """Spawned worker processes, each driven over its own pipe; 0 and 1 share a peer pipe."""

    def __init__(self, count: int, rows: int, src: str, profile: str | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        peer_a, peer_b = ctx.Pipe()
        peers: list[Connection | None] = [peer_a, peer_b] + [None] * (count - 2)
        try:
            for rank in range(count):
                here, there = ctx.Pipe()
                proc = ctx.Process(target=worker_main, name=f"memlane-bench-{rank}",
                                   args=(rank, there, peers[rank], rows, src, profile),
                                   daemon=True)
                proc.start()
                there.close()
                self.conns.append(here)
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise
        finally:
            peer_a.close()
            peer_b.close()

    def send(self, rank: int, name: str, **kwargs: Any) -> None:
        self.conns[rank].send((name, kwargs))

    def recv(self, rank: int, timeout: float = 300.0) -> Any:
        deadline = time.monotonic() + timeout
        while not self.conns[rank].poll(0.2):
            if not self.procs[rank].is_alive():
                raise RuntimeError(f"worker {rank} died (exit code {self.procs[rank].exitcode})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {rank}: no answer within {timeout} s")
        status, value = self.conns[rank].recv()
        if status == "error":
            raise RuntimeError(f"worker {rank} failed:\n{value}")
        return value

    def call(self, rank: int, name: str, **kwargs: Any) -> Any:
        self.send(rank, name, **kwargs)
        return self.recv(rank)

    def call_all(self, ranks: Sequence[int], name: str,
                 kwargs: dict[str, Any] | Callable[[int], dict[str, Any]] | None = None
                 ) -> list[Any]:
        """Send to every rank first, then collect: the workers run at once."""
        for rank in ranks:
            self.send(rank, name, **(kwargs(rank) if callable(kwargs) else kwargs or {}))
        return [self.recv(rank) for rank in ranks]

    def close(self) -> None:
        """Ask every worker to exit; terminate (then kill) whichever does not."""
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("exit", {}))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()


# ---- parts 1-3 ---------------------------------------------------------------------------------


def measure_writes(pool: Pool, folder: Path, per_task: int, reps: int) -> dict[str, Any]:
    """Part 1: aggregate puts/s of 1,000 writer tasks over 1, 2, 4 processes; raw ceiling."""
    runs: dict[str, list[float]] = {}
    batches: dict[str, list[float]] = {}
    late: list[float] = []
    for rep in range(reps):
        for indexed in (False, True):
            for procs in (1, 2, 4):
                label = f"{procs}-{int(indexed)}"
                path = folder / f"writes-{label}-{rep}.db"
                ranks = list(range(procs))
                opening = {"path": str(path), "indexed": indexed}
                pool.call(0, "open", **opening)  # creates the file; then the others at once
                pool.call_all(ranks[1:], "open", opening)
                pool.call_all(ranks, "warm", lambda r: {"prefix": f"w{r}-"})
                pool.call_all(ranks, "prepare_writes",
                              {"procs": procs, "per_task": per_task, "prefix": f"p{rep}-"})
                start_at = time.monotonic() + 0.1  # the common start instant
                done = pool.call_all(ranks, "run_writes", {"start_at": start_at})
                pool.call_all(ranks, "close")
                remove_db(path)
                wall = max(d["end"] for d in done) - start_at
                runs.setdefault(label, []).append(sum(d["puts"] for d in done) / wall)
                batches.setdefault(label, []).append(
                    sum(d["puts"] for d in done) / max(1, sum(d["batches"] for d in done)))
                late.extend(d["late"] for d in done)
                print(f"  writes rep {rep + 1}: {procs} proc(s), "
                      f"{'index' if indexed else 'no index'}: {runs[label][-1]:,.0f} puts/s",
                      flush=True)
            raw_path = folder / f"raw-{int(indexed)}-{rep}.db"
            rate = pool.call(0, "raw", path=str(raw_path), rows=WRITERS * per_task,
                             per_task=per_task, indexed=indexed)
            remove_db(raw_path)
            runs.setdefault(f"raw-{int(indexed)}", []).append(rate)
    return {"median": {k: statistics.median(v) for k, v in runs.items()}, "runs": runs,
            "puts_per_batch": {k: statistics.median(v) for k, v in batches.items()},
            "max_start_late_ms": max(late) * 1e3}


def measure_catchup(pool: Pool, fill_n: int, iterations: int) -> dict[str, Any]:
    """Part 2 on the open shared file: A (worker 0) writes, B (worker 1) follows."""
    warm = 10
    pool.send(0, "catchup_writer", iterations=iterations + warm, base=fill_n)
    pool.send(1, "catchup_reader", iterations=iterations + warm, base=fill_n)
    pool.recv(0)
    got = pool.recv(1)
    out: dict[str, Any] = {"missed": got["missed"], "followed": got["followed"],
                           "reloads": got["reloads"], "iterations": iterations}
    for name in ("pipe", "catch_up", "search", "total"):
        values = got[name][warm:]
        out[name] = {"p50_ms": pct(values, 50) * 1e3, "p99_ms": pct(values, 99) * 1e3}
    return out


def measure_busy_search(pool: Pool, fill_n: int, scoped: int, whole: int, rounds: int
                        ) -> dict[str, Any]:
    """Part 3: B's search latencies idle, beside C's 1,000 writers on another file (what
    two busy processes on the machine cost, with nothing to follow), and beside A's on
    B's own file (that plus following A)."""
    times: dict[str, dict[str, list[float]]] = {
        state: {"scoped": [], "whole": []} for state in ("idle", "elsewhere", "busy")}
    rates: dict[str, list[float]] = {"elsewhere": [], "busy": []}
    pool.call(1, "searches", scoped=50, whole=10, offset=0)  # warm-up
    for r in range(rounds):
        for state, writer in (("idle", None), ("elsewhere", 2), ("busy", 0)):
            if writer is not None:
                pool.call(writer, "write_start", tasks=WRITERS, rows=fill_n)
            try:
                if writer is not None:
                    time.sleep(0.3)  # the writers reach full speed
                for kind, got in pool.call(1, "searches", scoped=scoped, whole=whole,
                                           offset=r * 1000).items():
                    times[state][kind].extend(got)
            finally:
                if writer is not None:
                    rates[state].append(pool.call(writer, "write_stop"))
    out: dict[str, Any] = {"writes_per_s": statistics.median(rates["busy"]),
                           "elsewhere_writes_per_s": statistics.median(rates["elsewhere"])}
    for kind in ("scoped", "whole"):
        out[kind] = {"samples": len(times["idle"][kind])}
        for state in ("idle", "elsewhere", "busy"):
            out[kind][f"{state}_p50_ms"] = pct(times[state][kind], 50) * 1e3
            out[kind][f"{state}_p99_ms"] = pct(times[state][kind], 99) * 1e3
    return out


# ---- part 4: one process, this code against the code before ----------------------------------


async def single_child(args: argparse.Namespace, build: bool) -> dict[str, Any]:
    """One process alone: puts/s (1,000 writers) without and with an index, search p50
    (on ``--search-file``, built first when ``build``: by each side's first child)."""
    import memlane
    from memlane import SqliteStore

    check_origin(memlane.__file__, args.src)
    work = Path(args.work)
    vectors = lookup_vectors(rows_needed(args.fill, 0, args.per_task))
    out: dict[str, Any] = {"file": memlane.__file__}
    for indexed in (False, True):
        path = work / f"single-{os.getpid()}-{int(indexed)}.db"
        index = vectors.index_config() if indexed else None
        async with SqliteStore.open(path, index=index) as store:
            await run_writers(store, [[item(j, "w")] for j in range(WARMUP_PUTS)])
            tasks = task_items(0, 1, args.per_task, "p")
            t0 = time.perf_counter()
            await run_writers(store, tasks)
            out[f"puts_{'index' if indexed else 'plain'}"] = (
                sum(len(t) for t in tasks) / (time.perf_counter() - t0))
        remove_db(path)
    search_file = Path(args.search_file)
    if build:
        async with SqliteStore.open(search_file, index=vectors.index_config()) as store:
            await fill(store, args.fill)
    async with SqliteStore.open(search_file, index=vectors.index_config()) as store:
        await search_times(store, 100, True)
        await search_times(store, 10, False)
        out["scoped_p50_ms"] = pct(await search_times(store, args.scoped, True, 100), 50) * 1e3
        out["whole_p50_ms"] = pct(await search_times(store, args.whole, False, 100), 50) * 1e3
    return out


def check_origin(module_file: str, src: str) -> None:
    if not Path(module_file).resolve().is_relative_to(Path(src).resolve()):
        raise RuntimeError(f"imported memlane from {module_file}, not from {src}")


def ensure_before(src: Path, rev: str) -> None:
    if (src / "memlane").is_dir():
        return
    tree = src.parent
    print(f"  creating the worktree {tree} at {rev} ...", flush=True)
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True, text=True)


def measure_before_after(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Part 4: children alternate before, after, before, after ...; medians per side."""
    sides = {"before": Path(args.before_src).resolve(), "after": Path(args.src).resolve()}
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for side, src in sides.items():
            env = {**os.environ, "PYTHONPATH": str(src)}
            command = [sys.executable, __file__, "--child", "single", "--src", str(src),
                       "--work", str(folder), "--search-file", str(folder / f"{side}.db"),
                       "--per-task", str(args.per_task), "--fill", str(args.fill),
                       "--scoped", str(args.scoped), "--whole", str(args.whole)]
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  timeout=600)  # run() kills the child on timeout or error
            if done.returncode:
                raise RuntimeError(f"{side} child failed ({done.returncode}):\n{done.stderr}")
            runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
            got = runs[side][-1]
            print(f"  round {r + 1}, {side}: {got['puts_plain']:,.0f} / {got['puts_index']:,.0f}"
                  f" puts/s, search p50 {got['scoped_p50_ms']:.3f} / "
                  f"{got['whole_p50_ms']:.2f} ms", flush=True)
    fields = ("puts_plain", "puts_index", "scoped_p50_ms", "whole_p50_ms")
    return {side: {f: statistics.median(run[f] for run in rs) for f in fields}
            | {"runs": rs} for side, rs in runs.items()}


# ---- report -------------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def revision(src: Path) -> str:
    """The commit of ``src`` and a hash of its Python files (uncommitted edits included)."""
    import hashlib

    digest = hashlib.sha1()
    for path in sorted(src.rglob("*.py")):
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "?", ""
    return f"{head}{' + uncommitted changes' if dirty else ''}, src {digest.hexdigest()[:8]}"


def x(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def goal(ok: bool) -> str:
    return "yes" if ok else "**no**"


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    info, w = results["info"], results["writes"]["median"]
    print()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; Python {info['python']}, SQLite "
          f"{info['sqlite']}, faiss-cpu {info['faiss']}, numpy {info['numpy']}, memlane "
          f"{info['memlane']} at {results['after_rev']} ({args.src}); before: {args.before_rev}"
          f" ({results['before_rev']}, {args.before_src})")
    print(f"Index: {DIMS} dims, lookup embedding (seeded random unit vectors named by the "
          f"text, as writes.py/search.py), exact FAISS flat; {args.reps} rep(s) per cell, "
          f"median; {WRITERS:,} writer tasks in all, {args.per_task} sequential aput each "
          f"({WRITERS * args.per_task:,} puts), ~70-byte values in {USERS:,} namespaces.")
    print()
    print("### 1. Aggregate puts/s, one store file")
    print()
    print("| processes | tasks each | no index puts/s | vs 1 proc | vs raw | with index puts/s "
          "| vs 1 proc | vs raw |")
    print("|---|---|---|---|---|---|---|---|")
    raw0, raw1 = w["raw-0"], w["raw-1"]
    for procs in (1, 2, 4):
        plain, indexed = w[f"{procs}-0"], w[f"{procs}-1"]
        print(f"| {procs} | {WRITERS // procs} | {plain:,.0f} | {x(plain, w['1-0'])} | "
              f"{x(plain, raw0)} | {indexed:,.0f} | {x(indexed, w['1-1'])} | "
              f"{x(indexed, raw1)} |")
    print(f"| raw sqlite3 executemany, 1 proc | {RAW_BATCH:,} rows/txn | {raw0:,.0f} |  |  | "
          f"{raw1:,.0f} (with vector blobs + FAISS add) |  |  |")
    per_batch = results["writes"]["puts_per_batch"]
    print()
    print("puts per committed batch (all processes): " + ", ".join(
        f"{p} proc {'index' if i else 'no index'} {per_batch[f'{p}-{i}']:.0f}"
        for i in (0, 1) for p in (1, 2, 4)) +
        f"; latest process start after the common instant: "
        f"{results['writes']['max_start_late_ms']:.2f} ms")
    print("per rep: " + "; ".join(f"{k}: {', '.join(f'{v:,.0f}' for v in vs)}"
                                  for k, vs in results["writes"]["runs"].items()))
    c = results["catchup"]
    print()
    print(f"### 2. Catch-up: A commits {BATCH} puts, B follows ({args.fill:,}-item indexed "
          f"file, {c['iterations']} iterations)")
    print()
    print("| measure | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, label in (("total", "A's ack -> B's search returned the new item"),
                        ("pipe", "  of which: pipe, A's ack -> B received"),
                        ("catch_up", f"  of which: B's catch_up() of {BATCH} changes"),
                        ("search", "  of which: B's asearch(('users',), limit=10)")):
        print(f"| {label} | {c[name]['p50_ms']:.3f} | {c[name]['p99_ms']:.3f} |")
    print()
    print(f"new item missed by B's search: {c['missed']}; B's follower applied "
          f"{c['followed']} foreign changes, {c['reloads']} full reloads")
    s = results["busy"]
    print()
    print(f"### 3. Search in B: idle; beside C's {WRITERS:,} writers on another file "
          f"(C: {s['elsewhere_writes_per_s']:,.0f} puts/s); beside A's on B's file "
          f"(A: {s['writes_per_s']:,.0f} puts/s)")
    print()
    print("| query | searches | idle p50 ms | idle p99 ms | C busy p99 ms | C/idle p99 | "
          "A busy p50 ms | A busy p99 ms | A/idle p99 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, label in (("scoped", "one user's namespace (~100 items)"),
                        ("whole", f"whole store ({args.fill:,} items)")):
        k = s[kind]
        print(f"| {label} | {k['samples']} | {k['idle_p50_ms']:.3f} | {k['idle_p99_ms']:.3f} | "
              f"{k['elsewhere_p99_ms']:.3f} | {x(k['elsewhere_p99_ms'], k['idle_p99_ms'])} | "
              f"{k['busy_p50_ms']:.3f} | {k['busy_p99_ms']:.3f} | "
              f"{x(k['busy_p99_ms'], k['idle_p99_ms'])} |")
    print()
    print("C's writers cost B what two busy processes on the machine cost (B has nothing to "
          "follow); A's cost that plus following A's commits.")
    ba = results.get("before_after")
    if ba:
        b, a = ba["before"], ba["after"]
        print()
        print(f"### 4. One process alone: before ({args.before_rev}) vs after, "
              f"{args.rounds} interleaved rounds, medians")
        print()
        print("| measure | before | after | after/before |")
        print("|---|---|---|---|")
        for field, label, fmt in (
            ("puts_plain", f"puts/s, {WRITERS:,} writers, no index", "{:,.0f}"),
            ("puts_index", f"puts/s, {WRITERS:,} writers, with index", "{:,.0f}"),
            ("scoped_p50_ms", f"search p50 ms, one user's namespace ({args.fill:,} items)",
             "{:.3f}"),
            ("whole_p50_ms", f"search p50 ms, whole store ({args.fill:,} items)", "{:.3f}"),
        ):
            print(f"| {label} | {fmt.format(b[field])} | {fmt.format(a[field])} | "
                  f"{x(a[field], b[field])} |")
        print()
        print("per round (before | after): " + "; ".join(
            f"{f}: {', '.join(f'{r[f]:.4g}' for r in b['runs'])} | "
            f"{', '.join(f'{r[f]:.4g}' for r in a['runs'])}"
            for f in ("puts_plain", "puts_index", "scoped_p50_ms", "whole_p50_ms")))
    print()
    print("### Goals")
    print()
    print("| goal | measured | met? |")
    print("|---|---|---|")
    for i, kind in ((0, "no index"), (1, "with index")):
        r = w[f"2-{i}"] / w[f"1-{i}"]
        print(f"| 2 processes >= 1.5x one process ({kind}) | {r:.2f}x | {goal(r >= 1.5)} |")
    for i, kind in ((0, "no index"), (1, "with index")):
        best = max(w[f"{p}-{i}"] / w[f"raw-{i}"] for p in (1, 2, 4))
        print(f"| {WRITERS:,}-writer aggregate >= 0.7x raw ({kind}, best of 1/2/4 procs) | "
              f"{best:.2f}x | {goal(best >= 0.7)} |")
    p50 = c["catch_up"]["p50_ms"]
    print(f"| catch-up of {BATCH} changes at {args.fill:,} items < 1 ms p50 | {p50:.3f} ms | "
          f"{goal(p50 < 1)} |")
    for kind, label in (("scoped", "one user's namespace"), ("whole", "whole store")):
        r = s[kind]["busy_p99_ms"] / s[kind]["idle_p99_ms"]
        machine = s[kind]["elsewhere_p99_ms"] / s[kind]["idle_p99_ms"]
        print(f"| search p99 busy/idle <= 1.5x ({label}) | {r:.2f}x (writers on another "
              f"file: {machine:.2f}x) | {goal(r <= 1.5)} |")
    sys.stdout.flush()


# ---- main ----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--src", default=str(REPO / "src"), help="the memlane to measure")
    parser.add_argument("--before-rev", default=BEFORE_REV)
    parser.add_argument("--before-src", default="/work/wt/before/src",
                        help="the code before (a worktree is created there if missing)")
    parser.add_argument("--skip-before-after", action="store_true")
    parser.add_argument("--per-task", type=int, default=None, help="puts per writer task")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--fill", type=int, default=None, help="items of the shared file")
    parser.add_argument("--iterations", type=int, default=None, help="catch-up iterations")
    parser.add_argument("--scoped", type=int, default=None, help="scoped searches per run")
    parser.add_argument("--whole", type=int, default=None, help="whole-store searches per run")
    parser.add_argument("--rounds", type=int, default=None, help="before/after rounds")
    parser.add_argument("--profile", default=None, help="cProfile the write runs into DIR")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--search-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    defaults = {"per_task": (10, 40), "reps": (1, 5), "fill": (20_000, 100_000),
                "iterations": (60, 200), "scoped": (200, 400), "whole": (60, 150),
                "rounds": (1, 3)}
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the clean-ups: workers ended, temp dir removed


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    if args.child == "single":
        sys.path.insert(0, args.src)
        build = not Path(args.search_file).exists()
        print(json.dumps(asyncio.run(single_child(args, build))))
        return
    started = time.perf_counter()
    results: dict[str, Any] = {"after_rev": revision(Path(args.src)),
                               "load_before": os.getloadavg()}
    rows = rows_needed(args.fill, args.iterations, args.per_task)
    with tempfile.TemporaryDirectory(prefix="memlane-processes-") as tmp:
        folder = Path(tmp)
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
        pool = Pool(4, rows, args.src, args.profile)
        try:
            results["info"] = pool.call(0, "info")
            print(f"  memlane from {results['info']['file']}", flush=True)
            results["writes"] = measure_writes(pool, folder, args.per_task, args.reps)
            shared = folder / "shared.db"
            t0 = time.perf_counter()
            pool.call(0, "open", path=str(shared), indexed=True)
            pool.call(0, "fill", count=args.fill)
            print(f"  filled {args.fill:,} items in {time.perf_counter() - t0:.1f} s", flush=True)
            pool.call(1, "open", path=str(shared), indexed=True)
            pool.call(2, "open", path=str(folder / "elsewhere.db"), indexed=True)
            pool.call(2, "fill", count=args.fill)
            results["catchup"] = measure_catchup(pool, args.fill, args.iterations)
            print(f"  catch-up: p50 {results['catchup']['catch_up']['p50_ms']:.3f} ms",
                  flush=True)
            results["busy"] = measure_busy_search(pool, args.fill, args.scoped, args.whole,
                                                  2 if not args.quick else 1)
            pool.call_all([0, 1, 2], "close")
        finally:
            pool.close()
        if not args.skip_before_after:
            ensure_before(Path(args.before_src), args.before_rev)
            results["before_rev"] = revision(Path(args.before_src))
            results["before_after"] = measure_before_after(args, folder)
        else:
            results["before_rev"] = "not run"
    results["load_after"] = os.getloadavg()
    now = revision(Path(args.src))
    if now.split(", src ")[1] != results["after_rev"].split(", src ")[1]:
        results["after_rev"] += f" (its files changed during the run: now {now})"
    report(results, args)
    load = ", ".join(f"{v:.2f}" for v in results["load_before"])
    after = ", ".join(f"{v:.2f}" for v in results["load_after"])
    print(f"\n(run took {time.perf_counter() - started:.0f} s; load average {load} before, "
          f"{after} after: other work on the machine skews every figure)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
