"""Search: RRF by hand, FAISS against a brute-force oracle, lexical search on the seeds."""

from __future__ import annotations

import numpy as np
import pytest

from ragqa import store
from ragqa import vectors as vectors_module
from ragqa.errors import IndexCorrupt, RagqaError, UsageError
from ragqa.lexical import tokenize
from ragqa.retrieve import MAX_QUERY_CHARS, Retriever, clean_query, lexical_weight, minmax_fuse
from ragqa.vectors import FAISS_FILE, FaissStore


class _BM25:
    """What lexical_weight reads of a BM25 index: document frequencies and IDFs."""

    def __init__(self, df: dict[str, int], n: int = 100):
        self._df, self.n = df, n

    def df(self, token):
        return self._df.get(token, 0)

    def idf(self, token):
        d = self.df(token)
        return float(np.log1p((self.n - d + 0.5) / (d + 0.5)))


def test_lexical_weight_hand_computed():
    bm25 = _BM25({"h200": 9, "수출": 19})
    idf = {t: bm25.idf(t) for t in ("h200", "수출", "allow")}  # 2.332, 1.640, 5.308 (absent: the maximum)
    covered = (idf["h200"] + idf["수출"]) / sum(idf.values())
    assert lexical_weight(["h200", "수출"], bm25, True) == pytest.approx(0.5)  # every word known, same language
    assert lexical_weight(["h200", "수출", "allow"], bm25, True) == pytest.approx(0.5 * covered)
    assert lexical_weight(["h200", "수출", "allow"], bm25, False) == pytest.approx(0.1 * covered)
    assert lexical_weight(["allow"], bm25, True) == pytest.approx(0.5 * 0.2)  # nothing known: the floor
    assert lexical_weight([], bm25, False) == pytest.approx(0.1 * 0.2)


def test_minmax_fusion_hand_computed():
    lexical = [(1, 9.0), (2, 5.0), (3, 1.0)]  # normalized: 1.0, 0.5, 0.0
    dense = [(2, 0.8), (4, 0.6), (1, 0.4)]  # normalized: 1.0, 0.5, 0.0
    fused = dict(minmax_fuse(lexical, dense, 0.3))
    assert fused == pytest.approx({1: 0.3, 2: 0.3 * 0.5 + 0.7, 3: 0.0, 4: 0.7 * 0.5})
    assert [r for r, _ in minmax_fuse(lexical, dense, 0.3)] == [2, 4, 1, 3]
    assert [r for r, _ in minmax_fuse(lexical, dense, 0.9)] == [1, 2, 4, 3]
    assert [r for r, _ in minmax_fuse([(7, 1.0), (5, 1.0)], [], 0.5)] == [5, 7]  # ties broken by row
    alone = minmax_fuse([], dense, 0.5)
    assert [r for r, _ in alone] == [2, 4, 1] and [s for _, s in alone] == pytest.approx([0.5, 0.25, 0.0])


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(vectors @ query[0]), kind="stable")[:k])


def unit(rng, n, d):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_flat_store_equals_brute_force():
    rng = np.random.default_rng(0)
    vectors, queries = unit(rng, 2000, 48), unit(rng, 20, 48)
    ids = np.arange(2000, dtype=np.int64) * 7 + 3  # ids are the store's, not rows
    vs = FaissStore.build(vectors, ids)
    assert vs.kind == "flat" and vs.ntotal == 2000 and vs.params() == {"kind": "flat"}
    for q in queries:
        scores, found = vs.search(q[None, :], 10)
        expected = brute_force(vectors, q[None, :], 10)
        assert list(found[0]) == [int(ids[r]) for r in expected]
        assert np.allclose(scores[0], vectors[expected] @ q, atol=1e-5)


