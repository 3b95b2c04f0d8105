"""An index whose vectors and BM25 live in Milvus (a Milvus Lite file the tests start themselves) answers
exactly like the FAISS default, keeps its generations safe, adds only what is new, and fails cleanly when the
server is away."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SEEDS, make_settings
from fakes import FakeEmbedder
from ragqa.cli import app
from ragqa.engine import Engine
from ragqa.evaluate import load_gold


runner = CliRunner()
QUESTIONS = [c.question for c in load_gold(SEEDS / "gold_qa.jsonl")]


def engine_for(tmp, store: str | None, **kw) -> Engine:
    extra = {"store": store} if store else {}
    return Engine(make_settings(tmp, embed_model="fake-64", **extra, **kw), embedder=FakeEmbedder())


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The seeds indexed twice with the same embedder: FAISS (default) and a Milvus Lite file."""
    faiss = engine_for(tmp_path_factory.mktemp("faiss"), None)
    faiss.index([SEEDS])
    tmp = tmp_path_factory.mktemp("milvus")
    milvus = engine_for(tmp, str(tmp / "milvus.db"))
    milvus.index([SEEDS])
    return faiss, milvus


def test_the_manifest_names_the_milvus_collection(pair):
    _, milvus = pair
    store = milvus.opened.dense.store
    assert store.kind == "milvus" and store.params["collection"].startswith("ragqa_")
    assert store.params["generation"] == 1 and store.params["uri"].endswith("milvus.db")
    assert not (milvus.settings.index_dir / "data").exists()
    assert not list(milvus.settings.index_dir.glob("data-*/faiss.index"))


def ranked_above(hits, cut: float) -> dict[str, float]:
    """The hits clearly above `cut`, by chunk ID: both lists are sorted by score, so equal sets with scores
    within 1e-4 are the same ranking up to ties (rounding scores to compare them split a few at a boundary)."""
    return {h.chunk_id: h.score for h in hits if h.score > cut + 1e-4}


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_same_hits_as_faiss_for_every_gold_question(pair, mode):
    faiss, milvus = pair
    for q in QUESTIONS:
        a, b = faiss.search(q, k=10, mode=mode).hits, milvus.search(q, k=10, mode=mode).hits
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-4), (mode, q)
        # the same passages in the same order; passages with equal scores may come in either order, and of
        # those tied with the last one either may make the cut
        last = a[-1].score if a else 0.0
        assert ranked_above(a, last) == pytest.approx(ranked_above(b, last), abs=1e-4), (mode, q)


def test_same_answers_as_faiss(pair):
    faiss, milvus = pair
    for q in QUESTIONS[:12]:
        a, b = faiss.ask(q), milvus.ask(q)
        assert (a.answer, a.answerable) == (b.answer, b.answerable), q


