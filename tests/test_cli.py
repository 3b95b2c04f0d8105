"""The command line: exit codes, stdout/stderr discipline, JSON shapes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import SEEDS, subprocess_env
from ragqa.cli import app

runner = CliRunner()


def run(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory):
    """A lexical-only index built through the CLI."""
    tmp = tmp_path_factory.mktemp("cli")
    result = run("index", SEEDS, "--index-dir", tmp / "index", "--models-dir", tmp / "models", "--embed-model", "none")
    assert result.exit_code == 0, result.stderr
    return tmp, result


def test_index_summary_and_notes(cli_index):
    _, result = cli_index
    assert result.stdout.startswith("indexed: 9 articles, 74 chunks from 5 files; dropped 37 boilerplate lines")
    assert result.stdout.count("\n") == 1
    assert "lexical-only index — built lexical-only on request (--embed-model none)" in result.stderr


def test_index_json_and_up_to_date(cli_index):
    tmp, _ = cli_index
    result = run("index", SEEDS, "--index-dir", tmp / "index", "--models-dir", tmp / "models", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["up_to_date"] is True and report["chunks"] == 74 and report["dense"] is None


def test_search_json_shape(cli_index):
    tmp, _ = cli_index
    result = run("search", "미국이 H200 수출을 허용한 이유는?", "--mode", "lexical", "-k", "3", "--json",
                 "--index-dir", tmp / "index")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"query", "mode", "hits", "notes"}
    assert data["mode"] == "lexical" and len(data["hits"]) == 3
    hit = data["hits"][0]
    assert set(hit) == {"rank", "chunk_id", "doc_id", "score", "text", "title"}
    assert hit["rank"] == 1 and hit["chunk_id"].startswith("000-5cafd9bf:") and "H200" in hit["text"]


def test_search_human_output(cli_index):
    tmp, _ = cli_index
    result = run("search", "딥시크 앱스토어 순위", "-k", "2", "--index-dir", tmp / "index")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["1", "003-8169c992:p12"] and len(lines) == 4
    assert "hybrid search used BM25 only" in result.stderr  # the default mode on a lexical-only index


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["search", "   "], 2, "empty query"),
        (["search", "x", "--mode", "fuzzy"], 2, "fuzzy"),
        (["search", "x", "-k", "0"], 2, "-k"),
        (["search", "x", "--mode", "dense"], 1, "lexical-only"),
        (["index", "/no/such/folder"], 2, "path not found"),
    ],
)
def test_bad_input_exit_codes(cli_index, args, code, message):
    tmp, _ = cli_index
    result = run(*args, "--index-dir", tmp / "index")
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_and_corrupt_index(tmp_path, cli_index):
    result = run("search", "칩", "--index-dir", tmp_path / "none")
    assert result.exit_code == 1 and "no index in" in result.stderr and "ragqa index" in result.stderr
    src, _ = cli_index
    shutil.copytree(src / "index", tmp_path / "index")
    (tmp_path / "index" / "manifest.json").write_text("garbage")
    result = run("search", "칩", "--index-dir", tmp_path / "index")
    assert result.exit_code == 1 and "not valid JSON" in result.stderr and "rebuild it with `ragqa index`" in result.stderr


def test_empty_folder_and_binary_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("index", empty, "--index-dir", tmp_path / "index")
    assert result.exit_code == 1 and "no readable articles" in result.stderr
    binary = tmp_path / "scan.txt"
    binary.write_bytes(b"\x00\xff\x10" * 500)
    result = run("index", binary, "--index-dir", tmp_path / "index")
    assert result.exit_code == 1 and "scan.txt: binary file" in result.stderr
    assert not (tmp_path / "index" / "manifest.json").exists()


def test_failed_build_keeps_existing_index(tmp_path, cli_index):
    src, _ = cli_index
    shutil.copytree(src / "index", tmp_path / "index")
    before = (tmp_path / "index" / "manifest.json").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("index", empty, "--index-dir", tmp_path / "index")
    assert result.exit_code == 1
    assert (tmp_path / "index" / "manifest.json").read_text() == before


def test_unknown_setting_in_environment(cli_index):
    tmp, _ = cli_index
    result = run("search", "칩", "--index-dir", tmp / "index", env={"RAGQA_TOPK": "3"})
    assert result.exit_code == 2 and "unknown setting RAGQA_TOPK" in result.stderr


def test_settings_from_environment_are_typed_and_overridden(monkeypatch):
    from ragqa.config import load_settings
    from ragqa.errors import UsageError

    monkeypatch.setenv("RAGQA_TOP_K", "3")
    monkeypatch.setenv("RAGQA_OFFLINE", "true")
    monkeypatch.setenv("ragqa_mode", "lexical")  # names in any case, as before
    settings = load_settings()
    assert (settings.top_k, settings.offline, settings.mode) == (3, True, "lexical")
    assert load_settings(top_k=7, mode=None).top_k == 7  # an option beats the variable; None is no option
    monkeypatch.setenv("RAGQA_TOP_K", "many")
    with pytest.raises(UsageError, match="bad setting top_k: Input should be a valid integer"):
        load_settings()


def test_index_dir_from_environment(cli_index):
    tmp, _ = cli_index
    result = run("search", "칩", "--json", env={"RAGQA_INDEX_DIR": str(tmp / "index")})
    assert result.exit_code == 0 and json.loads(result.stdout)["hits"]


def test_real_entry_point_help_imports_nothing_heavy():
    env = subprocess_env()
    help_run = subprocess.run([sys.executable, "-m", "ragqa", "--help"], capture_output=True, text=True, env=env)
    assert help_run.returncode == 0 and "ragqa" in help_run.stdout
    probe = (
        "import sys, ragqa.cli; heavy = ('torch', 'sentence_transformers', 'faiss', 'llama_cpp', 'mecab_ko', "
        "'bm25s', 'pydantic', 'numpy'); print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- ask


def test_ask_json_extractive(cli_index):
    tmp, _ = cli_index
    result = run("ask", "미국이 H200 수출을 허용한 이유는?", "--json", "--index-dir", tmp / "index",
                 "--models-dir", tmp / "models")
    assert result.exit_code == 0, result.stderr
    a = json.loads(result.stdout)
    assert {"question", "answer", "answerable", "backend", "sentences", "citations", "retrieved", "timings"} <= set(a)
    assert a["backend"] == "extractive" and a["answerable"] is True
    retrieved = {r["chunk_id"] for r in a["retrieved"]}
    assert {c["chunk_id"] for c in a["citations"]} <= retrieved
    assert all(s["supported"] is True and s["citations"] for s in a["sentences"])
    assert any("화웨이" in c["text"] for c in a["citations"])
    assert "ragqa models pull qwen2.5-1.5b" in result.stderr


def test_ask_human_output_and_context(cli_index):
    tmp, _ = cli_index
    result = run("ask", "딥시크 앱은 앱스토어에서 몇 위였나?", "--show-context", "--index-dir", tmp / "index",
                 "--models-dir", tmp / "models")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("Extractive answer (no LLM): sentences quoted from the articles\n")
    assert "[003-8169c992:p12]" in out and "\nSources:\n" in out and "\nRetrieved passages:\n" in out


def test_ask_with_a_local_gguf(cli_index, tiny_gguf):
    tmp, _ = cli_index
    result = run("ask", "H200 수출", "--llm", tiny_gguf, "--json", "--index-dir", tmp / "index",
                 env={"RAGQA_ANSWER_MAX_TOKENS": "40"})
    assert result.exit_code == 0, result.stderr
    a = json.loads(result.stdout)
    assert a["backend"] == "llm" and a["timings"]["completion_tokens"] <= 40
    assert all(set(s["citations"]) <= set(a["context"]) for s in a["sentences"])


@pytest.mark.parametrize(
    "llm, code, message",
    [("/no/such/model.gguf", 1, "LLM file not found"), ("gpt-9", 2, "unknown LLM 'gpt-9'"), ("qwen3-4b", 1, "qwen3-4b")],
)
def test_ask_with_unusable_llm(cli_index, llm, code, message):
    tmp, _ = cli_index
    result = run("ask", "칩", "--llm", llm, "--index-dir", tmp / "index", "--models-dir", tmp / "models")
    assert result.exit_code == code and message in result.stderr and result.stdout == ""


def test_ask_builds_the_index_first_through_the_real_entry_point(tmp_path):
    env = {**subprocess_env(), "RAGQA_SEEDS_DIR": str(SEEDS)}
    out = subprocess.run(
        [sys.executable, "-m", "ragqa", "ask", "알리바바는 새 AI 칩을 어디서 제조하나?", "--json",
         "--index-dir", str(tmp_path / "index"), "--models-dir", str(tmp_path / "models")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)  # stdout holds exactly one JSON object
    assert answer["answerable"] and "building one from" in out.stderr
    assert (tmp_path / "index" / "manifest.json").exists()
