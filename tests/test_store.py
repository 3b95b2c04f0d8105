"""The index directory: round trip, validation on load, atomic replacement, locking."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import SEEDS, index_copy, make_settings, manifest_of, write_manifest
from ragqa import store
from ragqa.build import build_index
from ragqa.chunking import CHUNKER_VERSION
from ragqa.errors import IndexBusy, IndexCorrupt, IndexMissing


@pytest.fixture
def built(tmp_path, lexical_index):
    """A private copy of the seed index that a test may damage."""
    return index_copy(lexical_index, tmp_path)


def test_round_trip(built):
    index = store.load(built.index_dir)
    assert index.n == 74 and index.chunk_ids[0] == "000-5cafd9bf:p01"
    row = index.rows["003-8169c992:p04"]
    assert "5900억달러" in index.texts[row]
    assert index.title(row).startswith("中 AI ‘딥시크’ 쇼크에")
    assert index.doc_id(row) == "003-8169c992"
    m = index.manifest
    assert m.dense is None and "on request" in m.dense_unavailable
    assert m.chunker.model_dump() == {"version": CHUNKER_VERSION, "max_tokens": 220}
    assert m.corpus.dropped_lines == 37 and m.corpus.articles == 9 and m.corpus.languages == {"ko": 74}
    assert m.signature.files == 5 and len(index.files_info) == 5
    assert index.files_info[str(SEEDS / "000_5cafd9bf1db64a43.txt")]["sha256"] == hashlib.sha256(
        (SEEDS / "000_5cafd9bf1db64a43.txt").read_bytes()
    ).hexdigest()


def test_missing_index(tmp_path):
    with pytest.raises(IndexMissing, match="ragqa index"):
        store.load(tmp_path / "nothing")


def test_corrupt_manifest(built):
    (built.index_dir / store.MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="not valid JSON"):
        store.load(built.index_dir)


def test_truncated_data_file(built):
    m = manifest_of(built)
    path = built.index_dir / m["data_dir"] / "chunk_text.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(IndexCorrupt, match="truncated"):
        store.load(built.index_dir)


def test_chunk_table_row_mismatch(built):
    m = manifest_of(built)
    m["corpus"]["chunks"] = 73
    write_manifest(built, m)
    with pytest.raises(IndexCorrupt, match="has 74 rows but the manifest counts 73 chunks"):
        store.load(built.index_dir)


def test_failed_build_leaves_previous_index_and_no_debris(built, monkeypatch):
    before = store.load(built.index_dir)
    texts = [before.texts[i] for i in range(before.n)]

    def boom(tmp, contents):
        (tmp / "chunk_text.bin").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_data", boom)
    with pytest.raises(KeyboardInterrupt):
        build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300}))
    after = store.load(built.index_dir)
    assert after.manifest.generation == before.manifest.generation
    assert [after.texts[i] for i in range(after.n)] == texts
    assert sorted(p.name for p in built.index_dir.iterdir()) == sorted(
        [".lock", store.INDEX_MARKER, store.MANIFEST, before.manifest.data_dir]
    )


def test_next_build_removes_debris_of_killed_builds_and_only_that(built):
    for gen in ("20260101T000000-dead00", "20260101T000000-01d000"):
        for folder in (built.index_dir / f".tmp-{gen}", built.index_dir / f"data-{gen}"):
            folder.mkdir()
            (folder / "vectors.npy").write_bytes(b"x" * 100)
            (folder / store.GEN_MARKER).write_text(gen, encoding="ascii")
    (built.index_dir / "data-20260101T000000-a11ce0").mkdir()  # no marker: not provably ragqa's
    (built.index_dir / ".manifest-20260101T000000-dead00.tmp").write_text("{}")
    report = build_index([SEEDS], built)
    assert report.up_to_date
    names = sorted(p.name for p in built.index_dir.iterdir())
    assert names == sorted([
        ".lock", store.INDEX_MARKER, store.MANIFEST, manifest_of(built)["data_dir"],
        "data-20260101T000000-a11ce0", ".manifest-20260101T000000-dead00.tmp",
    ])


def test_rebuild_replaces_generation_and_removes_old_data(built):
    old = manifest_of(built)["data_dir"]
    report = build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 400}))
    assert not report.up_to_date and report.chunks < 74
    new = manifest_of(built)["data_dir"]
    assert new != old and not (built.index_dir / old).exists()
    assert report.tokenized < report.chunks  # unchanged paragraphs reuse their cached tokens


def test_lock_refuses_or_waits(tmp_path):
    with store.index_lock(tmp_path):
        with pytest.raises(IndexBusy, match="another ragqa process"):
            with store.index_lock(tmp_path, wait=0):
                pass
        with pytest.raises(IndexBusy, match="gave up after 0.3 s"):
            with store.index_lock(tmp_path, wait=0.3):
                pass
    with store.index_lock(tmp_path, wait=0):  # free again
        pass


def test_string_table_round_trip(tmp_path):
    strings = ["", "알리바바", "emoji 😀", "x" * 1000]
    store.write_strings(tmp_path / "t", strings)
    table = store.StringTable(tmp_path / "t")
    assert [table[i] for i in range(len(table))] == strings
    store.write_ragged(tmp_path / "r", *store.ragged([np.array([1, 2]), np.array([], np.int32), np.array([7])]))
    flat, off = store.read_ragged(tmp_path / "r")
    assert flat.tolist() == [1, 2, 7] and off.tolist() == [0, 2, 2, 3]


def test_unchanged_files_are_not_read_again(tmp_path, monkeypatch, corpus_dir):
    import os
    from pathlib import Path

    old = 1_600_000_000
    for p in corpus_dir.iterdir():
        os.utime(p, (old, old))
    settings = make_settings(tmp_path)
    build_index([corpus_dir], settings)
    reads = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real(self))
    assert build_index([corpus_dir], settings).up_to_date
    assert [r for r in reads if r.endswith(".txt")] == []  # size and mtime matched: nothing re-read
    target = next(corpus_dir.glob("003_*.txt"))
    target.write_text(target.read_text(encoding="utf-8").replace("17%", "18%"), encoding="utf-8")
    report = build_index([corpus_dir], settings)
    assert not report.up_to_date and report.reread_files == 1 and reads.count(target.name) >= 1
