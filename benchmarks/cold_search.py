"""A cold hybrid search as one process: imports, index load, query embedding (hashing), BM25 + FAISS + RRF.

Mirrors `ragqa search --mode hybrid` on a benchmark index, whose vectors come from the hashing embedder
that the CLI does not know.
"""

import sys
from pathlib import Path

from common import HashEmbedder, bench_settings, ragqa_default  # first: it puts the checkout's ragqa on the path

from ragqa import store
from ragqa.retrieve import Retriever

if len(sys.argv) != 3:
    print("usage: python benchmarks/cold_search.py INDEX_DIR QUERY", file=sys.stderr)
    sys.exit(2)
index_dir, query = Path(sys.argv[1]), sys.argv[2]
retriever = Retriever(store.load(index_dir), bench_settings(index_dir), embedder=HashEmbedder())
result = retriever.search(query, ragqa_default("top_k"), "hybrid")
print(result.hits[0].chunk_id if result.hits else "-")
