"""`ragqa index`: corpus -> chunks -> tokens + embeddings -> store, reusing whatever did not change."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import store, workers
from .chunking import CHUNKER_VERSION, analyse_articles
from .corpus import discover, load_corpus
from .errors import CorpusError, IndexMissing, ModelUnavailable, RagqaError, UsageError
from .lexical import BM25, TOKENIZER_VERSION, language, tokenize
from .manifest import BM25Params, Chunker, Corpus, Dense, Lexical, Signature, Store
from .schema import Chunk

Progress = Callable[[str, int, int], None]  # (stage, done, total)
STAGES = ("scanning", "reading", "chunking", "tokenizing", "bm25", "loading embedding model", "embedding",
          "vector index", "saving")  # what `progress` is told, in order


@dataclass
class BuildReport:
    index_dir: str
    articles: int
    chunks: int
    files: int
    dropped_lines: int
    seconds: float
    up_to_date: bool = False
    sources: list[str] = field(default_factory=list)  # the folders and files the index holds
    added: list[str] = field(default_factory=list)  # files new to the index, updated and removed by this build
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    dense: str | None = None  # embedding model, or None for a lexical-only index
    dense_note: str | None = None  # why the index is lexical-only
    embedded: int = 0
    reused_vectors: int = 0
    tokenized: int = 0
    reread_files: int = 0  # files read and chunked this time (the others were unchanged)
    ignored_files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _signature(hashes: dict[str, str], settings, embed_spec: str, roots: list[str]) -> Signature:
    """What decides whether an index is up to date (a digest of the files, not the list: a million-chunk
    corpus has a hundred thousand files, and the manifest is read by every search)."""
    listing = json.dumps(sorted(hashes.items()), ensure_ascii=False).encode("utf-8")
    return Signature(
        roots=roots, files=len(hashes), files_digest=hashlib.sha256(listing).hexdigest(),
        chunker=Chunker(version=CHUNKER_VERSION, max_tokens=settings.chunk_max_tokens),
        tokenizer=TOKENIZER_VERSION, embed=embed_spec,
    )


def file_hashes(found: list[tuple[str, str, str]], known: dict | None = None) -> tuple[dict[str, str], dict[str, tuple], set[str]]:
    """(sha256 of every discovered article file, (size, mtime) of each, the files hashed by reading them). A
    file whose size and mtime match what the previous build recorded, and which was not touched within a
    second of that build (its mtime could hide a later write), keeps its recorded hash without being read
    again, as git does."""
    hashes, stats, hashed = {}, {}, set()
    known = known or {}
    for path, _, key in found:
        try:
            st = os.stat(path)
            stats[key] = (st.st_size, st.st_mtime_ns)
            prev = known.get(key)
            if prev and prev.get("stat") == [st.st_size, st.st_mtime_ns] and st.st_mtime_ns < prev["read_at_ns"] - 10**9:
                hashes[key] = prev["sha256"]
            else:
                with open(path, "rb") as f:
                    hashes[key] = hashlib.sha256(f.read()).hexdigest()
                hashed.add(key)
        except OSError as e:
            hashes[key] = f"unreadable: {e.strerror}"
    return hashes, stats, hashed


def build_index(
    paths: list[Path],
    settings,
    embed_explicit: bool = False,
    progress: Progress | None = None,
    strict: bool = False,
    lock_wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    embedder=None,
    replace: bool = False,
) -> BuildReport:
    """Build (or bring up to date) the index in settings.index_dir.

    The index remembers its sources: `paths` are added to them (`replace`: they become the only ones); no
    `paths` refreshes the sources it has (the seeds folder for a new index). It keeps its embedding model too,
    unless `embed_explicit` says the user chose settings.embed_model. `embedder` (an object with the
    Embedder protocol) replaces the configured embedding model, e.g. for benchmarks; its `name` is what the
    manifest records.
    """
    t0 = time.perf_counter()
    step = progress or (lambda stage, done, total: None)
    embed_spec = embedder.name if embedder is not None else settings.embed_model

    store.check_index_dir(settings.index_dir, paths or [settings.seeds_dir])
    with store.index_lock(settings.index_dir, wait=lock_wait, on_wait=on_wait):
        store.cleanup(settings.index_dir)
        warnings: list[str] = []
        prev = _previous(settings.index_dir, warnings)
        if embedder is None and not embed_explicit and prev is not None:
            embed_spec = prev.manifest.dense_wanted  # an index keeps the embedding model it was built with
        kind, uri = _chosen_store(prev, settings)
        if kind == "milvus" and "store" in settings.model_fields_set:
            if embed_spec == "none":
                raise UsageError("a Milvus store holds the index's vectors: it needs an embedding model; drop --embed-model none")
            from .milvus import connect

            connect(uri).close()  # an unreachable server fails now, not after the embedding
        roots = _roots(paths, prev, replace, settings, warnings)
        store.check_index_dir(settings.index_dir, roots)
        step("scanning", 0, 0)
        read_at = time.time_ns()
        discovered = discover(roots, exclude=[settings.index_dir])
        hashes, stats, hashed = file_hashes(discovered[0], prev.files_info if prev is not None else None)
        signature = _signature(hashes, settings, embed_spec, [str(r) for r in roots])
        backend_changed = _backend_changed(prev, settings, embedder)
        if prev is not None and prev.manifest.signature == signature and not _dense_now_possible(
            prev, embed_spec, settings
        ) and (prev.dense is None or _same_store(prev, kind, uri)) and not backend_changed:
            corpus = prev.manifest.corpus
            return BuildReport(
                index_dir=str(settings.index_dir), articles=corpus.articles, chunks=corpus.chunks,
                files=corpus.files, dropped_lines=corpus.dropped_lines, seconds=time.perf_counter() - t0,
                up_to_date=True, dense=prev.dense.model if prev.dense else None,
                dense_note=prev.manifest.dense_unavailable, warnings=warnings, sources=signature.roots,
            )

        prev_files = {}
        if prev is not None and prev.manifest.signature.chunker == signature.chunker:
            prev_files = prev.files_info

        def unchanged(key: str, base: str) -> bool:
            info = prev_files.get(key)
            return bool(info) and info["sha256"] == hashes.get(key) and info["base"] == base

        step("reading", 0, 0)
        known = prev.files_info if prev is not None else {}
        corpus = load_corpus(
            roots, strict=strict, unchanged=unchanged if prev_files else None, discovered=discovered,
            previous_bases={k: v["base"] for k, v in known.items()},
        )
        _check_given(paths, corpus)
        step("chunking", 0, 0)
        read = _chunk_files([f for f in corpus.files if not f.reused], settings)
        files_info = {f.key: prev_files[f.key] if f.reused else read[f.key][2] for f in corpus.files}
        # A file's record changes only when this build read it: the records of the others stay as they were
        # (their size and mtime were just found unchanged), so an add writes the records it changed, not all.
        fresh = [f.key for f in corpus.files if not f.reused or f.key in hashed]
        for key in fresh:
            files_info[key] = {**files_info[key], "stat": list(stats.get(key, (0, 0))), "read_at_ns": read_at}
        dropped_lines = sum(info["dropped"] for info in files_info.values())
        report = BuildReport(
            index_dir=str(settings.index_dir), articles=sum(len(i["docs"]) for i in files_info.values()), chunks=0,
            files=len(corpus.files), dropped_lines=dropped_lines, seconds=0.0, skipped=corpus.skipped,
            ignored_files=corpus.ignored, warnings=warnings + corpus.warnings,
            dropped=[d for a in corpus.articles for d in a.dropped], reread_files=len(read), sources=signature.roots,
            added=[k for k in files_info if k not in known],
            updated=[k for k, v in files_info.items() if k in known and known[k]["sha256"] != v["sha256"]],
            removed=[k for k in known if k not in files_info],
        )
        plan = None if backend_changed else _segment_plan(prev, prev_files, corpus, read, kind, embed_spec)
        built = None
        if plan is not None:
            built = _segment(corpus, read, plan, prev, embed_spec, settings, report, step, embedder)
        if built is None:
            built = _base(corpus, read, prev, prev_files, embed_spec, embed_explicit, settings, report, step, embedder)
        contents, dense = built
        contents.files_info = files_info
        if contents.segments and plan[1] is None:  # a segment beside the others records only what it changed
            contents.files_changed = {
                "changed": {key: files_info[key] for key in fresh}, "removed": [k for k in known if k not in files_info],
            }
        live = sum(s["rows"] for s in contents.segments) + len(contents.chunks) - len(contents.tombstones)
        report.chunks = live
        languages: dict[str, int] = {}
        for info in files_info.values():
            for lang, n in info["languages"].items():
                languages[lang] = languages.get(lang, 0) + n
        contents.sections = {
            "signature": signature,
            "corpus": Corpus(
                roots=signature.roots, files=len(corpus.files), articles=report.articles, chunks=live,
                dropped_lines=dropped_lines, languages=languages,
            ),
            "chunker": signature.chunker,
            "lexical": Lexical(
                tokenizer=TOKENIZER_VERSION, bm25=BM25Params(k1=BM25.K1, b=BM25.B, idf="lucene"),
                vocab_size=len(contents.vocab), live_length=contents.live_length,
            ),
            "dense": dense.section if dense else None,
            "dense_unavailable": report.dense_note,
            "dense_wanted": embed_spec,
            "retired_stores": _retired_stores(prev, dense.section if dense else None, settings.index_dir, report.warnings),
        }
        step("saving", 0, 1)
        store.save(settings.index_dir, contents)
        step("saving", 1, 1)
        if dense and dense.section.store.kind == "milvus":
            # collections this index made before, but the previous manifest's: its readers may still use it
            was = prev.dense.store.params.get("collection") if _store_of(prev)[0] == "milvus" else None
            dense.store.drop_others(milvus_prefix(settings.index_dir), {dense.store.collection, str(was)})
    report.dense = dense.section.model if dense else None
    report.seconds = time.perf_counter() - t0
    return report


def _roots(paths: list[Path], prev, replace: bool, settings, warnings: list[str]) -> list[Path]:
    """The sources this build indexes, as absolute paths: the previous ones plus `paths`, or `paths` alone."""
    names = prev.manifest.corpus.roots if prev is not None else store.recorded_roots(settings.index_dir)
    recorded = [Path(r) for r in names]
    given = [p.absolute() for p in paths]
    if replace or not recorded:
        roots = given or [settings.seeds_dir.absolute()]
    else:
        for r in recorded:
            if not r.exists() and r not in given:
                warnings.append(f"source {r} no longer exists: its articles were removed from the index")
        roots = [r for r in recorded if r.exists()] + given
    unique = list(dict.fromkeys(Path(os.path.normpath(r)) for r in roots))
    if not unique:
        raise UsageError("the index has no sources left: give a folder or file of articles, e.g. `ragqa index seeds/`")
    return unique


def _check_given(paths: list[Path], corpus) -> None:
    """A folder or file the user names must contribute articles: naming an empty one is a mistake to report,
    not a silent no-op."""
    keys = [f.key for f in corpus.files]
    for p in paths:
        root = os.path.realpath(p)
        if not any(k == root or k.startswith(root.rstrip(os.sep) + os.sep) for k in keys):
            skipped = [r for path, r in corpus.skipped if os.path.realpath(path).startswith(root)]
            detail = f" ({len(skipped)} file(s) skipped: {skipped[0]})" if skipped else ""
            raise CorpusError(f"no readable articles in {p}{detail}; ragqa reads .txt, .md and .html files")


def _dense_now_possible(prev, spec: str, settings) -> bool:
    """A lexical-only index is rebuilt once its embedding model can be had (pulled, or the hub is back)."""
    if prev.dense is not None or spec == "none":
        return False
    from .models import check_hub, offline_requested, resolve_embedder

    if resolve_embedder(spec, settings.models_dir)[0] is not None:
        return True
    return not offline_requested(settings) and check_hub(settings.hub_timeout) is None


def _backend_changed(prev, settings, embedder=None) -> bool:
    """Whether another embedding backend is asked for than the index's vectors were made with: then even an
    unchanged corpus is embedded again, into a new base (the vectors of two backends differ slightly)."""
    if prev is None or prev.dense is None or embedder is not None or "embed_backend" not in settings.model_fields_set:
        return False
    from .embed import backend_of

    return (backend_of(prev.dense.engine) or "torch") != settings.embed_backend


def _previous(index_dir: Path, warnings: list[str]):
    try:
        return store.load(index_dir)
    except IndexMissing:
        return None
    except RagqaError as e:
        warnings.append(f"previous index ignored ({e}); building from scratch")
        return None


# An incremental build adds one segment holding the chunks of the files it read, unless the index would then
# have more than MAX_SEGMENTS segments, the segment more rows than MAX_SEGMENT_SHARE of the live chunks, or the
# deleted rows exceed MAX_DEAD_SHARE of all rows: then it writes a new base (the merge). Searches visit every
# segment and skip deleted rows, so these bound what the segments cost a search (a few more small scans, at
# most a quarter of the rows dead) while an add writes only its own chunks.
MAX_SEGMENTS = 8
MAX_SEGMENT_SHARE = 0.10
MAX_DEAD_SHARE = 0.25


def _chunk_files(files: list, settings) -> dict[str, tuple[list[dict], list[Chunk], dict, list]]:
    """The files read this time, by key: their article records, chunks, files.json entry, and the tokens the
    chunking gave (None where it gave none)."""
    analysed = iter(analyse_articles([a for f in files for a in f.articles], settings.chunk_max_tokens))
    out = {}
    for f in files:
        articles, chunks, fresh = [], [], []
        for a in f.articles:
            articles.append({"doc_id": a.doc_id, "source": a.source, "title": a.title, "display_title": a.display_title})
            article_chunks, article_tokens = next(analysed)
            chunks.extend(article_chunks)
            fresh.extend(article_tokens)
        info = {
            "sha256": f.sha256, "base": f.base, "docs": [a.doc_id for a in f.articles],
            "dropped": sum(len(a.dropped) for a in f.articles),
            "languages": dict(Counter(language(c.text) for c in chunks)),
        }
        out[f.key] = (articles, chunks, info, fresh)
    return out


def _assemble(corpus, prev, prev_files: dict, read: dict) -> tuple[list[Chunk], list[dict], list]:
    """Chunks, article records and the tokens chunking gave (None where it gave none) in file order: files
    read this time (`read`, from _chunk_files), unchanged ones straight from the previous index."""
    fresh: list = []
    chunks: list[Chunk] = []
    articles: list[dict] = []
    reuse = _PreviousChunks(prev) if any(f.reused for f in corpus.files) else None
    for f in corpus.files:
        if f.reused:
            for doc_id in prev_files[f.key]["docs"]:
                record, doc_chunks = reuse.article(doc_id)
                articles.append(record)
                chunks.extend(doc_chunks)
                fresh.extend([None] * len(doc_chunks))
        else:
            articles.extend(read[f.key][0])
            chunks.extend(read[f.key][1])
            fresh.extend(read[f.key][3])
    return chunks, articles, fresh


class _PreviousChunks:
    """The previous index's live chunks, grouped by article, decoded once."""

    def __init__(self, prev):
        self.prev = prev
        self.texts = prev.texts.all()
        self.hashes = prev.hashes.all()
        live = prev.live_rows()
        docs = np.asarray(prev.chunk_doc)[live]
        order = np.argsort(docs, kind="stable")
        bounds = np.searchsorted(docs[order], np.arange(len(prev.articles) + 1))
        rows = live[order]
        # an article rewritten in a later segment: its live rows are there, and its record is that segment's
        self.rows, self.records = {}, {}
        for i, a in enumerate(prev.articles):
            if bounds[i + 1] > bounds[i] or a["doc_id"] not in self.rows:
                self.rows[a["doc_id"]], self.records[a["doc_id"]] = rows[bounds[i] : bounds[i + 1]], a

    def article(self, doc_id: str) -> tuple[dict, list[Chunk]]:
        ids = self.prev.chunk_ids
        return self.records[doc_id], [
            Chunk(chunk_id=ids[r], doc_id=doc_id, text=self.texts[r], hash=self.hashes[r]) for r in self.rows[doc_id].tolist()
        ]


