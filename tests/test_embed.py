"""The real sentence-transformers path on a tiny local model; dense and hybrid search; incremental builds."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from conftest import make_settings
from ragqa import store
from ragqa.build import build_index
from ragqa.embed import SentenceTransformerEmbedder, load_embedder
from ragqa.errors import IndexMismatch, ModelUnavailable
from ragqa.models import ensure_embedder
from ragqa.retrieve import Retriever


@pytest.fixture(scope="module")
def embedder(tiny_embedder_path):
    return SentenceTransformerEmbedder(
        tiny_embedder_path, "tiny", query_prompt="query: ", passage_prompt="passage: ", batch_size=4
    )


def test_query_and_passage_encodings_are_separate_and_normalized(embedder):
    text = "엔비디아 H200 중국 수출 허용"
    q = embedder.encode_queries([text])
    p = embedder.encode_passages([text])
    assert q.shape == p.shape == (1, 32) and q.dtype == np.float32
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    assert not np.allclose(q, p)  # the "query: " / "passage: " prompts change the input
    assert np.allclose(embedder.encode_queries([text]), q)  # deterministic


def test_batched_passage_encoding_matches_one_by_one(embedder, seed_texts):
    texts = [t[:200] for t in seed_texts] * 3
    seen = []
    batched = embedder.encode_passages(texts, progress=seen.append)
    single = np.vstack([embedder.encode_passages([t]) for t in texts])
    assert np.allclose(batched, single, atol=1e-5)
    assert sum(seen) == len(texts)


def test_dense_index_manifest(dense_index, tiny_embedder_path):
    index = store.load(dense_index.index_dir)
    d = index.dense
    assert d.engine == "sentence-transformers" and d.model == str(tiny_embedder_path)
    assert d.dim == 32 and d.normalized is True and d.weights.startswith("sha256:")
    assert d.store.kind == "faiss" and d.store.params == {"kind": "flat"}
    assert index.vectors.shape == (74, 32)
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1, atol=1e-5)


def test_dense_search_matches_brute_force(dense_index):
    index = store.load(dense_index.index_dir)
    retriever = Retriever(index, dense_index)
    query = "알리바바 자체 AI 칩 개발"
    result = retriever.search(query, k=5, mode="dense")
    qv = retriever.embedder().encode_queries([query])[0]
    oracle = np.argsort(-(np.asarray(index.vectors) @ qv), kind="stable")[:5]
    assert [h.chunk_id for h in result.hits] == [index.chunk_ids[r] for r in oracle]
    assert result.hits[0].score == pytest.approx(float(np.asarray(index.vectors)[oracle[0]] @ qv), abs=1e-5)


def test_a_model_of_the_wrong_dimension_is_refused_once_not_reloaded_per_query(dense_index, monkeypatch):
    import ragqa.embed

    class Wrong:
        name, dim = "wrong-size", 7
        identity = {"dim": 7}

    loads = []
    monkeypatch.setattr(ragqa.embed, "load_embedder", lambda spec, settings: loads.append(spec) or Wrong())
    retriever = Retriever(store.load(dense_index.index_dir), dense_index)
    for _ in range(3):
        with pytest.raises(IndexMismatch, match="another embedder \\(dim 32 ≠ 7\\)"):
            retriever.search("화웨이 칩", k=5, mode="hybrid")
    assert len(loads) == 1


def test_incremental_builds_embed_only_what_changed(tmp_path, corpus_dir, tiny_embedder_path):
    settings = make_settings(tmp_path, embed_model=str(tiny_embedder_path))
    first = build_index([corpus_dir], settings, embed_explicit=True)
    assert first.embedded == 74 and first.reused_vectors == 0
    again = build_index([corpus_dir], settings, embed_explicit=True)
    assert again.up_to_date and again.embedded == 0
    (corpus_dir / "005_new.txt").write_text(
        "엔비디아가 새로운 AI 칩을 발표했다. 이 칩은 내년에 출시될 예정이라고 회사 측은 밝혔다.", encoding="utf-8"
    )
    added = build_index([corpus_dir], settings, embed_explicit=True)
    assert added.chunks == 75 and added.embedded == 1 and added.reused_vectors == 74
    assert added.tokenized == 1 and added.reread_files == 1  # the five unchanged files were not read again
    assert added.dropped_lines == first.dropped_lines
    index = store.load(settings.index_dir)
    assert "005-new:p01" in index.rows
    fresh = SentenceTransformerEmbedder(tiny_embedder_path, "t").encode_passages([index.texts[0]])[0]
    assert np.allclose(index.vectors[0], fresh, atol=1e-5)  # reused vectors are the right ones


def test_index_built_with_another_model_is_refused(dense_index):
    other = dense_index.model_copy(update={"embed_model": "e5-small"})
    with pytest.raises(IndexMismatch, match="built with embedding model"):
        Retriever(store.load(dense_index.index_dir), other, embed_explicit=True)


def test_offline_build_with_a_model_to_download_is_lexical_only_and_says_how_to_fix(tmp_path, corpus_dir):
    settings = make_settings(tmp_path, embed_model="e5-small-fp32", offline=True)
    report = build_index([corpus_dir], settings)
    assert report.dense is None and "ragqa models pull e5-small-fp32" in report.dense_note
    index = store.load(settings.index_dir)
    assert index.manifest.dense is None and index.manifest.dense_wanted == "e5-small-fp32"


def test_explicit_model_that_is_unavailable_is_an_error(tmp_path, corpus_dir):
    settings = make_settings(tmp_path, embed_model="bge-m3", offline=True)
    with pytest.raises(ModelUnavailable, match="bge-m3"):
        build_index([corpus_dir], settings, embed_explicit=True)
    assert not (tmp_path / "index" / store.MANIFEST).exists()


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    """A hub that never answers is asked once, for hub_timeout seconds: no retry loop of 20+ s."""
    calls = []

    def blackhole(address, timeout=None, **kw):
        calls.append((address, timeout))
        raise socket.timeout("timed out")

    monkeypatch.setattr(socket, "create_connection", blackhole)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    settings = make_settings(tmp_path, hub_timeout=0.5)
    with pytest.raises(ModelUnavailable, match="no answer from huggingface.co within 0.5 s"):
        ensure_embedder("e5-small-fp32", settings)
    assert calls == [(("huggingface.co", 443), 0.5)]


def test_model_not_downloaded_and_no_download_allowed(tmp_path):
    with pytest.raises(ModelUnavailable, match="ragqa models pull e5-base"):
        load_embedder("e5-base", make_settings(tmp_path), allow_download=False)


def test_ivf_index_is_updated_in_place_not_rebuilt(tmp_path, corpus_dir, tiny_embedder_path, monkeypatch):
    import ragqa.vectors

    monkeypatch.setattr(ragqa.vectors, "FLAT_MAX", 10)  # the seeds' 74 chunks get an IVF index
    settings = make_settings(tmp_path, embed_model=str(tiny_embedder_path))
    build_index([corpus_dir], settings, embed_explicit=True)
    first = store.load(settings.index_dir)
    assert first.dense.store.params["kind"] == "ivf" and first.dense.store.params["trained_on"] == 74
    ids_before = dict(zip(first.chunk_ids, first.vector_ids.tolist()))

    src = corpus_dir / "000_5cafd9bf1db64a43.txt"
    src.write_text(src.read_text(encoding="utf-8").replace("16일 업계에 따르면", "17일 업계에 따르면"), encoding="utf-8")
    (corpus_dir / "005_new.txt").write_text("엔비디아가 새 칩을 내놓았다. 출시는 내년이라고 회사는 밝혔다.", encoding="utf-8")
    report = build_index([corpus_dir], settings, embed_explicit=True)
    assert report.embedded == 2  # the changed paragraph and the new one
    second = store.load(settings.index_dir)
    assert second.dense.store.params["trained_on"] == 74  # updated, not retrained
    ids_after = dict(zip(second.chunk_ids, second.vector_ids.tolist()))
    unchanged = [c for c in ids_before if c in ids_after and c not in ("000-5cafd9bf:p04",)]
    assert all(ids_after[c] == ids_before[c] for c in unchanged)
    assert ids_after["000-5cafd9bf:p04"] > max(ids_before.values())
    assert len(set(ids_after.values())) == second.n == 75

    retriever = Retriever(second, settings)
    query = "엔비디아 새 칩 출시"
    hits = retriever.search(query, k=5, mode="dense").hits
    qv = retriever.embedder().encode_queries([query])[0]
    oracle = np.argsort(-(np.asarray(second.vectors) @ qv), kind="stable")[:5]
    assert [h.chunk_id for h in hits] == [second.chunk_ids[r] for r in oracle]  # nlist 1: exact
