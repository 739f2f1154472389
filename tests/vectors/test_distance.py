"""The three distances LangGraph's Postgres store offers, on every store.

Scores must be exactly the float64 numpy computation rounded once to float32: for ``cosine``
the dot product of the embedder's unit rows, for ``inner_product`` the raw dot product
(``-(a <#> b)``), for ``l2`` minus the Euclidean distance (``-(a <-> b)``); an item's score is
its best vector's, highest first, ties in write order (the smaller item id).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from tests.conftest import StoreFactory

from memlane import IndexConfig, SqliteStore
from memlane.store.types import IndexConfigError

pytestmark = pytest.mark.anyio

DISTANCES = ["cosine", "inner_product", "l2"]
DIMS = 8
F32 = npt.NDArray[np.float32]


class TableEmbed:
    """Texts are names of vectors: ``embed(["v3"])`` returns row 3 as the user gave it."""

    def __init__(self, vectors: dict[str, F32]) -> None:
        self.vectors = vectors

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vectors[text].tolist() for text in texts]


def reference(distance: str, rows: F32, query: F32) -> float:
    """One item's score computed with numpy: its best row, in float64, rounded once."""
    wide, q = rows.astype(np.float64), query.astype(np.float64)
    if distance == "l2":
        scores = -np.linalg.norm(wide - q, axis=1)
    elif distance == "inner_product":
        scores = wide @ q
    else:  # the embedder's unit rows (float32, as it stores them) against the unit query
        scores = unit(rows).astype(np.float64) @ unit(query[None, :])[0].astype(np.float64)
    return float(scores.astype(np.float32).max())


def unit(rows: F32) -> F32:
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64)).astype(np.float32)
    return rows / norms[:, None]


def random_items(
    rng: np.random.Generator, count: int
) -> tuple[dict[str, F32], dict[str, list[str]]]:
    """Vectors of very different norms (so the three distances rank differently), and
    ``count`` items owning one to three of them each."""
    vectors: dict[str, F32] = {}
    items: dict[str, list[str]] = {}
    for n in range(count):
        names = []
        for _ in range(int(rng.integers(1, 4))):
            name = f"v{len(vectors)}"
            scale = rng.uniform(0.05, 20.0)
            vectors[name] = (rng.standard_normal(DIMS) * scale).astype(np.float32)
            names.append(name)
        items[f"item{n:04d}"] = names
    return vectors, items


def expected(
    distance: str, vectors: dict[str, F32], items: dict[str, list[str]], query: F32
) -> list[tuple[str, float]]:
    scored = [
        (key, reference(distance, np.stack([vectors[name] for name in names]), query))
        for key, names in items.items()
    ]
    order = {key: n for n, key in enumerate(items)}  # write order: the item ids' order
    return sorted(scored, key=lambda hit: (-hit[1], order[hit[0]]))


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("count", [12, 400])  # 400 items: ~800 rows, FAISS's scan paths
async def test_scores_equal_numpy_on_every_store(
    make_store: StoreFactory, distance: str, count: int
) -> None:
    rng = np.random.default_rng(count)
    vectors, items = random_items(rng, count)
    queries = {f"q{n}": (rng.standard_normal(DIMS) * 3).astype(np.float32) for n in range(4)}
    embed = TableEmbed({**vectors, **queries})
    config = IndexConfig(dims=DIMS, embed=embed, fields=("names[*]",), distance=distance)
    store = await make_store(index=config)
    for n, (key, names) in enumerate(items.items()):
        await store.aput(("docs", f"part{n % 3}"), key, {"names": names})
    for text, query in queries.items():
        want = expected(distance, vectors, items, query)
        hits = await store.asearch(("docs",), query=text, limit=count)
        assert [(hit.key, hit.score) for hit in hits] == want
        page = await store.asearch(("docs",), query=text, limit=5, offset=7)
        assert [(hit.key, hit.score) for hit in page] == want[7:12]
        scoped = await store.asearch(("docs", "part1"), query=text, limit=10)
        in_scope = [hit for hit in want if list(items).index(hit[0]) % 3 == 1]
        assert [(hit.key, hit.score) for hit in scoped] == in_scope[:10]


