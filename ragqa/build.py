"""`ragqa index`: corpus -> chunks -> tokens + embeddings -> store, reusing whatever did not change."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import store
from .chunking import CHUNKER_VERSION, chunk_articles
from .corpus import discover, load_corpus
from .errors import IndexMissing, ModelUnavailable, RagqaError
from .lexical import BM25, TOKENIZER_VERSION, tokenize_many

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class BuildReport:
    index_dir: str
    articles: int
    chunks: int
    files: int
    dropped_lines: int
    seconds: float
    up_to_date: bool = False
    dense: str | None = None  # embedding model, or None for a lexical-only index
    dense_note: str | None = None  # why the index is lexical-only
    embedded: int = 0
    reused_vectors: int = 0
    tokenized: int = 0
    ignored_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _signature(files: dict, settings, embed_spec: str) -> dict:
    return {
        "files": files,
        "chunker": {"version": CHUNKER_VERSION, "max_tokens": settings.chunk_max_tokens},
        "tokenizer": TOKENIZER_VERSION,
        "embed": embed_spec,
    }


def file_hashes(paths: list[Path]) -> dict[str, str]:
    """sha256 of every article file under `paths` (unreadable ones get a marker, so a fix is noticed)."""
    found, _, _ = discover(paths)
    out = {}
    for path, _ in found:
        try:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as e:
            out[str(path)] = f"unreadable: {e.strerror}"
    return out


def build_index(
    paths: list[Path],
    settings,
    embed_explicit: bool = False,
    progress: Progress | None = None,
    strict: bool = False,
    lock_wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build (or bring up to date) the index in settings.index_dir from the articles under `paths`."""
    t0 = time.perf_counter()
    step = progress or (lambda stage, done, total: None)
    embed_spec = settings.embed_model
    step("scanning", 0, 0)
    signature = _signature(file_hashes(paths), settings, embed_spec)

    with store.index_lock(settings.index_dir, wait=lock_wait, on_wait=on_wait):
        warnings: list[str] = []
        prev = _previous(settings.index_dir, warnings)
        if prev is not None and prev.manifest.get("signature") == signature and not _dense_now_possible(
            prev, embed_spec, settings
        ):
            store.cleanup(settings.index_dir, keep=prev.manifest["data_dir"])
            counts = prev.manifest["counts"]
            return BuildReport(
                index_dir=str(settings.index_dir), articles=counts["articles"], chunks=counts["chunks"],
                files=counts["files"], dropped_lines=counts["dropped_lines"], seconds=time.perf_counter() - t0,
                up_to_date=True, dense=(prev.dense or {}).get("model"),
                dense_note=prev.manifest.get("dense_unavailable"), warnings=warnings,
            )

        step("reading", 0, 0)
        corpus = load_corpus(paths, strict=strict)
        articles = corpus.articles
        step("chunking", 0, 0)
        chunks = chunk_articles(articles, settings.chunk_max_tokens)
        report = BuildReport(
            index_dir=str(settings.index_dir), articles=len(articles), chunks=len(chunks), files=len(corpus.files),
            dropped_lines=corpus.dropped_lines, seconds=0.0, skipped=corpus.skipped, ignored_files=corpus.ignored,
            warnings=warnings + corpus.warnings, dropped=[d for a in articles for d in a.dropped],
        )
        token_ids, vocab = _tokens(chunks, prev, report, step)
        vectors, dense = _vectors(chunks, prev, embed_spec, embed_explicit, settings, report, step)
        contents = store.IndexContents(
            chunks=chunks,
            articles=[
                {"doc_id": a.doc_id, "source": a.source, "title": a.title, "display_title": a.display_title}
                for a in articles
            ],
            token_ids=token_ids,
            vocab=vocab,
            vectors=vectors,
            manifest={
                "signature": signature,
                "corpus": {"roots": [str(p) for p in paths]},
                "chunker": signature["chunker"],
                "lexical": {
                    "tokenizer": TOKENIZER_VERSION, "bm25": {"k1": BM25.K1, "b": BM25.B, "method": BM25.METHOD},
                    "vocab_size": len(vocab),
                },
                "dense": dense,
                "dense_unavailable": report.dense_note,
                "dense_wanted": embed_spec,
                "counts": {"files": len(corpus.files), "dropped_lines": corpus.dropped_lines},
            },
        )
        step("saving", 0, 1)
        store.save(settings.index_dir, contents)
        step("saving", 1, 1)
    report.dense = dense["model"] if dense else None
    report.seconds = time.perf_counter() - t0
    return report


