"""A child process holding a SqliteStore, driven by the tests through its stdin and stdout.

``python process_child.py PATH OPTIONS_JSON``; then one JSON command per line on stdin,
each answered by one JSON line ``{"id": ..., "result": ...}`` (or ``"error"``) on stdout.
Commands run concurrently (each in its own task). ``churn`` streams ``{"ack": ...}`` lines
as its writes are acknowledged, until the process is killed or told to ``stop``.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

import orjson

from memlane import HashingEmbeddings, IndexConfig, PutOp, SqliteStore

DIMS = 64


def text_of(key: str, version: int) -> str:
    """A text only this key at this version has (so a query for it finds it first)."""
    return f"{key} v{version} {key}-{version}"


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(message).decode() + "\n")
    sys.stdout.flush()


class Child:
    def __init__(self, store: SqliteStore, name: str) -> None:
        self.store = store
        self.name = name
        self.stopping = asyncio.Event()
        self.violations: list[str] = []

    # ---- single operations ---------------------------------------------------------------

    async def put(
        self, ns: list[str], key: str, version: int, ttl: float | None = None
    ) -> None:
        value = {"text": text_of(key, version), "v": version}
        await self.store.aput(tuple(ns), key, value, ttl=ttl)

    async def delete(self, ns: list[str], key: str) -> None:
        await self.store.adelete(tuple(ns), key)

    async def get(self, ns: list[str], key: str) -> Any:
        item = await self.store.aget(tuple(ns), key)
        return None if item is None else item.value

    async def query(self, ns: list[str], text: str, limit: int = 1) -> list[Any]:
        """A vector query scoped to ``ns``: [[namespace, key, version, score], ...]."""
        hits = await self.store.asearch(tuple(ns), query=text, limit=limit)
        return [[list(h.namespace), h.key, h.value.get("v"), h.score] for h in hits]

    async def scoped_keys(self, ns: list[str], limit: int = 10_000) -> list[str]:
        """Every key a vector query scoped to ``ns`` returns (the scope map and the index)."""
        hits = await self.store.asearch(tuple(ns), query="anything", limit=limit)
        return sorted(h.key for h in hits)

    async def namespaces(self, prefix: list[str]) -> list[list[str]]:
        found = await self.store.alist_namespaces(prefix=tuple(prefix), limit=10_000)
        return [list(ns) for ns in found]

    async def sweep_count(self) -> int:
        return self.store._writer.sweeps

    async def pid(self) -> int:
        return os.getpid()

    async def check_all(self, expected: dict[str, Any]) -> list[str]:
        """Compare this process's answers with ``expected`` ({"ns/key": version or None}):
        gets, and a scoped vector query for the item's text must find it, with score 1."""
        problems = []
        for path, version in expected.items():
            ns, key = path.split("/")
            value = await self.get([ns], key)
            if version is None:
                if value is not None:
                    problems.append(f"{path}: deleted, but get gave {value}")
                hits = await self.query([ns], text_of(key, 0), limit=50)
                if any(hit[1] == key for hit in hits):
                    problems.append(f"{path}: deleted, but a query still finds it")
                continue
            if value is None or value["v"] != version:
                problems.append(f"{path}: get gave {value}, expected version {version}")
            hits = await self.query([ns], text_of(key, version))
            if not hits or hits[0][1] != key or hits[0][2] != version or hits[0][3] < 0.999:
                problems.append(f"{path}: the query for version {version} found {hits}")
        return problems

    # ---- workloads -----------------------------------------------------------------------

    async def workload(self, tasks: int, ops: int, shared: int, seed: int) -> dict[str, Any]:
        """``tasks`` tasks, each ``ops`` writes, overwrites and deletes of its own keys (in
        namespaces shared with the other processes), plus writes to ``shared`` keys that
        every process writes, and searches meanwhile. Returns the final version of each
        own key (None: deleted)."""
        final: dict[str, Any] = {}
        rng = random.Random(seed)

        async def one(task: int) -> None:
            mine = [f"{self.name}-t{task}-k{n}" for n in range(4)]
            for op in range(ops):
                key = rng.choice(mine)
                ns = f"n{sum(map(ord, key)) % 5}"
                roll = rng.random()
                if roll < 0.15:
                    await self.delete([ns], key)
                    final[f"{ns}/{key}"] = None
                elif roll < 0.25 and shared:
                    skey = f"shared{rng.randrange(shared)}"
                    await self.put(["shared"], skey, op)
                elif roll < 0.4:
                    await self.store.asearch((ns,), query=text_of(key, op), limit=3)
                else:
                    await self.put([ns], key, op)
                    final[f"{ns}/{key}"] = op

        await asyncio.gather(*(one(task) for task in range(tasks)))
        return final

    async def churn(self, groups: int, check: bool) -> None:
        """Write groups of four keys (one ``abatch`` each, one version for all four) until
        stopped, streaming each acknowledged (group, version); with ``check``, read other
        processes' groups and record any read that sees a group half written."""
        version = 0

        async def writer(group: int) -> None:
            nonlocal version
            while not self.stopping.is_set():
                version += 1
                mine = version
                ops = [
                    PutOp(("churn", f"{self.name}-g{group}"), f"k{n}",
                          {"text": text_of(f"k{n}", mine), "v": mine, "g": group})
                    for n in range(4)
                ]
                await self.store.abatch(ops)
                emit({"ack": [f"{self.name}-g{group}", mine]})

        async def checker() -> None:
            while not self.stopping.is_set():
                spaces = await self.store.alist_namespaces(prefix=("churn",), limit=1000)
                for ns in spaces[:20]:
                    items = await self.store.asearch(ns, limit=10)  # one statement: one snapshot
                    versions = {item.value["v"] for item in items}
                    if len(items) != 4 or len(versions) != 1:
                        self.violations.append(f"{ns}: {len(items)} items, versions {versions}")
                    hits = await self.store.asearch(ns, query="k0", limit=10)
                    if len(hits) != 4:
                        self.violations.append(f"{ns}: a query found {len(hits)} of 4")
                await asyncio.sleep(0)

        runners = [writer(group) for group in range(groups)]
        if check:
            runners.append(checker())
        await asyncio.gather(*runners)

    async def stop(self) -> list[str]:
        self.stopping.set()
        return self.violations


async def main() -> None:
    path, raw_options = sys.argv[1], orjson.loads(sys.argv[2])
    name = raw_options.pop("name", f"p{os.getpid()}")
    if raw_options.pop("indexed", True):
        raw_options["index"] = IndexConfig(
            dims=DIMS, embed=HashingEmbeddings(dims=DIMS), fields=["text"]
        )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with SqliteStore.open(path, **raw_options) as store:
        child = Child(store, name)
        emit({"ready": os.getpid()})
        running: set[asyncio.Task[None]] = set()

        async def run(command: dict[str, Any]) -> None:
            try:
                result = await getattr(child, command.pop("cmd"))(**command.pop("args", {}))
            except Exception as exc:
                emit({"id": command["id"], "error": repr(exc)})
            else:
                emit({"id": command["id"], "result": result})

        while line := await reader.readline():
            command = orjson.loads(line)
            if command.get("cmd") == "exit":
                break
            task = asyncio.create_task(run(command))
            running.add(task)
            task.add_done_callback(running.discard)
        child.stopping.set()
        await asyncio.gather(*running, return_exceptions=True)
    emit({"closed": True})


if __name__ == "__main__":
    asyncio.run(main())