def _previous_rows(chunks, prev, candidates: np.ndarray | None = None) -> np.ndarray:
    """For each chunk, a row of the previous index (among `candidates`; None: all) that holds exactly its text,
    or -1. A deleted row still holds valid tokens and vectors for its text."""
    if prev is None:
        return np.full(len(chunks), -1, dtype=np.int64)
    rows = range(prev.n) if candidates is None else candidates.tolist()
    hashes = prev.hashes.all() if candidates is None else [prev.hashes[r] for r in rows]
    by_hash: dict[str, int] = {}
    for row, h in zip(rows, hashes):
        by_hash.setdefault(h, row)
    return np.array([by_hash.get(c.hash, -1) for c in chunks], dtype=np.int64)


def _tokens(chunks, prev, prev_rows, report: BuildReport, step: Progress, fresh=None) -> tuple[list[np.ndarray], dict[str, int]]:
    """Token ids per chunk; chunks the previous index already holds are not re-tokenized, nor are those
    whose tokens came with the chunking (`fresh`)."""
    vocab: dict[str, int] = {"": 0}
    out: list[np.ndarray | None] = [None] * len(chunks)
    if prev is not None and prev.manifest.lexical.tokenizer == TOKENIZER_VERSION:
        vocab = dict(prev.vocab)
        kept = np.flatnonzero(prev_rows >= 0)
        for i, toks in zip(kept.tolist(), prev.tokens_of(prev_rows[kept])):
            out[i] = toks
    report.tokenized = 0
    for i, toks in enumerate(fresh or []):
        if out[i] is None and toks is not None:
            out[i] = np.asarray([vocab.setdefault(t, len(vocab)) for t in toks], dtype=np.int32)
            report.tokenized += 1
    todo = [i for i, t in enumerate(out) if t is None]
    for start, end, tokens in workers.analyse(tokenize, [chunks[i].text for i in todo]):
        for i, toks in zip(todo[start:end], tokens):
            out[i] = np.asarray([vocab.setdefault(t, len(vocab)) for t in toks], dtype=np.int32)
        step("tokenizing", end, len(todo))
    report.tokenized += len(todo)
    return out, vocab  # type: ignore[return-value]


