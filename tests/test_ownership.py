"""ragqa touches only files it can prove it wrote: user files in or around the index survive every build."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SEEDS, make_settings, manifest_of
from ragqa import store
from ragqa.build import build_index
from ragqa.cli import app
from ragqa.config import load_settings
from ragqa.errors import IndexCorrupt, IndexMissing, IndexWriteFailed, NotAnIndex, UsageError
from ragqa.retrieve import Retriever

runner = CliRunner()
QUERIES = ["미국이 H200 수출을 허용한 이유는?", "알리바바 자체 칩", "딥시크 쇼크 엔비디아 주가"]
GEN = "20260101T000000-abcdef"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(root: Path, names) -> dict:
    """Every file and folder under the named entries of `root`, with file bytes and symlink targets."""
    out = {}
    for name in names:
        top = root / name
        for p in [top, *(sorted(top.rglob("*")) if top.is_dir() and not top.is_symlink() else [])]:
            key = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[key] = ("link", os.readlink(p))
            elif p.is_dir():
                out[key] = "dir"
            else:
                out[key] = p.read_bytes()
    return out


def answers(settings) -> list[list[str]]:
    r = Retriever(store.load(settings.index_dir), settings)
    return [[h.chunk_id + "|" + h.text for h in r.search(q, 5, "lexical").hits] for q in QUERIES]


def owned(settings) -> list[str]:
    return [p.name for p in store.generations(settings.index_dir, manifest_of(settings))]


@pytest.fixture
def built(tmp_path, lexical_index):
    settings = make_settings(tmp_path)
    shutil.copytree(lexical_index.index_dir, settings.index_dir)
    return settings


def add_user_files(index_dir: Path) -> list[str]:
    """Files and folders a user might keep in an index folder, named like the ones ragqa writes."""
    (index_dir / "data-2023").mkdir()
    (index_dir / "data-2023" / "article.txt").write_text("기사 본문", encoding="utf-8")
    (index_dir / f"data-{GEN}").mkdir()  # a generation's exact name, but no marker: not provably ragqa's
    (index_dir / f"data-{GEN}" / "notes.md").write_text("mine", encoding="utf-8")
    (index_dir / f".tmp-{GEN}").mkdir()
    (index_dir / f".tmp-{GEN}" / store.GEN_MARKER).write_text("20250101T000000-000000", encoding="ascii")  # wrong id
    (index_dir / ".tmp-x").mkdir()
    (index_dir / ".tmp-x" / "scratch").write_bytes(b"\x00\x01")
    (index_dir / ".manifest-y.tmp").write_text("{}", encoding="utf-8")
    (index_dir / "data-link").symlink_to(index_dir / "data-2023")
    # a marker that is a symlink, and a symlink to a properly marked folder: neither proves anything
    gen3, gen4 = "20260101T000003-abcdef", "20260101T000004-abcdef"
    (index_dir / ".elsewhere" / f"data-{gen4}").mkdir(parents=True)
    (index_dir / ".elsewhere" / f"data-{gen4}" / store.GEN_MARKER).write_text(gen4, encoding="ascii")
    (index_dir / ".elsewhere" / "id").write_text(gen3, encoding="ascii")
    (index_dir / f"data-{gen3}").mkdir()
    (index_dir / f"data-{gen3}" / store.GEN_MARKER).symlink_to(index_dir / ".elsewhere" / "id")
    (index_dir / f"data-{gen4}").symlink_to(index_dir / ".elsewhere" / f"data-{gen4}")
    return [
        "data-2023", f"data-{GEN}", f".tmp-{GEN}", ".tmp-x", ".manifest-y.tmp", "data-link", ".elsewhere",
        f"data-{gen3}", f"data-{gen4}",
    ]


def fail_manifest_write(monkeypatch, code=errno.ENOSPC):
    def full(obj, f, **kw):
        f.write('{"format": "ragqa-ind')
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store.json, "dump", full)


# ---------------------------------------------------------------- user files survive


def test_user_files_survive_builds_failed_builds_and_rebuilds(built, monkeypatch):
    names = add_user_files(built.index_dir)
    before = snapshot(built.index_dir, names)
    assert build_index([SEEDS], built).up_to_date
    assert snapshot(built.index_dir, names) == before
    assert not build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300})).up_to_date
    assert snapshot(built.index_dir, names) == before
    with monkeypatch.context() as m:
        fail_manifest_write(m)
        with pytest.raises(IndexWriteFailed):
            build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 400}))
    assert snapshot(built.index_dir, names) == before
    with monkeypatch.context() as m:
        m.setattr(store, "write_data", lambda tmp, contents: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 400}))
    assert snapshot(built.index_dir, names) == before
    assert not build_index([SEEDS], built).up_to_date
    assert snapshot(built.index_dir, names) == before
    assert owned(built) == [manifest_of(built)["data_dir"]]
    assert store.load(built.index_dir).n == 74


def test_news_folder_as_its_own_index_is_refused_and_untouched(tmp_path, monkeypatch):
    news = tmp_path / "news"
    for year in ("data-2023", "data-2024"):
        shutil.copytree(SEEDS, news / year)
    before = snapshot(tmp_path, ["news"])
    monkeypatch.chdir(news)
    result = run("index", ".", "--index-dir", ".", "--embed-model", "none")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"index folder {news} is or contains the articles {news};" in result.stderr
    with pytest.raises(UsageError, match="outside"):
        build_index([news / "data-2023"], make_settings(tmp_path, index_dir=news))  # the index contains the corpus
    assert snapshot(tmp_path, ["news"]) == before


def test_foreign_manifest_is_refused_never_replaced(tmp_path):
    settings = make_settings(tmp_path)
    settings.index_dir.mkdir()
    (settings.index_dir / "manifest.json").write_text('{"name": "my web app", "version": 3}', encoding="utf-8")
    before = snapshot(tmp_path, ["index"])
    result = run("index", SEEDS, "--index-dir", settings.index_dir, "--embed-model", "none")
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert str(settings.index_dir / "manifest.json") in message and "is not a ragqa index" in message
    assert "--index-dir" in message and "ragqa index`" not in message and "rebuild" not in message
    with pytest.raises(NotAnIndex, match="not a ragqa index") as e:
        store.load(settings.index_dir)
    assert "rebuild" not in str(e.value)
    assert snapshot(tmp_path, ["index"]) == before  # nothing added: no lock, no marker


@pytest.mark.parametrize("kind", ["other json", "symlink", "folder"])
def test_foreign_manifest_in_a_ragqa_index_is_refused(built, kind):
    path = built.index_dir / "manifest.json"
    path.unlink()
    if kind == "other json":
        path.write_text(json.dumps({"format": "something-else", "data_dir": "data-2023"}), encoding="utf-8")
    elif kind == "symlink":
        (built.index_dir.parent / "target.json").write_text("{}", encoding="utf-8")
        path.symlink_to(built.index_dir.parent / "target.json")
    else:
        path.mkdir()
        (path / "keep").write_text("x", encoding="utf-8")
    before = snapshot(built.index_dir.parent, ["index", *(["target.json"] if kind == "symlink" else [])])
    with pytest.raises(NotAnIndex, match="choose another --index-dir"):
        build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300}))
    assert snapshot(built.index_dir.parent, ["index", *(["target.json"] if kind == "symlink" else [])]) == before


def test_marker_that_is_a_symlink_proves_nothing(tmp_path):
    settings = make_settings(tmp_path)
    settings.index_dir.mkdir()
    (tmp_path / "elsewhere").write_text("x", encoding="utf-8")
    (settings.index_dir / store.INDEX_MARKER).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotAnIndex, match="is not ragqa's marker file"):
        build_index([SEEDS], settings)
    (settings.index_dir / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(NotAnIndex, match="already holds files \\(notes.txt\\)"):
        build_index([SEEDS], settings)
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [store.INDEX_MARKER, "notes.txt"]


def test_manifest_that_is_not_json(built, tmp_path):
    """Refused in a folder ragqa did not mark; in its own marked folder it is a damaged index to rebuild."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "manifest.json").write_bytes(b"\xff\xfe my notes")
    with pytest.raises(NotAnIndex, match="is not a ragqa index \\(not valid JSON"):
        build_index([SEEDS], make_settings(tmp_path, index_dir=plain))
    with pytest.raises(NotAnIndex, match="choose another --index-dir"):
        store.load(plain)
    assert sorted(p.name for p in plain.iterdir()) == ["manifest.json"]
    assert (plain / "manifest.json").read_bytes() == b"\xff\xfe my notes"
    (built.index_dir / "manifest.json").write_text("{trunc", encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="not valid JSON; rebuild it with `ragqa index`"):
        store.load(built.index_dir)
    assert build_index([SEEDS], built).chunks == 74
    assert owned(built) == [manifest_of(built)["data_dir"]] and store.load(built.index_dir).n == 74


