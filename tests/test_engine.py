"""The public Python API: Engine gives what the CLI gives, and the README's example runs as written."""

from __future__ import annotations

import json
import re
import shutil

from typer.testing import CliRunner

from conftest import ROOT, SEEDS
from ragqa import Engine
from ragqa.cli import app

runner = CliRunner()


def test_engine_search_and_ask_give_the_cli_json(lexical_index):
    args = ["--index-dir", str(lexical_index.index_dir)]
    with Engine(index_dir=lexical_index.index_dir, embed_model="none", llm="none") as engine:
        result = engine.search("알리바바 자체 칩", k=3, mode="lexical")
        answer = engine.ask("미국이 H200 수출을 허용한 이유는?")
    cli_search = runner.invoke(app, ["search", "알리바바 자체 칩", "-k", "3", "--mode", "lexical", "--json", *args])
    assert cli_search.exit_code == 0 and json.loads(cli_search.stdout) == result.model_dump()
    cli_ask = runner.invoke(app, ["ask", "미국이 H200 수출을 허용한 이유는?", "--llm", "none", "--json", *args])
    assert cli_ask.exit_code == 0
    from_cli = json.loads(cli_ask.stdout)
    mine = answer.model_dump()
    for record in (from_cli, mine):
        record.pop("timings")
    assert from_cli == mine and mine["answerable"] and mine["citations"]


def test_engine_loads_its_models_once(lexical_index, monkeypatch):
    import ragqa.answer

    calls = []
    real = ragqa.answer.open_llm
    monkeypatch.setattr(ragqa.answer, "open_llm", lambda *a, **k: calls.append(1) or real(*a, **k))
    with Engine(index_dir=lexical_index.index_dir, embed_model="none", llm="none") as engine:
        first = engine.opened
        for q in ("H200 수출", "알리바바 칩", "딥시크 충격"):
            engine.ask(q)
        assert engine.opened is first and calls == [1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copytree(SEEDS, tmp_path / "seeds")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGQA_EMBED_MODEL", "none")
    monkeypatch.setenv("RAGQA_LLM", "none")
    printed = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    exec(compile(code, "README.md", "exec"), {})
    assert printed and any("[000-5cafd9bf:p0" in line for line in printed)