@pytest.mark.parametrize("distance", DISTANCES)
async def test_an_item_scores_its_best_vector_by_its_own_distance(
    make_store: StoreFactory, distance: str
) -> None:
    """One item holds a long vector along the query and a short one next to it: the inner
    product prefers the long one, l2 the near one, cosine finds both equally aligned."""
    query = np.array([1.0] + [0.0] * (DIMS - 1), dtype=np.float32)
    far = np.array([10.0] + [0.0] * (DIMS - 1), dtype=np.float32)
    near = np.array([1.25] + [0.0] * (DIMS - 1), dtype=np.float32)
    aside = np.array([0.0, 1.0] + [0.0] * (DIMS - 2), dtype=np.float32)
    embed = TableEmbed({"far": far, "near": near, "aside": aside, "q": query})
    store = await make_store(
        index=IndexConfig(dims=DIMS, embed=embed, fields=("names[*]",), distance=distance)
    )
    await store.aput(("d",), "both", {"names": ["far", "near"]})
    await store.aput(("d",), "aside", {"names": ["aside"]})
    hits = await store.asearch(("d",), query="q")
    scores = {hit.key: hit.score for hit in hits}
    want = {
        "cosine": {"both": 1.0, "aside": 0.0},
        "inner_product": {"both": 10.0, "aside": 0.0},
        "l2": {"both": -0.25, "aside": float(-np.float32(np.sqrt(2.0)))},
    }[distance]
    assert scores == want
    assert [hit.key for hit in hits] == ["both", "aside"]


@pytest.mark.parametrize("distance", DISTANCES)
async def test_ties_come_in_write_order_across_pages(
    make_store: StoreFactory, distance: str
) -> None:
    vectors = {
        "same": np.array([3.0, 4.0] + [0.0] * (DIMS - 2), dtype=np.float32),
        "worse": np.array([-3.0, 4.0] + [0.0] * (DIMS - 2), dtype=np.float32),
        "q": np.array([1.0, 1.0] + [0.0] * (DIMS - 2), dtype=np.float32),
    }
    store = await make_store(
        index=IndexConfig(dims=DIMS, embed=TableEmbed(vectors), fields=("v",), distance=distance)
    )
    keys = ["k5", "k1", "k9", "k3", "k7"]  # written in this order, not sorted
    await store.aput(("t",), "w", {"v": "worse"})
    for key in keys:
        await store.aput(("t",), key, {"v": "same"})
    hits = await store.asearch(("t",), query="q", limit=10)
    assert [hit.key for hit in hits] == [*keys, "w"]
    assert len({hit.score for hit in hits[:5]}) == 1
    assert hits[0].score == reference(distance, vectors["same"][None, :], vectors["q"])
    pages = [await store.asearch(("t",), query="q", limit=2, offset=n) for n in (0, 2, 4)]
    assert [hit.key for page in pages for hit in page] == [*keys, "w"]


def test_distance_is_checked_and_read_from_langgraph_dict_shape() -> None:
    with pytest.raises(ValueError, match="distance must be one of"):
        IndexConfig(dims=2, embed=lambda texts: [[1.0, 0.0]] * len(texts), distance="dot")
    config = IndexConfig.coerce({"dims": 2, "embed": len, "distance": "l2"})
    assert config is not None and config.distance == "l2"
    assert IndexConfig(dims=2, embed=len).distance == "cosine"