@pytest.mark.parametrize("content", [["notes.txt"], ["sub/a.md"], [".lock"]])
def test_folder_holding_other_files_is_refused(tmp_path, content):
    settings = make_settings(tmp_path)
    for name in content:
        (settings.index_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (settings.index_dir / name).write_text("user data", encoding="utf-8")
    before = snapshot(tmp_path, ["index"])
    with pytest.raises(NotAnIndex, match="is not a ragqa index and already holds files") as e:
        build_index([SEEDS], settings)
    assert content[0].split("/")[0] in str(e.value)
    assert snapshot(tmp_path, ["index"]) == before


def test_folder_with_only_hidden_files_becomes_a_ragqa_index(tmp_path):
    settings = make_settings(tmp_path)
    settings.index_dir.mkdir()
    (settings.index_dir / ".gitkeep").write_bytes(b"")
    (settings.index_dir / ".DS_Store").write_bytes(b"\x00mac")
    build_index([SEEDS], settings)
    assert (settings.index_dir / ".ragqa-index").is_file()
    assert (settings.index_dir / ".DS_Store").read_bytes() == b"\x00mac" and (settings.index_dir / ".gitkeep").exists()
    names = sorted(p.name for p in settings.index_dir.iterdir())
    assert names == sorted([".gitkeep", ".DS_Store", ".ragqa-index", ".lock", "manifest.json", owned(settings)[0]])
    (settings.index_dir / "notes.txt").write_text("later", encoding="utf-8")  # marked now: other files are fine
    assert not build_index([SEEDS], settings.model_copy(update={"chunk_max_tokens": 300})).up_to_date
    assert (settings.index_dir / "notes.txt").read_text(encoding="utf-8") == "later"


def test_index_written_before_markers_is_still_ours(built):
    old = manifest_of(built)["data_dir"]
    (built.index_dir / store.INDEX_MARKER).unlink()
    (built.index_dir / old / store.GEN_MARKER).unlink()
    (built.index_dir / "data-2023").mkdir()
    assert not build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300})).up_to_date
    assert not (built.index_dir / old).exists()  # named by ragqa's own manifest: provably ours
    assert (built.index_dir / "data-2023").is_dir() and (built.index_dir / store.INDEX_MARKER).is_file()


