"""Damaged indexes are refused with a fix; killed builds and concurrent use never leave a mixed or lost index."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

from conftest import ROOT, SEEDS, index_copy, make_settings, manifest_of, subprocess_env, write_manifest
from ragqa import store
from ragqa.build import build_index
from ragqa.errors import IndexCorrupt, IndexMismatch
from ragqa.retrieve import Retriever


@pytest.fixture
def dense_copy(tmp_path, dense_index):
    return index_copy(dense_index, tmp_path)


def data_dir(settings):
    return settings.index_dir / store.read_manifest(settings.index_dir).data_dir


def rewrite_manifest(settings, **changes):
    m = manifest_of(settings)
    m.update(changes)
    write_manifest(settings, m)


def set_size(settings, name):
    """Record a data file's new size in the manifest, as if the build had written it so."""
    segments = manifest_of(settings)["segments"]
    segments[0]["files"][name] = (data_dir(settings) / name).stat().st_size
    rewrite_manifest(settings, segments=segments)


def test_truncated_faiss_file(dense_copy):
    path = data_dir(dense_copy) / "faiss.index"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexCorrupt, match="faiss.index is .* bytes, the manifest says .* \\(truncated\\?\\)"):
        store.load(dense_copy.index_dir)


def test_faiss_file_overwritten_with_garbage_of_the_same_size(tmp_path, tiny_embedder_path, monkeypatch):
    import ragqa.vectors

    monkeypatch.setattr(ragqa.vectors, "FLAT_MAX", 10)  # the seeds' 74 chunks get an IVF store, read from the file
    settings = make_settings(tmp_path, embed_model=str(tiny_embedder_path))
    build_index([SEEDS], settings, embed_explicit=True)
    path = data_dir(settings) / "faiss.index"
    path.write_bytes(os.urandom(path.stat().st_size))
    index = store.load(settings.index_dir)
    with pytest.raises(IndexCorrupt, match="FAISS index unreadable"):
        index.vector_store  # noqa: B018


def test_flat_store_is_searched_in_its_vectors_not_its_faiss_file(dense_copy):
    # a flat store holds exactly vectors.npy: searches scan that (no FAISS import), so its file is not read
    path = data_dir(dense_copy) / "faiss.index"
    path.write_bytes(os.urandom(path.stat().st_size))
    index = store.load(dense_copy.index_dir)
    query = np.asarray(index.vectors[7:8]) + 0.01
    found = index.search_vectors(query, 5)
    oracle = np.argsort(-(np.asarray(index.vectors) @ query[0]), kind="stable")[:5]
    assert [r for r, _ in found] == oracle.tolist() and found[0][0] == 7


def test_manifest_with_wrong_dimension_or_unknown_version(dense_copy):
    manifest = manifest_of(dense_copy)
    rewrite_manifest(dense_copy, dense={**manifest["dense"], "dim": 768})
    with pytest.raises(IndexCorrupt, match="shape \\(74, 32\\), expected \\(74, 768\\)"):
        store.load(dense_copy.index_dir)
    rewrite_manifest(dense_copy, dense=manifest["dense"], format_version="two")
    with pytest.raises(IndexCorrupt, match="format_version"):
        store.load(dense_copy.index_dir)
    rewrite_manifest(dense_copy, format_version=store.FORMAT_VERSION + 5, ragqa_version="9.9")
    with pytest.raises(IndexMismatch, match="newer ragqa \\(9.9"):
        store.load(dense_copy.index_dir)


def test_chunk_table_that_does_not_match_faiss_rows(dense_copy):
    d = data_dir(dense_copy)
    vectors = np.load(d / "vectors.npy")
    np.save(d / "vectors.npy", vectors[:-1])
    set_size(dense_copy, "vectors.npy")
    with pytest.raises(IndexCorrupt, match="vectors.npy has shape \\(73, 32\\)"):
        store.load(dense_copy.index_dir)


def test_pickled_array_is_refused(dense_copy):
    """Nothing in an index directory can run code: an object array would need pickle, which is off."""
    d = data_dir(dense_copy)
    np.save(d / "chunk_doc.npy", np.array([{"__reduce__": "evil"}] * 74, dtype=object), allow_pickle=True)
    set_size(dense_copy, "chunk_doc.npy")
    with pytest.raises(IndexCorrupt, match="pickle"):
        store.load(dense_copy.index_dir)


def test_no_pickle_or_remote_code_anywhere_in_the_package():
    for path in (ROOT / "ragqa").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "import pickle" not in source and "allow_pickle=True" not in source, path.name
        assert "trust_remote_code=True" not in source, path.name


# ---------------------------------------------------------------- killed builds