def _segment_plan(prev, prev_files: dict, corpus, read: dict, kind: str, embed_spec: str):
    """(the live rows this build deletes: the previous chunks of files changed or removed; the live rows of the
    later segments it folds into its own, or None) when it may write one segment beside the base; None when
    it must write a new base."""
    if prev is None or not prev_files or kind != "faiss" or prev.manifest.lexical.tokenizer != TOKENIZER_VERSION:
        return None
    if prev.dense is None:
        if embed_spec != "none":
            return None
    elif embed_spec == "none" or prev.dense.store.kind != "faiss" or prev.dense.model != embed_spec:
        return None
    kept = {f.key for f in corpus.files if f.reused}
    docs = {d for key, info in prev_files.items() if key not in kept for d in info["docs"]}
    articles = np.array([i for i, a in enumerate(prev.articles) if a["doc_id"] in docs], dtype=np.int64)
    stale = np.flatnonzero(np.isin(np.asarray(prev.chunk_doc), articles))
    stale = stale[~prev.is_dead[stale]]
    new = sum(len(r[1]) for r in read.values())
    folded = None
    if len(prev.segments) >= max(MAX_SEGMENTS, 2):  # the later segments' live rows move into this one
        tail = np.arange(prev.segments[1].start, prev.n, dtype=np.int64)
        folded = tail[~prev.is_dead[tail] & ~np.isin(tail, stale)]
    live = prev.manifest.corpus.chunks - len(stale) + new
    if new + (0 if folded is None else len(folded)) > MAX_SEGMENT_SHARE * prev.manifest.corpus.chunks or live <= 0:
        return None
    if len(prev.dead) + len(stale) > MAX_DEAD_SHARE * (prev.n + new):
        return None
    return stale, folded