# ---------------------------------------------------------------- paths


def test_index_dir_that_is_a_file(tmp_path):
    path = tmp_path / "index"
    path.write_text("not a folder", encoding="utf-8")
    result = run("index", SEEDS, "--index-dir", path, "--embed-model", "none")
    assert result.exit_code == 1 and f"{path} is a file, not an index folder" in result.stderr
    assert "internal error" not in result.stderr
    result = run("search", "칩", "--index-dir", path)
    assert result.exit_code == 1 and "is a file" in result.stderr
    with pytest.raises(NotAnIndex):
        store.index_lock(path / "sub").__enter__()
    assert path.read_text(encoding="utf-8") == "not a folder"


def test_index_inside_the_corpus_is_allowed_and_not_indexed(tmp_path):
    corpus = tmp_path / "news"
    shutil.copytree(SEEDS, corpus)
    settings = make_settings(tmp_path, index_dir=corpus / "index")
    report = build_index([corpus], settings)
    assert (report.articles, report.chunks) == (9, 74)
    again = build_index([corpus], settings)
    assert again.up_to_date and again.files == report.files


def test_index_that_contains_the_corpus_is_a_usage_error(tmp_path):
    settings = make_settings(tmp_path)
    shutil.copytree(SEEDS, settings.index_dir / "news")
    with pytest.raises(UsageError, match=f"index folder {settings.index_dir} is or contains the articles"):
        build_index([settings.index_dir / "news"], settings)
    with pytest.raises(UsageError, match="is or contains"):  # no PATH: the seeds folder is the corpus
        build_index([], make_settings(tmp_path, index_dir=SEEDS))
    assert sorted(p.name for p in settings.index_dir.iterdir()) == ["news"]


@pytest.mark.parametrize("field", ["index_dir", "models_dir", "seeds_dir", "history_file"])
def test_empty_path_settings_are_usage_errors(field, monkeypatch):
    with pytest.raises(UsageError, match=f"bad setting {field}: an empty path would mean the current folder"):
        load_settings(**{field: ""})
    monkeypatch.setenv(f"RAGQA_{field.upper()}", "")
    with pytest.raises(UsageError, match=f"bad setting {field}: an empty path"):
        load_settings()


