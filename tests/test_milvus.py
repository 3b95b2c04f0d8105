"""MilvusStore on Milvus Lite: FAISS and BM25 as oracles, generation visibility, cleanup, bounded failures."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ragqa.errors import IndexCorrupt
from ragqa.lexical import BM25
from ragqa.milvus import INSTALL, MilvusStore, StoreUnavailable, public_uri, redact
from ragqa.vectors import FaissStore

DIM = 384
_names = itertools.count()


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """One Milvus Lite database for the module (starting one costs ~0.3 s); each test has its collections."""
    return str(tmp_path_factory.mktemp("milvus") / "ragqa.db")


@pytest.fixture
def name() -> str:
    return f"ragqa_t{next(_names)}"


def unit(rng, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def store_at(uri: str, name: str, generation: int, dim: int = DIM, **kw) -> MilvusStore:
    return MilvusStore.open(uri, name, dim, generation, create=True, **kw)


# ---------------------------------------------------------------- the VectorStore protocol, FAISS as oracle


def test_search_matches_exact_faiss(uri, name):
    rng = np.random.default_rng(0)
    vectors = unit(rng, 500)
    ids = np.sort(rng.choice(10**7, size=500, replace=False)).astype(np.int64)
    store = store_at(uri, name, 1)
    store.add(vectors, ids)
    assert store.ntotal == 500
    queries = unit(rng, 20)
    scores, found = store.search(queries, 10)
    want_scores, want_ids = FaissStore.build(vectors, ids).search(queries, 10)
    assert found.dtype == np.int64 and scores.dtype == np.float32 and found.shape == (20, 10)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    store.close()


def test_search_pads_like_faiss_when_k_exceeds_rows(uri, name):
    rng = np.random.default_rng(1)
    vectors, ids = unit(rng, 3), np.array([7, 70, 700])
    store = store_at(uri, name, 1)
    store.add(vectors, ids)
    scores, found = store.search(vectors[:2], 5)
    assert found.shape == scores.shape == (2, 5)
    assert found[0, 0] == 7 and found[1, 0] == 70
    assert sorted(found[0, :3].tolist()) == [7, 70, 700]
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    assert np.all(np.diff(scores[:, :3], axis=1) <= 0)
    assert store.search(vectors[:1], 0)[1].shape == (1, 0)


@pytest.mark.parametrize("index", ["IVF_FLAT", "HNSW"])
def test_approximate_indexes_are_accepted(uri, name, index):
    rng = np.random.default_rng(2)
    vectors = unit(rng, 200)
    store = store_at(uri, name, 1, index=index)
    store.add(vectors, np.arange(200) * 3)
    _, found = store.search(vectors[:5], 3)
    assert found[:, 0].tolist() == [0, 3, 6, 9, 12]  # each vector finds itself first
    assert store.params()["index"] == index
    # reopening keeps the collection's own index, whatever is asked
    again = MilvusStore.open(uri, name, DIM, 1)
    assert again.index == index


def test_unknown_index_is_refused(uri, name):
    with pytest.raises(ValueError, match="IVF_FLAT"):
        store_at(uri, name, 1, index="DISKANN_TYPO")


# ---------------------------------------------------------------- BM25 as sparse vectors


def bm25_corpus(rng, n_docs=40, vocab=25):
    docs = [rng.integers(0, vocab, size=int(rng.integers(1, 15))).tolist() for _ in range(n_docs - 1)] + [[]]
    lengths = np.array([len(d) for d in docs])
    avgdl = lengths.mean()
    weights = []
    for d in docs:
        norm = BM25.K1 * (1 - BM25.B + BM25.B * len(d) / avgdl)
        tf = {t: d.count(t) for t in set(d)}
        weights.append({t: f / (f + norm) for t, f in tf.items()})
    df = np.bincount([t for d in docs for t in set(d)], minlength=vocab)
    idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    return docs, weights, idf


def test_sparse_search_is_bm25(uri, name):
    rng = np.random.default_rng(3)
    docs, weights, idf = bm25_corpus(rng)
    ids = np.arange(len(docs)) * 10 + 5
    store = store_at(uri, name, 1, dim=4)
    store.add(unit(rng, len(docs), 4), ids, weights)
    # ragqa's own BM25 over the same tokens: the score a FAISS index gets
    flat = np.array([t for d in docs for t in d], dtype=np.int64)
    offsets = np.cumsum([0] + [len(d) for d in docs])
    local = BM25.build(flat, offsets, len(idf), vocab={str(t): t for t in range(len(idf))})
    for query_tokens in ([3], [1, 4, 4], [0, 7, 11, 19], [24, 2]):
        query = {}
        for t in query_tokens:
            query[t] = query.get(t, 0.0) + float(idf[t])
        brute = {int(i): sum(query.get(t, 0.0) * w for t, w in doc.items()) for i, doc in zip(ids, weights)}
        brute = {i: s for i, s in brute.items() if s > 0}
        found = store.sparse_search(query, 100)
        assert {i for i, _ in found} == set(brute)  # exactly the documents sharing a token
        for i, score in found:
            assert score == pytest.approx(brute[i], rel=1e-5)
        assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
        ragqa_scores = local.scores([str(t) for t in query_tokens])
        for i, score in found:
            assert score == pytest.approx(float(ragqa_scores[(i - 5) // 10]), rel=1e-5)
        top = store.sparse_search(query, 3)
        assert [s for _, s in top] == pytest.approx(sorted(brute.values(), reverse=True)[:3], rel=1e-5)
    assert store.sparse_search({}, 5) == []


def test_rows_without_tokens_or_sparse_are_stored_but_never_match(uri, name):
    rng = np.random.default_rng(4)
    store = store_at(uri, name, 1, dim=4)
    store.add(unit(rng, 2, 4), np.array([1, 2]), [{}, {5: 0.5}])
    store.add(unit(rng, 1, 4), np.array([3]))  # no sparse at all
    assert store.ntotal == 3
    assert store.sparse_search({5: 2.0, 0: 1.0}, 10) == [(2, pytest.approx(1.0))]


# ---------------------------------------------------------------- generations


def generation_fixture(uri, name, rng):
    """Generation 1 of ids 0..4; then a build of generation 2 adds 100..102 and removes 0 and 1."""
    vectors = unit(rng, 8, 8)
    sparse = [{1: 0.5, 10 + i: 0.25} for i in range(8)]
    g1 = store_at(uri, name, 1, dim=8)
    g1.add(vectors[:5], np.arange(5), sparse[:5])
    build = MilvusStore.open(uri, name, 8, 2)
    build.add(vectors[5:], np.array([100, 101, 102]), sparse[5:])
    build.remove(np.array([0, 1]))
    return g1, build, vectors


def visible(store: MilvusStore, vectors) -> set[int]:
    _, ids = store.search(vectors, 20)
    return set(ids[ids >= 0].tolist())


def test_a_build_is_invisible_to_readers_of_the_previous_generation(uri, name):
    g1, build, vectors = generation_fixture(uri, name, np.random.default_rng(5))
    assert g1.ntotal == 5 and visible(g1, vectors) == {0, 1, 2, 3, 4}
    assert {i for i, _ in g1.sparse_search({1: 1.0}, 50)} == {0, 1, 2, 3, 4}
    assert build.ntotal == 6 and visible(build, vectors) == {2, 3, 4, 100, 101, 102}
    assert {i for i, _ in build.sparse_search({1: 1.0}, 50)} == {2, 3, 4, 100, 101, 102}
    # removing again, or removing an id that is not there, changes nothing
    build.remove(np.array([0, 999]))
    assert build.ntotal == 6 and g1.ntotal == 5
    # a reader moved to the new generation sees it
    g1.generation = 2
    assert visible(g1, vectors) == {2, 3, 4, 100, 101, 102}


def test_cleanup_after_a_killed_build_restores_the_last_generation(uri, name):
    g1, build, vectors = generation_fixture(uri, name, np.random.default_rng(6))
    build.close()  # killed: the manifest still names generation 1
    deleted = g1.cleanup(1)
    assert deleted == 3  # the rows the killed build added
    assert g1.ntotal == 5 and visible(g1, vectors) == {0, 1, 2, 3, 4}
    retry = MilvusStore.open(uri, name, 8, 2)
    assert retry.ntotal == 5  # rows the killed build ended are alive again
    assert g1.cleanup(1) == 0


def test_cleanup_keeps_what_the_current_and_previous_generations_see(uri, name):
    rng = np.random.default_rng(7)
    g1, build, vectors = generation_fixture(uri, name, rng)  # generation 2: ends 0 and 1
    build.generation = 3
    build.remove(np.array([2]))
    build.add(unit(rng, 1, 8), np.array([200]))
    build.remove(np.array([200]))  # added and removed in one generation: no one ever sees it
    assert build.cleanup(3) == 2  # 0 and 1: visible to neither 3 nor 2
    g1.generation = 2
    assert visible(g1, vectors) == {2, 3, 4, 100, 101, 102}
    assert build.ntotal == 5 and visible(build, vectors) == {3, 4, 100, 101, 102}
    assert build.cleanup(3, keep_previous=False) == 1  # 2, ended at 3


def test_add_replaces_debris_of_its_generation_but_not_rows_readers_see(uri, name):
    g1, build, vectors = generation_fixture(uri, name, np.random.default_rng(8))
    build.add(vectors[:3], np.array([100, 101, 102]))  # a retried build writing its rows again
    assert build.ntotal == 6
    _, ids = build.search(vectors[:1], 1)
    assert ids[0, 0] == 100  # the new vector replaced the old one under id 100
    with pytest.raises(ValueError, match="already stored"):
        build.add(vectors[:1], np.array([3]))
    with pytest.raises(ValueError, match="same id twice"):
        build.add(vectors[:2], np.array([500, 500]))
    assert g1.ntotal == 5


# ---------------------------------------------------------------- the manifest's side


def test_load_checks_rows_and_dimension(uri, name):
    rng = np.random.default_rng(9)
    store = store_at(uri, name, 1, dim=16)
    store.add(unit(rng, 4, 16), np.arange(4))
    store.meta = {"avgdl": 7.5, "tokenizer": "v3"}
    store.save(None)
    params = store.params()
    assert params["generation"] == 1 and params["avgdl"] == 7.5 and params["collection"] == name
    again = MilvusStore.load("unused", params, 4, 16)
    assert again.ntotal == 4 and again.params() == params
    with pytest.raises(IndexCorrupt, match="shows 4 rows in generation 1, expected 5"):
        MilvusStore.load("unused", params, 5, 16)
    with pytest.raises(IndexCorrupt, match="16-d vectors, expected 32-d"):
        MilvusStore.load("unused", params, 4, 32)
    with pytest.raises(IndexCorrupt, match="missing"):
        MilvusStore.load("unused", {**params, "collection": name + "_gone"}, 4, 16)
    assert MilvusStore.reusable(params, 10**6)


def test_replace_starts_over(uri, name):
    rng = np.random.default_rng(10)
    store_at(uri, name, 1, dim=4).add(unit(rng, 3, 4), np.arange(3))
    fresh = MilvusStore.open(uri, name, 8, 1, create=True, replace=True)
    assert fresh.ntotal == 0 and fresh.dim == 8


def test_params_carry_no_credentials(uri, name, monkeypatch):
    monkeypatch.setenv("RAGQA_MILVUS_TOKEN", "root:s3cret-token")
    store = store_at(uri, name, 1, dim=4)
    text = json.dumps(store.params())
    assert "s3cret" not in text and store.params()["uri"] == uri
    assert public_uri("http://root:s3cret@milvus.local:19530") == "http://milvus.local:19530"
    assert redact("at https://root:s3cret@milvus.local:19530/db") == "at https://***@milvus.local:19530/db"


# ---------------------------------------------------------------- failures: bounded, one line


def test_refused_server_fails_fast_and_names_the_uri(capfd):
    import pymilvus  # noqa: F401 - its import is not what is timed

    start = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        MilvusStore.open("http://user:pw@127.0.0.1:1", "ragqa_x", DIM, 1, timeout=10)
    assert time.monotonic() - start < 2  # refused at once, not retried until the 10 s timeout
    message = str(err.value)
    assert "http://***@127.0.0.1:1" in message and "pw" not in message
    assert "connection refused" in message and "\n" not in message
    assert capfd.readouterr().err == ""  # pymilvus's own logging of the failed RPC, with its traceback, is muted


def test_silent_server_fails_within_the_timeout():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept_and_hold():
        try:
            while True:
                held.append(server.accept())
        except OSError:  # closed at the end of the test
            pass

    threading.Thread(target=accept_and_hold, daemon=True).start()
    port = server.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port} within 2 s"):
        MilvusStore.open(f"http://127.0.0.1:{port}", "ragqa_x", DIM, 1, timeout=2)
    assert time.monotonic() - start < 10
    server.close()


class FreezableProxy:
    """A TCP proxy to a server that can stop forwarding while keeping its connections open."""

    def __init__(self, port: int):
        self.target, self.frozen = ("127.0.0.1", port), threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
        except OSError:
            pass

    def _pipe(self, a, b):
        try:
            while data := a.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)
                b.sendall(data)
        except OSError:
            pass


def test_a_server_that_stops_answering_fails_within_the_timeout(uri, name):
    from milvus_lite.server_manager import server_manager_instance

    store_at(uri, name, 1, dim=4).add(np.eye(4, dtype=np.float32), np.arange(4))
    lite = server_manager_instance.start_and_get_uri(uri)  # the running server of this database
    proxy = FreezableProxy(int(lite.rsplit(":", 1)[1]))
    store = MilvusStore.open(f"http://127.0.0.1:{proxy.port}", name, 4, 1, timeout=2)
    assert store.ntotal == 4
    proxy.frozen.set()
    start = time.monotonic()
    with pytest.raises(StoreUnavailable, match="did not search within 2 s"):
        store.search(np.eye(4, dtype=np.float32)[:1], 2)
    assert time.monotonic() - start < 10
    proxy.frozen.clear()
    store.close()


def test_a_closed_store_says_so(uri, name):
    store = store_at(uri, name, 1, dim=4)
    store.close()
    with pytest.raises(StoreUnavailable, match="is closed"):
        store.search(np.eye(4, dtype=np.float32)[:1], 1)


def test_lite_database_in_a_missing_folder(tmp_path):
    with pytest.raises(StoreUnavailable, match="does not exist"):
        MilvusStore.open(str(tmp_path / "nowhere" / "ragqa.db"), "ragqa_x", DIM, 1, create=True)


def test_lite_database_another_process_holds(tmp_path, capfd):
    path = str(tmp_path / "held.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from pymilvus import MilvusClient; c = MilvusClient({path!r}); print('ready', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreUnavailable, match="another process has it open"):
            MilvusStore.open(path, "ragqa_x", DIM, 1, create=True)
        assert "Traceback" not in capfd.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_missing_pymilvus_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(StoreUnavailable, match="pip install"):
        MilvusStore.open("http://127.0.0.1:1", "ragqa_x", DIM, 1)
    assert '"ragqa[milvus]"' in INSTALL


def test_importing_the_module_does_not_import_pymilvus():
    code = "import sys, ragqa.milvus, ragqa.vectors; ragqa.vectors.store_class('milvus'); print('pymilvus' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