def _folded_chunks(prev, rows: np.ndarray) -> tuple[list[Chunk], list[dict]]:
    """The chunks of the given rows of the previous index and their articles' records, in row order."""
    docs = np.asarray(prev.chunk_doc)[rows].tolist()
    records: dict[str, dict] = {}
    chunks = []
    for r, d in zip(rows.tolist(), docs):
        record = prev.articles[d]
        records.setdefault(record["doc_id"], record)
        chunks.append(Chunk(chunk_id=prev.ids[r], doc_id=record["doc_id"], text=prev.texts[r], hash=prev.hashes[r]))
    return chunks, list(records.values())


def _segment(corpus, read: dict, plan: tuple, prev, spec: str, settings, report: BuildReport, step: Progress,
             embedder=None):
    """(contents, dense parts) of a segment holding the chunks of the files read this time, with the corpus
    statistics updated for the deleted rows `stale`: reads only those rows of the previous index. None when
    the vectors cannot be made by the index's own embedder (a full build sorts that out).

    With `folded` rows (the index has MAX_SEGMENTS segments), the segments after the base are replaced by this
    one, which holds their live rows too: a merge that costs what the small segments hold, not the base."""
    from .lexical import Postings

    stale, folded = plan
    kept = np.zeros(0, np.int64) if folded is None else folded
    chunks, articles = _folded_chunks(prev, kept) if len(kept) else ([], [])
    fresh: list = [None] * len(chunks)
    for f in corpus.files:
        if not f.reused:
            articles.extend(read[f.key][0])
            chunks.extend(read[f.key][1])
            fresh.extend(read[f.key][3])
    # the folded rows are their own previous rows; a new chunk may be an unchanged paragraph of a changed file
    prev_rows = np.concatenate([kept, _previous_rows(chunks[len(kept):], prev, stale)])
    dense = None
    if prev.dense is not None:
        if np.any(prev_rows < 0) and embedder is None:
            from .embed import load_embedder

            step("loading embedding model", 0, 0)
            try:
                embedder = load_embedder(spec, _backend_kept(settings, prev.dense))
            except ModelUnavailable:
                return None
        if embedder is not None and embedder.identity != _identity(prev.dense):
            return None  # other weights or prompts: every vector changes
    token_ids, vocab = _tokens(chunks, prev, prev_rows, report, step, fresh)
    step("bm25", 0, 0)
    flat, offsets = store.ragged(token_ids)
    postings = Postings.build(flat, offsets, len(vocab))
    if prev.dense is not None:
        from .vectors import FaissStore

        vectors = _embed(chunks, prev, prev_rows, embedder, prev.dense.dim, report, step)
        report.reused_vectors += prev.manifest.corpus.chunks - len(stale) - len(kept)  # the base's rows stay as they are
        step("vector index", 0, 0)
        ids = np.arange(len(chunks), dtype=np.int64)
        dense = DenseParts(vectors, prev.dense, FaissStore.build(vectors, ids), ids)
    # the live rows' statistics: the previous ones, less the rows deleted or moved, plus the new segment's
    old = prev.tokens_of(np.concatenate([stale, kept]))
    df = postings.df(len(vocab))
    df[: len(prev.bm25.doc_freq)] += np.asarray(prev.bm25.doc_freq)
    if old:
        df -= np.bincount(np.concatenate([np.unique(t) for t in old]).astype(np.int64), minlength=len(vocab))
    live_length = prev.manifest.lexical.live_length - sum(len(t) for t in old) + int(postings.lengths.sum())
    segments, dead, vocab_start = prev.manifest.segments, np.union1d(prev.dead, stale), len(prev.vocab)
    if folded is not None:  # the rows after the base are gone (their live ones are in this segment), and this
        # segment also lists the words the folded ones added
        segments, dead, vocab_start = segments[:1], dead[dead < prev.segments[1].start], len(prev.segments[0].words)
    contents = store.IndexContents(
        chunks=chunks, articles=articles, tokens=(flat, offsets), vocab=vocab, files_info={},
        vectors=dense.vectors if dense else None, postings=postings, vector_store=dense.store if dense else None,
        vector_ids=dense.ids if dense else None, df=df, tombstones=dead,
        segments=[s.model_dump(mode="json") for s in segments], vocab_start=vocab_start, live_length=live_length,
    )
    return contents, dense


