"""examples/multiprocess_server.py: two worker processes serve one agent app on one store
file; a memory saved through either worker is recalled through the other at once."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "examples" / "multiprocess_server.py"


def _own_group_dying_with_us() -> None:
    """In the server's process: a group of its own (its workers join it: killed together
    below), and SIGTERM should this test's process die first (Linux's PR_SET_PDEATHSIG)."""
    os.setsid()
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def test_two_workers_share_one_store(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--workers", "2", "--port", "0",
         "--db", str(tmp_path / "memories.db")],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_own_group_dying_with_us,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving on"), line
        port = int(line.split(":")[1].split()[0])
        url = f"http://127.0.0.1:{port}/chat"
        workers: set[int] = set()
        with httpx.Client(timeout=60) as http:
            for n in range(40):
                user = f"u{n % 4}"
                fact = f"I like genre{n} music"
                # a new connection per request: the kernel picks a worker each time
                saved = http.post(url, json={"user_id": user, "message": f"remember {fact}"},
                                  headers={"Connection": "close"}).json()
                assert saved["reply"] == f"Saved: {fact}"
                recalled = http.post(url, json={"user_id": user, "message": f"genre{n} music"},
                                     headers={"Connection": "close"}).json()
                assert fact in recalled["reply"], (n, saved, recalled)
                workers.update({saved["worker"], recalled["worker"]})
        assert len(workers) == 2, "both workers served requests"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # the server and every worker left
        server.wait()
