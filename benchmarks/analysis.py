"""Korean analysis speed: chunks per second of chunking + tokenizing (every analysis pass of `ragqa index`),
on the synthetic corpus with long paragraphs, from scratch, without an embedding model.

    python benchmarks/analysis.py                              # 1k and 10k articles, 20% long paragraphs
    python benchmarks/analysis.py --vs /path/to/other/checkout # the same corpora, A B A B, ratio per pair

Each build runs in a fresh process (the analyzer's load is excluded: it is loaded before the clock starts). CPU
seconds are printed beside wall seconds: on a busy machine they move less.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from common import WORK, bench_settings, child_json, loadavg, log, offline_env, synthetic_corpus, table


def child(corpus: Path, index_dir: Path) -> dict:
    from ragqa.build import build_index
    from ragqa.lexical import tokenize

    tokenize("가")  # loads the analyzer outside the clock (Kiwi took 1.2 s, MeCab-ko takes 10 ms)
    shutil.rmtree(index_dir, ignore_errors=True)
    stages: dict[str, float] = {}
    current = [None, 0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != current[0]:
            if current[0]:
                stages[current[0]] = stages.get(current[0], 0.0) + now - current[1]
            current[:] = [stage, now]

    load0, cpu0 = loadavg(), time.process_time()
    report = build_index([corpus], bench_settings(index_dir), progress=progress)
    progress("done", 0, 0)
    shutil.rmtree(index_dir, ignore_errors=True)
    seconds = stages.get("chunking", 0.0) + stages.get("tokenizing", 0.0)
    return {
        "chunks": report.chunks, "analysis_s": round(seconds, 2), "chunks_per_s": round(report.chunks / seconds),
        "build_cpu_s": round(time.process_time() - cpu0, 2), "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "loadavg": [load0, loadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="1000,10000", help="article counts, comma-separated")
    ap.add_argument("--long-paragraphs", type=float, default=0.2, metavar="SHARE")
    ap.add_argument("--vs", type=Path, help="another checkout of ragqa to run on the same corpora")
    ap.add_argument("--out", type=Path, default=WORK / "analysis.json")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    codes = {"this": Path(__file__).resolve().parent.parent, **({"vs": args.vs.resolve()} if args.vs else {})}
    results = []
    for n in [int(x) for x in args.scales.split(",")]:
        corpus = synthetic_corpus(n, args.long_paragraphs)
        for label, code in codes.items():
            log(f"{n} articles, {label} ({code})")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(corpus), str(WORK / f"analysis-index-{label}")]
            results.append({"articles": n, "version": label, "code": str(code), **child_json(cmd, env=offline_env(code))})
    rows = [[r["articles"], r["version"], r["chunks"], r["analysis_s"], r["chunks_per_s"], r["build_cpu_s"],
             r["loadavg"][0][0] if r["loadavg"][0] else ""] for r in results]
    print(f"Korean analysis (chunking + tokenizing), {args.long_paragraphs:.0%} long paragraphs, no embedding model")
    print(table(rows, ["articles", "version", "chunks", "seconds", "chunks/s", "build CPU s", "load before"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