def _base(corpus, read: dict, prev, prev_files: dict, spec: str, explicit: bool, settings, report: BuildReport,
          step: Progress, embedder=None):
    """(contents, dense parts) of a new base segment holding every chunk: unchanged files' chunks, tokens and
    vectors come from the previous index."""
    from .lexical import Postings

    chunks, articles, fresh = _assemble(corpus, prev, prev_files, read)
    prev_rows = _previous_rows(chunks, prev)
    token_ids, vocab = _tokens(chunks, prev, prev_rows, report, step, fresh)
    step("bm25", 0, 0)
    flat, offsets = store.ragged(token_ids)
    postings = Postings.build(flat, offsets, len(vocab))
    dense = _dense(chunks, prev, prev_rows, spec, explicit, settings, report, step, embedder, (flat, offsets))
    contents = store.IndexContents(
        chunks=chunks, articles=articles, tokens=(flat, offsets), vocab=vocab, files_info={},
        vectors=dense.vectors if dense else None, postings=postings, vector_store=dense.store if dense else None,
        vector_ids=dense.ids if dense else None, df=postings.df(len(vocab)), tombstones=np.zeros(0, np.int64),
        live_length=int(postings.lengths.sum()),
    )
    return contents, dense


@dataclass
class DenseParts:
    vectors: np.ndarray
    section: Dense  # the manifest's dense section
    store: object  # the vectors.VectorStore holding them
    ids: np.ndarray  # the store's id of each row


