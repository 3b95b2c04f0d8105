"""The gold set and the evaluation: metric functions by hand, a full offline run, the report."""

from __future__ import annotations

import json
import math
import re
import unicodedata

import pytest
from typer.testing import CliRunner

from conftest import SEEDS
from ragqa import store
from ragqa.cli import app
from ragqa.corpus import load_corpus
from ragqa.evaluate import (
    EvalCase, citation_scores, evaluate, facts_found, gold_chunks, hit_at, load_gold, mrr_at, ndcg_at, recall_at,
    write_outputs,
)
from ragqa.retrieve import Retriever
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
    retriever = Retriever(store.load(lexical_index.index_dir), lexical_index)
    return evaluate(cases, retriever, lexical_index, ["lexical", "hybrid"])


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


def test_modes_side_by_side_on_a_dense_index(cases, dense_index):
    retriever = Retriever(store.load(dense_index.index_dir), dense_index)
    result = evaluate(cases[:6], retriever, dense_index, ["lexical", "dense", "hybrid"])
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
