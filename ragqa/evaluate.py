"""Batch evaluation against a gold Q&A set: retrieval, citation and answer metrics, deterministic, no judge."""

from __future__ import annotations

import json
import math
import re
import statistics
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, Field, ValidationError

from .errors import RagqaError, UsageError
from .retrieve import clean_query
from .schema import Answer

KS = (1, 3, 5, 10)
DEPTH = max(KS)


class EvalCase(BaseModel):
    id: str
    lang: str
    question: str
    answerable: bool
    answer: str = ""
    evidence: list[str] = Field(default_factory=list)
    key_facts: list[list[str]] = Field(default_factory=list)
    source: str | None = None


LANGS = ("ko", "en")
SHOW_PROBLEMS = 10
OUTPUT_FILES = ("results.jsonl", "summary.json", "report.html")


def load_gold(path: Path, warn: Callable[[str], None] | None = None) -> list[EvalCase]:
    """Read and check the whole gold set before anything runs; every problem is reported as file:line.

    Problems that make a question unscorable or mis-scored raise (up to SHOW_PROBLEMS listed); ones that
    only leave metrics out (an answerable question without evidence) go to `warn`.
    """
    lines = _gold_lines(path)
    cases: list[EvalCase] = []
    problems: list[str] = []
    warnings: list[str] = []
    first_line: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}: expected a JSON object with id, lang, question, answerable, got {_kind(obj)}")
            continue
        try:
            case = EvalCase.model_validate(obj, strict=True)
        except ValidationError as e:
            problems.extend(f"{where}: {_field_error(err)}" for err in e.errors())
            continue
        problems.extend(f"{where}: {p}" for p in _case_problems(case))
        key = case.id.strip()
        if key in first_line:
            problems.append(f"{where}: duplicate id {case.id!r} (first on line {first_line[key]}); ids must be unique")
        first_line.setdefault(key, n)
        unknown = sorted(set(obj) - set(EvalCase.model_fields))
        if unknown:
            warnings.append(f"{where}: unknown field(s) {', '.join(map(repr, unknown))} ignored")
        if case.answerable and not case.evidence:
            # Not an error: answers and key facts are still scored, as for a set written without spans.
            warnings.append(f"{where}: answerable without evidence: retrieval and citation metrics skip {case.id!r}")
        if not case.answerable and (case.evidence or case.key_facts):
            warnings.append(f"{where}: unanswerable, so its evidence and key_facts are ignored")
        cases.append(case)
    if problems:
        shown = "\n  ".join(problems[:SHOW_PROBLEMS])
        more = f"\n  … and {len(problems) - SHOW_PROBLEMS} more" if len(problems) > SHOW_PROBLEMS else ""
        raise RagqaError(
            f"the gold set {path} has {len(problems)} problem{'s' if len(problems) > 1 else ''}; fix "
            f"{'them' if len(problems) > 1 else 'it'} and rerun (nothing was evaluated):\n  {shown}{more}"
        )
    if not cases:
        raise RagqaError(f"the gold set {path} holds no questions: write one JSON object per line")
    for w in warnings if warn else []:
        warn(w)
    return cases


def _gold_lines(path: Path) -> list[str]:
    """The lines of a gold file: UTF-8, with or without a BOM, or UTF-16 with one."""
    if not path.exists():
        raise UsageError(f"gold set not found: {path}")
    if path.is_dir():
        raise UsageError(f"the gold set {path} is a folder: pass a JSON Lines file, e.g. {path / 'gold_qa.jsonl'}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RagqaError(f"cannot read the gold set {path}: {e.strerror or e}") from None
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):  # what Windows editors save; the BOM is not part of the first line
            break
    else:
        codec = "utf-8"
        if b"\x00" in data[:8192]:
            raise RagqaError(f"the gold set {path} is a binary file, not JSON Lines: pass the .jsonl file of questions")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RagqaError(f"{path}:{line}: not valid {codec.upper().replace('-SIG', '')} text: save the gold set as UTF-8") from None
    return text.splitlines()