def test_exact_scan_answers_as_the_flat_faiss_store_does():
    rng = np.random.default_rng(3)
    vectors, queries = unit(rng, 500, 32), unit(rng, 8, 32)
    ids = np.arange(500, dtype=np.int64) * 3 + 1
    flat, scan = FaissStore.build(vectors, ids), vectors_module.ExactScan(vectors, ids)
    gone = ids[::4]
    for k, exclude in ((10, None), (10, gone), (1000, gone)):  # k above what is left: padded with -1
        want_scores, want_ids = flat.search(queries, k, exclude=exclude)
        scores, found = scan.search(queries, k, exclude=exclude)
        assert found.tolist() == want_ids.tolist()
        live = want_ids >= 0
        assert np.allclose(scores[live], want_scores[live], atol=1e-5) and (scores[~live] == -np.inf).all()
    assert vectors_module.ExactScan(vectors[:0], ids[:0]).search(queries[:1], 5)[1].tolist() == [[-1]]


def test_store_add_remove_save_load(tmp_path):
    rng = np.random.default_rng(2)
    vectors = unit(rng, 300, 16)
    vs = FaissStore.build(vectors[:200], np.arange(200, dtype=np.int64))
    vs.add(vectors[200:], np.arange(200, 300, dtype=np.int64))
    vs.remove(np.arange(0, 300, 2, dtype=np.int64))  # the even ids go
    vs.save(tmp_path)
    loaded = FaissStore.load(str(tmp_path / FAISS_FILE), vs.params(), 150, 16)
    keep = np.arange(1, 300, 2)
    for q in unit(rng, 5, 16):
        _, found = loaded.search(q[None, :], 5)
        assert list(found[0]) == [int(keep[r]) for r in brute_force(vectors[keep], q[None, :], 5)]
    with pytest.raises(IndexCorrupt, match="holds 150×16 vectors, expected 151×16"):
        FaissStore.load(str(tmp_path / FAISS_FILE), vs.params(), 151, 16)


def clustered(rng, n, d, centers=80):
    """Unit vectors around topic centres, the shape real embeddings have (uniform noise has none)."""
    c = unit(rng, centers, d)
    v = c[rng.integers(0, centers, n)] + 0.35 * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_ivf_recall_against_brute_force(monkeypatch):
    monkeypatch.setattr(vectors_module, "FLAT_MAX", 1000)
    rng = np.random.default_rng(1)
    vectors, queries = clustered(rng, 20000, 48), clustered(rng, 50, 48)
    vs = FaissStore.build(vectors, np.arange(20000, dtype=np.int64))
    assert vs.params() == {"kind": "ivf", "nlist": 512, "nprobe": 16, "trained_on": 20000, "codes": "sq8"}
    assert vs.approximate
    # as a search asks it: twice k candidates by their 8-bit codes, then the best k by their vectors
    def top10(q):
        found = vs.search(q[None, :], 10 * vectors_module.APPROXIMATE_DEPTH)[1][0]
        return found[np.argsort(-(vectors[found] @ q), kind="stable")[:10]]

    recall = np.mean([len(set(top10(q)) & set(brute_force(vectors, q[None, :], 10))) / 10 for q in queries])
    assert recall >= 0.95


def test_ivf_store_of_float_vectors_written_before_the_codes_still_loads(tmp_path):
    import faiss

    rng = np.random.default_rng(4)
    vectors = unit(rng, 3000, 16)
    old = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 8, faiss.METRIC_INNER_PRODUCT)
    old.train(vectors)
    old.add_with_ids(vectors, np.arange(3000, dtype=np.int64))
    faiss.write_index(old, str(tmp_path / FAISS_FILE))
    params = {"kind": "ivf", "nlist": 8, "nprobe": 16, "trained_on": 3000}
    loaded = FaissStore.load(str(tmp_path / FAISS_FILE), params, 3000, 16)
    assert not loaded.approximate and loaded.params() == params  # no "codes": its lists hold the vectors
    q = vectors[5]
    assert list(loaded.search(q[None, :], 5)[1][0]) == brute_force(vectors, q[None, :], 5)  # every list probed


