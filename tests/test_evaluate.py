"""The gold set and the evaluation: metric functions by hand, a full offline run, the report."""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SEEDS
from ragqa import store
from ragqa.cli import app
from ragqa.corpus import load_corpus
from ragqa.errors import RagqaError, UsageError
from ragqa.engine import Engine
from ragqa.evaluate import (
    EvalCase, check_out_dir, citation_scores, evaluate, facts_found, gold_chunks, hit_at, load_gold, mrr_at, ndcg_at,
    recall_at, write_outputs,
)
from ragqa.schema import Answer, AnswerSentence

GOLD = SEEDS / "gold_qa.jsonl"


@pytest.fixture(scope="module")
def cases():
    return load_gold(GOLD)


# ---------------------------------------------------------------- the gold set itself


def test_gold_set_shape(cases):
    assert len(cases) >= 40
    assert {c.lang for c in cases} == {"ko", "en"}
    assert sum(not c.answerable for c in cases) >= 5
    assert len({c.id for c in cases}) == len(cases)
    for c in cases:
        if c.answerable:
            assert c.evidence and c.key_facts and c.answer
        else:
            assert not c.evidence and not c.key_facts


def test_every_evidence_span_exists_in_the_seeds(cases):
    raw = {p.name: unicodedata.normalize("NFC", p.read_text(encoding="utf-8")) for p in SEEDS.glob("*.txt")}
    for c in cases:
        for span in c.evidence:
            assert unicodedata.normalize("NFC", span) in raw[c.source], f"{c.id}: {span[:30]!r}"


def test_every_article_is_covered(cases):
    articles = load_corpus([SEEDS]).articles
    covered = set()
    for c in cases:
        for span in c.evidence:
            for a in articles:
                if re.sub(r"\s+", " ", span) in re.sub(r"\s+", " ", " ".join(a.paragraphs)):
                    covered.add(a.doc_id)
    assert covered == {a.doc_id for a in articles}  # including each article of the multi-article file


def test_every_evidence_span_survives_cleaning_and_chunking(cases, lexical_index):
    index = store.load(lexical_index.index_dir)
    texts = {cid: index.texts[i] for i, cid in enumerate(index.chunk_ids)}
    for c in cases:
        if c.answerable:
            assert gold_chunks(c, texts), f"{c.id}: no chunk holds its evidence"


# ---------------------------------------------------------------- metrics by hand


def test_ranking_metrics_hand_computed():
    ranked = ["a", "x", "b", "y", "c"]
    gold = {"b", "c", "z"}
    assert hit_at(ranked, gold, 1) == 0 and hit_at(ranked, gold, 3) == 1
    assert recall_at(ranked, gold, 3) == pytest.approx(1 / 3)
    assert recall_at(ranked, gold, 5) == pytest.approx(2 / 3)
    assert mrr_at(ranked, gold, 5) == pytest.approx(1 / 3) and mrr_at(ranked, gold, 2) == 0
    dcg = 1 / math.log2(4) + 1 / math.log2(6)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, gold, 5) == pytest.approx(dcg / idcg)
    assert ndcg_at(["b"], {"b"}, 10) == pytest.approx(1.0)


def test_key_facts_and_citation_scores():
    assert facts_found("Huawei already had chips; 화웨이.", [["화웨이", "Huawei"], ["8일", "December 8"]]) == [True, False]
    answer = Answer(
        question="q", answer="", answerable=True, backend="extractive", language="ko", mode="lexical",
        sentences=[
            AnswerSentence(text="s1", citations=["g1", "x"]),
            AnswerSentence(text="s2", citations=["x"]),
            AnswerSentence(text="s3", citations=["ghost"]),
        ],
        citations=[], retrieved=[{"chunk_id": "g1", "score": 1}, {"chunk_id": "x", "score": 0.5}], timings={},
    )
    s = citation_scores(answer, gold={"g1"}, known={"g1", "x"})
    assert s["citations"] == 4 and s["valid"] == 3 and s["validity"] == pytest.approx(0.75)
    assert s["precision"] == pytest.approx(0.25)  # 1 of 4 cited chunks holds evidence
    assert s["recall"] == pytest.approx(1 / 3)  # 1 of 3 sentences cites a gold chunk


