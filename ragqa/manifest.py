"""The typed manifest: what an index holds and how it was made, validated on load.

manifest.json stays small at any corpus size: per-chunk and per-file tables live in the segment folders it
names (a few at most: see build.MAX_SEGMENTS).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import IndexCorrupt, IndexMismatch

FORMAT = "ragqa-index"
FORMAT_VERSION = 5
REBUILD = "rebuild it with `ragqa index`"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Chunker(_Strict):
    version: int
    max_tokens: int = Field(gt=0)


class Signature(_Strict):
    """What decides whether an index is up to date (a digest of the file list, not the list)."""

    roots: list[str]
    files: int = Field(ge=0)
    files_digest: str
    chunker: Chunker
    tokenizer: str
    embed: str


class Corpus(_Strict):
    roots: list[str]
    files: int = Field(ge=0)
    articles: int = Field(ge=0)
    chunks: int = Field(ge=0)
    dropped_lines: int = Field(ge=0)
    languages: dict[str, int]  # chunks per language: "ko", "en", "other"


class BM25Params(_Strict):
    k1: float
    b: float
    idf: Literal["lucene"]


class Lexical(_Strict):
    tokenizer: str
    bm25: BM25Params
    vocab_size: int = Field(ge=1)
    live_length: int = Field(ge=0)  # tokens in the live chunks: with corpus.chunks, BM25's average length


class Store(_Strict):
    kind: Literal["faiss", "milvus"]
    params: dict[str, int | float | str]


class Dense(_Strict):
    engine: str
    model: str
    weights: str  # identity of the weights: two engines or two copies of a model never mix vectors
    dim: int = Field(gt=0)
    normalized: Literal[True]
    metric: Literal["inner_product"]
    query_prompt: str
    passage_prompt: str
    store: Store


class RetiredStore(_Strict):
    """A Milvus collection an earlier generation used on a store this index has left (another server, or FAISS):
    the next build drops it, once no reader of the generation that used it can be left."""

    uri: str
    collection: str


class Segment(_Strict):
    """One immutable data folder: `rows` chunks, appended after those of the segments before it."""

    dir: str
    rows: int = Field(ge=0)
    files: dict[str, int]  # data file -> bytes: a truncated file is caught before it is read
    store: dict[str, int | float | str] | None = None  # its FAISS index's parameters, when it has vectors


class Manifest(_Strict):
    format: Literal["ragqa-index"]
    format_version: Literal[5]
    ragqa_version: str
    generation: str
    created: str
    data_dir: str  # the newest segment: it also holds this commit's df.npy and tombstones.npy
    segments: list[Segment] = Field(min_length=1)  # in row order; the first is the base a full build wrote
    signature: Signature
    corpus: Corpus
    chunker: Chunker
    lexical: Lexical
    dense: Dense | None
    dense_wanted: str  # the embedding model asked for
    dense_unavailable: str | None  # why the index is lexical-only, when it is
    retired_stores: list[RetiredStore] = []

    @model_validator(mode="after")
    def _newest_segment_holds_the_commit(self):
        if self.data_dir != self.segments[-1].dir:
            raise ValueError(f"data_dir {self.data_dir!r} is not the newest segment {self.segments[-1].dir!r}")
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)


def parse(text: bytes | str, where: str) -> Manifest:
    """A validated Manifest, or IndexCorrupt/IndexMismatch with one line that says what is wrong and the fix."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise IndexCorrupt(f"{where} is not valid JSON ({e}); {REBUILD}") from None
    return validate(raw, where)


def validate(raw, where: str) -> Manifest:
    """The Manifest of a decoded manifest.json (see `parse`)."""
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise IndexCorrupt(f"{where} is not a ragqa manifest; {REBUILD}")
    version = raw.get("format_version")
    if not isinstance(version, int):
        raise IndexCorrupt(f"{where} has no valid format_version; {REBUILD}")
    if version > FORMAT_VERSION:
        raise IndexMismatch(
            f"{where} was written by a newer ragqa ({raw.get('ragqa_version', '?')}, index format {version}; "
            f"this one reads {FORMAT_VERSION}): upgrade ragqa or {REBUILD}"
        )
    if version < FORMAT_VERSION:
        raise IndexMismatch(f"{where} uses the older index format {version}; {REBUILD}")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "manifest"
        kind = {"missing": "is missing", "extra_forbidden": "is not a manifest field"}.get(first["type"])
        problem = kind or f"is invalid ({first['msg']})"
        more = f" (and {e.error_count() - 1} more problem(s))" if e.error_count() > 1 else ""
        raise IndexCorrupt(f"{where}: '{field}' {problem}{more}; {REBUILD}") from None


def check_embedder(dense: Dense, identity: dict) -> None:
    """Refuse to encode queries with an embedder that is not the one that built the index; say what differs."""
    differ = [
        f"{key} {getattr(dense, key)!r} ≠ {identity[key]!r}"
        for key in ("engine", "model", "weights", "dim", "query_prompt", "passage_prompt")
        if key in identity and getattr(dense, key) != identity[key]
    ]
    if differ:
        raise IndexMismatch(
            f"the index was built with another embedder ({'; '.join(differ)}): its vectors and the queries' would "
            f"not be comparable; rebuild with `ragqa index --embed-model {identity.get('model', dense.model)}`, or "
            f"use the model the index was built with ('{dense.model}')"
        )
