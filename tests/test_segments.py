"""Incremental builds write segments: searches and per-chunk BM25 scores equal a from-scratch build of the same
corpus, deleted rows never come back, a merge folds the segments into a new base, and only folders ragqa can
prove it wrote are removed."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from conftest import make_settings, manifest_of
from fakes import FakeEmbedder
from ragqa import build, store
from ragqa.build import build_index
from ragqa.lexical import tokenize
from ragqa.retrieve import Retriever

QUERIES = ["미국이 H200 수출을 허용한 이유는?", "알리바바 자체 칩", "딥시크 쇼크 엔비디아 주가", "코어위브 투자", "평택 HBM 공장"]
NEW = "삼성전자가 평택에 새 HBM 공장을 짓는다. 엔비디아에 납품할 칩을 만든다.\n\n공장은 2027년에 가동하며 투자는 30조원이다."
GEN = "20260101T000000-0dead0"


@pytest.fixture
def roomy(monkeypatch):
    """Every change of these tests is small enough for a segment (the seeds are only 74 chunks)."""
    monkeypatch.setattr(build, "MAX_SEGMENT_SHARE", 1.0)
    monkeypatch.setattr(build, "MAX_DEAD_SHARE", 1.0)


def index(settings, corpus, **kw):
    return build_index([corpus], settings, embedder=FakeEmbedder(), **kw)


def segments(settings) -> list[str]:
    return [s["dir"] for s in manifest_of(settings)["segments"]]


def ranking(retriever, query, mode, k=1000) -> dict[str, float]:
    return {h.chunk_id: h.score for h in retriever.search(query, k, mode).hits}


def records(index) -> dict:
    """The index's record of each source file, without when it was read."""
    return {k: {f: v for f, v in r.items() if f not in ("stat", "read_at_ns")} for k, r in index.files_info.items()}


def assert_same_as_a_full_build(settings, corpus, tmp_path):
    """Every chunk's BM25 score, the corpus statistics and the lexical, dense and hybrid rankings equal those
    of an index built from scratch over the same files."""
    reference = make_settings(tmp_path / f"scratch-{len(list(tmp_path.iterdir()))}", embed_model="fake-64")
    index(reference, corpus)
    ours, theirs = store.load(settings.index_dir), store.load(reference.index_dir)
    assert ours.manifest.corpus == theirs.manifest.corpus
    assert ours.manifest.lexical.live_length == theirs.manifest.lexical.live_length
    assert records(ours) == records(theirs)  # what the next build compares the files with
    assert sorted(ours.rows) == sorted(theirs.rows)
    for query in QUERIES:
        tokens = tokenize(query)
        assert [ours.bm25.df(t) for t in tokens] == [theirs.bm25.df(t) for t in tokens]
        assert [ours.bm25.idf(t) for t in tokens] == pytest.approx([theirs.bm25.idf(t) for t in tokens], abs=1e-9)
        a, b = ours.bm25.scores(tokens), theirs.bm25.scores(tokens)
        mine = {cid: float(a[row]) for cid, row in ours.rows.items()}
        assert mine == pytest.approx({cid: float(b[row]) for cid, row in theirs.rows.items()}, abs=1e-5)
        assert np.all(a[ours.dead] == 0)
    r1 = Retriever(ours, settings, embedder=FakeEmbedder())
    r2 = Retriever(theirs, reference, embedder=FakeEmbedder())
    for query in QUERIES:
        for mode in ("lexical", "dense", "hybrid"):
            for k in (5, 1000):  # the top 5 (hybrid: fused from shallower lists) and every chunk that scores
                got, want = ranking(r1, query, mode, k), ranking(r2, query, mode, k)
                # the same scores; the same chunks above the last one (chunks of equal text tie, and rows
                # in another order may put another of them at the cut)
                assert sorted(got.values()) == pytest.approx(sorted(want.values()), abs=1e-5), (query, mode, k)
                cut = min(want.values(), default=0.0) + 1e-5
                above = {c: v for c, v in want.items() if v > cut}
                assert {c: v for c, v in got.items() if v > cut} == pytest.approx(above, abs=1e-5), (query, mode, k)