def test_empty_index_dir_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGQA_INDEX_DIR", "")
    result = run("index", SEEDS, "--embed-model", "none")
    assert result.exit_code == 2 and "bad setting index_dir: an empty path" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_readers_create_nothing(tmp_path):
    missing = tmp_path / "missing" / "index"
    with pytest.raises(IndexMissing):
        store.load(missing)
    assert run("search", "칩", "--index-dir", missing).exit_code == 1
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexMissing):
        store.read_manifest(tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


# ---------------------------------------------------------------- the lock


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder", "dangling"])
def test_lock_that_is_not_a_plain_file_is_refused_and_target_untouched(built, kind):
    victim = built.index_dir.parent / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    lock = built.index_dir / ".lock"
    lock.unlink(missing_ok=True)
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        lock.symlink_to(built.index_dir.parent / "would-be-created")
    with pytest.raises(NotAnIndex, match="is not ragqa's lock file"):
        build_index([SEEDS], built)
    assert victim.read_text(encoding="utf-8") == "precious"
    assert not (built.index_dir.parent / "would-be-created").exists()


def test_lock_is_private_and_not_inherited(tmp_path):
    with store.index_lock(tmp_path / "index"):
        lock = tmp_path / "index" / ".lock"
        assert lock.stat().st_mode & 0o777 == 0o600
        assert lock.read_text() == str(os.getpid())
        real = os.path.realpath(lock)
        fds = [int(fd) for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == real]
        assert len(fds) == 1 and fcntl.fcntl(fds[0], fcntl.F_GETFD) & fcntl.FD_CLOEXEC


# ---------------------------------------------------------------- failures leave nothing that blocks


@pytest.mark.parametrize("where", ["manifest", "replace", "data"])
def test_disk_full_keeps_previous_index_and_the_next_build_succeeds(built, monkeypatch, where):
    before = answers(built)
    listing = sorted(p.name for p in built.index_dir.iterdir())
    full = OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as m:
        if where == "manifest":
            fail_manifest_write(m)
        elif where == "replace":
            m.setattr(store.os, "replace", lambda a, b: (_ for _ in ()).throw(full))
        else:
            real = np.save

            def save(path, *a, **kw):
                real(path, *a, **kw)
                if str(path).endswith("tokens.npy"):
                    raise OSError(errno.ENOSPC, "No space left on device", str(path))

            m.setattr(np, "save", save)
        with pytest.raises(IndexWriteFailed) as e:
            build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300}))
    assert str(e.value).startswith("no space left on device while writing ")
    assert str(e.value).endswith(": free space and run `ragqa index` again; the previous index is intact")
    assert str(built.index_dir) in str(e.value)
    assert sorted(p.name for p in built.index_dir.iterdir()) == listing
    assert answers(built) == before
    assert not build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300})).up_to_date
    assert len(owned(built)) == 1 and manifest_of(built)["chunker"]["max_tokens"] == 300


def test_disk_full_on_first_build_leaves_no_generation(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    with monkeypatch.context() as m:
        fail_manifest_write(m)
        result = run("index", SEEDS, "--index-dir", settings.index_dir, "--embed-model", "none")
    assert result.exit_code == 1
    assert "no space left on device" in result.stderr and "previous index" not in result.stderr
    assert sorted(p.name for p in settings.index_dir.iterdir()) == [".lock", ".ragqa-index"]
    assert build_index([SEEDS], settings).chunks == 74


@pytest.mark.parametrize("code, fix", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_unwritable_index_message(built, monkeypatch, code, fix):
    fail_manifest_write(monkeypatch, code)
    with pytest.raises(IndexWriteFailed, match=f"^{fix} while writing .*: choose a writable --index-dir; the previous"):
        build_index([SEEDS], built.model_copy(update={"chunk_max_tokens": 300}))


def test_orphans_of_killed_builds_are_removed_by_the_next_build(built):
    current = manifest_of(built)["data_dir"]
    orphans = {
        f"data-{GEN}": True,  # renamed, never committed
        ".tmp-20260101T000001-abcdef": True,  # killed while writing
        "data-20260101T000002-abcdef": False,  # killed while being removed: only the marker is left
    }
    for name, full in orphans.items():
        if full:
            shutil.copytree(built.index_dir / current, built.index_dir / name)
        else:
            (built.index_dir / name).mkdir()
        (built.index_dir / name / store.GEN_MARKER).write_text(name.split("-", 1)[1], encoding="ascii")
    assert sorted(owned(built)) == sorted([current, *orphans])
    assert build_index([SEEDS], built).up_to_date  # no change to the articles: the orphans go anyway
    assert owned(built) == [current]
    names = sorted(p.name for p in built.index_dir.iterdir())
    assert names == sorted([".ragqa-index", ".lock", "manifest.json", current])
