"""Query search at scale, for every store: exact pages against a numpy brute force at any
scope, filter selectivity and offset; searches racing writes and deletes; scoped searches
touch only their namespace; the approximate index never returns a deleted item."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import StoreFactory

from memlane import InMemoryStore, SqliteStore
from memlane.store.base import BaseStore
from memlane.store.types import PutOp

DIMS = 16
N_ITEMS = 3000  # above the coalescer's inline limit: whole-store searches use its threads
USERS = 30
TAGS = 10


def unit_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


RNG = np.random.default_rng(12)
TEXT_VECTORS: dict[str, np.ndarray] = {
    f"text-{i}": v for i, v in enumerate(unit_rows(RNG.standard_normal((N_ITEMS + 500, DIMS))))
}
QUERIES = [f"text-{i}" for i in range(N_ITEMS, N_ITEMS + 500)]


def lookup_embed(texts: Sequence[str]) -> list[np.ndarray]:
    """Vectors known to the test, so the reference can score them."""
    return [TEXT_VECTORS[t] for t in texts]


INDEX = {"dims": DIMS, "embed": lookup_embed, "fields": ["text"]}


def item(i: int) -> tuple[tuple[str, ...], str, dict[str, Any]]:
    namespace = ("users", f"u{i % USERS}") + (("notes",) if i % 3 == 0 else ())
    return namespace, f"k{i}", {"text": f"text-{i}", "tag": i % TAGS, "n": i}


def reference(
    prefix: tuple[str, ...], tags: set[int] | None, query: str, offset: int, limit: int
) -> list[tuple[str, float]]:
    q = TEXT_VECTORS[query].astype(np.float64)
    scored = []
    for i in range(N_ITEMS):
        namespace, key, value = item(i)
        if namespace[: len(prefix)] != prefix or (tags is not None and value["tag"] not in tags):
            continue
        scored.append((key, float(TEXT_VECTORS[value["text"]].astype(np.float64) @ q)))
    scored.sort(key=lambda t: -t[1])
    return scored[offset : offset + limit]


@contextlib.contextmanager
def filled(backend: str, tmp_path: Path) -> Iterator[BaseStore]:
    if backend == "memory":
        store = InMemoryStore(index=INDEX)
        store.batch([_put(i) for i in range(N_ITEMS)])
        yield store
        store.close()
        return
    with SqliteStore.open_sync(tmp_path / "scale.db", index=INDEX) as sqlite_store:
        sqlite_store.batch([_put(i) for i in range(N_ITEMS)])
        yield sqlite_store


def _put(i: int) -> PutOp:
    namespace, key, value = item(i)
    return PutOp(namespace, key, value)


PREFIXES = [(), ("users",), ("users", "u3"), ("users", "u3", "notes"), ("users", "u7")]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_pages_are_exact_at_any_scope_selectivity_and_offset(
    backend: str, tmp_path: Path
) -> None:
    with filled(backend, tmp_path) as store:

        @settings(
            max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
        )
        @given(
            prefix=st.sampled_from(PREFIXES),
            tags=st.one_of(st.none(), st.sets(st.integers(0, TAGS - 1), min_size=1)),
            query=st.sampled_from(QUERIES),
            offset=st.integers(0, 40),
            limit=st.integers(1, 30),
        )
        def check(
            prefix: tuple[str, ...], tags: set[int] | None, query: str, offset: int, limit: int
        ) -> None:
            flt = None if tags is None else {"tag": {"$in": sorted(tags)}}
            got = store.search(prefix, query=query, filter=flt, offset=offset, limit=limit)
            want = reference(prefix, tags, query, offset, limit)
            assert [r.key for r in got] == [key for key, _ in want]
            assert [r.score for r in got] == pytest.approx([s for _, s in want], abs=1e-6)

        check()


@pytest.mark.anyio
async def test_searches_racing_puts_and_deletes_stay_consistent(
    make_store: StoreFactory,
) -> None:
    """Many searchers beside writers: no item is returned after its delete was
    acknowledged, pages are sorted and unique, every score belongs to a version of the
    item that was written, and nothing crashes."""
    store = await make_store(index=INDEX)
    await store.abatch([_put(i) for i in range(N_ITEMS)])
    deleted: set[str] = set()
    versions: dict[str, set[str]] = {f"k{i}": {f"text-{i}"} for i in range(N_ITEMS)}
    finished = anyio.Event()
    failed = anyio.Event()  # a searcher raised: writers must not wait for it
    progress = [anyio.Event()]  # set (and replaced) after every search, and on failure
    searches = 0

    async def keep_pace_with_searchers(i: int) -> None:
        """Writers wait (by condition, not time) so that searches truly interleave."""
        while searches < i // 10 and not failed.is_set():
            await progress[0].wait()

    async def deleter() -> None:
        for i in range(0, 600, 2):
            await keep_pace_with_searchers(i)
            namespace, key, _ = item(i)
            await store.adelete(namespace, key)
            deleted.add(key)

    async def rewriter() -> None:
        for i in range(1, 600, 2):
            await keep_pace_with_searchers(i)
            namespace, key, value = item(i)
            new_text = f"text-{(i * 7919) % N_ITEMS}"
            versions[key].add(new_text)
            await store.aput(namespace, key, {**value, "text": new_text})

    async def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            await search_until_finished(rng)
        except BaseException:
            failed.set()
            progress[0].set()
            raise

    async def search_until_finished(rng: np.random.Generator) -> None:
        nonlocal searches
        while not finished.is_set():
            gone = set(deleted)
            query = QUERIES[int(rng.integers(len(QUERIES)))]
            prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
            results = await store.asearch(prefix, query=query, limit=15)
            searches += 1
            progress[0].set()
            progress[0] = anyio.Event()
            keys = [r.key for r in results]
            assert len(keys) == len(set(keys))
            assert gone.isdisjoint(keys), gone.intersection(keys)
            scores = [r.score for r in results]
            assert scores == sorted(scores, reverse=True)
            q = TEXT_VECTORS[query].astype(np.float64)
            for r in results:
                options = [float(TEXT_VECTORS[t].astype(np.float64) @ q) for t in versions[r.key]]
                assert any(abs(r.score - s) < 1e-6 for s in options)  # type: ignore[operator]

    async with anyio.create_task_group() as tg:
        for seed in range(8):
            tg.start_soon(searcher, seed)
        async with anyio.create_task_group() as writers:
            writers.start_soon(deleter)
            writers.start_soon(rewriter)
        finished.set()
    assert searches >= 59
    for i in range(0, 600, 2):
        namespace, key, _ = item(i)
        assert await store.aget(namespace, key) is None


def test_a_namespace_search_touches_only_that_namespace() -> None:
    store = InMemoryStore(index=INDEX)
    store.batch([_put(i) for i in range(N_ITEMS)])
    # what a real query search hands the vector index: that namespace's items, no others
    handed: list[object] = []
    search = store._vectors_search

    def spy(job):  # type: ignore[no-untyped-def]
        handed.append(job.candidates)
        return search(job)

    store._vectors_search = spy  # type: ignore[method-assign]
    hits = store.search(("users", "u3"), query=QUERIES[0], limit=5)
    assert hits and {hit.namespace[:2] for hit in hits} == {("users", "u3")}
    (candidates,) = handed
    ids = {store._namespaces[hit.namespace][hit.key].item_id for hit in hits}
    own = {r.item_id for b in store._buckets(("users", "u3")) for r in b.values()}
    assert candidates is not None and set(candidates.tolist()) == own and ids <= own
    buckets = list(store._buckets(("users", "u3")))
    assert sum(len(b) for b in buckets) == len(
        [i for i in range(N_ITEMS) if i % USERS == 3]
    )
    assert len(list(store._buckets(("users", "u3", "notes")))) == 1
    assert list(store._buckets(("users", "nobody"))) == []
    before = len(list(store._buckets(("users",))))
    # deleting every item of a namespace removes it from the prefix index
    store.batch([_delete(i) for i in range(N_ITEMS) if i % USERS == 3])
    assert list(store._buckets(("users", "u3", "notes"))) == []
    assert list(store._buckets(("users", "u3"))) == []
    assert len(list(store._buckets(("users",)))) == before - 1
    store.close()


@pytest.mark.anyio
async def test_the_approximate_index_never_returns_deleted_items() -> None:
    index = {**INDEX, "ann": {"kind": "hnsw", "min_items": 100, "ef_search": 64}}
    store = InMemoryStore(index=index)
    await store.abatch([_put(i) for i in range(N_ITEMS)])
    vectors = store._vectors
    assert vectors is not None
    vectors.build_ann()
    await store.abatch([_delete(i) for i in range(0, N_ITEMS, 2)])  # tombstones in the graph
    found = 0
    for query in QUERIES[:50]:
        results = await store.asearch((), query=query, limit=10)
        keys = [r.key for r in results]
        assert all(int(key[1:]) % 2 for key in keys), keys
        exact = [key for key, _ in reference((), None, query, 0, 40) if int(key[1:]) % 2][:10]
        found += len(set(keys) & set(exact))
    assert found >= 0.9 * 500  # recall@10 on 16-dim random vectors
    store.close()


def _delete(i: int) -> PutOp:
    namespace, key, _ = item(i)
    return PutOp(namespace, key, None)


@pytest.mark.anyio
@pytest.mark.parametrize("outside", [("users-x",), ("usersz", "a"), ("a",), ("user",)])
async def test_a_prefix_over_almost_every_item_still_excludes_the_rest(
    make_store: StoreFactory, outside: tuple[str, ...]
) -> None:
    """A prefix that covers the whole store searches it whole; one item beside it (even a
    namespace that sorts right next to the prefix) turns that shortcut off."""
    store = await make_store(index=INDEX)
    await store.abatch([_put(i) for i in range(200)])
    query = QUERIES[0]
    everything = await store.asearch((), query=query, limit=10)
    assert await store.asearch(("users",), query=query, limit=10) == everything
    best = everything[0]
    await store.aput(outside, "stranger", {"text": f"text-{best.key[1:]}"})
    page = await store.asearch(("users",), query=query, limit=10)
    assert page == everything, "the item outside the prefix is never returned"
    assert (await store.asearch((), query=query, limit=10))[0].namespace in (outside,
                                                                             best.namespace)