def _field_error(err: dict) -> str:
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
    if err["type"] == "missing":
        return f"missing field {loc!r}"
    expected = {"string_type": "a string", "bool_type": "true or false", "list_type": "a list"}.get(err["type"])
    if expected:
        return f"{loc!r} must be {expected}, got {_kind(err.get('input'))}"
    return f"{loc!r}: {err['msg']}"


def _kind(value) -> str:
    """What a JSON value is, in the words of the JSON it came from."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__
    )


def _case_problems(case: EvalCase) -> list[str]:
    out = []
    if not case.id.strip():
        out.append("empty 'id': give every question a unique id")
    if case.lang not in LANGS:
        out.append(f"'lang' must be one of {', '.join(LANGS)}, got {case.lang!r}")
    try:
        clean_query(case.question)  # what every search does to it first
    except UsageError:
        out.append("empty 'question': write the question, or delete the line")
    for i, span in enumerate(case.evidence):
        if not span.strip():
            out.append(f"'evidence[{i}]' is empty: it would make every passage gold; give a verbatim span or drop it")
    for i, group in enumerate(case.key_facts):
        if not group:
            out.append(f"'key_facts[{i}]' is an empty group: list at least one accepted wording, or drop it")
        for j, variant in enumerate(group):
            if not variant.strip():
                out.append(f"'key_facts[{i}][{j}]' is empty: it would match every answer; drop it")
    return out


# ---------------------------------------------------------------- metric functions


def hit_at(ranked: list[str], gold: set[str], k: int) -> float:
    return float(any(c in gold for c in ranked[:k]))


def recall_at(ranked: list[str], gold: set[str], k: int) -> float:
    return len(gold & set(ranked[:k])) / len(gold) if gold else 0.0


def mrr_at(ranked: list[str], gold: set[str], k: int) -> float:
    return next((1.0 / i for i, c in enumerate(ranked[:k], 1) if c in gold), 0.0)


def ndcg_at(ranked: list[str], gold: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 1) for i, c in enumerate(ranked[:k], 1) if c in gold)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(gold)) + 1))
    return dcg / ideal if ideal else 0.0


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def facts_found(text: str, facts: list[list[str]]) -> list[bool]:
    """For each key fact, whether any of its accepted variants occurs in `text` (case-insensitive)."""
    t = _norm(text)
    return [any(_norm(v) in t for v in variants) for variants in facts]


def gold_chunks(case: EvalCase, chunk_texts: dict[str, str]) -> set[str]:
    """Chunks that contain one of the case's evidence spans (whitespace-insensitive)."""
    spans = [_norm(e) for e in case.evidence]
    return {cid for cid, text in chunk_texts.items() if any(s in _norm(text) for s in spans)}


def citation_scores(answer: Answer, gold: set[str], known: set[str]) -> dict:
    cites = [c for s in answer.sentences for c in s.citations]
    valid_pool = set(r["chunk_id"] for r in answer.retrieved) & known
    out = {"citations": len(cites), "valid": sum(c in valid_pool for c in cites)}
    out["validity"] = out["valid"] / len(cites) if cites else None
    out["precision"] = sum(c in gold for c in cites) / len(cites) if cites and gold else None
    out["recall"] = (
        sum(any(c in gold for c in s.citations) for s in answer.sentences) / len(answer.sentences)
        if answer.sentences and gold else None
    )
    return out


# ---------------------------------------------------------------- running