def test_gold_chunks_ignore_whitespace():
    case = EvalCase(id="t", lang="ko", question="?", answerable=True, evidence=["가나  다\n라"], key_facts=[["가"]])
    assert gold_chunks(case, {"c1": "앞 가나 다 라 뒤", "c2": "가나다라"}) == {"c1"}


# ---------------------------------------------------------------- a full offline run


@pytest.fixture(scope="module")
def offline_result(cases, lexical_index):
    return evaluate(cases, Engine(lexical_index), ["lexical", "hybrid"])


def test_offline_evaluation_numbers(offline_result, cases):
    s = offline_result["summary"]
    assert offline_result["backend"] == "extractive"
    assert list(s) == ["lexical"] and "hybrid skipped" in offline_result["notes"][0]
    ko, en = s["lexical"]["ko"], s["lexical"]["en"]
    assert ko["questions"] + en["questions"] == len(cases)
    assert ko["hit@5"] >= 0.85  # Korean BM25 finds the evidence passage
    assert ko["citation_validity"] == 1.0
    assert s["lexical"]["all"]["abstention_accuracy"] == 1.0
    assert en["false_abstention_rate"] > 0.8  # English questions cannot match Korean text without models
    assert offline_result["worst"] and all(w["why"] for w in offline_result["worst"])


def test_modes_side_by_side_on_a_dense_index(cases, fake_engine):
    result = evaluate(cases[:6], fake_engine, ["lexical", "dense", "hybrid"])
    assert list(result["summary"]) == ["lexical", "dense", "hybrid"] and not result["notes"]
    assert {r["mode"] for r in result["rows"]} == {"lexical", "dense", "hybrid"}
    for mode, by_lang in result["summary"].items():
        assert by_lang["all"]["questions"] == 6
    for row in result["rows"]:  # each mode ranked the index its own way and scored it against the gold
        assert row["ranked"] and row["hit@10"] == (row["gold_rank"] is not None and row["gold_rank"] <= 10)


def test_outputs_are_written_and_escaped(offline_result, tmp_path):
    result = dict(offline_result)
    rows = [dict(r) for r in result["rows"]]
    rows[0]["answer"] = "<script>alert('x')</script>"
    result["rows"] = rows
    paths = write_outputs(result, tmp_path / "out")
    assert [p.name for p in paths] == ["results.jsonl", "summary.json", "report.html"]
    lines = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(rows) and json.loads(lines[0])["id"] == rows[0]["id"]
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<svg" in html and "<polyline" in html and "lexical / ko" in html


