"""VectorIndex: exact max-pooled search against a numpy reference, writes, and threads."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import memlane.vectors.index as index_module
from memlane.vectors import VectorIndex
from memlane.vectors.index import _max_norm

DIMS = 16


def unit(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return (m / np.where(norms == 0, 1, norms)).astype(np.float32)


def reference(
    items: dict[int, np.ndarray], q: np.ndarray, k: int, candidates: np.ndarray | None = None
) -> list[tuple[int, float]]:
    """Brute force: best float64 dot per item rounded to float32, ties by smaller id."""
    allowed = None if candidates is None else set(candidates.tolist())
    scored = []
    for item_id, vecs in items.items():
        if len(vecs) == 0 or (allowed is not None and item_id not in allowed):
            continue
        s = (vecs.astype(np.float64) @ q.astype(np.float64)).astype(np.float32).max()
        scored.append((item_id, float(s)))
    scored.sort(key=lambda t: (-t[1], t[0]))
    return scored[:k]


def random_items(
    rng: np.random.Generator, n: int, max_vecs: int, ties: bool
) -> dict[int, np.ndarray]:
    """Items with 0..max_vecs vectors; ``ties`` draws from {-1, 0, 1} so scores often tie."""
    items = {}
    ids = rng.choice(10 * n + 10, size=n, replace=False)
    for item_id in ids.tolist():
        k = int(rng.integers(0, max_vecs + 1))
        raw = rng.integers(-1, 2, (k, DIMS)) if ties else rng.standard_normal((k, DIMS))
        items[item_id] = unit(raw)
    return items


@pytest.fixture(params=["numpy-small-sets", "faiss-selector"])
def numpy_max_rows(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run candidate searches through both code paths."""
    saved = index_module.NUMPY_MAX_ROWS
    index_module.NUMPY_MAX_ROWS = saved if request.param == "numpy-small-sets" else 0
    yield
    index_module.NUMPY_MAX_ROWS = saved


@pytest.mark.usefixtures("numpy_max_rows")
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 120),
    max_vecs=st.integers(0, 4),
    ties=st.booleans(),
    k=st.integers(1, 140),
    selectivity=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]),
)
def test_exact_against_reference(
    seed: int, n: int, max_vecs: int, ties: bool, k: int, selectivity: float
) -> None:
    rng = np.random.default_rng(seed)
    items = random_items(rng, n, max_vecs, ties)
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    raw = rng.integers(-1, 2, DIMS) if ties else rng.standard_normal(DIMS)
    q = unit(raw[None, :] if raw.any() else np.ones((1, DIMS)))[0]
    assert index.search(q, k) == reference(items, q, k)
    # Candidates: known ids at the given selectivity, plus ids that have no vectors.
    known = np.array(sorted(items), dtype=np.int64)
    chosen = known[rng.random(len(known)) < selectivity]
    extra = [chosen[:3], rng.integers(10**6, 10**7, 3)]  # repeated ids, ids without vectors
    candidates = np.concatenate([chosen, *extra]).astype(np.int64)
    rng.shuffle(candidates)
    assert index.search(q, k, candidates) == reference(items, q, k, candidates)


@pytest.mark.usefixtures("numpy_max_rows")
def test_large_index_with_candidate_subsets() -> None:
    rng = np.random.default_rng(7)
    items = {i: unit(rng.standard_normal((1 + i % 3, DIMS))) for i in range(3000)}
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    for selectivity in (0.001, 0.02, 0.3, 0.9):
        candidates = np.flatnonzero(rng.random(3000) < selectivity)
        for k in (1, 10, 57):
            q = unit(rng.standard_normal((1, DIMS)))[0]
            assert index.search(q, k, candidates) == reference(items, q, k, candidates)
            assert index.search(q, k) == reference(items, q, k)


@pytest.mark.usefixtures("numpy_max_rows")
def test_items_with_many_close_vectors_never_under_fill() -> None:
    """The best vector hits all belong to a few items: more hits are fetched until k."""
    rng = np.random.default_rng(8)
    q = unit(rng.standard_normal((1, DIMS)))[0]
    items = {i: unit(q + 0.01 * rng.standard_normal((60, DIMS))) for i in range(3)}
    items.update({i: unit(rng.standard_normal((2, DIMS))) for i in range(3, 400)})
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    for k in (5, 50, 400):
        result = index.search(q, k)
        assert len(result) == k and result == reference(items, q, k)
        subset = np.arange(0, 400, 2)
        assert index.search(q, k, subset) == reference(items, q, k, subset)