def _embed(chunks, prev, reuse: np.ndarray, embedder, dim: int, report: BuildReport, step: Progress) -> np.ndarray:
    """Each chunk's vector: the previous index's row `reuse[i]` where it is >= 0, else embedded now."""
    vectors = np.zeros((len(chunks), dim), dtype=np.float32)
    kept = np.flatnonzero(reuse >= 0)
    if len(kept):
        vectors[kept] = prev.vectors_of(reuse[kept])
    todo = np.flatnonzero(reuse < 0)
    if len(todo):
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            step("embedding", done, len(todo))

        step("embedding", 0, len(todo))
        vectors[todo] = embedder.encode_passages([chunks[i].text for i in todo.tolist()], progress=advance)
    report.embedded, report.reused_vectors = len(todo), len(kept)
    return vectors


def _dense(chunks, prev, prev_rows, spec, explicit, settings, report: BuildReport, step: Progress, embedder=None,
           tokens=None):
    """Vectors and their store (reusing the previous ones where the text is unchanged), or None."""
    if spec == "none":
        report.dense_note = "built lexical-only on request (--embed-model none)"
        return None
    prev_dense = prev.dense if prev is not None else None
    same_model = prev_dense is not None and prev_dense.model == spec and not _backend_changed(prev, settings, embedder)
    reuse = prev_rows if same_model else np.full(len(chunks), -1, dtype=np.int64)
    if np.any(reuse < 0) and embedder is None:
        from .embed import load_embedder

        if same_model:
            settings = _backend_kept(settings, prev_dense)
        step("loading embedding model", 0, 0)
        try:
            embedder = load_embedder(spec, settings)
        except ModelUnavailable as e:
            if explicit:
                raise
            report.dense_note = str(e)
            return None
    if same_model and embedder is not None and _identity(prev_dense) != embedder.identity:
        reuse = np.full(len(chunks), -1, dtype=np.int64)  # other weights or prompts: no vector can be kept
    dim = embedder.dim if embedder is not None else prev_dense.dim
    vectors = _embed(chunks, prev, reuse, embedder, dim, report, step)
    step("vector index", 0, 0)
    kind, vector_store, ids = _vector_store(vectors, reuse, prev, settings, tokens)
    identity = embedder.identity if embedder is not None else _identity(prev_dense)
    section = Dense(
        **identity, normalized=True, metric="inner_product", store=Store(kind=kind, params=vector_store.params()),
    )
    return DenseParts(vectors, section, vector_store, ids)


