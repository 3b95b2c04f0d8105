"""FAISS (the default) against Milvus Lite as ragqa's store, side by side in one run.

    python benchmarks/stores.py [--articles 10000 ...] [--json out.json]

For each corpus size (synthetic articles, ~10 chunks each; the hashing embedder so that scale is affordable)
and each store, in a process of its own: build time, peak memory (Milvus Lite 3.x serves from a thread inside
ragqa's process, so its memory is counted there), adding one article (time, peak memory), and warm search
p50/p95 per mode.
Milvus Lite is one local process with the same engine code as a Milvus server but none of its distribution:
these figures say what the client path and the engine cost, not how a cluster scales.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from common import (
    QUERIES_KO, WORK, HashEmbedder, bench_settings, child_json, describe, log, machine, peak_rss_mb, rss_mb,
    search_percentiles, ragqa_default, synthetic_corpus, table,
)

K = ragqa_default("top_k")


def guard(max_rss_mb: float, articles: int, store: str, stage: list[str]) -> None:
    """Stop this child before it takes the machine's memory: past `max_rss_mb` it prints a result saying how
    far it got and exits (a run that does not fit is a figure too)."""
    start = time.perf_counter()

    def watch() -> None:
        while True:
            rss = rss_mb()
            if rss > max_rss_mb:
                print(json.dumps({"articles": articles, "store": store, "aborted": stage[0], "rss_mb": round(rss),
                                  "after_s": round(time.perf_counter() - start)}), flush=True)
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def child(articles: int, store: str, max_rss_mb: float, from_faiss: bool = False, queries_per_mode: int = 90) -> dict:
    from ragqa import store as index_store
    from ragqa.build import build_index
    from ragqa.retrieve import Retriever
    from ragqa.synthetic import ADDED, add_article

    stage = ["build"]
    guard(max_rss_mb, articles, store, stage)
    corpus = synthetic_corpus(articles)
    (corpus / ADDED).unlink(missing_ok=True)
    base = WORK / f"stores-{articles}-{store}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    overrides = {"embed_model": "hash-384"}
    if store == "milvus":
        overrides["store"] = str(base / "milvus.db")
    settings = bench_settings(base / "index", **overrides)
    embedder = HashEmbedder()
    if from_faiss:  # the FAISS run's index, moved to Milvus: chunks, tokens and vectors are reused, not remade
        shutil.copytree(WORK / f"stores-{articles}-faiss" / "index", base / "index")
    start = time.perf_counter()
    report = build_index([corpus], settings, embedder=embedder)
    out = {"articles": articles, "chunks": report.chunks, "store": store + (" (moved from FAISS)" if from_faiss else ""),
           "build_s": round(time.perf_counter() - start, 1), "build_peak_rss_mb": round(peak_rss_mb())}

    stage[0] = "search"
    index = index_store.load(settings.index_dir)
    retriever = Retriever(index, settings, embedder=embedder)
    queries = QUERIES_KO + [" ".join(index.texts[int(r)].split()[:8]) for r in range(0, index.n, max(1, index.n // queries_per_mode))][:queries_per_mode]
    out["search"] = search_percentiles(retriever, queries, K)

    stage[0] = "add one article"
    extra = add_article(corpus)
    try:
        start = time.perf_counter()
        added = build_index([corpus], settings, embedder=embedder)
        out["add_one_article"] = {"seconds": round(time.perf_counter() - start, 2), "embedded": added.embedded,
                                  "peak_rss_mb": round(peak_rss_mb())}
    finally:
        extra.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, nargs="+", default=[10_000])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--max-rss-gb", type=float, default=20.0, help="stop a run whose memory passes this (default 20)")
    ap.add_argument("--stores", default="faiss,milvus", help="which stores to run, comma-separated")
    ap.add_argument(
        "--milvus-from-faiss", action="store_true",
        help="build the Milvus index by moving the FAISS run's index (saved under benchmarks/work) to Milvus: "
        "what Milvus costs without repeating the Korean analysis",
    )
    ap.add_argument("--queries", type=int, default=90, help="sampled queries per mode, besides 10 fixed ones")
    ap.add_argument("--child", nargs=2, metavar=("ARTICLES", "STORE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.max_rss_gb * 1024,
                               args.milvus_from_faiss and args.child[1] == "milvus", args.queries)))
        return
    results = {"machine": machine("faiss-cpu", "pymilvus", "milvus-lite"), "runs": []}
    for n in args.articles:
        for store in args.stores.split(","):
            log(f"{n} articles, {store}")
            cmd = [sys.executable, __file__, "--child", str(n), store, "--max-rss-gb", str(args.max_rss_gb),
                   "--queries", str(args.queries)] + (["--milvus-from-faiss"] if args.milvus_from_faiss else [])
            results["runs"].append(child_json(cmd))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
    print(describe(results["machine"]))
    rows = []
    for r in results["runs"]:
        if "aborted" in r:
            rows.append([f"{r['articles']} articles", r["store"], f"stopped at {r['rss_mb']} MB RSS during {r['aborted']} "
                         f"after {r['after_s']} s", *[""] * 6])
            continue
        s, a = r["search"], r["add_one_article"]
        rows.append([
            r["chunks"], r["store"], f"{r['build_s']} s", f"{r['build_peak_rss_mb']} MB",
            f"{a['seconds']} s", f"{a['peak_rss_mb']} MB",
            *(f"{s[m]['p50_ms']} / {s[m]['p95_ms']} ms" for m in ("lexical", "dense", "hybrid")),
        ])
    print(table(rows, ["chunks", "store", "build", "build peak RSS", "add 1 article", "add peak RSS", "lexical p50/p95", "dense p50/p95", "hybrid p50/p95"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
