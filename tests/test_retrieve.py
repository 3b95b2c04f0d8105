"""Search: RRF by hand, FAISS against a brute-force oracle, lexical search on the seeds."""

from __future__ import annotations

import numpy as np
import pytest

from ragqa import store
from ragqa import vectors as vectors_module
from ragqa.errors import IndexCorrupt, RagqaError, UsageError
from ragqa.retrieve import MAX_QUERY_CHARS, Retriever, clean_query, rrf
from ragqa.vectors import FAISS_FILE, FaissStore


def test_rrf_hand_computed():
    # a: ranks 1 and 3 -> 1/61 + 1/63; b: ranks 2 and 1 -> 1/62 + 1/61; c: rank 3 -> 1/63; d: rank 2 -> 1/62
    fused = dict(rrf([["a", "b", "c"], ["b", "d", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["d"] == pytest.approx(1 / 62)
    assert [key for key, _ in rrf([["a", "b", "c"], ["b", "d", "a"]], k=60)] == ["b", "a", "d", "c"]


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
    assert vs.params() == {"kind": "ivf", "nlist": 512, "nprobe": 16, "trained_on": 20000}
    recall = np.mean(
        [len(set(vs.search(q[None, :], 10)[1][0]) & set(brute_force(vectors, q[None, :], 10))) / 10 for q in queries]
    )
    assert recall >= 0.95


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
    lex = [h.chunk_id for h in fake_engine.search(query, k=50, mode="lexical").hits]
    den = [h.chunk_id for h in fake_engine.search(query, k=50, mode="dense").hits]
    hybrid = fake_engine.search(query, k=5, mode="hybrid")
    assert hybrid.mode == "hybrid" and len(hybrid.hits) == 5
    assert [h.chunk_id for h in hybrid.hits] == [c for c, _ in rrf([lex, den])][:5]
    assert lex[:5] != den[:5]  # the two rankings differ, so the fusion is tested