def test_scoped_search_with_near_ties_at_the_kth_score_stays_exact() -> None:
    """Many rows whose float32 scores sit within rounding of the k-th one: the float32
    ranking pass may order them wrongly, the page must still be the canonical top k."""
    rng = np.random.default_rng(11)
    q = unit(rng.standard_normal((1, DIMS)))[0]
    base = unit(rng.standard_normal((1, DIMS)))[0]
    # 300 one-vector items: the same vector nudged by less than float32 rounding of a dot
    near = base + 1e-7 * rng.standard_normal((300, DIMS)).astype(np.float32)
    items = {i: near[i][None, :] for i in range(300)}
    items.update({i: unit(rng.standard_normal((1, DIMS))) for i in range(300, 400)})
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    scores = {float(reference(items, q, 1, np.array([i]))[0][1]) for i in range(300)}
    assert len(scores) > 1  # the canonical scores do differ among the near-ties
    for k in (1, 10, 60):
        for candidates in (np.arange(0, 400), np.arange(0, 400, 3), np.arange(250, 350)):
            assert index.search(q, k, candidates) == reference(items, q, k, candidates)


def test_empty_index_and_edge_arguments() -> None:
    index = VectorIndex(DIMS)
    q = unit(np.ones((1, DIMS)))[0]
    assert index.search(q, 5) == []
    assert index.search(q, 5, np.array([1, 2, 3])) == []
    assert index.search_batch(np.stack([q, q]), 3) == [[], []]
    index.upsert([(1, unit(np.ones((2, DIMS))))])
    assert index.search(q, 0) == []
    assert index.search(q, 3, np.array([], dtype=np.int64)) == []
    with pytest.raises(ValueError, match="shape"):
        index.search(np.ones(DIMS + 1, dtype=np.float32), 3)
    with pytest.raises(ValueError, match="shape"):
        index.upsert([(2, np.ones((1, DIMS + 1), dtype=np.float32))])
    with pytest.raises(ValueError, match="NaN"):
        index.upsert([(2, np.full((1, DIMS), np.nan, dtype=np.float32))])
    with pytest.raises(ValueError):
        index.upsert([(-1, unit(np.ones((1, DIMS))))])
    with pytest.raises(ValueError):
        VectorIndex(0)
    assert 2 not in index


def test_candidates_without_vectors_give_an_empty_page() -> None:
    """Items that were never embedded (or were removed) can be the whole candidate set."""
    rng = np.random.default_rng(3)
    index = VectorIndex(DIMS)
    index.upsert([(i, unit(rng.normal(size=(1, DIMS)))) for i in range(100)])
    index.remove([5])
    q = unit(rng.normal(size=(1, DIMS)))[0]
    assert index.search(q, 3, np.array([500, 501])) == []
    assert index.search(q, 3, np.array([5])) == []
    assert [item for item, _ in index.search(q, 3, np.array([5, 7]))] == [7]


def test_k_larger_than_item_count_returns_every_item_once() -> None:
    rng = np.random.default_rng(1)
    items = {i: unit(rng.standard_normal((3, DIMS))) for i in range(5)}
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    q = unit(rng.standard_normal((1, DIMS)))[0]
    result = index.search(q, 100)
    assert [i for i, _ in result] == [i for i, _ in reference(items, q, 100)]
    assert len(result) == 5
    assert (index.item_count, index.vector_count) == (5, 15)


def test_overwrite_replaces_all_vectors() -> None:
    rng = np.random.default_rng(2)
    old, new = unit(rng.standard_normal((3, DIMS))), unit(rng.standard_normal((1, DIMS)))
    index = VectorIndex(DIMS)
    index.upsert([(7, old), (8, unit(rng.standard_normal((2, DIMS))))])
    index.upsert([(7, new)])
    np.testing.assert_array_equal(index.vectors_of(7), new)
    assert index.vector_count == 3
    for q in old:  # the old vectors no longer match: the score is the new vector's
        score = dict(index.search(q, 2))[7]
        assert score == pytest.approx(float(new[0] @ q), abs=1e-6)
    index.upsert([(7, np.empty((0, DIMS), dtype=np.float32))])
    assert 7 not in index and index.item_count == 1
    assert all(i != 7 for i, _ in index.search(old[0], 10))