def _backend_kept(settings, dense: Dense):
    """`settings` to load an index's own model with: the index keeps its embedding backend unless one is asked for."""
    from .embed import index_settings

    return settings if "embed_backend" in settings.model_fields_set else index_settings(settings, dense)


def _identity(dense: Dense) -> dict:
    return dense.model_dump(include={"engine", "model", "weights", "dim", "query_prompt", "passage_prompt"})


def _store_of(prev) -> tuple[str, str]:
    """(kind, public URI) of the store a built index uses ("faiss", "faiss" for FAISS or a lexical-only one)."""
    if prev is None or prev.dense is None or prev.dense.store.kind == "faiss":
        return "faiss", "faiss"
    return "milvus", str(prev.dense.store.params.get("uri", ""))


def _chosen_store(prev, settings) -> tuple[str, str]:
    """(kind, URI) of the store this build writes: the one `--store` names, else the previous index's, else
    FAISS (`settings.store`'s default)."""
    from .config import store_kind

    if "store" not in settings.model_fields_set and prev is not None and prev.dense is not None:
        return _store_of(prev)
    kind = store_kind(settings.store)
    return kind, settings.store


def _same_store(prev, kind: str, uri: str) -> bool:
    """Whether the previous index uses the store (kind, URI) names (URIs compared as the manifest keeps them)."""
    if kind == "faiss":
        return _store_of(prev)[0] == "faiss"
    from .milvus import public_uri

    return _store_of(prev) == (kind, public_uri(uri))


def _retired_stores(prev, section, index_dir: Path, warnings: list[str]) -> list[dict]:
    """The Milvus collections the new manifest lists as retired. Those the previous manifest retired are dropped
    now (the generation that used them is two builds old); what cannot be dropped stays listed, with a warning.
    When this build leaves the previous index's Milvus store (for FAISS, a lexical-only index or another
    server), that collection is retired: its readers may still be searching it, so the next build drops it."""
    from .milvus import drop_collection, redact

    kept = []
    for old in prev.manifest.retired_stores if prev is not None else []:
        problem = drop_collection(old.uri, old.collection, milvus_prefix(index_dir))
        if problem:
            warnings.append(
                f"could not drop {old.collection}, the Milvus collection this index used on {redact(old.uri)} "
                f"before, so the next `ragqa index` tries again: {problem}"
            )
            kept.append(old.model_dump())
    kind, uri = _store_of(prev)
    new = (section.store.kind, str(section.store.params.get("uri", ""))) if section else ("faiss", "faiss")
    if kind == "milvus" and new != (kind, uri):
        kept.append({"uri": uri, "collection": str(prev.dense.store.params.get("collection", ""))})
    return kept


def _vector_store(vectors: np.ndarray, reuse: np.ndarray, prev, settings, tokens):
    """(store kind, store, id of each row) in the store `_chosen_store` names."""
    kind, uri = _chosen_store(prev, settings)
    if kind == "milvus":
        return (kind, *_milvus_store(vectors, reuse, prev, uri, settings.index_dir, tokens))
    reusable = prev is not None and prev.dense is not None and prev.dense.store.kind == "faiss" and bool(np.any(reuse >= 0))
    return (kind, *_faiss_store(vectors, reuse, prev if reusable else None))