def corpus_with(tmp_path, n: int, seed: int):
    from ragqa.synthetic import write_corpus

    d = tmp_path / f"corpus-{seed}"
    write_corpus(d, n, seed=seed)
    return d


QUERIES = ["미국이 H200 수출을 허용한 이유는?", "알리바바 자체 칩", "딥시크 쇼크 엔비디아 주가", "코어위브 투자"]


def answers(settings) -> list[list[str]]:
    index = store.load(settings.index_dir)
    r = Retriever(index, settings)
    return [[h.chunk_id + "|" + h.text for h in r.search(q, 5, "lexical").hits] for q in QUERIES]


@contextmanager
def reading(settings):
    """A thread that keeps answering from the index while the block runs: yields (answers seen, errors)."""
    seen, errors = [], []
    stop = threading.Event()

    def reader():  # one thread: CPython 3.11's parser is not safe to run in several threads at once
        while not stop.is_set():
            try:
                seen.append(answers(settings))
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(e))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        yield seen, errors
    finally:
        stop.set()
        thread.join()


class KilledBuilds:
    """Runs `cmd` (a build), SIGKILLs it after a delay, and checks what the index then answers: it must load,
    and be exactly the old index or exactly one and the same new one. Counts both outcomes."""

    def __init__(self, cmd: list[str], env: dict, settings, before):
        self.cmd, self.env, self.settings, self.before = cmd, env, settings, before
        self.new_answers = None
        self.outcomes = {"old": 0, "new": 0}

    def kill_after(self, delay: float) -> bool:
        """True when the killed build had already committed the new index."""
        proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = answers(self.settings)
        if now == self.before:
            self.outcomes["old"] += 1
            return False
        self.new_answers = self.new_answers or now
        assert now == self.new_answers
        self.outcomes["new"] += 1
        return True


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_the_index(tmp_path):
    old_corpus, new_corpus = corpus_with(tmp_path, 300, 1), corpus_with(tmp_path, 300, 2)
    settings = make_settings(tmp_path)
    build_index([old_corpus], settings)
    before = answers(settings)
    env = subprocess_env()
    cmd = [sys.executable, "-m", "ragqa", "index", "--replace", str(new_corpus), "--index-dir", str(settings.index_dir),
           "--embed-model", "none"]
    probe = tmp_path / "probe"  # how long a whole build takes on this machine now: kills land before and after
    start = time.monotonic()
    subprocess.run([*cmd[:-3], str(probe), *cmd[-2:]], env=env, check=True, capture_output=True)
    took = time.monotonic() - start
    rng = random.Random(0)
    builds = KilledBuilds(cmd, env, settings, before)
    for _ in range(12):
        builds.kill_after(rng.uniform(0.2 * took, 1.4 * took))
        debris = [p.name for p in store.generations(settings.index_dir, None) if p.name != data_dir(settings).name]
        assert len(debris) <= 1  # each build clears what the previous killed one left
        if builds.outcomes["new"]:
            build_index([old_corpus], settings, replace=True)  # back to the old corpus for the next round
            assert answers(settings) == before
    assert builds.outcomes["old"] >= 3
    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0
    names = sorted(p.name for p in settings.index_dir.iterdir())
    assert names == sorted([".lock", store.INDEX_MARKER, store.MANIFEST, data_dir(settings).name])


# ---------------------------------------------------------------- concurrency


