"""A cold hybrid search as one process: imports, index load, query embedding (hashing), BM25 + FAISS + RRF.

Mirrors `ragqa search --mode hybrid` on a benchmark index, whose vectors come from the hashing embedder
that the CLI does not know. Prints the top chunk ID on stdout and where the time went on stderr: the
imports, opening the index, the Korean analyzer's first call (MeCab-ko opening its dictionary, ~10 ms;
Kiwi took 1.1 s before) and the search itself.
"""

import time

start = time.perf_counter()

import sys
from pathlib import Path

from common import HashEmbedder, bench_settings, ragqa_default  # first: it puts the checkout's ragqa on the path

from ragqa import store
from ragqa.lexical import tokenize
from ragqa.retrieve import Retriever

if len(sys.argv) != 3:
    print("usage: python benchmarks/cold_search.py INDEX_DIR QUERY", file=sys.stderr)
    sys.exit(2)
index_dir, query = Path(sys.argv[1]), sys.argv[2]
stages = {"imports": time.perf_counter() - start}
t = time.perf_counter()
embedder = HashEmbedder()  # the benchmark's stand-in for the embedding model (imports scikit-learn)
stages["hashing embedder"] = time.perf_counter() - t
t = time.perf_counter()
retriever = Retriever(store.load(index_dir), bench_settings(index_dir), embedder=embedder)
stages["open index"] = time.perf_counter() - t
t = time.perf_counter()
tokenize("가")  # what the search's query analysis would pay first, timed on its own
stages["analyzer load + first call"] = time.perf_counter() - t
t = time.perf_counter()
result = retriever.search(query, ragqa_default("top_k"), "hybrid")
stages["search"] = time.perf_counter() - t
print(result.hits[0].chunk_id if result.hits else "-")
print("cold search (after interpreter start): " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()), file=sys.stderr)