def test_eval_cli(tmp_path, lexical_index):
    runner = CliRunner()
    result = runner.invoke(
        app, ["eval", "--mode", "lexical", "--limit", "6", "--index-dir", str(lexical_index.index_dir), "--json",
              "--llm", "none", "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["summary"]["lexical"]["all"]["questions"] == 6 and "rows" not in data
    assert (tmp_path / "r" / "report.html").exists()
    table = runner.invoke(app, ["eval", "--limit", "4", "--llm", "none", "--index-dir", str(lexical_index.index_dir)])
    assert table.exit_code == 0 and table.stdout.splitlines()[1].split()[:3] == ["mode", "lang", "n"]
    assert table.stdout.splitlines()[2].split()[:3] == ["lexical", "all", "4"]  # default hybrid: BM25 only here
    assert "hybrid evaluated as lexical" in table.stderr
    dense = runner.invoke(app, ["eval", "--mode", "dense", "--llm", "none", "--index-dir", str(lexical_index.index_dir)])
    assert dense.exit_code == 1 and "nothing to evaluate" in dense.stderr and dense.stdout == ""
    bad = runner.invoke(app, ["eval", "--mode", "fuzzy", "--index-dir", str(lexical_index.index_dir)])
    assert bad.exit_code == 2 and "invalid --mode" in bad.stderr
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope.jsonl"), "--index-dir", str(lexical_index.index_dir)])
    assert missing.exit_code == 2 and "gold set not found" in missing.stderr


# ---------------------------------------------------------------- a gold file that cannot be used


GOOD = {
    "id": "g1", "lang": "ko", "question": "딥시크 앱은 앱스토어에서 몇 위였나?", "answerable": True,
    "answer": "1위", "evidence": ["무료 앱 다운로드 순위에서"], "key_facts": [["1위", "first"]],
}


def gold_file(tmp_path, *rows, name="gold.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


def problem(row, tmp_path) -> str:
    path = gold_file(tmp_path, GOOD, row)
    with pytest.raises(RagqaError) as e:
        load_gold(path)
    assert type(e.value) is RagqaError  # exit code 1: the data is wrong, not the command
    return str(e.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"key_facts": [[]]}, "'key_facts[0]' is an empty group"),
        ({"key_facts": [["1위", " "]]}, "'key_facts[0][1]' is empty"),
        ({"key_facts": "1위"}, "'key_facts' must be a list, got a string"),
        ({"key_facts": [["1위", 1]]}, "'key_facts[0][1]' must be a string, got a number"),
        ({"evidence": [""]}, "'evidence[0]' is empty: it would make every passage gold"),
        ({"evidence": ["  \n "]}, "'evidence[0]' is empty"),
        ({"evidence": "순위"}, "'evidence' must be a list, got a string"),
        ({"question": ""}, "empty 'question'"),
        ({"question": " \t\u0000\u200b "}, "empty 'question'"),
        ({"question": None}, "'question' must be a string, got null"),
        ({"lang": "fr"}, "'lang' must be one of ko, en, got 'fr'"),
        ({"lang": "KO"}, "'lang' must be one of ko, en, got 'KO'"),
        ({"answerable": "yes"}, "'answerable' must be true or false, got a string"),
        ({"answerable": 1}, "'answerable' must be true or false, got a number"),
        ({"id": 7}, "'id' must be a string, got a number"),
        ({"id": " "}, "empty 'id'"),
        ({"id": "g1"}, "duplicate id 'g1' (first on line 1)"),
    ],
)
def test_each_kind_of_bad_case_is_named_with_its_line(tmp_path, change, message):
    row = {**GOOD, "id": "g2"} | change
    text = problem(row, tmp_path)
    assert f"{tmp_path / 'gold.jsonl'}:2: {message}" in text and "nothing was evaluated" in text


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "g2", "lang": "ko"', "invalid JSON (Expecting ',' delimiter at column 26)"),
        ("[1, 2]", "expected a JSON object with id, lang, question, answerable, got a list"),
        ('"just a string"', "expected a JSON object with id, lang, question, answerable, got a string"),
        ('{"id": "g2", "lang": "ko", "answerable": false}', "missing field 'question'"),
    ],
)
def test_lines_that_are_not_cases(tmp_path, line, message):
    assert f"gold.jsonl:2: {message}" in problem(line, tmp_path)


def test_every_problem_of_the_file_is_listed_up_to_ten(tmp_path):
    rows = [GOOD] + [{**GOOD, "id": f"x{i}", "question": ""} for i in range(13)] + ["{oops"]
    with pytest.raises(RagqaError) as e:
        load_gold(gold_file(tmp_path, *rows))
    text = str(e.value)
    assert "has 14 problems" in text and "… and 4 more" in text
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in text.splitlines()[1:11]] == [str(n) for n in range(2, 12)]