def test_an_added_article_writes_only_its_chunks_and_a_killed_build_changes_nothing(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus, ignore=shutil.ignore_patterns("*.jsonl"))
    engine = engine_for(tmp_path, str(tmp_path / "m.db"))
    engine.index([corpus])
    before = {q: [h.chunk_id for h in engine.search(q, k=5).hits] for q in QUESTIONS[:10]}
    store = engine.opened.vector_store

    (corpus / "new.txt").write_text("삼성전자가 새 HBM 공장을 평택에 짓는다.\n\n공장은 2027년에 가동한다.\n", encoding="utf-8")
    from ragqa import store as index_store

    def killed(*a, **k):
        raise KeyboardInterrupt  # the build dies after writing its rows, before the manifest switch

    monkeypatch.setattr(index_store, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        engine_for(tmp_path, None).index()
    monkeypatch.undo()
    reader = engine_for(tmp_path, None)
    assert {q: [h.chunk_id for h in reader.search(q, k=5).hits] for q in before} == before
    assert reader.opened.dense.store.params["generation"] == 1

    report = engine_for(tmp_path, None).index()
    new = report.embedded
    assert 1 <= new <= 2 and report.reused_vectors == report.chunks - new  # only the new article is embedded
    after = engine_for(tmp_path, None)
    assert after.opened.dense.store.params["generation"] == 2
    assert after.opened.vector_store.ntotal == report.chunks
    hits = after.search("평택 HBM 공장", k=3, mode="lexical").hits
    assert hits and hits[0].doc_id.startswith("new")
    assert store.ntotal == report.chunks - new  # a reader of generation 1 still sees generation 1


def test_an_unreachable_server_is_one_clear_error_in_bounded_time(tmp_path):
    start = time.monotonic()
    out = runner.invoke(app, ["index", str(SEEDS), "--index-dir", str(tmp_path / "idx"), "--embed-model", "e5-small",
                              "--store", "http://127.0.0.1:1"])
    assert out.exit_code == 1, out.output
    assert "http://127.0.0.1:1" in out.output and "Traceback" not in out.output
    assert time.monotonic() - start < 60
    assert not (tmp_path / "idx" / "manifest.json").exists()


def test_an_unknown_store_is_a_usage_error(tmp_path):
    out = runner.invoke(app, ["index", "--index-dir", str(tmp_path / "idx"), "--store", "elastic"])
    assert out.exit_code == 2 and "unknown store 'elastic'" in out.output


def test_a_reader_whose_server_is_away_gets_one_clear_error(pair, tmp_path):
    from conftest import index_copy, manifest_of, write_manifest

    _, milvus = pair
    settings = index_copy(milvus.settings, tmp_path)
    manifest = manifest_of(settings)
    manifest["dense"]["store"]["params"]["uri"] = "http://127.0.0.1:1"
    write_manifest(settings, manifest)
    start = time.monotonic()
    out = runner.invoke(app, ["search", "H200 수출", "--mode", "lexical", "--index-dir", str(settings.index_dir)])
    assert out.exit_code == 1 and "cannot reach the Milvus server at http://127.0.0.1:1" in out.output, out.output
    assert "Traceback" not in out.output and time.monotonic() - start < 30


def test_sigkill_during_a_milvus_backed_rebuild_leaves_the_previous_generation(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus, ignore=shutil.ignore_patterns("*.jsonl"))
    index_dir, db = tmp_path / "index", tmp_path / "m.db"
    env = {**os.environ, "RAGQA_OFFLINE": "1"}
    cli = [sys.executable, "-m", "ragqa"]
    subprocess.run([*cli, "index", str(corpus), "--index-dir", str(index_dir), "--store", str(db)], env=env,
                   check=True, capture_output=True)
    ask = [*cli, "search", "--json", "--index-dir", str(index_dir)]
    before = {q: subprocess.run([*ask, q], env=env, capture_output=True, text=True).stdout for q in QUESTIONS[:3]}
    (corpus / "new.txt").write_text("삼성전자가 새 HBM 공장을 평택에 짓는다.\n\n공장은 2027년에 가동한다.\n", encoding="utf-8")
    (corpus / "000_5cafd9bf1db64a43.txt").unlink()  # rows to end as well as rows to add
    build = subprocess.Popen([*cli, "index", "--index-dir", str(index_dir)], env=env, stderr=subprocess.PIPE, text=True)
    for line in build.stderr:
        if line.startswith("saving"):  # the Milvus rows are written; the manifest is not switched yet
            build.send_signal(signal.SIGKILL)
            break
    build.wait()
    assert build.returncode == -signal.SIGKILL
    generation = json.loads((index_dir / "manifest.json").read_text())["dense"]["store"]["params"]["generation"]
    if generation == 1:  # killed before the switch (nearly always): the old index answers exactly as before
        assert {q: subprocess.run([*ask, q], env=env, capture_output=True, text=True).stdout for q in before} == before
    done = subprocess.run([*cli, "index", "--index-dir", str(index_dir), "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    engine = Engine(make_settings(tmp_path, index_dir=index_dir))
    assert engine.opened.dense.store.params["generation"] == generation + 1
    assert engine.opened.vector_store.ntotal == engine.opened.n  # the killed build's rows are gone
    assert engine.search("평택 HBM 공장", k=1, mode="lexical").hits[0].doc_id.startswith("new")


def test_collections_a_build_no_longer_needs_are_dropped(tmp_path):
    from ragqa.build import milvus_prefix
    from ragqa.milvus import MilvusStore

    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus, ignore=shutil.ignore_patterns("*.jsonl"))
    engine = engine_for(tmp_path, str(tmp_path / "m.db"))
    engine.index([corpus])
    current = engine.opened.dense.store.params["collection"]
    prefix = milvus_prefix(engine.settings.index_dir)
    debris = MilvusStore.open(str(tmp_path / "m.db"), prefix + "killed", 64, 1, create=True)  # a killed fresh build's
    foreign = MilvusStore.open(str(tmp_path / "m.db"), "someone_else", 64, 1, create=True)
    (corpus / "new.txt").write_text("삼성전자가 새 HBM 공장을 평택에 짓는다.\n", encoding="utf-8")
    engine_for(tmp_path, None).index()
    names = set(debris.client.list_collections())
    assert current in names and prefix + "killed" not in names and "someone_else" in names
    foreign.close()
    debris.close()


def test_a_milvus_lite_path_that_is_a_users_file_is_refused_untouched(tmp_path):
    notes = tmp_path / "notes.db"
    notes.write_text("precious", encoding="utf-8")
    out = runner.invoke(app, ["index", str(SEEDS), "--index-dir", str(tmp_path / "idx"), "--store", str(notes)])
    assert out.exit_code == 1 and "it is a file, not a Milvus Lite data folder" in out.output, out.output
    assert notes.read_text(encoding="utf-8") == "precious"


def test_a_lexical_only_index_moves_to_milvus_with_an_embedding_model(tmp_path):
    engine = Engine(make_settings(tmp_path))  # --embed-model none
    engine.index([SEEDS])
    moved = engine_for(tmp_path, str(tmp_path / "m.db"))
    moved.index()
    assert moved.opened.dense.store.kind == "milvus"
    assert moved.opened.vector_store.ntotal == moved.opened.n


def test_leaving_milvus_drops_the_old_collection_one_build_later(tmp_path, monkeypatch):
    import ragqa.milvus
    from ragqa.milvus import MilvusStore

    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus, ignore=shutil.ignore_patterns("*.jsonl"))
    db = str(tmp_path / "m.db")
    engine_for(tmp_path, db).index([corpus])
    old = engine_for(tmp_path, None).opened.dense.store.params["collection"]
    watcher = MilvusStore.open(db, "someone_else", 64, 1, create=True)

    moved = engine_for(tmp_path, "faiss")
    moved.index()  # to FAISS: a reader of the Milvus generation may still be searching `old`
    assert moved.opened.dense.store.kind == "faiss"
    assert [r.collection for r in moved.opened.manifest.retired_stores] == [old]
    assert old in watcher.client.list_collections()

    def away(uri, timeout=10.0):
        raise ragqa.milvus.StoreUnavailable(f"cannot reach the Milvus server at {uri} within {timeout:g} s (no answer)")

    (corpus / "a.txt").write_text("삼성전자가 새 HBM 공장을 평택에 짓는다.\n", encoding="utf-8")
    monkeypatch.setattr(ragqa.milvus, "connect", away)
    report = engine_for(tmp_path, None).index()  # the server is away: the collection stays listed, with a warning
    assert any(old in w and "tries again" in w for w in report.warnings), report.warnings
    assert [r.collection for r in engine_for(tmp_path, None).opened.manifest.retired_stores] == [old]

    monkeypatch.undo()
    (corpus / "b.txt").write_text("SK하이닉스가 HBM4 양산을 시작했다.\n", encoding="utf-8")
    report = engine_for(tmp_path, None).index()
    assert not report.warnings and engine_for(tmp_path, None).opened.manifest.retired_stores == []
    names = watcher.client.list_collections()
    assert old not in names and "someone_else" in names
    watcher.close()
