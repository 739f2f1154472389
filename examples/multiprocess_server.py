"""An agent server with several worker processes sharing one SqliteStore file.

Each worker is its own process with its own event loop, SqliteStore (writer, readers and
in-memory vector index) and agent, all on one store file: what ``uvicorn --workers N``
gives a FastAPI app. A memory saved through one worker is recalled through any other by
the very next request (docs/deployment.md). The parent opens the listening socket and the
kernel hands each connection to one worker.

    python examples/multiprocess_server.py --workers 2 --port 8000 --db memories.db
    curl -s localhost:8000/chat -d '{"user_id": "u1", "message": "remember I like jazz"}'
    curl -s localhost:8000/chat -d '{"user_id": "u1", "message": "what music do I like?"}'

Offline, a ScriptedModel plays the tool calls a real model would make (``remember ...``
saves, anything else recalls). Stop it with Ctrl-C or SIGTERM: the workers close their
stores (committing what is queued) and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import sys
import uuid
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import orjson

from memlane import HashingEmbeddings, IndexConfig, SqliteStore
from memlane.agents import ScriptedModel, ToolRuntime, create_agent, tool


@dataclass
class Context:
    user_id: str


@tool
async def remember(fact: str, runtime: ToolRuntime[Context]) -> str:
    """Save a fact about the user."""
    assert runtime.store is not None
    namespace = ("users", runtime.context.user_id, "memories")
    await runtime.store.aput(namespace, uuid.uuid4().hex, {"text": fact})
    return f"Saved: {fact}"


@tool
async def recall(query: str, runtime: ToolRuntime[Context]) -> str:
    """Find what is known about the user that relates to the query."""
    assert runtime.store is not None
    namespace = ("users", runtime.context.user_id, "memories")
    found = await runtime.store.asearch(namespace, query=query, limit=3)
    return "; ".join(item.value["text"] for item in found) or "nothing yet"


def first_turn(messages: list[Any]) -> list[dict[str, Any]]:
    """What a real model would call for the user's message."""
    text = str(messages[-1].content)
    if text.lower().startswith("remember "):
        return [{"name": "remember", "args": {"fact": text[len("remember "):]}}]
    return [{"name": "recall", "args": {"query": text}}]


def last_turn(messages: list[Any]) -> str:
    return str(messages[-1].content)


def index_config() -> IndexConfig:
    """Hashing embeddings keep the example offline; a real server gives a real embedder."""
    return IndexConfig(dims=256, embed=HashingEmbeddings(dims=256), fields=("text",))


async def serve(host: str, port: int, db: Path, ready: Queue[int]) -> None:
    async with SqliteStore.open(db, index=index_config()) as store:
        agent = create_agent(
            model=ScriptedModel([first_turn, last_turn], record=False),
            tools=[remember, recall],
            store=store,
            context_schema=Context,
        )

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    request = await read_request(reader)
                    if request is None:
                        break
                    result = await agent.ainvoke(
                        {"messages": [{"role": "user", "content": request["message"]}]},
                        context=Context(user_id=request["user_id"]),
                    )
                    body = orjson.dumps(
                        {"reply": result["messages"][-1].content, "worker": os.getpid()}
                    )
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        # Each worker listens on the port itself (SO_REUSEPORT): the kernel spreads the
        # connections over the workers.
        server = await asyncio.start_server(handle, host, port, reuse_port=True)
        ready.put(os.getpid())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with server:
            await stop.wait()


async def read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """One HTTP/1.1 request with a JSON body (enough HTTP for the example)."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    if not head:
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    parsed: dict[str, Any] = orjson.loads(await reader.readexactly(length))
    return parsed


def worker(host: str, port: int, db: Path, ready: Queue[int]) -> None:
    die_with_parent()
    asyncio.run(serve(host, port, db, ready))


def die_with_parent() -> None:
    """A worker whose server is killed (even by SIGKILL) gets SIGTERM and closes its store
    (Linux: ``PR_SET_PDEATHSIG``); elsewhere it stops at the server's SIGTERM only."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the server died before the call: nobody would signal us
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--db", type=Path, default=Path("memories.db"))
    args = parser.parse_args()
    # Bound, never listening: it holds the port (``--port 0`` picks one) for the workers.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((args.host, args.port))
    port = holder.getsockname()[1]
    spawn = multiprocessing.get_context("spawn")
    ready: Queue[int] = spawn.Queue()
    workers = [
        spawn.Process(target=worker, args=(args.host, port, args.db, ready))
        for _ in range(args.workers)
    ]
    for process in workers:
        process.start()
    for _ in workers:
        ready.get(timeout=120)
    print(f"serving on {args.host}:{port} with {args.workers} workers", flush=True)
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping and all(process.is_alive() for process in workers):
        wait([process.sentinel for process in workers], timeout=0.5)
    for process in workers:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in workers:
        process.join(60)
        if process.is_alive():
            process.kill()
    holder.close()


if __name__ == "__main__":
    main()