def _faiss_store(vectors: np.ndarray, reuse: np.ndarray, prev):
    """The previous base segment's IVF store is updated in place, keeping the ids of its unchanged rows, while
    it still fits the corpus (`reusable`): a merge of segments moves their vectors into it instead of training
    a new one. Otherwise a new store is built."""
    from .vectors import FAISS_FILE, FaissStore

    n = len(vectors)
    base = prev.segments[0] if prev is not None else None
    params = (base.record.store or prev.dense.store.params) if base is not None else {}
    if not FaissStore.reusable(params, n):
        ids = np.arange(n, dtype=np.int64)
        return FaissStore.build(vectors, ids), ids
    ids, gone, new = _reused_ids(reuse, prev)
    # read into memory (the searching copy is memory-mapped, read-only) and updated there
    store = FaissStore.load(str(base.dir / FAISS_FILE), params, base.n, prev.dense.dim, mmap=False)
    store.remove(gone)
    store.add(vectors[new], ids[new])
    return store, ids


def _reused_ids(reuse: np.ndarray, prev) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(id of each row, previous ids no row keeps, rows that need a new id) for the base segment's store:
    rows unchanged from the base keep their stored id; the others (new, or from a later segment, whose store
    was its own) get ids above every previous one."""
    prev_ids = prev.vector_ids  # the base segment's
    ids = np.full(len(reuse), -1, dtype=np.int64)
    claimed = np.zeros(len(prev_ids), dtype=bool)
    for i in np.flatnonzero((reuse >= 0) & (reuse < len(prev_ids))).tolist():
        r = int(reuse[i])
        if not claimed[r]:  # a text repeated in the corpus reuses the stored id once
            claimed[r] = True
            ids[i] = prev_ids[r]
    new = np.flatnonzero(ids < 0)
    ids[new] = int(prev_ids.max(initial=-1)) + 1 + np.arange(len(new))
    return ids, prev_ids[~claimed], new


def milvus_prefix(index_dir: Path) -> str:
    """What the Milvus collections of the index in `index_dir` are named with: ragqa_ and its real path's hash."""
    return "ragqa_" + hashlib.sha256(str(Path(index_dir).resolve()).encode()).hexdigest()[:16] + "_"


def _milvus_store(vectors: np.ndarray, reuse: np.ndarray, prev, uri: str, index_dir: Path, tokens):
    """Vectors and BM25 document weights in a Milvus collection, written as generation G+1 of the previous
    index's G: new rows are inserted, removed ones ended, unchanged ones untouched; readers of G see none of
    it until the manifest names G+1. A tokenizer change (token ids differ), another model or another server
    starts a new collection (readers keep the old one; the next build drops it)."""
    from .errors import IndexCorrupt
    from .milvus import MilvusStore

    flat, offsets = tokens
    params = prev.dense.store.params if prev is not None and prev.dense is not None else {}
    same = (
        _same_store(prev, "milvus", uri)
        and str(params.get("collection", "")).startswith(milvus_prefix(index_dir))
        and params.get("tokenizer") == TOKENIZER_VERSION and prev.dense.dim == vectors.shape[1]
    )
    store = None
    if same:
        generation, avgdl = int(params["generation"]) + 1, float(params["avgdl"])
        try:
            store = MilvusStore.open(uri, str(params["collection"]), vectors.shape[1], generation)
        except IndexCorrupt:  # the collection is gone (dropped by hand): start over
            store = None
    if store is not None:
        store.cleanup(generation - 1)  # what a killed build left
        ids, gone, new = _reused_ids(reuse, prev)
        store.remove(gone)
    else:
        lengths = np.diff(np.asarray(offsets))
        generation, avgdl = 1, float(lengths.mean()) if len(lengths) and lengths.sum() else 1.0
        collection = milvus_prefix(index_dir) + time.strftime("%Y%m%d%H%M%S") + "_" + os.urandom(3).hex()
        store = MilvusStore.open(uri, collection, vectors.shape[1], generation, create=True)
        ids, new = np.arange(len(vectors), dtype=np.int64), np.arange(len(vectors))
    batch = 4096
    for start in range(0, len(new), batch):
        rows = new[start : start + batch]
        store.add(vectors[rows], ids[rows], BM25.document_weights(flat, offsets, rows.tolist(), avgdl))
    store.meta = {"avgdl": avgdl, "tokenizer": TOKENIZER_VERSION}
    return store, ids