def test_two_builds_at_once_give_one_valid_index(tmp_path):
    settings = make_settings(tmp_path)
    env = subprocess_env()
    # with the bundled embedding model (~10 s of embedding) the first build still holds the lock when the
    # second arrives; a lexical-only build of the seeds is over in about a second now and sometimes was
    cmd = [sys.executable, "-m", "ragqa", "index", str(SEEDS), "--index-dir", str(settings.index_dir)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    outs = " ".join(out for out, _ in results)
    assert "indexed:" in outs and "up to date:" in outs  # one built, the other waited and found it done
    assert any("waiting for another ragqa build" in e for _, e in results)
    assert store.load(settings.index_dir).n == 74


def test_searches_during_rebuilds_see_old_or_new_never_a_mix(tmp_path):
    """A search keeps running while `ragqa index` processes rebuild the same index with another corpus."""
    small, large = tmp_path / "small", tmp_path / "large"
    shutil.copytree(SEEDS, small)
    shutil.copytree(SEEDS, large)
    (large / "005_extra.txt").write_text("미국이 H200 수출을 허용한 이유에 대한 새 분석 기사다. 알리바바 자체 칩도 다룬다.", encoding="utf-8")
    expected = []
    for corpus in (small, large):
        s = make_settings(tmp_path / f"ref-{corpus.name}")
        build_index([corpus], s)
        expected.append(answers(s))
    assert expected[0] != expected[1]
    settings = make_settings(tmp_path / "shared")
    build_index([small], settings)
    env = subprocess_env()
    with reading(settings) as (seen, errors):
        for i in range(4):
            corpus = large if i % 2 == 0 else small
            subprocess.run(
                [sys.executable, "-m", "ragqa", "index", "--replace", str(corpus), "--index-dir",
                 str(settings.index_dir), "--embed-model", "none"], env=env, check=True, capture_output=True,
            )
    assert not errors, errors[:3]
    assert len(seen) > 5 and all(r in expected for r in seen)
    assert expected[0] in seen and expected[1] in seen  # the reader saw both generations


# ---------------------------------------------------------------- the same guarantees for adds (segments)

TOPICAL = "\n\n".join([
    "미국이 H200 수출을 허용한 이유는 화웨이의 추격이라고 분석가들은 말했다. 알리바바 자체 칩도 거론됐다.",
    "딥시크 쇼크 이후 엔비디아 주가는 회복했고 코어위브 투자도 이어졌다. 미국 정부의 H200 수출 허용이 변수다.",
])  # an article every query of `answers` finds: an index that holds it answers differently


@pytest.mark.slow
def test_sigkill_during_adds_never_loses_the_index(tmp_path):
    corpus = corpus_with(tmp_path, 300, 1)
    settings = make_settings(tmp_path)
    build_index([corpus], settings)
    (corpus / "zz_added.txt").write_text(TOPICAL, encoding="utf-8")
    before = answers(settings)
    pristine = tmp_path / "pristine"
    shutil.copytree(settings.index_dir, pristine)
    env = subprocess_env()
    cmd = [sys.executable, "-m", "ragqa", "index", str(corpus), "--index-dir", str(settings.index_dir), "--embed-model", "none"]
    probe = tmp_path / "probe"  # how long a whole add takes on this machine now: kills land before and after
    shutil.copytree(pristine, probe)
    start = time.monotonic()
    subprocess.run([*cmd[:-3], str(probe), *cmd[-2:]], env=env, check=True, capture_output=True)
    took = time.monotonic() - start
    rng = random.Random(0)
    builds = KilledBuilds(cmd, env, settings, before)
    for _ in range(12):
        if builds.kill_after(rng.uniform(0.2 * took, 1.4 * took)):
            assert len(store.read_manifest(settings.index_dir).segments) == 2  # it was an add
            shutil.rmtree(settings.index_dir)  # back to the old index for the next round
            shutil.copytree(pristine, settings.index_dir)
        named = {s.dir for s in store.read_manifest(settings.index_dir).segments}
        assert len([p for p in store.generations(settings.index_dir, None) if p.name not in named]) <= 1
    assert builds.outcomes["old"] >= 3 and builds.outcomes["new"] >= 1
    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0
    segments = [s.dir for s in store.read_manifest(settings.index_dir).segments]
    assert len(segments) == 2 and answers(settings) == builds.new_answers
    names = sorted(p.name for p in settings.index_dir.iterdir())
    assert names == sorted([".lock", store.INDEX_MARKER, store.MANIFEST, *segments])


def test_searches_during_adds_see_old_or_new_never_a_mix(tmp_path):
    """A search keeps running while `ragqa index` processes add and remove an article as segments (and fold
    them into one when there are too many)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    extra = corpus / "005_extra.txt"
    expected = []
    for with_extra in (False, True):
        if with_extra:
            extra.write_text(TOPICAL, encoding="utf-8")
        s = make_settings(tmp_path / f"ref-{with_extra}")
        build_index([corpus], s)
        expected.append(answers(s))
    extra.unlink()
    assert expected[0] != expected[1]
    settings = make_settings(tmp_path / "shared")
    build_index([corpus], settings)
    counts = []
    env = subprocess_env()
    with reading(settings) as (seen, errors):
        for i in range(9):
            if i % 2 == 0:
                extra.write_text(TOPICAL, encoding="utf-8")
            else:
                extra.unlink()
            subprocess.run(
                [sys.executable, "-m", "ragqa", "index", str(corpus), "--index-dir", str(settings.index_dir),
                 "--embed-model", "none"], env=env, check=True, capture_output=True,
            )
            counts.append(len(store.read_manifest(settings.index_dir).segments))
    assert counts[:8] == [2, 3, 4, 5, 6, 7, 8, 2]  # adds as segments, then one folding the later ones into it
    assert not errors, errors[:3]
    assert len(seen) > 5 and all(r in expected for r in seen)
    assert expected[0] in seen and expected[1] in seen  # the reader saw both
