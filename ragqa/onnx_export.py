"""ONNX exports of a sentence-transformers model, made locally from its weights on first use and cached in its
folder: fp32 (the model traced whole: transformer, pooling, normalization) and int8 (that export with its
attention fused by ONNX Runtime's transformer optimizer and dynamically quantized int8 weights). embed.OnnxEmbedder
runs them."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .errors import ModelUnavailable

# How a sentence-transformers model is run: "torch" (as downloaded), "onnx" (exported to ONNX once, run by
# ONNX Runtime) or "onnx-int8" (that export fused and with dynamically quantized int8 weights).
ONNX_EXTRA = 'pip install -e ".[onnx]"  (onnx and onnxruntime)'
# Bumped whenever the export or quantization recipe changes: a cached export of another recipe is redone.
ONNX_RECIPE = "ragqa-onnx-2:opset17:eager-attention:mean-of-st-forward:ort-bert-fusion:matmul-attention-qint8-per-tensor"
ONNX_CACHE = {"onnx": "ragqa-fp32", "onnx-int8": "ragqa-int8"}  # folders under <model>/onnx/
ONNX_SIDECAR = "ragqa-onnx.json"  # written last: a cache folder without it is not used


def _import_onnxruntime():
    try:
        import onnxruntime

        return onnxruntime
    except ImportError:
        raise ModelUnavailable(f"the onnx embedding backends need ONNX Runtime, which is not installed: {ONNX_EXTRA}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _onnx_cache_valid(folder: Path, source: str) -> dict | None:
    """The sidecar of a complete export of these weights by this recipe, else None."""
    try:
        meta = json.loads((folder / ONNX_SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = meta.get("recipe") == ONNX_RECIPE and meta.get("source_weights") == source and (folder / "model.onnx").is_file()
    return meta if ok else None


def _publish(tmp: Path, target: Path, source: str) -> None:
    """Move a finished export folder into place in one rename (a killed export leaves only its temp folder)."""
    if target.exists():
        if _onnx_cache_valid(target, source):  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(target)  # stale: other weights or another recipe
    os.replace(tmp, target)


def _export_fp32(path: Path, source: str, max_seq_length: int, trust_remote_code: bool, tmp: Path) -> dict:
    """Trace the sentence-transformers model (every module: transformer, pooling, normalization) to ONNX."""
    import warnings

    import torch
    from sentence_transformers import SentenceTransformer

    def load(**kw):
        return SentenceTransformer(str(path), device="cpu", trust_remote_code=trust_remote_code, local_files_only=True, **kw)

    try:
        # eager attention traces to the MatMul/Softmax pattern ONNX Runtime fuses into one Attention op (SDPA's
        # graph it does not recognise): the int8 model runs ~20% faster (benchmarks/embed_cost.py --engines)
        st = load(model_kwargs={"attn_implementation": "eager"})
    except (TypeError, ValueError):  # an architecture without eager attention
        st = load()
    modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    first = st[0]
    tokenizer = getattr(first, "tokenizer", None)
    if tokenizer is None or not hasattr(first, "auto_model"):
        raise ModelUnavailable(
            f"{path}: the onnx backends need a model whose first module is a Hugging Face transformer; "
            "use --embed-backend torch"
        )
    # padding in the example matters: with an all-ones mask transformers skips masking, and the trace would too
    example = st.preprocess(["passage: 한국어 문장과 English words", "query: 짧다"])
    check = st.preprocess(["a", "passage: 세 번째 예문은 길이가 다르다 " * 3, "query: 둘째"])  # other shapes
    names = [k for k, v in example.items() if isinstance(v, torch.Tensor)]

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, *tensors):
            vec = self.st(dict(zip(names, tensors)))["sentence_embedding"]
            return torch.nn.functional.normalize(vec, p=2, dim=1)

    graph = Graph().eval()
    args = tuple(example[k] for k in names)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings: the check below is what counts
        expected = graph(*(check[k] for k in names)).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript exporter: the dynamo one needs onnxscript, and gains nothing for an encoder
        torch.onnx.export(
            graph, args, str(tmp / "model.onnx"), dynamo=False, opset_version=17, input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "sentence_embedding": {0: "batch"}},
        )
    ort = _import_onnxruntime()
    got = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {k: check[k].numpy() for k in names}
    )[0]
    if not np.allclose(got, expected, atol=1e-4):
        raise ModelUnavailable(f"{path}: the ONNX export does not reproduce the model's vectors; use --embed-backend torch")
    prompts = dict(getattr(st, "prompts", None) or {})
    max_len = min(int(st.max_seq_length or max_seq_length), max_seq_length)
    config = first.auto_model.config
    return {
        "inputs": names, "dim": int(got.shape[1]), "max_seq_length": max_len, "prompts": prompts,
        "architecture": {
            "model_type": getattr(config, "model_type", ""), "heads": getattr(config, "num_attention_heads", 0),
            "hidden": getattr(config, "hidden_size", 0), "vocab": getattr(config, "vocab_size", 0),
        },
        "tokenizer": modules[0].get("path", ""),
        "do_lower_case": bool(getattr(first, "do_lower_case", False)),
    }


# BERT-family encoders whose graph ONNX Runtime's transformer optimizer knows (e5, bge, MiniLM, ...)
_FUSABLE = {"bert", "roberta", "xlm-roberta", "distilbert", "electra"}


def _quantize(source: Path, tmp: Path, meta: dict, quantize_dynamic, QuantType) -> dict:
    """Write tmp/model.onnx: `source` with its attention, GELU and layer norms fused by ONNX Runtime's
    transformer optimizer where it knows the architecture, then int8 weights for the MatMuls and the fused
    Attention, one scale per tensor (the embedding table stays fp32; per-channel scales gained nothing
    measurable). A fused graph that does not agree with the fp32 one is dropped for the plain one. Returns
    the fused operators counted (empty when not fused)."""
    arch = meta.get("architecture") or {}
    options = {"DefaultTensorType": 1}  # float: the fused ops are outside ONNX's shape inference
    fused: dict = {}
    if arch.get("model_type") in _FUSABLE and arch.get("heads") and arch.get("hidden"):
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            model = optimize_model(str(source), model_type="bert", num_heads=int(arch["heads"]), hidden_size=int(arch["hidden"]))
            model.save_model_to_file(str(tmp / "fused.onnx"))
            quantize_dynamic(str(tmp / "fused.onnx"), str(tmp / "model.onnx"), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Attention"], per_channel=False, extra_options=options)
            fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
            if not _agrees(source, tmp / "model.onnx", meta["inputs"], int(arch.get("vocab") or 100)):
                fused = {}
        except Exception:  # an optimizer that cannot handle this graph: the plain one is quantized instead
            fused = {}
        (tmp / "fused.onnx").unlink(missing_ok=True)
    if not fused:
        quantize_dynamic(str(source), str(tmp / "model.onnx"), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], per_channel=False, extra_options=options)
    return fused


def _agrees(reference: Path, candidate: Path, inputs: list[str], vocab: int) -> bool:
    """Whether two exports give about the same vectors (cosine > 0.95) for random token ids, padding included."""
    ort = _import_onnxruntime()
    rng = np.random.default_rng(0)
    ids = rng.integers(min(5, vocab - 1), vocab, size=(3, 24), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 16:] = mask[2, 9:] = 0
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    out = [ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {k: feed[k] for k in inputs})[0]
           for f in (reference, candidate)]
    return bool(np.all(np.isfinite(out[1])) and (out[0] * out[1]).sum(1).min() > 0.95)


def onnx_export(path: Path, backend: str, max_seq_length: int = 512, trust_remote_code: bool = False) -> Path:
    """The folder of `path`'s ONNX export for `backend` ("onnx" or "onnx-int8"), made locally from its
    weights on first use and cached in <path>/onnx/ragqa-*/; the fp32 export is the int8 one's source."""
    path = Path(path)
    from .embed import weights_digest

    source = weights_digest(path)
    target = path / "onnx" / ONNX_CACHE[backend]
    if _onnx_cache_valid(target, source):
        return target
    _import_onnxruntime()
    if backend == "onnx-int8":
        try:
            import onnx  # noqa: F401 - onnxruntime's quantizer needs it
            from onnxruntime.quantization import QuantType, quantize_dynamic
        except ImportError:
            raise ModelUnavailable(f"int8 quantization needs the onnx package, which is not installed: {ONNX_EXTRA}") from None
        fp32 = onnx_export(path, "onnx", max_seq_length, trust_remote_code)
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob(".ragqa-tmp-*"):  # left by a killed export
        pid = old.name.rsplit("-", 2)[-2]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    tmp = target.parent / f".ragqa-tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        if backend == "onnx":
            meta = _export_fp32(path, source, max_seq_length, trust_remote_code, tmp)
        else:
            meta = json.loads((fp32 / ONNX_SIDECAR).read_text(encoding="utf-8"))
            meta["fused"] = _quantize(fp32 / "model.onnx", tmp, meta, quantize_dynamic, QuantType)
        import onnxruntime

        meta.update(recipe=ONNX_RECIPE, source_weights=source, backend=backend, onnxruntime=onnxruntime.__version__)
        (tmp / ONNX_SIDECAR).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        _publish(tmp, target, source)
    except ModelUnavailable:
        raise
    except Exception as e:
        raise ModelUnavailable(
            f"cannot export {path} to ONNX ({backend}): {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}; "
            "use --embed-backend torch"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
