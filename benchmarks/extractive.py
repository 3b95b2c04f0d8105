"""How the extractive answer's settings were chosen: a grid over the lexical share of the sentence score and
the abstention threshold for cross-language answers, on seeds/gold_qa.jsonl with the index's own model.

    python benchmarks/extractive.py [--index-dir DIR]

For each question it retrieves (hybrid), embeds every candidate sentence once, then replays the answer
under each setting. It prints, per language:
- evidence cited: share of answerable questions whose quoted sentences include a gold evidence span;
- false abstentions (answerable questions answered "the articles don't say") and abstention accuracy
  (unanswerable questions that were) for each threshold on the best sentence's cosine.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from unittest import mock

from common import GOLD, SEEDS, log


def norm(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip().lower()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index-dir", type=Path, default=None, help="default: benchmarks/work/extractive-<corpus>")
    ap.add_argument("--seeds", type=Path, default=SEEDS, help="the articles (default: seeds/)")
    ap.add_argument("--gold", type=Path, default=GOLD, help="the gold questions (default: seeds/gold_qa.jsonl)")
    args = ap.parse_args()

    from ragqa import Engine, extractive
    from ragqa.answer import with_next_paragraphs
    from ragqa.evaluate import load_gold

    index_dir = args.index_dir or Path(__file__).resolve().parent / "work" / f"extractive-{args.seeds.resolve().name}"
    engine = Engine(index_dir=index_dir, seeds_dir=args.seeds, llm="none")
    retriever = engine.retriever
    cases = load_gold(args.gold)
    log(f"{len(cases)} questions; embedding their candidate sentences")
    prepared = []
    for case in cases:
        result = retriever.search(case.question, None, "hybrid")
        hits, follows = with_next_paragraphs(result.hits, retriever.index)
        similarity = retriever.similarity_to(case.question, result.mode)
        sims = dict(zip(texts := [c.text for c in extractive.candidates(case.question, hits, retriever.index.bm25.idf, follows)[0]],
                        similarity(texts) if texts else []))
        prepared.append((case, hits, follows, sims))

    def run(weight: float | None, threshold: float | None) -> dict:
        rows = {}
        patch = {"SIMILARITY_LEXICAL_WEIGHT": weight or 0.0, "MEANING_IN_OWN_LANGUAGE": weight is not None}
        with mock.patch.multiple(extractive, **patch):
            for case, hits, follows, sims in prepared:
                sim = None if weight is None else (lambda texts, s=sims: [s[t] for t in texts])
                ex = extractive.extractive_answer(case.question, hits, retriever.index.bm25.idf, follows, sim, threshold)
                spans = [norm(e) for e in case.evidence]
                cited = ex.answerable and any(sp in norm(s["text"]) or norm(s["text"]) in sp for s in ex.sentences for sp in spans)
                r = rows.setdefault(case.lang, {"answerable": 0, "cited": 0, "false_abst": 0, "unanswerable": 0, "abst": 0})
                if case.answerable:
                    r["answerable"] += 1
                    r["cited"] += cited
                    r["false_abst"] += not ex.answerable
                else:
                    r["unanswerable"] += 1
                    r["abst"] += not ex.answerable
        return rows

    def fmt(r: dict) -> str:
        out = f"cited {r['cited'] / r['answerable']:.2f}  false abst {r['false_abst'] / r['answerable']:.2f}"
        return out + (f"  abst acc {r['abst'] / r['unanswerable']:.2f}" if r["unanswerable"] else "")

    langs = sorted({case.lang for case in cases})
    print(f"ranking, every sentence scored the same way (no cross-language threshold); corpus {args.seeds}")
    print(f"  {'setting':<22} " + " ".join(f"{'questions in ' + lang:<44}" for lang in langs))
    for label, weight in [("lexical only", None), ("cosine only", 0.0), ("cosine + 0.05 lexical", 0.05),
                          ("cosine + 0.1 lexical", 0.1), ("cosine + 0.2 lexical", 0.2), ("cosine + 0.5 lexical", 0.5)]:
        rows = run(weight, None)
        print(f"  {label:<22} " + " ".join(f"{fmt(rows[lang]):<44}" for lang in langs))
    print(f"threshold on the best sentence's cosine (it applies only to questions asked across languages), "
          f"cosine + {extractive.SIMILARITY_LEXICAL_WEIGHT} lexical")
    for threshold in [0.76, 0.77, 0.775, 0.78, 0.785, 0.79, 0.795, 0.80, 0.81, 0.82, 0.83, 0.85]:
        rows = run(extractive.SIMILARITY_LEXICAL_WEIGHT, threshold)
        print(f"  {threshold:<22} " + " ".join(f"{fmt(rows[lang]):<44}" for lang in langs))


if __name__ == "__main__":
    sys.exit(main())
