"""A self-contained HTML evaluation report: summary tables, recall@k curves (inline SVG), every question.

Everything that comes from documents, questions or answers is HTML-escaped: an article can contain markup
or script, and the report must show it as text.
"""

from __future__ import annotations

from html import escape

from .evaluate import DEPTH, recall_at

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
METRICS = [
    ("hit@5", "hit@5"), ("recall@5", "recall@5"), ("mrr@5", "MRR@5"), ("ndcg@5", "nDCG@5"),
    ("citation_validity", "citation validity"), ("citation_precision", "citation precision"),
    ("citation_recall", "citation recall"), ("key_fact_recall", "key-fact recall"),
    ("abstention_accuracy", "abstention accuracy"), ("false_abstention_rate", "false abstentions"),
    ("unsupported_sentence_rate", "unsupported sentences"), ("answer_s_p50", "answer s p50"),
]


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else escape(str(v))


def curves(rows: list[dict]) -> dict[str, list[float]]:
    """recall@k for k = 1..DEPTH per (mode, language) over answerable questions with gold passages."""
    out = {}
    for mode in dict.fromkeys(r["requested_mode"] for r in rows):
        for lang in sorted({r["lang"] for r in rows}):
            mine = [r for r in rows if r["requested_mode"] == mode and r["lang"] == lang and r["gold"]]
            if mine:
                out[f"{mode} / {lang}"] = [
                    sum(recall_at(r["ranked"], set(r["gold"]), k) for r in mine) / len(mine) for k in range(1, DEPTH + 1)
                ]
    return out


def svg_chart(series: dict[str, list[float]], width: int = 560, height: int = 300) -> str:
    left, top, right, bottom = 48, 16, 170, 40
    w, h = width - left - right, height - top - bottom
    n = max((len(v) for v in series.values()), default=1)

    def x(i):
        return left + w * i / max(1, n - 1)

    def y(v):
        return top + h * (1 - v)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             'aria-label="recall at k">']
    for v in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.2f}</text>')
    for i in range(n):
        parts.append(f'<text x="{x(i):.1f}" y="{top + h + 16}" font-size="11" text-anchor="middle">{i + 1}</text>')
    parts.append(f'<text x="{left + w / 2:.1f}" y="{height - 4}" font-size="12" text-anchor="middle">k</text>')
    for j, (name, values) in enumerate(series.items()):
        color = COLORS[j % len(COLORS)]
        dash = ' stroke-dasharray="5,3"' if name.endswith("/ en") else ""
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{points}"/>')
        ly = top + 14 + 18 * j
        parts.append(f'<line x1="{left + w + 12}" x2="{left + w + 36}" y1="{ly - 4}" y2="{ly - 4}" '
                     f'stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{left + w + 42}" y="{ly}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(result: dict) -> str:
    rows = result["rows"]
    summary = result["summary"]
    head = "".join(f"<th>{escape(label)}</th>" for _, label in METRICS)
    body = []
    for mode, by_lang in summary.items():
        for lang, m in by_lang.items():
            cells = "".join(f"<td>{_fmt(m.get(key))}</td>" for key, _ in METRICS)
            body.append(f"<tr><td>{escape(mode)}</td><td>{escape(lang)}</td><td>{m['questions']}</td>{cells}</tr>")
    questions = []
    for r in rows:
        status = "ok" if not r["why"] else "bad"
        cited = ", ".join(c for s in r["sentences"] for c in s["citations"])
        questions.append(
            f'<tr class="{status}"><td>{escape(r["id"])}</td><td>{escape(r["requested_mode"])}</td>'
            f'<td>{escape(r["lang"])}</td><td>{escape(r["question"])}</td>'
            f'<td>{"yes" if r["answerable"] else "no"}</td><td>{_fmt(r["gold_rank"])}</td>'
            f'<td>{escape(r["answer"])}</td><td>{escape(cited)}</td><td>{escape(r["why"])}</td></tr>'
        )
    worst = "".join(
        f"<li><b>{escape(w['id'])}</b> ({escape(w['mode'])}, {escape(w['lang'])}) {escape(w['question'])}"
        f" — {escape(w['why'])}</li>"
        for w in result["worst"][:3]
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in result["notes"])
    backend = escape(result["backend"] + (f" ({result['llm']})" if result.get("llm") else ""))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ragqa evaluation</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }}
th {{ background: #f3f3f3; }}
tr.bad td {{ background: #fff1f0; }}
td:nth-child(7) {{ max-width: 36em; }}
</style></head><body>
<h1>ragqa evaluation</h1>
<p>Backend: {backend}; top-k {result['k']}; {len(rows)} runs. Every metric is computed from the gold set
(evidence spans and key facts), with no judge model.</p>
<h2>Summary</h2>
<table><tr><th>mode</th><th>lang</th><th>questions</th>{head}</tr>{''.join(body)}</table>
<h2>Recall@k (solid: Korean questions, dashed: English)</h2>
{svg_chart(curves(rows))}
<h2>Worst-served questions</h2><ol>{worst}</ol>
<h2>Notes</h2><ul>{notes or '<li>none</li>'}</ul>
<h2>Every question</h2>
<table><tr><th>id</th><th>mode</th><th>lang</th><th>question</th><th>answerable</th><th>gold rank</th>
<th>answer</th><th>cited</th><th>what went wrong</th></tr>{''.join(questions)}</table>
</body></html>
"""