def test_adds_changes_and_removals_as_segments_equal_a_full_build(tmp_path, corpus_dir, roomy, monkeypatch):
    settings = make_settings(tmp_path / "seg", embed_model="fake-64")
    for f in corpus_dir.iterdir():  # written a minute ago: not within a second of the build that reads them
        os.utime(f, (time.time() - 60, time.time() - 60))
    index(settings, corpus_dir)
    base = segments(settings)
    foreign = settings.index_dir / "data-2023"  # a user's folder named like a segment, without a marker
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    (settings.index_dir / "notes.txt").write_text("mine too", encoding="utf-8")

    decoded = []  # an add must not read every chunk of the index
    real_all = store.StringTable.all
    monkeypatch.setattr(store.StringTable, "all", lambda self: decoded.append(1) or real_all(self))

    def add(change):
        change()
        decoded.clear()
        report = index(settings, corpus_dir)
        assert not decoded and not report.up_to_date
        assert assert_same_as_a_full_build(settings, corpus_dir, tmp_path) is None
        return report

    report = add(lambda: (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8"))
    assert report.added and report.embedded == 2 and report.reused_vectors == 74 and report.tokenized == 2
    newest = manifest_of(settings)["segments"][-1]  # it records the one file it read, not all of them
    assert store.FILES not in newest["files"]
    changes = json.loads((settings.index_dir / newest["dir"] / store.FILES_CHANGED).read_text(encoding="utf-8"))
    assert list(changes["changed"]) == [str((corpus_dir / "005_new.txt").resolve())] and changes["removed"] == []
    changed = corpus_dir / "001_760573c8890242e6.txt"
    text = changed.read_text(encoding="utf-8")
    first = next(p for p in text.split("\n\n") if len(p) > 80)
    report = add(lambda: changed.write_text(text.replace(first, first + " 엔비디아 H200 칩 수출이 늘었다.", 1), encoding="utf-8"))
    assert report.updated == [str(changed)] and report.embedded == 1  # its other paragraphs keep their vectors
    add(lambda: (corpus_dir / "003_8169c9927aad0281.txt").unlink())
    add(lambda: ((corpus_dir / "006_more.txt").write_text(NEW.replace("평택", "용인"), encoding="utf-8"),
                 (corpus_dir / "005_new.txt").unlink()))
    assert segments(settings)[0] == base[0] and len(segments(settings)) == 5
    index_now = store.load(settings.index_dir)
    assert len(index_now.dead) > 15 and not any(cid.startswith("003-") for cid in index_now.rows)

    # one segment more would exceed MAX_SEGMENTS: the next build folds the later segments into its own, and
    # the base stays (only its deleted rows stay tombstones)
    before = segments(settings)
    (settings.index_dir / f".tmp-{GEN}").mkdir()  # what a killed build left
    (settings.index_dir / f".tmp-{GEN}" / store.GEN_MARKER).write_text(GEN, encoding="ascii")
    monkeypatch.setattr(build, "MAX_SEGMENTS", len(before))
    (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8")
    decoded.clear()
    report = index(settings, corpus_dir)
    assert segments(settings)[0] == base[0] and len(segments(settings)) == 2 and segments(settings)[1] not in before
    assert not decoded and report.embedded == report.tokenized == 2  # the new file's only: the folded rows' are kept
    folded = store.load(settings.index_dir)
    assert folded.dead.size and folded.dead.max() < folded.segments[1].start
    assert_same_as_a_full_build(settings, corpus_dir, tmp_path)
    add(lambda: (corpus_dir / "006_more.txt").unlink())  # and segments go on from there

    # the merge: more deleted rows than MAX_DEAD_SHARE, so the next build writes a new base
    before = segments(settings)
    monkeypatch.setattr(build, "MAX_DEAD_SHARE", 0.0)
    (corpus_dir / "006_more.txt").write_text(NEW.replace("평택", "용인"), encoding="utf-8")
    report = index(settings, corpus_dir)
    assert len(segments(settings)) == 1 and segments(settings)[0] not in before
    assert store.load(settings.index_dir).dead.size == 0
    assert_same_as_a_full_build(settings, corpus_dir, tmp_path)
    names = sorted(p.name for p in settings.index_dir.iterdir())
    assert names == sorted([".lock", store.INDEX_MARKER, store.MANIFEST, "data-2023", "notes.txt", *segments(settings)])
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_thresholds_decide_between_a_segment_and_a_new_base(tmp_path, corpus_dir):
    settings = make_settings(tmp_path / "seg", embed_model="fake-64")
    index(settings, corpus_dir)
    (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8")  # 2 chunks of 74: a segment
    index(settings, corpus_dir)
    assert len(segments(settings)) == 2
    (corpus_dir / "005_new.txt").unlink()  # 2 rows deleted of 76: a segment
    index(settings, corpus_dir)
    assert len(segments(settings)) == 3
    (corpus_dir / "003_8169c9927aad0281.txt").unlink()  # 15 more deleted: 17 of 76 rows, still a segment
    index(settings, corpus_dir)
    assert len(segments(settings)) == 4
    (corpus_dir / "001_760573c8890242e6.txt").unlink()  # more than MAX_DEAD_SHARE of the rows deleted: a new base
    index(settings, corpus_dir)
    assert len(segments(settings)) == 1
    big = "\n\n".join(f"{i}번째 문단: 엔비디아 H200 칩 수출 허용에 대한 분석이 이어진다." for i in range(12))
    (corpus_dir / "007_big.txt").write_text(big, encoding="utf-8")  # 12 new chunks of fewer than 50: a new base
    index(settings, corpus_dir)
    assert len(segments(settings)) == 1
    assert_same_as_a_full_build(settings, corpus_dir, tmp_path)


def test_a_lexical_only_index_takes_segments_too(tmp_path, corpus_dir, roomy):
    settings = make_settings(tmp_path / "seg")
    build_index([corpus_dir], settings)
    (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8")
    (corpus_dir / "000_5cafd9bf1db64a43.txt").unlink()
    build_index([corpus_dir], settings)
    assert len(segments(settings)) == 2
    ours = store.load(settings.index_dir)
    reference = make_settings(tmp_path / "scratch")
    build_index([corpus_dir], reference)
    theirs = store.load(reference.index_dir)
    for query in QUERIES:
        a = Retriever(ours, settings).search(query, 1000, "lexical").hits
        b = Retriever(theirs, reference).search(query, 1000, "lexical").hits
        assert {h.chunk_id: h.score for h in a} == pytest.approx({h.chunk_id: h.score for h in b}, abs=1e-5)


def test_deleted_rows_never_come_out_of_an_ivf_base(tmp_path, corpus_dir, roomy, monkeypatch):
    import ragqa.vectors

    monkeypatch.setattr(ragqa.vectors, "FLAT_MAX", 10)  # the seeds' 74 chunks get an IVF base
    settings = make_settings(tmp_path / "seg", embed_model="fake-64")
    index(settings, corpus_dir)
    gone = corpus_dir / "003_8169c9927aad0281.txt"
    texts = gone.read_text(encoding="utf-8")
    gone.unlink()
    index(settings, corpus_dir)
    opened = store.load(settings.index_dir)
    assert opened.manifest.segments[0].store["kind"] == "ivf" and len(opened.dead) >= 15
    r = Retriever(opened, settings, embedder=FakeEmbedder())
    for query in [*QUERIES, texts[:200]]:
        hits = r.search(query, 1000, "dense").hits
        assert hits and not any(h.doc_id.startswith("003-") for h in hits)
    flat = r.search(texts[:200], 1000, "dense").hits
    assert len(flat) <= opened.manifest.corpus.chunks


def test_a_merge_moves_the_segments_into_the_base_ivf_store_without_training_it(tmp_path, corpus_dir, roomy, monkeypatch):
    import ragqa.vectors

    monkeypatch.setattr(ragqa.vectors, "FLAT_MAX", 10)  # the seeds' 74 chunks get an IVF base (one list: exact)
    settings = make_settings(tmp_path / "seg", embed_model="fake-64")
    index(settings, corpus_dir)
    first = store.load(settings.index_dir)
    ids_before = dict(zip(first.chunk_ids, first.vector_ids.tolist()))
    (corpus_dir / "003_8169c9927aad0281.txt").unlink()
    index(settings, corpus_dir)
    (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8")
    index(settings, corpus_dir)
    monkeypatch.setattr(build, "MAX_DEAD_SHARE", 0.0)
    (corpus_dir / "006_more.txt").write_text(NEW.replace("평택", "용인"), encoding="utf-8")
    index(settings, corpus_dir)  # the merge
    merged = store.load(settings.index_dir)
    assert len(merged.segments) == 1 and merged.manifest.segments[0].store["trained_on"] == 74  # not retrained
    ids_after = dict(zip(merged.chunk_ids, merged.vector_ids.tolist()))
    assert all(ids_after[c] == ids_before[c] for c in ids_after if c in ids_before)
    assert len(set(ids_after.values())) == merged.n == merged.vector_store.ntotal
    assert_same_as_a_full_build(settings, corpus_dir, tmp_path)


def test_a_failed_add_leaves_the_previous_index(tmp_path, corpus_dir, roomy, monkeypatch):
    settings = make_settings(tmp_path / "seg", embed_model="fake-64")
    index(settings, corpus_dir)
    (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8")
    index(settings, corpus_dir)
    before = manifest_of(settings)
    (corpus_dir / "006_more.txt").write_text(NEW.replace("평택", "용인"), encoding="utf-8")

    def boom(tmp, contents):
        (tmp / "df.npy").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_data", boom)
    with pytest.raises(KeyboardInterrupt):
        index(settings, corpus_dir)
    assert manifest_of(settings) == before
    assert sorted(p.name for p in settings.index_dir.iterdir()) == sorted(
        [".lock", store.INDEX_MARKER, store.MANIFEST, *segments(settings)]
    )
    assert store.load(settings.index_dir).manifest.corpus.chunks == 76


def test_a_segment_folder_the_manifest_names_is_never_removed_as_debris(tmp_path, corpus_dir, roomy):
    settings = make_settings(tmp_path / "seg", embed_model="fake-64")
    index(settings, corpus_dir)
    (corpus_dir / "005_new.txt").write_text(NEW, encoding="utf-8")
    index(settings, corpus_dir)
    named = segments(settings)
    stray = settings.index_dir / f"data-{GEN}"  # a segment a killed merge renamed but never committed
    shutil.copytree(settings.index_dir / named[1], stray)
    (stray / store.GEN_MARKER).write_text(GEN, encoding="ascii")
    assert index(settings, corpus_dir).up_to_date
    assert not stray.exists() and all((settings.index_dir / d).is_dir() for d in named)