def run_case(case: EvalCase, engine, mode: str, gold: set[str], known: set[str]) -> dict:
    start = time.perf_counter()
    ranked_hits = engine.search(case.question, DEPTH, mode).hits
    retrieval_s = time.perf_counter() - start
    ranked = [h.chunk_id for h in ranked_hits]
    answer = engine.ask(case.question, mode=mode)
    row = {
        "id": case.id, "lang": case.lang, "mode": answer.mode, "question": case.question,
        "answerable": case.answerable, "gold": sorted(gold), "ranked": ranked,
        "gold_rank": next((i for i, c in enumerate(ranked, 1) if c in gold), None),
        "predicted_answerable": answer.answerable, "answer": answer.answer, "backend": answer.backend,
        "sentences": [s.model_dump() for s in answer.sentences],
        "retrieval_s": round(retrieval_s, 4),
        "generation_s": answer.timings.get("generation_s"),
        "answer_s": answer.timings.get("total_s"),
    }
    if case.answerable and gold:
        for k in KS:
            row[f"hit@{k}"] = hit_at(ranked, gold, k)
            row[f"recall@{k}"] = recall_at(ranked, gold, k)
            row[f"mrr@{k}"] = mrr_at(ranked, gold, k)
            row[f"ndcg@{k}"] = ndcg_at(ranked, gold, k)
    row.update({f"citation_{k}": v for k, v in citation_scores(answer, gold, known).items()})
    if case.answerable:
        found = facts_found(answer.answer if answer.answerable else "", case.key_facts)
        row["key_fact_recall"] = sum(found) / len(found) if found else None
        row["missing_facts"] = [f[0] for f, ok in zip(case.key_facts, found) if not ok]
    row["why"] = diagnose(row, case)
    return row


def diagnose(row: dict, case: EvalCase) -> str:
    """One line on what went wrong for this question ('' when nothing did)."""
    if not case.answerable:
        return "answered a question the articles cannot answer" if row["predicted_answerable"] else ""
    if not row["gold"]:
        if not case.evidence:
            return "no evidence spans in the gold set: only the answer was scored"
        return "gold evidence not found in any chunk (lost in cleaning?)"
    problems = []
    if row["gold_rank"] is None:
        problems.append(f"gold passage not in the top {DEPTH}")
    elif row["gold_rank"] > 5:
        problems.append(f"gold passage only at rank {row['gold_rank']}")
    if not row["predicted_answerable"]:
        problems.append("abstained")
    elif row.get("missing_facts"):
        problems.append("missing " + ", ".join(row["missing_facts"]))
    if row.get("citation_recall") is not None and row["citation_recall"] < 1:
        problems.append("some sentences cite no gold passage")
    return "; ".join(problems)


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.fmean(vals), 4) if vals else None


def _pct(values, q: float) -> float | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return round(vals[min(len(vals) - 1, int(q * len(vals)))], 4)


def summarize(rows: list[dict]) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    with_gold = [r for r in answerable if r["gold"]]
    out: dict = {"questions": len(rows), "answerable": len(answerable), "unanswerable": len(unanswerable)}
    for k in KS:
        for m in ("hit", "recall", "mrr", "ndcg"):
            out[f"{m}@{k}"] = _mean(r.get(f"{m}@{k}") for r in with_gold)
    out["citation_validity"] = _mean(r["citation_validity"] for r in rows)
    out["citation_precision"] = _mean(r["citation_precision"] for r in answerable)
    out["citation_recall"] = _mean(r["citation_recall"] for r in answerable)
    out["key_fact_recall"] = _mean(r.get("key_fact_recall") for r in answerable)
    out["abstention_accuracy"] = _mean(float(not r["predicted_answerable"]) for r in unanswerable)
    out["false_abstention_rate"] = _mean(float(not r["predicted_answerable"]) for r in answerable)
    out["unsupported_sentence_rate"] = _mean(
        float(s["supported"] is False) for r in rows for s in r["sentences"]
    )
    for key in ("retrieval_s", "generation_s", "answer_s"):
        out[f"{key}_p50"] = _pct((r[key] for r in rows), 0.5)
        out[f"{key}_p95"] = _pct((r[key] for r in rows), 0.95)
    return out


