"""What an index holds: sources added, replaced and refreshed; one chunk ID per passage of one file."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from conftest import SEEDS, make_settings
from ragqa import store
from ragqa.build import build_index
from ragqa.cli import app

runner = CliRunner()

STORY = (
    "Harbor bridge collapse\n\n"
    "The harbor bridge collapsed on Tuesday morning after a cargo ship struck one of its piers. "
    "Rescue crews searched the water for hours.\n\n"
    "Officials said the death toll rose to six by the evening, and two workers are still missing.\n"
)
OTHER = (
    "City budget vote\n\n"
    "The city council approved next year's budget on Monday, with more money for schools and buses. "
    "The vote was seven to two.\n\n"
    "The mayor said the new budget keeps property taxes flat for a third year in a row.\n"
)


def folder_with(tmp_path, name: str, text: str):
    """A folder `mine/` holding one article file."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / name).write_text(text, encoding="utf-8")
    return mine


def chunk_ids(settings) -> list[str]:
    return store.load(settings.index_dir).chunk_ids


def test_same_file_name_under_two_roots_gives_distinct_ids_and_a_stable_rebuild(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir(), b.mkdir()
    (a / "news.txt").write_text(STORY, encoding="utf-8")
    (b / "news.txt").write_text(OTHER, encoding="utf-8")
    settings = make_settings(tmp_path)
    first = build_index([a, b], settings)
    ids = chunk_ids(settings)
    assert len(ids) == len(set(ids)) == first.chunks == 4
    index = store.load(settings.index_dir)
    for cid, text in zip(index.chunk_ids, index.texts.all()):  # each ID's text sits under its own article
        title = index.title(index.rows[cid])
        assert ("bridge" in text.lower() or "toll" in text) == ("bridge" in title.lower()), (cid, title, text)
    for _ in range(3):  # a rebuild of an unchanged corpus is a no-op
        again = build_index([], settings)
        assert again.up_to_date and chunk_ids(settings) == ids


def test_overlapping_roots_index_each_file_once(tmp_path, corpus_dir):
    settings = make_settings(tmp_path)
    report = build_index([corpus_dir, corpus_dir / "000_5cafd9bf1db64a43.txt", corpus_dir, tmp_path / "corpus/."], settings)
    assert report.files == 5 and report.chunks == 74
    ids = chunk_ids(settings)
    assert len(ids) == len(set(ids)) == 74


def test_a_symlinked_folder_and_its_target_are_one_source_of_files(tmp_path, corpus_dir):
    (tmp_path / "link").symlink_to(corpus_dir)
    settings = make_settings(tmp_path)
    report = build_index([corpus_dir, tmp_path / "link"], settings)
    assert report.chunks == 74


def test_index_path_adds_a_source_and_reports_the_changes(tmp_path):
    mine = folder_with(tmp_path, "harbor-bridge-collapse.txt", STORY)
    settings = make_settings(tmp_path)
    build_index([SEEDS], settings)
    seeds_ids = set(chunk_ids(settings))
    report = build_index([mine], settings)
    assert report.added == [str((mine / "harbor-bridge-collapse.txt").resolve())]
    assert report.updated == report.removed == []
    assert report.sources == [str(SEEDS), str(mine)]
    ids = chunk_ids(settings)
    assert seeds_ids < set(ids)  # nothing the index held is lost, and the old IDs stay
    assert {c for c in ids if c not in seeds_ids} == {"harbor-bridge-collapse:p01", "harbor-bridge-collapse:p02"}


def test_replace_drops_the_other_sources_and_says_so(tmp_path):
    mine = folder_with(tmp_path, "budget.txt", OTHER)
    settings = make_settings(tmp_path)
    build_index([SEEDS], settings)
    report = build_index([mine], settings, replace=True)
    assert len(report.removed) == 5 and report.added == [str((mine / "budget.txt").resolve())]
    assert report.sources == [str(mine)] and report.chunks == 2


def test_refresh_sees_updated_and_removed_files(tmp_path, corpus_dir):
    settings = make_settings(tmp_path)
    build_index([corpus_dir], settings)
    (corpus_dir / "001_760573c8890242e6.txt").unlink()
    path = corpus_dir / "002_bb1140d7c5ae393e.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\n새로 추가된 문단입니다. 이 문장은 테스트를 위해 덧붙였다.\n", encoding="utf-8")
    report = build_index([], settings)
    assert report.removed == [str((corpus_dir / "001_760573c8890242e6.txt").resolve())]
    assert report.updated == [str(path.resolve())] and report.added == []


def test_a_source_folder_that_disappeared_is_dropped_with_a_warning(tmp_path, corpus_dir):
    other = tmp_path / "other"
    other.mkdir()
    (other / "budget.txt").write_text(OTHER, encoding="utf-8")
    settings = make_settings(tmp_path)
    build_index([corpus_dir, other], settings)
    shutil.rmtree(other)
    report = build_index([], settings)
    assert any("no longer exists" in w and str(other) in w for w in report.warnings)
    assert report.removed == [str((tmp_path / "other" / "budget.txt"))] or len(report.removed) == 1
    assert report.chunks == 74


def test_cli_index_prints_changes_and_sources(tmp_path):
    mine = folder_with(tmp_path, "budget.txt", OTHER)
    base = ["--index-dir", str(tmp_path / "index"), "--embed-model", "none"]
    first = runner.invoke(app, ["index", str(SEEDS), *base])
    assert first.exit_code == 0 and "files: 5 added" in first.stderr
    second = runner.invoke(app, ["index", str(mine), *base, "--json"])
    assert second.exit_code == 0, second.stderr
    report = json.loads(second.stdout)
    assert len(report["added"]) == 1 and report["sources"] == [str(SEEDS), str(mine)]
    assert "files: 1 added" in second.stderr and "+ " in second.stderr
    replaced = runner.invoke(app, ["index", "--replace", str(mine), *base])
    assert replaced.exit_code == 0 and "files: 5 removed" in replaced.stderr
    assert runner.invoke(app, ["index", "--replace", *base]).exit_code == 2


def test_an_index_of_an_older_format_is_rebuilt_from_its_own_sources(tmp_path):
    mine = folder_with(tmp_path, "budget.txt", OTHER)
    settings = make_settings(tmp_path)
    build_index([mine], settings)
    path = settings.index_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["format_version"] = 3  # as an older ragqa wrote it (format 3 kept its roots in corpus.roots too)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    report = build_index([], settings)
    assert any("older index format 3" in w for w in report.warnings)
    assert report.sources == [str(mine)] and report.chunks == 2  # not the seeds


def test_an_index_keeps_its_embedding_model_unless_one_is_chosen(tmp_path):
    build_index([SEEDS], make_settings(tmp_path, embed_model="none"), embed_explicit=True)
    again = build_index([], make_settings(tmp_path, embed_model="e5-small"))  # the default, not chosen
    assert again.up_to_date and again.dense is None