def _dense_now_possible(prev, spec: str, settings) -> bool:
    """A lexical-only index is rebuilt once its embedding model can be had (pulled, or the hub is back)."""
    if prev.dense is not None or spec == "none":
        return False
    from .models import check_hub, offline_requested, resolve_embedder

    if resolve_embedder(spec, settings.models_dir)[0] is not None:
        return True
    return not offline_requested(settings) and check_hub(settings.hub_timeout) is None


def _previous(index_dir: Path, warnings: list[str]):
    try:
        return store.load(index_dir)
    except IndexMissing:
        return None
    except RagqaError as e:
        warnings.append(f"previous index ignored ({e}); building from scratch")
        return None


def _tokens(chunks, prev, report: BuildReport, step: Progress) -> tuple[list[np.ndarray], dict[str, int]]:
    """Token ids per chunk; chunks whose text hash the previous index knows are not re-tokenized."""
    cached: dict[str, np.ndarray] = {}
    vocab: dict[str, int] = {"": 0}
    if prev is not None and prev.manifest["lexical"].get("tokenizer") == TOKENIZER_VERSION:
        vocab = dict(prev.vocab)
        flat, offsets = prev.tokens
        for row in range(prev.n):
            cached.setdefault(prev.hashes[row], np.asarray(flat[offsets[row] : offsets[row + 1]]))
    todo = [i for i, c in enumerate(chunks) if c.hash not in cached]
    out: list[np.ndarray | None] = [cached.get(c.hash) for c in chunks]
    batch = 512
    for start in range(0, len(todo), batch):
        rows = todo[start : start + batch]
        for i, toks in zip(rows, tokenize_many([chunks[i].text for i in rows])):
            ids = [vocab.setdefault(t, len(vocab)) for t in toks]
            out[i] = np.asarray(ids, dtype=np.int32)
        step("tokenizing", min(start + batch, len(todo)), len(todo))
    report.tokenized = len(todo)
    return out, vocab  # type: ignore[return-value]


def _vectors(chunks, prev, spec: str, explicit: bool, settings, report: BuildReport, step: Progress):
    """(vectors, manifest 'dense' section), or (None, None) for a lexical-only index."""
    if spec == "none":
        report.dense_note = "built lexical-only on request (--embed-model none)"
        return None, None
    cached: dict[str, int] = {}
    prev_dense = prev.dense if prev is not None else None
    if prev_dense and prev_dense.get("model") == spec:
        cached = {prev.hashes[r]: r for r in range(prev.n)}
    todo = [i for i, c in enumerate(chunks) if c.hash not in cached]
    embedder = None
    if todo:
        from .embed import load_embedder

        step("loading embedding model", 0, 0)
        try:
            embedder = load_embedder(spec, settings)
        except ModelUnavailable as e:
            if explicit:
                raise
            report.dense_note = str(e)
            return None, None
    dim = embedder.dim if embedder else prev_dense["dim"]
    vectors = np.zeros((len(chunks), dim), dtype=np.float32)
    for i, c in enumerate(chunks):
        if c.hash in cached:
            vectors[i] = prev.vectors[cached[c.hash]]
    if todo:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            step("embedding", done, len(todo))

        step("embedding", 0, len(todo))
        vectors[todo] = embedder.encode_passages([chunks[i].text for i in todo], progress=advance)
    report.embedded, report.reused_vectors = len(todo), len(chunks) - len(todo)
    section = dict(prev_dense) if embedder is None else {
        "model": spec,
        "dim": dim,
        "normalized": True,
        "metric": "inner_product",
        "query_prompt": embedder.query_prompt,
        "passage_prompt": embedder.passage_prompt,
    }
    section["faiss"] = store.faiss_kind(len(chunks))
    return vectors, section
