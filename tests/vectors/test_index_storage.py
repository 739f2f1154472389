"""The chunked, versioned storage under VectorIndex: random write sequences (with tiny
chunks, compactions and bulk loads) stay exact against a numpy reference."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.vectors.test_vector_index import DIMS, reference, unit

from memlane.vectors import VectorIndex
from memlane.vectors.directory import Directory


def check_against(
    index: VectorIndex, items: dict[int, np.ndarray], rng: np.random.Generator
) -> None:
    live = {i: v for i, v in items.items() if len(v)}
    assert index.item_count == len(live)
    assert index.vector_count == sum(len(v) for v in live.values())
    q = unit(rng.standard_normal((1, DIMS)))[0]
    k = int(rng.integers(1, 40))
    assert index.search(q, k) == reference(items, q, k)
    cand = rng.choice(400, size=int(rng.integers(0, 400)), replace=False)
    assert index.search(q, k, cand) == reference(items, q, k, cand)
    assert index.search_batch(np.stack([q, q]), k) == [reference(items, q, k)] * 2


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunk_rows=st.sampled_from([1, 3, 16, 64]))
def test_random_writes_compactions_and_loads_stay_exact(seed: int, chunk_rows: int) -> None:
    rng = np.random.default_rng(seed)
    index = VectorIndex(DIMS, chunk_rows=chunk_rows, background=False)
    items: dict[int, np.ndarray] = {}
    for step in range(80):
        op = rng.integers(0, 5)
        if op <= 1:
            updates = [
                (int(rng.integers(0, 300)), unit(rng.standard_normal((int(k), DIMS))))
                for k in rng.integers(0, 4, size=int(rng.integers(1, 8)))
            ]
            index.upsert(updates)
            items.update(updates)
        elif op == 2:
            gone = rng.integers(0, 300, size=4).tolist()
            index.remove(gone)
            for item_id in gone:
                items.pop(item_id, None)
        elif op == 3:
            index.compact()
        else:
            fresh = [i for i in range(300, 400) if i not in items][: int(rng.integers(0, 20))]
            counts = rng.integers(0, 4, size=len(fresh))
            vectors = unit(rng.standard_normal((int(counts.sum()), DIMS)))
            index.load(np.asarray(fresh, dtype=np.int64), counts, vectors)
            blocks = np.split(vectors, np.cumsum(counts)[:-1]) if len(fresh) else []
            items.update(zip(fresh, blocks, strict=True))
        if step % 10 == 0:
            check_against(index, items, rng)
    check_against(index, items, rng)
    for item_id, vecs in items.items():
        assert np.array_equal(index.vectors_of(item_id), vecs.reshape(-1, DIMS))


def test_compaction_reclaims_dead_rows_and_keeps_results() -> None:
    rng = np.random.default_rng(1)
    index = VectorIndex(DIMS, chunk_rows=100, background=False)
    items = {i: unit(rng.standard_normal((1, DIMS))) for i in range(1000)}
    index.upsert(list(items.items()))
    index.remove(range(0, 1000, 3))
    for i in range(1, 1000, 3):
        items[i] = unit(rng.standard_normal((2, DIMS)))
        index.upsert([(i, items[i])])
    for i in range(0, 1000, 3):
        del items[i]
    rows_before = index.stats()["rows"]
    reclaimed = index.compact()
    assert reclaimed > 0 and index.stats()["rows"] == rows_before - reclaimed
    check_against(index, items, rng)


def test_items_rewritten_over_and_over_do_not_pile_up_dead_rows() -> None:
    """A small store whose items are rewritten again and again: the mostly dead tail chunk
    is sealed and compacted, so a whole-store search scans about the live rows only."""
    rng = np.random.default_rng(5)
    index = VectorIndex(DIMS, background=False)  # default (large) chunks
    items: dict[int, np.ndarray] = {}
    for _ in range(20):
        batch = {i: unit(rng.standard_normal((1, DIMS))) for i in range(1_000)}
        index.upsert(list(batch.items()))
        items.update(batch)
        while index.compact():
            pass
    assert index.search_cost(None) <= 1_000 + 4_096  # not 20,000
    check_against(index, items, rng)


def test_background_compaction_runs_on_its_own() -> None:
    rng = np.random.default_rng(2)
    index = VectorIndex(DIMS, chunk_rows=64)
    items = {i: unit(rng.standard_normal((1, DIMS))) for i in range(2000)}
    index.upsert(list(items.items()))
    for _ in range(3):  # overwrite everything: old chunks become all dead
        for start in range(0, 2000, 100):
            batch = [(i, unit(rng.standard_normal((1, DIMS)))) for i in range(start, start + 100)]
            index.upsert(batch)
            items.update(batch)
    deadline = time.monotonic() + 30
    while index._compacting or index.stats()["rows"] >= 2 * len(items):
        # nobody calls compact(): the background thread must do it by itself
        assert time.monotonic() < deadline, "no background compaction happened"
        time.sleep(0.01)
    assert index.compactions >= 1
    check_against(index, items, rng)


def test_load_validates_and_replaces() -> None:
    index = VectorIndex(DIMS)
    vecs = unit(np.random.default_rng(3).standard_normal((5, DIMS)))
    with pytest.raises(ValueError, match="shape"):
        index.load(np.arange(2), np.array([2, 2]), vecs)
    with pytest.raises(ValueError, match="unique"):
        index.load(np.array([1, 1]), np.array([2, 3]), vecs)
    with pytest.raises(ValueError, match="NaN"):
        bad = vecs.copy()
        bad[1, 1] = np.nan
        index.load(np.arange(2), np.array([2, 3]), bad)
    index.load(np.array([4, 9]), np.array([2, 3]), vecs)
    index.load(np.array([9]), np.array([1]), vecs[:1])  # replaces item 9
    assert index.item_count == 2 and index.vector_count == 3
    assert np.array_equal(index.vectors_of(9), vecs[:1])


def test_directory_keeps_dense_ids_in_an_array_and_far_ones_in_a_dict() -> None:
    directory = Directory()
    directory.set_many(np.array([10, 30, 20], dtype=np.int64), np.array([1, 3, 2], dtype=np.int64))
    far = 2**62
    directory.set_many(
        np.array([30, 40, far], dtype=np.int64), np.array([33, 44, 5], dtype=np.int64)
    )
    directory.drop_many(np.array([10, 99, 10, 2**63 - 1], dtype=np.int64))
    ids = np.array([10, 20, 30, 40, 50, far], dtype=np.int64)
    assert directory.get_many(ids).tolist() == [-1, 2, 33, 44, -1, 5]
    assert len(directory) == 4 and 40 in directory and 10 not in directory and far in directory
    assert directory.get(far) == 5 and directory.get(far + 1) == -1
    directory.set_many(np.array([10], dtype=np.int64), np.array([7], dtype=np.int64))
    assert directory.get(10) == 7 and len(directory) == 5
    directory.drop_many(np.array([far], dtype=np.int64))
    assert far not in directory and len(directory) == 4


def test_directory_never_finds_negative_ids_and_refuses_to_store_them() -> None:
    directory = Directory()
    directory.set_many(np.arange(10, dtype=np.int64), np.arange(100, 110, dtype=np.int64))
    probe = np.array([-1, -11, 3, -(2**62)], dtype=np.int64)
    assert directory.get_many(probe).tolist() == [-1, -1, 103, -1]
    assert directory.get(-1) == -1 and -1 not in directory
    directory.drop_many(np.array([-1, 9], dtype=np.int64))
    assert len(directory) == 9 and directory.get(8) == 108
    with pytest.raises(ValueError, match="-5"):
        directory.set_many(np.array([-5], dtype=np.int64), np.array([1], dtype=np.int64))


def test_directory_stays_an_array_under_churn_and_beside_an_outlier() -> None:
    """Ids keep growing while the live count stays put (rewrites, expiry): the array
    covers them up to ``slots_per_item`` ids an item; one far id goes alone to the dict."""
    directory = Directory(slots_per_item=48)
    live = 10_000
    directory.set_many(np.arange(live, dtype=np.int64), np.arange(live, dtype=np.int64))
    for step in range(1, 40):  # 2,000 items leave, 2,000 new ids arrive
        gone = np.arange((step - 1) * 2_000, step * 2_000, dtype=np.int64)
        directory.drop_many(gone)
        fresh = np.arange(live + (step - 1) * 2_000, live + step * 2_000, dtype=np.int64)
        directory.set_many(fresh, fresh)
    assert len(directory) == live and not directory._sparse
    ids = np.arange(200_000, 205_000, dtype=np.int64)
    directory.set_many(np.append(ids, 10**12), np.append(ids, 7))
    assert list(directory._sparse) == [10**12]
    assert directory.get_many(np.array([200_000, 10**12], dtype=np.int64)).tolist() == [200_000, 7]


def test_a_search_with_negative_candidate_ids_finds_only_real_items() -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng.standard_normal((20, DIMS)))
    index = VectorIndex(DIMS)
    index.upsert([(i, vectors[i][None, :]) for i in range(20)])
    hits = index.search(vectors[19], 3, np.array([-1, -2, 4, 5], dtype=np.int64))
    assert sorted(item for item, _ in hits) == [4, 5]
    assert index.search(vectors[19], 3, np.array([-1], dtype=np.int64)) == []


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.booleans(),
            st.lists(st.integers(0, 300_000), min_size=1, max_size=20, unique=True),
        ),
        max_size=30,
    )
)
def test_directory_matches_a_dict(steps: list[tuple[bool, list[int]]]) -> None:
    """Growth, ids moving from the dict into the grown array, drops: like a plain dict."""
    directory, model = Directory(), {}
    for n, (drop, ids) in enumerate(steps):
        arr = np.array(ids, dtype=np.int64)
        if drop:
            directory.drop_many(arr)
            for item in ids:
                model.pop(item, None)
        else:
            starts = np.arange(n * 100, n * 100 + len(ids), dtype=np.int64)
            directory.set_many(arr, starts)
            model.update(zip(ids, starts.tolist(), strict=True))
        assert len(directory) == len(model)
        probe = np.array(sorted({*ids, *model, 0, 299_999, -1}), dtype=np.int64)
        assert directory.get_many(probe).tolist() == [model.get(i, -1) for i in probe.tolist()]


def test_a_write_sealing_the_tail_while_compaction_starts_loses_nothing() -> None:
    """A writer that appends to the tail chunk and seals it (mostly dead) right as a
    compaction picks its victims: the rows it appended must survive the compaction."""
    import threading

    rng = np.random.default_rng(9)
    index = VectorIndex(DIMS, chunk_rows=8192, background=False)
    items: dict[int, np.ndarray] = {i: unit(rng.standard_normal((1, DIMS))) for i in range(4096)}
    index.upsert(list(items.items()))
    index.remove(range(2000))
    for i in range(2000):
        items[i] = np.empty((0, DIMS), dtype=np.float32)
    rewrites = {i: unit(rng.standard_normal((1, DIMS))) for i in range(2000, 2300)}
    removals = {i: np.empty((0, DIMS), dtype=np.float32) for i in range(2300, 2500)}
    writer = threading.Thread(target=index.upsert, args=([*rewrites.items(), *removals.items()],))
    choose = index._victims

    def victims_while_writing(snap: object) -> list[int]:
        if not writer.is_alive() and writer.ident is None:
            writer.start()
            writer.join(timeout=1)  # blocked on the writers' mutex, unless compaction races
        return choose(snap)  # type: ignore[arg-type]

    index._victims = victims_while_writing  # type: ignore[method-assign]
    index.compact()
    writer.join()
    index._victims = choose  # type: ignore[method-assign]
    while index.compact():
        pass
    items.update(rewrites)
    items.update(removals)
    live = {i: v for i, v in items.items() if len(v)}
    for i, vectors in live.items():
        assert np.array_equal(index.vectors_of(i), vectors)
    check_against(index, items, rng)


def test_a_write_that_cannot_open_a_chunk_leaves_the_index_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed write (a new chunk is a big allocation: think MemoryError) changes nothing,
    so it can be retried: rows of items it rewrites stay alive, counts stay right, and
    later writes still work (a half-opened chunk used to break every later write)."""
    import memlane.vectors.index as index_module

    rng = np.random.default_rng(7)
    index = VectorIndex(DIMS, chunk_rows=4, background=False)
    items = {i: unit(rng.standard_normal((2, DIMS))) for i in range(6)}  # two rows each
    index.upsert(list(items.items()))
    real_chunk, opened = index_module.Chunk, []

    def chunk_failing_second(capacity: int, dims: int) -> object:
        opened.append(capacity)
        if len(opened) == 2:
            raise MemoryError("no room for another chunk")
        return real_chunk(capacity, dims)

    monkeypatch.setattr(index_module, "Chunk", chunk_failing_second)
    rewrite = [(i, unit(rng.standard_normal((2, DIMS)))) for i in range(5)]  # needs 3 chunks
    with pytest.raises(MemoryError):
        index.upsert(rewrite)
    check_against(index, items, rng)  # as before the failed write
    monkeypatch.setattr(index_module, "Chunk", real_chunk)
    index.upsert(rewrite)  # the retry
    items.update(rewrite)
    check_against(index, items, rng)
    assert index.stats()["live_rows"] == 12