def test_gold_file_encodings(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n")  # Notepad's UTF-8
    assert [c.id for c in load_gold(bom)] == ["g1"]
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text(json.dumps(GOOD, ensure_ascii=False), encoding="utf-16")
    assert load_gold(utf16)[0].question == GOOD["question"]
    latin = tmp_path / "cp949.jsonl"
    latin.write_bytes(json.dumps(GOOD).encode() + b"\n" + json.dumps({**GOOD, "id": "g2"}, ensure_ascii=False).encode("cp949"))
    with pytest.raises(RagqaError, match=r"cp949.jsonl:2: not valid UTF-8 text: save the gold set as UTF-8"):
        load_gold(latin)


def test_gold_paths_that_are_not_gold_files(tmp_path):
    with pytest.raises(UsageError, match="is a folder: pass a JSON Lines file"):
        load_gold(tmp_path)
    png = tmp_path / "picture.jsonl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(RagqaError, match="is a binary file, not JSON Lines"):
        load_gold(png)
    with pytest.raises(RagqaError, match="holds no questions"):
        load_gold(gold_file(tmp_path, "", "   "))


def test_warnings_do_not_stop_the_run(tmp_path):
    warned = []
    cases = load_gold(
        gold_file(
            tmp_path, GOOD, {**GOOD, "id": "g2", "evidence": []}, {**GOOD, "id": "g3", "evidnce": ["x"]},
            {"id": "u1", "lang": "en", "question": "Who won?", "answerable": False, "evidence": ["x"]},
        ),
        warn=warned.append,
    )
    assert [c.id for c in cases] == ["g1", "g2", "g3", "u1"]
    assert any(":2: answerable without evidence" in w for w in warned)
    assert any(":3: unknown field(s) 'evidnce' ignored" in w for w in warned)
    assert any(":4: unanswerable, so its evidence and key_facts are ignored" in w for w in warned)


def test_out_is_checked_before_anything_runs(tmp_path):
    existing = tmp_path / "results.txt"
    existing.write_text("mine", encoding="utf-8")
    with pytest.raises(UsageError, match="is an existing file: name a folder"):
        check_out_dir(existing)
    with pytest.raises(UsageError, match="cannot be created: .*results.txt is a file"):
        check_out_dir(existing / "sub" / "dir")
    ours = tmp_path / "run1"
    (ours / "report.html").mkdir(parents=True)
    with pytest.raises(UsageError, match="report.html is not a file"):
        check_out_dir(ours)
    check_out_dir(tmp_path / "new" / "deeper")  # creatable
    assert not (tmp_path / "new").exists()  # … but not created before the evaluation
    if Path("/proc/self").is_dir():  # no file can be created in /proc, not even by root
        with pytest.raises(RagqaError, match="cannot be created in /proc"):
            check_out_dir(Path("/proc/ragqa-results"))
    if os.geteuid() != 0:  # root writes anywhere permissions would forbid
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(RagqaError, match="is not writable"):
            check_out_dir(locked)
    with pytest.raises(RagqaError, match="could not write the evaluation results"):
        write_outputs({"rows": [], "summary": {}}, existing / "out")


def test_eval_cli_refuses_a_bad_gold_file_or_out_before_evaluating(tmp_path, lexical_index):
    runner = CliRunner()
    index = ["--index-dir", str(lexical_index.index_dir), "--llm", "none", "--mode", "lexical"]
    bad = gold_file(tmp_path, GOOD, {**GOOD, "id": "g2", "key_facts": [[]]}, {**GOOD, "id": "g3", "question": ""})
    result = runner.invoke(app, ["eval", str(bad), *index])
    assert result.exit_code == 1 and result.stdout == ""
    assert f"{bad}:2: 'key_facts[0]'" in result.stderr and f"{bad}:3: empty 'question'" in result.stderr
    assert "evaluating" not in result.stderr and "Traceback" not in result.stderr
    assert "internal error" not in result.stderr

    for target, code, message in [
        (tmp_path, 2, "is a folder"),
        (tmp_path / "missing.jsonl", 2, "gold set not found"),
    ]:
        result = runner.invoke(app, ["eval", str(target), *index])
        assert result.exit_code == code and message in result.stderr and "internal error" not in result.stderr

    good = gold_file(tmp_path, GOOD, name="good.jsonl")
    taken = tmp_path / "taken.html"
    taken.write_text("keep me", encoding="utf-8")
    result = runner.invoke(app, ["eval", str(good), *index, "--out", str(taken)])
    assert result.exit_code == 2 and "is an existing file" in result.stderr and "evaluating" not in result.stderr
    assert taken.read_text(encoding="utf-8") == "keep me"

    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("not ours", encoding="utf-8")
    (out / "summary.json").write_text("old", encoding="utf-8")
    result = runner.invoke(app, ["eval", str(good), *index, "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert (out / "notes.txt").read_text(encoding="utf-8") == "not ours"  # only our three files are replaced
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["summary"]["lexical"]["all"]["questions"] == 1