async def test_sqlite_records_the_distance_and_keeps_raw_vectors(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    vectors = {
        "a": np.array([2.0, 0.0] + [0.0] * (DIMS - 2), dtype=np.float32),
        "q": np.array([0.5, 0.5] + [0.0] * (DIMS - 2), dtype=np.float32),
    }
    embed = TableEmbed(vectors)

    def index(distance: str) -> IndexConfig:
        return IndexConfig(dims=DIMS, embed=embed, fields=("v",), distance=distance)

    async with SqliteStore.open(path, index=index("l2")) as store:
        await store.aput(("d",), "a", {"v": "a"})
        before = [hit.score for hit in await store.asearch(("d",), query="q")]
    for other in ("cosine", "inner_product"):
        with pytest.raises(IndexConfigError, match="distance='l2'"):
            async with SqliteStore.open(path, index=index(other)):
                pass
    async with SqliteStore.open(path, index=index("l2")) as store:  # the raw vector came back
        after = [hit.score for hit in await store.asearch(("d",), query="q")]
    assert before == after == [reference("l2", vectors["a"][None, :], vectors["q"])]
    with pytest.raises(IndexConfigError, match="distance='l2'"):
        async with SqliteStore.open(path):
            pass


@pytest.mark.parametrize("distance", ["inner_product", "l2"])
@pytest.mark.parametrize("numpy_rows", [0, 256])  # FAISS's selector scan, or numpy's
def test_index_near_ties_at_the_kth_score_stay_exact(
    distance: str, numpy_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 vectors all (nearly) as far from the query: FAISS's float32 scores order them
    differently from the canonical ones, so the first hits fetched are not the top k; the
    index must notice (in the distance's own scale) and fetch on until the page is exact."""
    import memlane.vectors.index as index_module
    from memlane.vectors import VectorIndex

    monkeypatch.setattr(index_module, "NUMPY_MAX_ROWS", numpy_rows)
    rng = np.random.default_rng(5)
    q = (rng.standard_normal(DIMS) * 2).astype(np.float32)
    directions = unit(rng.standard_normal((2000, DIMS)).astype(np.float32))
    if distance == "l2":  # on a sphere of radius 3 around the query
        rows = (q + 3 * directions).astype(np.float32)
    else:  # on the plane q.v = 9, spread far along it
        along = directions - np.outer(directions @ q, q) / float(q @ q)
        rows = (9 * q / float(q @ q) + 50 * along).astype(np.float32)
    items = {i: rows[i][None, :] for i in range(len(rows))}
    index = VectorIndex(DIMS, distance=distance)
    index.upsert(list(items.items()))
    scored = sorted(
        ((reference(distance, vecs, q), i) for i, vecs in items.items()),
        key=lambda hit: (-hit[0], hit[1]),
    )
    assert len({score for score, _ in scored[:40]}) > 1  # the canonical scores differ
    for k in (1, 10, 57):
        want = [(i, score) for score, i in scored[:k]]
        assert index.search(q, k) == want
        assert index.search(q, k, np.arange(len(rows))) == want
        odd = [(i, score) for score, i in scored if i % 2][:k]
        assert index.search(q, k, np.arange(1, len(rows), 2)) == odd


@pytest.mark.parametrize("distance", DISTANCES)
def test_the_approximate_graph_links_by_the_distance(distance: str) -> None:
    """The HNSW graph is built for the distance (METRIC_L2 for l2): its proposals, rescored
    exactly, find the exact top hits of a strong graph and report canonical scores."""
    from memlane.vectors import VectorIndex

    rng = np.random.default_rng(9)
    rows = (rng.standard_normal((3000, DIMS)) * rng.uniform(0.1, 10, (3000, 1))).astype(
        np.float32
    )
    if distance == "cosine":
        rows = unit(rows)
    ann = {"kind": "hnsw", "m": 32, "ef_construction": 200, "ef_search": 400, "min_items": 10}
    index = VectorIndex(DIMS, distance=distance, ann=ann, background=False)
    index.upsert([(i, rows[i][None, :]) for i in range(len(rows))])
    assert index.build_ann()
    for _ in range(5):
        q = (rng.standard_normal(DIMS) * 2).astype(np.float32)
        if distance == "cosine":  # the embedder gives the index unit queries too
            q = unit(q[None, :])[0]
        exact = index.search(q, 5, exact=True)
        assert index.search(q, 5) == exact
        dot_or_l2 = "l2" if distance == "l2" else "inner_product"  # rows and q are unit
        assert [score for _, score in exact] == [
            reference(dot_or_l2, rows[i][None, :], q) for i, _ in exact
        ]