def test_delete_then_search_never_returns_the_item() -> None:
    rng = np.random.default_rng(3)
    items = {i: unit(rng.standard_normal((2, DIMS))) for i in range(50)}
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    index.remove([10, 11, 999])  # 999 is unknown: ignored
    del items[10], items[11]
    for vec in (*index.vectors_of(12), unit(rng.standard_normal((1, DIMS)))[0]):
        result = index.search(vec, 100)
        assert {10, 11}.isdisjoint(i for i, _ in result)
        assert result == reference(items, vec, 100)
        assert {10, 11}.isdisjoint(i for i, _ in index.search(vec, 100, np.arange(50)))
    assert index.vectors_of(10).shape == (0, DIMS)


def test_slot_reuse_after_many_deletes_stays_exact() -> None:
    rng = np.random.default_rng(4)
    index = VectorIndex(DIMS)
    items: dict[int, np.ndarray] = {}
    next_id = 0
    for _ in range(6):
        batch = {next_id + i: unit(rng.standard_normal((1 + i % 4, DIMS))) for i in range(400)}
        next_id += 400
        index.upsert(list(batch.items()))
        items.update(batch)
        doomed = rng.choice(sorted(items), size=len(items) * 2 // 3, replace=False).tolist()
        index.remove(doomed)
        for item_id in doomed:
            del items[item_id]
        assert index.vector_count == sum(len(v) for v in items.values())
        for item_id in rng.choice(sorted(items), size=20).tolist():  # vectors survive moves
            np.testing.assert_array_equal(index.vectors_of(item_id), items[item_id])
        q = unit(rng.standard_normal((1, DIMS)))[0]
        assert index.search(q, 25) == reference(items, q, 25)
    assert index.item_count == len(items)


def test_ties_are_ordered_by_item_id() -> None:
    v = unit(np.ones((1, DIMS)))
    other = unit(np.eye(DIMS)[:1])
    index = VectorIndex(DIMS)
    index.upsert([(9, v), (3, v), (5, np.vstack([other, v])), (1, other), (2**62, v)])
    result = index.search(v[0], 10)
    assert [i for i, _ in result] == [3, 5, 9, 2**62, 1]
    assert result[0][1] == result[3][1]
    assert [i for i, _ in index.search(v[0], 2)] == [3, 5]
    assert [i for i, _ in index.search(v[0], 2, np.array([9, 5, 1]))] == [5, 9]


def test_search_batch_identical_to_lone_search() -> None:
    rng = np.random.default_rng(5)
    items = {i: unit(rng.standard_normal((1 + i % 3, DIMS))) for i in range(2000)}
    index = VectorIndex(DIMS)
    index.upsert(list(items.items()))
    queries = unit(rng.standard_normal((64, DIMS)))  # 64 queries: FAISS's BLAS path
    for k in (1, 10, 30):
        assert index.search_batch(queries, k) == [index.search(q, k) for q in queries]
    q = queries[0]
    assert index.search_batch(q[None, :], 10) == [reference(items, q, 10)]


def test_concurrent_searches_beside_writes() -> None:
    """Readers never see a removed (acknowledged) item, a half-written item, or a crash."""
    rng = np.random.default_rng(6)
    n_stable, n_doomed, n_churn = 400, 300, 100
    index = VectorIndex(DIMS)
    versions: dict[int, list[np.ndarray]] = {}
    for item_id in range(n_stable + n_doomed + n_churn):
        versions[item_id] = [unit(rng.standard_normal((1 + item_id % 3, DIMS)))]
    index.upsert([(i, v[0]) for i, v in versions.items()])
    doomed = list(range(n_stable, n_stable + n_doomed))
    churn = list(range(n_stable + n_doomed, n_stable + n_doomed + n_churn))
    removed: set[int] = set()
    stop = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()  # guards `versions` lists and `removed` for the checker

    def writer() -> None:
        wrng = np.random.default_rng(60)
        try:
            for step, item_id in enumerate(doomed):
                index.remove([item_id])
                with lock:
                    removed.add(item_id)
                target = churn[step % n_churn]
                new = unit(wrng.standard_normal((1 + step % 4, DIMS)))
                with lock:
                    versions[target].append(new)
                index.upsert([(target, new)])
                time.sleep(0.001)  # let readers interleave with every write
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    def score_matches_a_version(item_id: int, score: float, q: np.ndarray) -> bool:
        with lock:
            candidates = list(versions[item_id])
        return any(
            float((v.astype(np.float64) @ q.astype(np.float64)).astype(np.float32).max()) == score
            for v in candidates
        )

    searches = [0, 0, 0]

    def reader(seed: int) -> None:
        rrng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                searches[seed] += 1
                with lock:
                    gone = set(removed)
                q = unit(rrng.standard_normal((1, DIMS)))[0]
                mode = rrng.integers(0, 3)
                if mode == 0:
                    result = index.search(q, 20)
                elif mode == 1:
                    subset = rrng.choice(len(versions), 300, replace=False)
                    result = index.search(q, 20, subset)
                else:
                    result = index.search_batch(np.stack([q, q]), 20)[0]
                ids = [i for i, _ in result]
                assert len(ids) == len(set(ids)) <= 20
                assert gone.isdisjoint(ids), gone.intersection(ids)
                scores = [s for _, s in result]
                assert scores == sorted(scores, reverse=True)
                for item_id, score in result:
                    assert score_matches_a_version(item_id, score, q)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=writer))
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert not errors, errors[0]
    assert time.monotonic() - started < 60
    assert sum(searches) > 100
    assert index.item_count == n_stable + n_churn
    assert all(i not in index for i in doomed)


