"""One settings object: paths, model choices, retrieval and generation budgets (env: RAGQA_*)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import UsageError

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[str, ...] = ("hybrid", "dense", "lexical")


class Settings(BaseModel):
    # Filled from RAGQA_* variables by load_settings (a plain model: pydantic-settings' import, with asyncio and
    # dotenv behind it, cost ~100 ms of every command's start)
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seeds_dir: Path = Path("seeds")
    index_dir: Path = Path("index")
    models_dir: Path = Path("models")

    # A preset name (see `ragqa models list`), a hub repo id, a local folder, or "none" (lexical only).
    embed_model: str = "e5-small"
    # Where a new index keeps its vectors and BM25: "faiss" (files in the index folder), or a Milvus server
    # (http://host:19530) or Milvus Lite file (path ending in .db). An existing index keeps its store.
    store: str = "faiss"
    # A preset name, a path to a .gguf file, or "none" (extractive answers only).
    llm: str = "qwen2.5-1.5b"
    # Only for GGUF files that carry no chat template; otherwise the file's own template is used.
    chat_format: str | None = None

    top_k: int = Field(5, ge=1, le=100)
    mode: Mode = "hybrid"

    # Chunks: paragraphs longer than this (estimated LLM tokens) are split at sentence boundaries.
    chunk_max_tokens: int = Field(220, ge=40)
    # Prompt budget for retrieved passages. Prefill is the wait before the first word: the default LLM reads
    # ~94 prompt tokens/s on 2 cores, so 700 passage tokens (plus ~150 of instructions) cost ~9 s.
    context_max_tokens: int = Field(700, ge=100)
    answer_max_tokens: int = Field(512, ge=1)
    # 0 = greedy decoding: the same question over the same index gives the same answer.
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    n_ctx: int = Field(4096, ge=512)
    n_threads: int | None = None
    embed_batch_size: int = Field(16, ge=1)
    # How a sentence-transformers model (not the bundled e5-small) runs for a new index: "torch", or "onnx" /
    # "onnx-int8" (exported locally on first use, cached in the model folder; needs the `onnx` extra).
    # Queries always use the backend the index was built with.
    embed_backend: Literal["torch", "onnx", "onnx-int8"] = "torch"

    # REPL line history; default $XDG_STATE_HOME/ragqa/history (~/.local/state/ragqa/history).
    history_file: Path | None = None

    offline: bool = False
    hub_timeout: float = Field(3.0, gt=0)
    trust_remote_code: bool = False

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        store_kind(value.strip())
        return value.strip()

    @field_validator("seeds_dir", "index_dir", "models_dir", "history_file", mode="before")
    @classmethod
    def _not_empty(cls, value):
        # Path("") is Path("."): an empty setting would silently mean the current folder
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty path would mean the current folder; give a folder name")
        return value


def store_kind(store: str) -> str:
    """'faiss' or 'milvus' for a --store value; anything else is a usage error."""
    if store == "faiss":
        return "faiss"
    if re.match(r"(?i)(https?|tcp|grpc)://", store) or store.endswith(".db"):
        return "milvus"
    raise UsageError(
        f"unknown store {store!r}: use 'faiss' (the default), a Milvus server URI such as http://localhost:19530, "
        "or a Milvus Lite file ending in .db"
    )


def load_settings(**overrides) -> Settings:
    """Settings from RAGQA_* variables (any case) plus explicit overrides (None values are ignored)."""
    known = {f"RAGQA_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(k for k in os.environ if k.startswith("RAGQA_") and k not in known)
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]}; valid: {', '.join(sorted(known))}")
    values = {k[6:].lower(): v for k, v in os.environ.items() if k.upper() in known}
    values.update((k, v) for k, v in overrides.items() if v is not None)
    try:
        return Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        raise UsageError(f"bad setting {field}: {msg}") from None
