"""The VectorStore protocol, one suite run against every store ragqa offers: FAISS in the index folder and
Milvus (a Milvus Lite file the test starts). Exact inner-product search in numpy is the oracle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ragqa.vectors import FAISS_FILE, FaissStore, store_class

DIM = 32
_names = itertools.count()


def unit(rng, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "protocol.db")


@pytest.fixture(params=["faiss", "milvus"])
def make(request, milvus_uri):
    """make(vectors, ids) -> a store of the kind under test holding them."""
    opened = []

    def build(vectors: np.ndarray, ids: np.ndarray):
        if request.param == "faiss":
            store = FaissStore.build(vectors, ids)
        else:
            from ragqa.milvus import MilvusStore

            store = MilvusStore.open(milvus_uri, f"ragqa_p{next(_names)}", DIM, 1, create=True)
            store.add(vectors, ids)
        opened.append(store)
        return store

    yield build
    for store in opened:
        store.close()


def exact(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


def test_search_is_the_exact_top_k(make):
    rng = np.random.default_rng(1)
    vectors, ids = unit(rng, 300), rng.choice(10**9, size=300, replace=False).astype(np.int64)
    store = make(vectors, ids)
    queries = unit(rng, 12)
    scores, found = store.search(queries, 10)
    assert store.ntotal == 300 and found.shape == (12, 10)
    np.testing.assert_array_equal(found, exact(vectors, ids, queries, 10))
    np.testing.assert_allclose(scores, -np.sort(-(queries @ vectors.T), axis=1)[:, :10], atol=1e-5)


def test_removed_ids_never_come_back_and_added_ones_do(make):
    rng = np.random.default_rng(2)
    vectors, ids = unit(rng, 200), np.arange(1000, 1200, dtype=np.int64)
    store = make(vectors, ids)
    gone = ids[::3]
    store.remove(gone)
    extra, extra_ids = unit(rng, 20), np.arange(5000, 5020, dtype=np.int64)
    store.add(extra, extra_ids)
    keep = ~np.isin(ids, gone)
    live, live_ids = np.vstack([vectors[keep], extra]), np.concatenate([ids[keep], extra_ids])
    assert store.ntotal == len(live_ids)
    queries = np.vstack([unit(rng, 5), extra[:5]])
    _, found = store.search(queries, 8)
    np.testing.assert_array_equal(found, exact(live, live_ids, queries, 8))
    assert not np.isin(found, gone).any()


def test_k_beyond_the_rows_pads_with_minus_one_or_stops(make):
    rng = np.random.default_rng(3)
    vectors, ids = unit(rng, 4), np.arange(4, dtype=np.int64)
    _, found = make(vectors, ids).search(unit(rng, 2), 10)
    for row in found:
        real = [i for i in row.tolist() if i >= 0]
        assert sorted(real) == [0, 1, 2, 3] and all(i == -1 for i in row.tolist()[len(real):])


def test_a_saved_store_reopens_from_its_params_with_the_same_answers(make, tmp_path):
    rng = np.random.default_rng(4)
    vectors, ids = unit(rng, 150), np.arange(150, dtype=np.int64) * 7
    store = make(vectors, ids)
    store.save(tmp_path)
    again = store_class(store.kind).load(str(tmp_path / FAISS_FILE), store.params(), 150, DIM)
    queries = unit(rng, 6)
    np.testing.assert_array_equal(again.search(queries, 5)[1], store.search(queries, 5)[1])
    again.close()

