"""The local PostgreSQL the tests and ``memlane postgres start`` run: a real server that
never runs as root, keeps commits across its own crash, and never outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

from memlane.store.postgres.local_server import (  # noqa: E402
    LocalPostgres,
    LocalPostgresError,
)

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split(") ", 1)[1][0] != "Z"


def _wait_until(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


@pytest.fixture
def server() -> Iterator[LocalPostgres]:
    local = LocalPostgres(durable=False)
    try:
        yield local.start()
    finally:
        local.stop()


def test_a_server_runs_unprivileged_with_pgvector_and_leaves_nothing(
    server: LocalPostgres,
) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        (distance,) = conn.execute("SELECT '[1,2]'::vector <-> '[1,2]'::vector").fetchone()
        (superuser,) = conn.execute("SHOW is_superuser").fetchone()
    assert distance == 0.0 and superuser == "on"  # postgres, the cluster's own superuser
    pid = _postmaster_pid(server.data_dir)
    owner = os.stat(f"/proc/{pid}").st_uid
    assert owner != 0, "PostgreSQL must not run as root"
    directory = server.directory
    assert directory is not None
    server.stop()
    assert not _alive(pid) and not directory.exists()


def test_commits_survive_a_crash_of_the_server(server: LocalPostgres) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1), (2)")
    server.kill()
    assert not server.running
    server.start()
    with psycopg.connect(server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (2,)


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from memlane.store.postgres.local_server import LocalPostgres\n"
        "server = LocalPostgres(sys.argv[1], durable=False).start()\n"
        "print(server.dsn, flush=True)\n"
        "time.sleep(600)\n"
    )
    directory = Path("/tmp") / f"memlane-test-{os.getpid()}-{time.monotonic_ns()}"
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(directory)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert parent.stdout is not None
        dsn = parent.stdout.readline().strip()
        conn = psycopg.connect(dsn, autocommit=True)
        try:
            backend = conn.info.backend_pid  # a backend serving a client when the parent dies
            pid = _postmaster_pid(directory / "data")
            parent.send_signal(signal.SIGKILL)
            parent.wait()
            _wait_until(lambda: not _alive(pid), "the server to die with its parent")
            _wait_until(lambda: not _alive(backend), "its backends to exit")
        finally:
            conn.close()
    finally:
        parent.kill()
        parent.wait()
        subprocess.run(["rm", "-rf", str(directory)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the folder to another user")
def test_a_folder_the_server_user_cannot_enter_is_refused_clearly(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(LocalPostgresError, match=r"cannot enter .*closed"):
        LocalPostgres(closed / "cluster").start()


def test_memlane_postgres_start_serves_until_sigterm_and_keeps_its_data() -> None:
    directory = Path("/tmp") / f"memlane-test-cli-{os.getpid()}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "memlane.cli", "postgres", "start", str(directory)]
    try:
        for round_ in range(2):
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
            )
            try:
                assert process.stdout is not None
                dsn = process.stdout.readline().strip()
                assert dsn.startswith("postgresql://postgres@127.0.0.1:"), dsn
                with psycopg.connect(dsn, autocommit=True) as conn:
                    if round_ == 0:
                        conn.execute("CREATE TABLE notes (text text)")
                        conn.execute("INSERT INTO notes VALUES ('kept')")
                    else:  # the second start serves the first one's data
                        assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]
                pid = _postmaster_pid(directory / "data")
                process.send_signal(signal.SIGTERM)
                assert process.wait(30) == 0
                assert not _alive(pid)
            finally:
                process.kill()
                process.wait()
    finally:
        subprocess.run(["rm", "-rf", str(directory)], check=False)
