"""A cold hybrid search as one process: imports, index load, query embedding (hashing), BM25 + FAISS + RRF.

Mirrors `ragqa search --mode hybrid` on a benchmark index, whose vectors come from the hashing embedder
that the CLI does not know.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragqa import store  # noqa: E402
from ragqa.config import Settings  # noqa: E402
from ragqa.retrieve import Retriever  # noqa: E402
from synth import HashEmbedder  # noqa: E402

index_dir, query = Path(sys.argv[1]), sys.argv[2]
settings = Settings(index_dir=index_dir, embed_model="none", llm="none")
result = Retriever(store.load(index_dir), settings, embedder=HashEmbedder()).search(query, 5, "hybrid")
print(result.hits[0].chunk_id if result.hits else "-")
