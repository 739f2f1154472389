"""The ``memlane`` command run as a real child process: --version, exit codes, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

import memlane

SRC = str(Path(memlane.__file__).resolve().parent.parent)
STAMP = "2024-01-01T00:00:00+00:00"


def cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "memlane.cli", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def write_jsonl(path: Path, n: int) -> None:
    with path.open("wb") as out:
        for i in range(n):
            out.write(orjson.dumps({"namespace": ["users", f"u{i % 100}"], "key": f"k{i}",
                                    "value": {"text": f"item {i}"}, "created_at": STAMP,
                                    "updated_at": STAMP}) + b"\n")


def test_version() -> None:
    out, _ = cli("--version").communicate(timeout=30)
    assert out.strip() == f"memlane {memlane.__version__}"


def test_import_of_nothing_exits_non_zero(tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"{broken\n[1]\n")
    proc = cli("import", str(source), str(tmp_path / "m.db"), "-q")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "nothing was imported" in err


def test_ctrl_c_during_migrate_is_one_line_and_130(tmp_path: Path) -> None:
    source, target = tmp_path / "big.jsonl", tmp_path / "m.db"
    write_jsonl(source, 100_000)  # ~6 s to migrate with hashing:64 here
    proc = cli("migrate", str(source), str(target), "--embed", "hashing:64", "-q")
    deadline = time.monotonic() + 30
    wal = Path(f"{target}-wal")
    while not (wal.exists() and wal.stat().st_size > 0):  # it has started writing
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["memlane migrate: interrupted (run it again to finish)"]


def test_inspect_reads_a_file_a_store_has_open_and_refuses_others(tmp_path: Path) -> None:
    import json

    from memlane import HashingEmbeddings, SqliteStore

    db = tmp_path / "m.db"
    with SqliteStore.open_sync(db, index={"dims": 8, "embed": HashingEmbeddings(8)}) as store:
        store.put(("users", "u1"), "a", {"text": "x"})
        store.put(("users", "u2"), "b", {"text": "y"}, ttl=60)
        before = db.read_bytes()
        proc = cli("inspect", str(db), "--json")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        info = json.loads(out)
        assert (info["items"], info["namespaces"], info["items_with_ttl"]) == (2, 2, 1)
        assert info["dims"] == 8 and info["schema_version"] >= 1
        assert info["last_change"] >= 1 and info["change_log_rows"] >= 1
        assert db.read_bytes() == before  # nothing written
        store.put(("users", "u3"), "c", {"text": "z"})  # the store still writes
    other = tmp_path / "other.txt"
    other.write_text("not sqlite at all, just text" * 10)
    proc = cli("inspect", str(other))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1