def evaluate(
    cases: list[EvalCase],
    engine,
    modes: list[str],
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run every case in every mode; returns {'rows': [...], 'summary': {mode: {lang: metrics}}, ...}."""
    index, llm = engine.opened, engine.llm
    chunk_texts = dict(zip(index.chunk_ids, index.texts.all()))
    golds = {case.id: gold_chunks(case, chunk_texts) if case.answerable else set() for case in cases}
    known = set(index.chunk_ids)
    rows, notes, done = [], [], 0
    total = len(cases) * len(modes)
    for mode in modes:
        if mode != "lexical" and not engine.retriever.has_dense:
            if mode == "hybrid" and "lexical" not in modes:  # what `search` does too: hybrid falls back to BM25
                notes.append("mode hybrid evaluated as lexical: the index is lexical-only")
                mode = "lexical"
            else:
                notes.append(f"mode {mode} skipped: the index is lexical-only")
                done += len(cases)
                continue
        for case in cases:
            rows.append(run_case(case, engine, mode, golds[case.id], known) | {"requested_mode": mode})
            done += 1
            if progress:
                progress(done, total)
    summary: dict = {}
    for mode in dict.fromkeys(r["requested_mode"] for r in rows):
        mine = [r for r in rows if r["requested_mode"] == mode]
        summary[mode] = {"all": summarize(mine)}
        for lang in sorted({r["lang"] for r in mine}):
            summary[mode][lang] = summarize([r for r in mine if r["lang"] == lang])
    worst = sorted((r for r in rows if r["why"]), key=_badness, reverse=True)[:5]
    has_evidence = {case.id for case in cases if case.evidence}
    lost = sorted({r["id"] for r in rows if r["answerable"] and not r["gold"] and r["id"] in has_evidence})
    if lost:
        notes.append(f"gold evidence missing from the index for {', '.join(lost)}")
    return {
        "backend": "llm" if llm is not None else "extractive",
        "llm": getattr(llm, "name", None),
        "modes": modes,
        "k": engine.settings.top_k,
        "summary": summary,
        "worst": [{k: r[k] for k in ("id", "mode", "lang", "question", "why", "answer")} for r in worst],
        "notes": notes,
        "rows": rows,
    }


def _badness(r: dict) -> tuple:
    wrong_abstain = r["answerable"] and not r["predicted_answerable"]
    wrong_answer = not r["answerable"] and r["predicted_answerable"]
    facts = r.get("key_fact_recall")
    return (
        wrong_answer or wrong_abstain,
        1 - (facts if facts is not None else 1),
        r["gold_rank"] is None,
        r["gold_rank"] or 0,
    )


def check_out_dir(out_dir: Path) -> None:
    """Refuse an --out that cannot take the three output files, before hours of evaluation are spent.

    An existing folder is fine: only results.jsonl, summary.json and report.html in it are replaced."""
    import os

    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is an existing file: name a folder (it gets {', '.join(OUTPUT_FILES)})")
    if out_dir.is_dir():
        for name in OUTPUT_FILES:
            target = out_dir / name
            if target.exists() and not target.is_file():
                raise UsageError(f"--out {out_dir}: {target} is not a file; only our own outputs are replaced")
            if target.exists() and not os.access(target, os.W_OK):
                raise RagqaError(f"--out {out_dir}: {target} is read-only: remove it, or choose another folder")
        why = _cannot_write_in(out_dir)
        if why:
            raise RagqaError(f"--out {out_dir} is not writable ({why}): choose another folder")
        return
    parent = out_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {out_dir} cannot be created: {parent} is a file, not a folder")
    why = _cannot_write_in(parent)
    if why:
        raise RagqaError(f"--out {out_dir} cannot be created in {parent} ({why}): choose another folder")


def _cannot_write_in(folder: Path) -> str | None:
    """Why no file can be created in `folder` (None when one can): tried, since permission bits do not
    tell about read-only mounts, ACLs or root."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as e:
        return e.strerror or str(e)


def write_outputs(result: dict, out_dir: Path) -> list[Path]:
    """results.jsonl (one row per question and mode), summary.json and a self-contained report.html."""
    try:
        return _write_outputs(result, out_dir)
    except OSError as e:
        where = e.filename or out_dir
        raise RagqaError(f"could not write the evaluation results to {where}: {e.strerror or e}") from None


def _write_outputs(result: dict, out_dir: Path) -> list[Path]:
    from .report import html_report

    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / "results.jsonl"
    with open(rows_path, "w", encoding="utf-8") as f:
        for r in result["rows"]:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    summary_path = out_dir / "summary.json"
    summary_path.write_text(
        json.dumps({k: v for k, v in result.items() if k != "rows"}, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    report_path = out_dir / "report.html"
    report_path.write_text(html_report(result), encoding="utf-8")
    return [rows_path, summary_path, report_path]