def test_an_empty_block_of_the_wrong_width_is_refused_not_taken_for_a_removal() -> None:
    index = VectorIndex(DIMS)
    index.upsert([(1, unit(np.ones((1, DIMS))))])
    with pytest.raises(ValueError, match=f"\\(k, {DIMS}\\)"):
        index.upsert([(1, np.empty((0, DIMS + 1), dtype=np.float32))])
    for odd in (np.empty((3, 0)), np.empty((0, 2, DIMS)), np.empty((0, 0, 0))):
        with pytest.raises(ValueError, match="shape"):
            index.upsert([(1, odd)])
    assert 1 in index
    index.upsert([(1, np.empty((0, DIMS), dtype=np.float32))])  # the right width: removed
    assert 1 not in index


@pytest.mark.parametrize("dims", [1, 3, 64, 4096])
def test_the_norm_bound_never_under_estimates(dims: int) -> None:
    """The float32 sum of squares, raised by its error bound, stays above the exact norm
    (FAISS's rounding bound, and so exact search, rests on it)."""
    rng = np.random.default_rng(dims)
    spike = rng.standard_normal((20, dims)) * 1e-3
    spike[:, 0] = 1e18
    cases = [np.full((2, dims), 1 + 2**-12), rng.standard_normal((20, dims)), spike]
    for case in cases:
        rows = case.astype(np.float32)
        exact = math.sqrt(max(math.fsum(float(x) ** 2 for x in row) for row in rows))
        assert _max_norm(rows) >= exact


def test_finite_vectors_whose_squares_overflow_float32_are_accepted() -> None:
    index = VectorIndex(dims=8)
    rows = np.full((1, 8), 1e20, np.float32)  # the squares overflow float32, the norm not
    index.upsert([(1, rows)])
    index.load(np.array([2]), np.array([1]), rows)
    assert 1 in index and 2 in index


def test_overwriting_multi_vector_items_keeps_the_live_row_counts() -> None:
    """Every row of an overwritten block dies (compaction is planned from these counts)."""
    index = VectorIndex(4, background=False)
    three = np.ones((3, 4), np.float32)
    index.upsert([(item, three) for item in range(10)])
    index.upsert([(item, three[:2]) for item in range(5)])  # 5 x 3 rows die, 5 x 2 arrive
    tail = index._snap.chunks[index._tail]  # type: ignore[index]
    assert tail is not None and tail.live == 5 * 2 + 5 * 3 == index._live_rows