@pytest.fixture(scope="module")
def lexical(lexical_index):
    return Retriever(store.load(lexical_index.index_dir), lexical_index)


@pytest.mark.parametrize(
    "question, expected",
    [
        ("알리바바는 새 AI 칩을 어디서 제조하나?", "001-760573c8:p02"),  # 제조되고 있는 것으로
        ("화웨이는 H200급 칩을 개발할 수 있나?", "000-5cafd9bf:p02"),  # 화웨이가 … 개발할 수 있다는
        ("엔비디아 시가총액은 하루에 얼마나 증발했나?", "003-8169c992:p04"),  # 시가총액이 … 증발했다
        ("과학혁신판에 상장한 기업은 몇 곳인가?", "004-e00e9c22-a3:p01.1"),  # 상장 기업 수는 600곳에
        ("딥시크 앱은 애플 앱스토어에서 몇 위였나?", "003-8169c992:p12"),
        ("선전시가 발표한 AI 지원 대책은?", "002-bb1140d7:p04.1"),
    ],
)
def test_lexical_finds_paragraph_despite_different_particles(lexical, question, expected):
    result = lexical.search(question, k=3, mode="lexical")
    assert result.hits[0].chunk_id == expected


def test_lexical_top2_for_paraphrased_amount(lexical):
    hits = lexical.search("코어위브에 대한 엔비디아의 투자 규모는?", k=2, mode="lexical").hits
    assert "004-e00e9c22-a2:p01.1" in [h.chunk_id for h in hits]  # "20억 달러 … 추가 투자"


def test_hybrid_on_lexical_index_falls_back_with_a_note(lexical):
    result = lexical.search("H200 수출", k=3, mode="hybrid")
    assert result.mode == "lexical" and "lexical-only" in result.notes[0]
    with pytest.raises(RagqaError, match="lexical-only"):
        lexical.search("H200 수출", k=3, mode="dense")


def test_no_match_gives_no_hits(lexical):
    assert lexical.search("축구 월드컵 우승", k=5, mode="lexical").hits == []


def test_query_cleaning():
    assert clean_query("  알리바바\x00는\t칩을 \n ") == ("알리바바 는 칩을", [])
    with pytest.raises(UsageError):
        clean_query(" \n\t ")
    long, notes = clean_query("칩 " * 5000)
    assert len(long) == MAX_QUERY_CHARS and "truncated" in notes[0]


# ---------------------------------------------------------------- dense and hybrid logic (torch-free embedder)


def test_dense_search_is_the_exact_top_k(fake_engine):
    index, retriever = fake_engine.opened, fake_engine.retriever
    query = "알리바바 자체 AI 칩 개발"
    hits = fake_engine.search(query, k=5, mode="dense").hits
    qv = retriever.embedder().encode_queries([query])[0]
    oracle = brute_force(np.asarray(index.vectors), qv[None, :], 5)
    assert [h.chunk_id for h in hits] == [index.chunk_ids[r] for r in oracle]
    assert hits[0].score == pytest.approx(float(np.asarray(index.vectors)[oracle[0]] @ qv), abs=1e-5)


def test_hybrid_fuses_both_rankings(fake_engine):
    query = "화웨이 H200급 칩 개발"
    retriever = fake_engine.retriever
    depth = 50
    lex, den = retriever.lexical(query, depth), retriever.dense(query, depth)
    alpha = lexical_weight(tokenize(query), fake_engine.opened.bm25, True)  # a Korean query, a Korean corpus
    assert 0.1 <= alpha <= 0.5
    hybrid = fake_engine.search(query, k=5, mode="hybrid")
    assert hybrid.mode == "hybrid" and len(hybrid.hits) == 5
    expected = [fake_engine.opened.ids[r] for r, _ in minmax_fuse(lex, den, alpha)[:5]]
    assert [h.chunk_id for h in hybrid.hits] == expected
    assert [r for r, _ in lex[:5]] != [r for r, _ in den[:5]]  # the two rankings differ, so the fusion is tested
