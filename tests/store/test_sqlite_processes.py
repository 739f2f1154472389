"""Several processes on one SqliteStore file: real child processes (``process_child.py``),
writing, deleting and searching at once, killed with SIGKILL, sweeping, migrating."""

from __future__ import annotations

import itertools
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from memlane.store.sqlite import lease

CHILD = Path(__file__).with_name("process_child.py")


class Child:
    """One child process; ``call`` sends a command and waits for its answer."""

    def __init__(self, path: Path, **options: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), orjson.dumps(options).decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._ids = itertools.count()
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.acks: queue.Queue[tuple[str, int]] = queue.Queue()
        self._ready: queue.Queue[int] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid = self._ready.get(timeout=60)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = orjson.loads(line)
            if "ack" in message:
                self.acks.put((message["ack"][0], message["ack"][1]))
            elif "ready" in message:
                self._ready.put(message["ready"])
            elif "id" in message:
                with self._lock:
                    self._answers.setdefault(message["id"], queue.Queue()).put(message)
        self._ready.put(-1)  # exited before it was ready

    def send(self, cmd: str, **args: Any) -> int:
        call_id = next(self._ids)
        with self._lock:
            self._answers.setdefault(call_id, queue.Queue())
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"id": call_id, "cmd": cmd, "args": args}) + b"\n")
        self.proc.stdin.flush()
        return call_id

    def answer(self, call_id: int, timeout: float = 120) -> Any:
        with self._lock:
            box = self._answers[call_id]
        message = box.get(timeout=timeout)
        if "error" in message:
            raise AssertionError(f"child {self.pid} failed: {message['error']}")
        return message["result"]

    def call(self, cmd: str, timeout: float = 120, **args: Any) -> Any:
        return self.answer(self.send(cmd, **args), timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(b'{"cmd": "exit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.proc.wait()
        assert self.proc.returncode == 0, f"child {self.pid} exited with {self.proc.returncode}"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Every child a test starts; killed at the end whatever happened."""
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.proc.kill()
        child.proc.wait()


def start(children: list[Child], path: Path, count: int, **options: Any) -> list[Child]:
    new = [Child(path, name=f"c{len(children) + n}", **options) for n in range(count)]
    children.extend(new)
    return new


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def test_every_process_ends_with_every_acknowledged_write(
    tmp_path: Path, children: list[Child]
) -> None:
    """Four processes x 100 tasks write, overwrite and delete (some keys shared by all) and
    search at once; then every process answers gets and vector queries with the final
    state of every key, and all agree on the shared ones."""
    path = tmp_path / "shared.db"
    procs = start(children, path, 4)
    calls = [
        child.send("workload", tasks=100, ops=12, shared=20, seed=n)
        for n, child in enumerate(procs)
    ]
    expected: dict[str, Any] = {}
    for child, call in zip(procs, calls, strict=True):
        expected.update(child.answer(call, timeout=300))
    assert len(expected) > 1000
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT key, value FROM items WHERE namespace = 'shared'")
        shared = {key: orjson.loads(value)["v"] for key, value in rows}
    assert shared
    expected.update({f"shared/{key}": version for key, version in shared.items()})
    for child in procs:
        problems = child.call("check_all", expected=expected, timeout=300)
        assert not problems, f"process {child.pid}: {problems[:5]} ({len(problems)} in all)"
        for ns in ["n0", "n1", "n2", "n3", "n4", "shared"]:
            live = sorted(p.split("/")[1] for p, v in expected.items() if p.startswith(f"{ns}/")
                          and v is not None)
            assert child.call("scoped_keys", ns=[ns]) == live
    assert integrity(path) == "ok"


def test_a_write_acknowledged_in_one_process_is_seen_by_the_next_read_in_another(
    tmp_path: Path, children: list[Child]
) -> None:
    """A acknowledges, then B's very next query, scoped query, get and list_namespaces see
    it; the same for a delete."""
    path = tmp_path / "ryw.db"
    a, b = start(children, path, 2)
    for n in range(25):
        ns, key = ["users", f"u{n}"], f"memory{n}"
        a.call("put", ns=ns, key=key, version=n)
        text = f"{key} v{n} {key}-{n}"  # process_child.text_of
        hits = b.call("query", ns=["users"], text=text)
        assert hits and hits[0][1] == key and hits[0][3] > 0.999, (n, hits)
        assert b.call("query", ns=ns, text=text)[0][1] == key
        assert b.call("get", ns=ns, key=key) == {"text": text, "v": n}
        assert ns in b.call("namespaces", prefix=["users"])
        a.call("delete", ns=ns, key=key)
        assert all(hit[1] != key for hit in b.call("query", ns=["users"], text=text, limit=50))
        assert b.call("query", ns=ns, text=text) == []
        assert b.call("get", ns=ns, key=key) is None
        assert ns not in b.call("namespaces", prefix=["users"])
        a, b = b, a  # both directions


def test_sigkill_of_a_writing_process_loses_nothing_acknowledged(
    tmp_path: Path, children: list[Child]
) -> None:
    """Two processes write and check groups of four keys; a third writes too and is killed
    at random moments, 12 times. Nothing any process acknowledged is lost, no process ever
    reads a group half written, and the file passes integrity_check."""
    path = tmp_path / "kill.db"
    survivors = start(children, path, 2)
    churns = [child.send("churn", groups=8, check=True) for child in survivors]
    acked: dict[str, int] = {}
    rng = random.Random(15)

    def drain(child: Child) -> int:
        got = 0
        while True:
            try:
                group, version = child.acks.get_nowait()
            except queue.Empty:
                return got
            acked[group] = max(acked.get(group, 0), version)
            got += 1

    for _ in range(12):
        victim = start(children, path, 1)[0]
        victim.send("churn", groups=8, check=False)
        deadline = time.monotonic() + 60
        wanted = rng.randrange(1, 200)
        seen = 0
        while seen < wanted and time.monotonic() < deadline:  # wait for some acks
            seen += drain(victim)
            time.sleep(0.001)
        victim.kill()
        drain(victim)
        assert seen, "the victim acknowledged nothing within a minute"
    for child, call in zip(survivors, churns, strict=True):
        violations = child.call("stop")
        child.answer(call)
        drain(child)
        assert not violations, violations[:5]
    reader = start(children, path, 1)[0]
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT namespace, value FROM items WHERE namespace LIKE 'churn.%'")
        stored: dict[str, set[int]] = {}
        for namespace, value in rows:
            stored.setdefault(namespace.split(".")[1], set()).add(orjson.loads(value)["v"])
    for group, version in acked.items():
        assert group in stored, f"{group}: acknowledged up to {version}, nothing stored"
        (kept,) = stored[group]  # never half written
        assert kept >= version, f"{group}: acknowledged {version}, stored {kept}"
        hits = reader.call("query", ns=["churn", group], text=f"k0 v{kept} k0-{kept}")
        assert hits[0][1] == "k0" and hits[0][2] == kept
    assert integrity(path) == "ok"


def test_one_sweeper_at_a_time_and_another_takes_over_when_it_dies(
    tmp_path: Path, children: list[Child]
) -> None:
    path = tmp_path / "ttl.db"
    ttl = {"sweep_interval_minutes": 0.004}  # every 0.24 s
    procs = start(children, path, 3, ttl=ttl)

    def owner() -> int | None:
        with sqlite3.connect(path) as conn:
            held = lease.holder(conn)
        return None if held is None else int(held[0].split(":")[0])

    def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    wait_for(lambda: owner() in {c.pid for c in procs}, "a sweeper")
    first = owner()
    holder = next(c for c in procs if c.pid == first)
    others = [c for c in procs if c is not holder]
    before = [c.call("sweep_count") for c in others]
    start_count = holder.call("sweep_count")
    wait_for(lambda: holder.call("sweep_count") >= start_count + 3, "three sweeps")
    assert owner() == first
    assert [c.call("sweep_count") for c in others] == before, "a second process swept"
    # an item that expires is swept by the new sweeper once the old one is killed
    holder.kill()
    others[0].call("put", ns=["t"], key="soon", version=1, ttl=0.001)

    def stored() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM items WHERE key = 'soon'").fetchone()[0])

    assert stored() == 1
    wait_for(lambda: owner() in {c.pid for c in others}, "a new sweeper", timeout=60)
    wait_for(lambda: stored() == 0, "the sweep")
    new = next(c for c in others if c.pid == owner())
    idle = next(c for c in others if c is not new)
    idle_count = idle.call("sweep_count")
    new_count = new.call("sweep_count")
    wait_for(lambda: new.call("sweep_count") >= new_count + 3, "three more sweeps")
    assert idle.call("sweep_count") == idle_count, "two processes swept at once"
    new.close()  # a clean close gives the lease up at once
    wait_for(lambda: owner() == idle.pid, "the lease handed over")


def test_processes_opening_an_old_file_at_once_migrate_it_once(
    tmp_path: Path, children: list[Child]
) -> None:
    path = tmp_path / "old.db"
    first = start(children, path, 1)[0]
    first.call("put", ns=["a"], key="k", version=1)
    first.close()
    with sqlite3.connect(path) as conn:  # back to a schema 2 file
        conn.execute("DROP TABLE changes")
        conn.execute("DELETE FROM memlane_meta WHERE name = 'next_item_id'")
        conn.execute("DELETE FROM memlane_migrations WHERE version = 3")
    opening = [
        subprocess.Popen(
            [sys.executable, str(CHILD), str(path), orjson.dumps({"name": f"m{n}"}).decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for n in range(4)
    ]
    try:
        for proc in opening:
            assert proc.stdout is not None and proc.stdin is not None
            assert b"ready" in proc.stdout.readline()
            proc.stdin.write(b'{"cmd": "exit"}\n')
            proc.stdin.flush()
            assert proc.wait(timeout=60) == 0
    finally:
        for proc in opening:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM memlane_migrations")]
        (next_id,) = conn.execute(
            "SELECT value FROM memlane_meta WHERE name = 'next_item_id'"
        ).fetchone()
    assert versions == [1, 2, 3]
    assert int(next_id) == 2
    newer = start(children, path, 1)[0]
    assert newer.call("get", ns=["a"], key="k")["v"] == 1


def test_an_older_memlane_refuses_a_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE memlane_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at INTEGER NOT NULL)"
        )
        conn.execute("INSERT INTO memlane_migrations VALUES (99, 'from the future', 0)")
    result = subprocess.run(
        [sys.executable, str(CHILD), str(path), "{}"], capture_output=True, timeout=60,
        input=b"",
    )
    assert result.returncode != 0
    assert b"newer memlane" in result.stderr
    assert os.path.exists(path)
