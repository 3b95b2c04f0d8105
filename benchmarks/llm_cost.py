"""What the default LLM really costs on this machine, measured with a random-weight model of the same shape.

Weight values do not change llama.cpp's speed, so a GGUF with Qwen2.5-1.5B-Instruct's exact architecture,
vocabulary (Qwen's real byte-level BPE, taken from the `dashscope` wheel on PyPI) and Q4_K_M quantization
costs what the real file costs: load time, prompt tokens/s, generated tokens/s, and the JSON-grammar
sampling over the 151,936-token vocabulary. The figures are speed, not answer quality.

    python benchmarks/llm_cost.py [--quality] [--knobs] [--wait-quiet S] [--out FILE] [--work DIR]
                                  [--tiktoken-python PY]

Artifacts (the tokenizer file, the F16 and Q4_K_M GGUFs, a lexical index of the seeds) are cached under
benchmarks/work/ and reused.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import json
import os
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from common import (
    QUERIES_KO, SEEDS, WORK, CpuMeter, bench_settings, columns, loadavg, log, machine, ragqa_default, wait_quiet,
    write_json,
)

N_THREADS = 2
N_CTX = ragqa_default("n_ctx")
QUESTIONS = [
    QUERIES_KO[0], "Why did the US allow H200 exports?", QUERIES_KO[1], "엔비디아 H200의 중국 수출 조건은 무엇인가?",
]
NOTE = "random-weight models of the real architecture and quantization: these are speed figures, not quality"

# Qwen2/2.5/3 pre-tokenizer (tokenizer.ggml.pre = "qwen2" in llama.cpp; the same as Qwen's tiktoken pattern).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
N_REGULAR = 151_643
QWEN25_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen3 adds <think>/</think> (and tool tokens); the ids are Qwen3's. Only used by the --quality model.
QWEN3_SPECIAL = {151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>",
                 151665: "<tool_response>", 151666: "</tool_response>", 151667: "<think>", 151668: "</think>"}

# Qwen2.5-Instruct's template without the tool-calling branches.
QWEN25_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Qwen3's template reduced the same way; enable_thinking=False writes the empty think block, as Qwen3's does.
QWEN3_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

MODELS = {
    # Qwen2.5-1.5B-Instruct's config.json
    "qwen2.5-1.5b": dict(
        arch="qwen2", n_vocab=151_936, n_embd=1536, n_layer=28, n_head=12, n_head_kv=2, head_dim=128, n_ff=8960,
        n_ctx_train=32768, rope_base=1e6, rms_eps=1e-6, qkv_bias=True, qk_norm=False,
        special={151643 + i: t for i, t in enumerate(QWEN25_SPECIAL)}, template=QWEN25_TEMPLATE,
        # Qwen's official file is 131,272,704 bytes bigger than a tied-embedding one: that is exactly
        # token_embd in Q4_K, i.e. it stores the embedding twice (token_embd Q4_K + output.weight Q6_K).
        # The output matmul is Q6_K either way, so the speed is the same. (Its size: LLM_PRESETS' bytes.)
    ),
    # Qwen3-4B's config.json
    "qwen3-4b": dict(
        arch="qwen3", n_vocab=151_936, n_embd=2560, n_layer=36, n_head=32, n_head_kv=8, head_dim=128, n_ff=9728,
        n_ctx_train=40960, rope_base=1e6, rms_eps=1e-6, qkv_bias=False, qk_norm=True,
        special=QWEN3_SPECIAL, template=QWEN3_TEMPLATE,
    ),
}


# ---------------------------------------------------------------- Qwen's tokenizer


def qwen_ranks(work: Path) -> dict[bytes, int]:
    """Qwen's BPE ranks (token bytes -> rank) from the dashscope wheel, fetched once with pip."""
    path = work / "qwen.tiktoken"
    if not path.exists():
        dl = work / "dashscope-wheel"
        dl.mkdir(parents=True, exist_ok=True)
        if not list(dl.glob("dashscope-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "dashscope", "-d", str(dl)],
                           check=True, stdout=subprocess.DEVNULL)
        wheel = sorted(dl.glob("dashscope-*.whl"))[-1]
        with zipfile.ZipFile(wheel) as z:
            path.write_bytes(z.read("dashscope/resources/qwen.tiktoken"))
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    assert len(ranks) == N_REGULAR and sorted(ranks.values()) == list(range(N_REGULAR)), "unexpected qwen.tiktoken"
    return ranks


def bpe(ranks: dict[bytes, int], token: bytes, max_rank: int | None = None) -> list[bytes]:
    """convert_hf_to_gguf.py's QwenModel.bpe: merge the lowest-ranked pair until none is below max_rank."""
    parts = [bytes([b]) for b in token]
    while True:
        min_idx = min_rank = None
        for i, pair in enumerate(zip(parts[:-1], parts[1:])):
            rank = ranks.get(pair[0] + pair[1])
            if rank is not None and (min_rank is None or rank < min_rank):
                min_idx, min_rank = i, rank
        if min_rank is None or (max_rank is not None and min_rank >= max_rank):
            break
        parts = parts[:min_idx] + [parts[min_idx] + parts[min_idx + 1]] + parts[min_idx + 2:]
    return parts


def qwen_vocab(work: Path, n_vocab: int, special: dict[int, str]) -> dict:
    """tokens, token types and merges as convert_hf_to_gguf.py's _set_vocab_qwen writes them."""
    import gguf

    ranks = qwen_ranks(work)
    enc = gguf.vocab.bytes_to_unicode()  # GPT-2's byte-level BPE alphabet
    as_text = lambda b: "".join(enc[x] for x in b)  # noqa: E731
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue
        merged = bpe(ranks, token, max_rank=rank)
        assert len(merged) == 2, token
        merges.append(" ".join(map(as_text, merged)))
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    tokens, types = [], []
    for i in range(n_vocab):
        if i < N_REGULAR:
            tokens.append(as_text(by_rank[i][0]))
            types.append(gguf.TokenType.NORMAL)
        elif i in special:
            tokens.append(special[i])
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
    return {"tokens": tokens, "types": types, "merges": merges, "ranks": ranks}


# ---------------------------------------------------------------- random GGUF, then Q4_K_M


def tensor_shapes(cfg: dict) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) in llama.cpp's naming; numpy (rows, cols) is ggml ne = [cols, rows]."""
    e, hd = cfg["n_embd"], cfg["head_dim"]
    q, kv = cfg["n_head"] * hd, cfg["n_head_kv"] * hd
    out = [("token_embd.weight", (cfg["n_vocab"], e))]  # tied: no output.weight
    for i in range(cfg["n_layer"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (e,)),
                (p + "attn_q.weight", (q, e)), (p + "attn_k.weight", (kv, e)), (p + "attn_v.weight", (kv, e))]
        if cfg["qkv_bias"]:
            out += [(p + "attn_q.bias", (q,)), (p + "attn_k.bias", (kv,)), (p + "attn_v.bias", (kv,))]
        if cfg["qk_norm"]:
            out += [(p + "attn_q_norm.weight", (hd,)), (p + "attn_k_norm.weight", (hd,))]
        out += [(p + "attn_output.weight", (e, q)), (p + "ffn_norm.weight", (e,)),
                (p + "ffn_gate.weight", (cfg["n_ff"], e)), (p + "ffn_up.weight", (cfg["n_ff"], e)),
                (p + "ffn_down.weight", (e, cfg["n_ff"]))]
    out.append(("output_norm.weight", (e,)))
    return out


def write_f16(path: Path, name: str, cfg: dict, vocab: dict, seed: int = 0) -> None:
    import gguf

    arch = cfg["arch"]
    special = {t: i for i, t in cfg["special"].items()}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"{name} (random weights)")
    w.add_context_length(cfg["n_ctx_train"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_block_count(cfg["n_layer"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(cfg["n_head"])
    w.add_head_count_kv(cfg["n_head_kv"])
    if cfg["n_embd"] != cfg["n_head"] * cfg["head_dim"]:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    w.add_rope_freq_base(cfg["rope_base"])
    w.add_layer_norm_rms_eps(cfg["rms_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab["tokens"])
    w.add_token_types(vocab["types"])
    w.add_token_merges(vocab["merges"])
    w.add_eos_token_id(special["<|im_end|>"])
    w.add_pad_token_id(special["<|endoftext|>"])
    w.add_bos_token_id(special["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(cfg["template"])

    # Stream tensor data instead of holding ~3 GB (8 GB for Qwen3-4B) of F16 in memory.
    shapes = tensor_shapes(cfg)
    for tname, shape in shapes:
        dtype = np.float16 if len(shape) == 2 else np.float32  # 1-D tensors stay F32, as the converter does
        w.add_tensor_info(tname, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for tname, shape in shapes:
        if len(shape) == 1:
            value = 0.0 if tname.endswith(".bias") else 1.0
            w.write_tensor_data(np.full(shape, value, dtype=np.float32))
        else:
            # std 0.02 (the init scale of these models) keeps activations finite through every layer
            w.write_tensor_data((rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16))
    w.close()


def quantize(src: Path, dst: Path, ftype: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = N_THREADS
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed ({rc})")


def build_model(work: Path, name: str) -> tuple[Path, dict]:
    """The Q4_K_M random-weight GGUF for MODELS[name] (cached), and how long building it took."""
    import llama_cpp

    cfg = MODELS[name]
    out = work / f"{name}-random-q4_k_m.gguf"
    sidecar = out.with_suffix(".build.json")
    info = {"path": str(out), "cached": out.exists()}
    if out.exists() and sidecar.exists():
        info |= {k: v for k, v in json.loads(sidecar.read_text()).items() if k.endswith("_s")}
    if not out.exists():
        f16 = work / f"{name}-random-f16.gguf"
        if not f16.exists():
            t0 = time.perf_counter()
            vocab = qwen_vocab(work, cfg["n_vocab"], cfg["special"])
            info["vocab_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            tmp = f16.with_suffix(".tmp")
            write_f16(tmp, name, cfg, vocab)
            tmp.replace(f16)
            info["write_f16_s"] = round(time.perf_counter() - t0, 1)
            log(f"wrote {f16.name} ({f16.stat().st_size / 1e9:.2f} GB) in {info['write_f16_s']}s")
        t0 = time.perf_counter()
        tmp = out.with_suffix(".tmp")
        quantize(f16, tmp, llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M)
        tmp.replace(out)
        info["quantize_s"] = round(time.perf_counter() - t0, 1)
        log(f"quantized to {out.name} in {info['quantize_s']}s")
        f16.unlink()  # 3-8 GB, only needed for quantizing
        sidecar.write_text(json.dumps(info))
    from ragqa.models import LLM_PRESETS

    info["bytes"] = out.stat().st_size
    real_bytes = LLM_PRESETS[name].bytes
    if real_bytes:
        info["real_bytes"] = real_bytes
        info["size_vs_real"] = round(info["bytes"] / real_bytes, 4)
    return out, info


# ---------------------------------------------------------------- tokenizer check


def check_tokenizer(llm, work: Path, tiktoken_python: str | None) -> dict:
    """llama.cpp's tokenization of the seeds (Korean) and English text against Qwen's BPE applied directly
    (tiktoken's algorithm in Python, and tiktoken itself when a Python with it is given)."""
    texts = [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]
    texts += [
        "Why did the US allow H200 exports? Nvidia's CEO said: \"We're shipping 1,234,567 units in 2025.\"\n\n",
        "  indented\tTabs\r\nand   spaces   ",
        "미국이 H200 수출을 허용한 이유는? 알리바바는 새 AI 칩을 어디서 제조하나? 'll 'S 'RE",
        "<|im_start|> is plain text here",
    ]
    got = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=False) for t in texts]
    result = {"texts": len(texts), "tokens": sum(map(len, got))}
    try:
        import regex
    except ImportError:
        regex = None
    if regex is not None:
        ranks = qwen_ranks(work)
        pat = regex.compile(QWEN_SPLIT)
        want = [[ranks[p] for piece in pat.findall(t) for p in bpe(ranks, piece.encode("utf-8"))] for t in texts]
        result["matches_python_bpe"] = want == got
    if tiktoken_python:
        script = (
            "import base64,json,sys,tiktoken\n"
            "ranks={base64.b64decode(t):int(r) for t,r in (l.split() for l in open(sys.argv[1],'rb') if l.strip())}\n"
            f"enc=tiktoken.Encoding('qwen',pat_str={QWEN_SPLIT!r},mergeable_ranks=ranks,special_tokens={{}})\n"
            "print(json.dumps([enc.encode_ordinary(t) for t in json.load(sys.stdin)]))\n"
        )
        proc = subprocess.run([tiktoken_python, "-c", script, str(work / "qwen.tiktoken")],
                              input=json.dumps(texts), capture_output=True, text=True, check=True)
        result["matches_tiktoken"] = json.loads(proc.stdout) == got
    return result


# ---------------------------------------------------------------- measurements


@contextmanager
def llama_defaults(name: str, **fields):
    """Within the block, llama.cpp's `name` (a *_default_params function, which llama-cpp-python calls
    through the llama_cpp.llama_cpp module whenever it builds a model or a sampler) returns its params with
    `fields` set."""
    import llama_cpp.llama_cpp as lib

    original = getattr(lib, name)

    def patched():
        params = original()
        for key, value in fields.items():
            setattr(params, key, value)
        return params

    setattr(lib, name, patched)
    try:
        yield
    finally:
        setattr(lib, name, original)


def perf(llm) -> dict:
    """llama.cpp's own counters: prompt eval, per-token eval, and sampling (the grammar lives in the sampler)."""
    import llama_cpp

    c = llama_cpp.llama_perf_context(llm._ctx.ctx)
    out = {"prompt_eval_ms": c.t_p_eval_ms, "prompt_eval_tokens": c.n_p_eval,
           "eval_ms": c.t_eval_ms, "eval_tokens": c.n_eval}
    if llm._sampler is not None:
        s = llama_cpp.llama_perf_sampler(llm._sampler.sampler)
        out |= {"sample_ms": s.t_sample_ms, "samples": s.n_sample}
    return out


def reset_perf(llm) -> None:
    import llama_cpp

    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)


def rates(gen, p: dict, meter: CpuMeter) -> dict:
    """Tokens/s from ragqa's Generation timings (wall clock) and from llama.cpp's counters."""
    decode_s = gen.total_s - gen.first_token_s
    n = gen.completion_tokens
    out = {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": n,
        "finish_reason": gen.finish_reason,
        "first_token_s": round(gen.first_token_s, 3),
        "total_s": round(gen.total_s, 3),
        # wall clock: the first token comes after prefill; each later one is one decode + one sample
        "prompt_tok_s": round(gen.prompt_tokens / gen.first_token_s, 1),
        "gen_tok_s": round((n - 1) / decode_s, 2) if n > 1 and decode_s > 0 else None,
        "llama_prompt_tok_s": round(p["prompt_eval_tokens"] / p["prompt_eval_ms"] * 1e3, 1) if p["prompt_eval_ms"] else None,
        "eval_ms_per_token": round(p["eval_ms"] / p["eval_tokens"], 2) if p["eval_tokens"] else None,
        "others_cpu_cores": meter.others_cores,
    }
    if p.get("samples"):
        out["sample_ms_per_token"] = round(p["sample_ms"] / p["samples"], 2)
    if n > 1 and decode_s > 0 and p["eval_tokens"]:
        # everything per generated token that is not the model: sampling (grammar) and Python
        out["non_eval_ms_per_token"] = round((decode_s * 1e3 - p["eval_ms"]) / (n - 1), 2)
    return out


def prompt_of(llm, n_tokens: int) -> str:
    """A ChatML prompt of about n_tokens: seed article text as the user message, cut to fit."""
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt")))
    count = lambda s: len(llm.llm.tokenize(s.encode("utf-8"), add_bos=False, special=True))  # noqa: E731
    overhead = count(llm.render([{"role": "user", "content": ""}]))
    ids = llm.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    body = llm.llm.detokenize(ids[: n_tokens - overhead]).decode("utf-8", errors="ignore")
    return llm.render([{"role": "user", "content": body}])


def measure_model(path: Path, work: Path, settings, index_dir: Path, tiktoken_python: str | None = None) -> dict:
    from ragqa import store
    from ragqa.answer import ask
    from ragqa.llm import LocalLLM, answer_schema, grammar_for
    from ragqa.retrieve import Retriever

    res: dict = {}
    evict(path)
    with CpuMeter() as m:
        llm = LocalLLM(path, settings)
    res["load_s"] = round(m.wall_s, 3)  # the file read from disk
    with CpuMeter() as m:
        LocalLLM(path, settings).llm.close()
    res["reload_s"] = round(m.wall_s, 3)  # the file in the page cache
    raw = llm.llm
    res["n_threads"], res["n_batch"], res["n_ctx"] = raw.n_threads, raw.n_batch, raw.n_ctx()
    res["tokenizer"] = check_tokenizer(raw, work, tiktoken_python)

    # Plain prompt processing + generation, no grammar. A random model practically never samples an
    # end-of-generation token (2 of 151,936), so max_tokens is what gets generated.
    prompt = prompt_of(llm, 1000)
    llm.generate(llm.render([{"role": "user", "content": "warm up"}]), None, 4)
    reset_perf(raw)
    with CpuMeter() as m:
        gen = llm.generate(prompt, None, 128)
    res["plain"] = rates(gen, perf(raw), m)
    log(f"plain: {res['plain']}")

    # Greedy JSON-grammar decoding of the same prompt with the answer grammar's 'answerable' branch only,
    # so it writes sentences (as a real answer does) rather than perhaps '{"answerable": false, ...}'.
    schema = answer_schema(["d1#0", "d1#1", "d2#0", "d3#4", "d4#2"], quote=False)
    reset_perf(raw)
    with CpuMeter() as m:
        gen = llm.generate(prompt, grammar_for(schema["anyOf"][0]), 256)
    res["grammar"] = rates(gen, perf(raw), m) | {"text_head": gen.text[:120]}
    log(f"grammar (answerable branch): {res['grammar']}")

    # The real `ragqa ask` path, full answer grammar, default k and answer_max_tokens.
    retriever = Retriever(store.load(index_dir), settings)
    res["ask"] = []
    for q in QUESTIONS:
        reset_perf(raw)
        with CpuMeter() as m:
            answer = ask(q, retriever, settings, llm=llm)
        tm, p = answer.timings, perf(raw)
        row = {"question": q, **{k: int(v) if k.endswith("_tokens") else v for k, v in tm.items()}, "context": len(answer.context), "answerable": answer.answerable,
               "others_cpu_cores": m.others_cores}
        n, decode_s = tm.get("completion_tokens", 0), tm.get("generation_s", 0) - tm.get("first_token_s", 0)
        if tm.get("first_token_s"):
            row["prompt_tok_s"] = round(tm["prompt_tokens"] / tm["first_token_s"], 1)
        if n > 1 and decode_s > 0:
            row["gen_tok_s"] = round((n - 1) / decode_s, 2)
            row["non_eval_ms_per_token"] = round((decode_s * 1e3 - p["eval_ms"]) / (n - 1), 2)
        if p["eval_tokens"]:
            row["eval_ms_per_token"] = round(p["eval_ms"] / p["eval_tokens"], 2)
        if p.get("samples"):
            row["sample_ms_per_token"] = round(p["sample_ms"] / p["samples"], 2)
        res["ask"].append(row)
        log(f"ask: {row}")
    raw.close()
    return res


def evict(path: Path) -> None:
    """Drop this one file from the page cache, so the first load reads it from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def raw_speed(path: Path, n_prompt: int = 1000, n_gen: int = 64, n_threads: int = N_THREADS,
              repack: bool = True, flash_attn: bool = False) -> dict:
    """Prompt and decode tokens/s of llama.cpp alone (no sampling, no Python per token), for one setting.

    repack=False turns off llama.cpp's "extra buffer types": by default the CPU backend copies Q4_K weights
    at load time into an interleaved layout (REPACK in the system info) with its own matmul kernels."""
    from llama_cpp import Llama

    with llama_defaults("llama_model_default_params", use_extra_bufts=repack), CpuMeter() as load:
        llm = Llama(str(path), n_ctx=N_CTX, n_threads=n_threads, n_threads_batch=n_threads, n_batch=512,
                    flash_attn=flash_attn, verbose=False)
    tokens = [int(t) for t in np.random.default_rng(0).integers(1000, 100_000, n_prompt)]
    llm.eval(tokens[:8])  # warm-up
    llm.reset()
    with CpuMeter() as m:
        llm.eval(tokens)
        pp = time.perf_counter() - m.t0
        for t in tokens[:n_gen]:
            llm.eval([t])
    llm.close()
    return {"n_threads": n_threads, "repack": repack, "flash_attn": flash_attn, "load_s": round(load.wall_s, 2),
            "prompt_tokens": n_prompt, "prompt_tok_s": round(n_prompt / pp, 1),
            "gen_tok_s": round(n_gen / (m.wall_s - pp), 2), "others_cpu_cores": m.others_cores}


KNOBS = [{}, {"n_threads": 1}, {"flash_attn": True}, {"repack": False}]
ASK_COLUMNS = (
    "prompt_tokens", "first_token_s", "completion_tokens", "generation_s", "gen_tok_s", "sample_ms_per_token",
)


def measure(work_dir: Path, quality: bool = False, tiktoken_python: str | None = None, wait_s: float = 0,
            knobs: bool = False) -> dict:
    """Build (or reuse) the random-weight GGUFs under work_dir and measure them through ragqa's code.

    Timings are only meaningful on an otherwise idle machine: every result records the CPU other processes
    used meanwhile ('others_cpu_cores'); `wait_s` waits up to that long for them to finish first.
    `knobs` adds llama.cpp-only speeds of the default model under other settings (threads, flash
    attention, weight repacking)."""
    from ragqa.build import build_index

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(work_dir / "llm_cost-index", models_dir=work_dir, seeds_dir=SEEDS,
                              n_threads=N_THREADS, n_ctx=N_CTX)
    build_index([SEEDS], settings)  # the lexical index `ask` retrieves from
    out = {"note": NOTE, "machine": machine("llama-cpp-python", "gguf"), "loadavg_before": loadavg(),
           "settings": {"n_threads": N_THREADS, "n_ctx": N_CTX, "top_k": settings.top_k,
                        "context_max_tokens": settings.context_max_tokens,
                        "answer_max_tokens": settings.answer_max_tokens, "temperature": settings.temperature},
           "models": {}}
    for name in ["qwen2.5-1.5b"] + (["qwen3-4b"] if quality else []):
        path, build = build_model(work_dir, name)
        if wait_s:
            quiet = wait_quiet(max_wait=wait_s, window=15.0)
            log(f"waited {quiet['waited_s']} s for other processes to settle (they use {quiet['others_cores']} cores)")
        log(f"measuring {name}")
        # Sampler chains keep llama.cpp's timing counters (off by default): sampling is where the JSON grammar runs.
        with llama_defaults("llama_sampler_chain_default_params", no_perf=False):
            measured = measure_model(path, work_dir, settings, settings.index_dir, tiktoken_python)
        out["models"][name] = {"build": build, **measured}
        if knobs and name == "qwen2.5-1.5b":
            out["models"][name]["knobs"] = [raw_speed(path, **k) for k in KNOBS]
            for k in out["models"][name]["knobs"]:
                log(f"knob: {k}")
    out["loadavg_after"] = loadavg()
    return out


def report(res: dict) -> str:
    mc = res["machine"]
    lines = [f"# {res['note']}",
             f"# llama-cpp-python {mc['versions']['llama-cpp-python']}, {mc['cores']} CPUs, "
             f"n_threads {res['settings']['n_threads']}, "
             f"n_ctx {res['settings']['n_ctx']}; 'other CPU' = cores used by other processes meanwhile"]
    for name, m in res["models"].items():
        b = m["build"]
        lines.append(f"\n{name} Q4_K_M: {b['bytes']:,} bytes"
                     + (f" (real file {b['real_bytes']:,}, x{b['size_vs_real']})" if b.get("real_bytes") else ""))
        lines.append(f"  load {m['load_s']} s (again: {m['reload_s']} s); tokenizer check {m['tokenizer']}")
        for key, label in (("plain", "no grammar"), ("grammar", "JSON grammar")):
            r = m[key]
            lines.append(
                f"  {label:12}  prompt {r['prompt_tokens']} tok at {r['prompt_tok_s']} tok/s; "
                f"{r['completion_tokens']} generated at {r['gen_tok_s']} tok/s = model {r['eval_ms_per_token']} ms "
                f"+ sampling {r.get('sample_ms_per_token')} ms (all non-model {r.get('non_eval_ms_per_token')} ms) "
                f"per token; other CPU {r['others_cpu_cores']}"
            )
        rows = [[f"ragqa ask (k={res['settings']['top_k']})", "prompt", "TTFT s", "gen", "gen s", "tok/s", "smpl ms",
                 "total s", "other CPU"]]
        for a in m["ask"]:
            rows.append([a["question"][:42], *[a.get(k, "-") for k in ASK_COLUMNS], a["total_s"],
                         a["others_cpu_cores"]])
        lines += columns(rows, ["<42", ">6", ">7", ">4", ">7", ">6", ">7", ">7", ">9"], indent="  ")
        for k in m.get("knobs", []):
            lines.append(f"  llama.cpp only, n_threads {k['n_threads']}, repack {k['repack']}, flash_attn "
                         f"{k['flash_attn']}: load {k['load_s']} s, prompt {k['prompt_tok_s']} tok/s, "
                         f"gen {k['gen_tok_s']} tok/s; other CPU {k['others_cpu_cores']}")
    worst = max([m[k]["others_cpu_cores"] for m in res["models"].values() for k in ("plain", "grammar")]
                + [a["others_cpu_cores"] for m in res["models"].values() for a in m["ask"]], default=0)
    if worst > 0.25:
        lines.append(f"\nWARNING: other processes used up to {worst} cores during the measurements; with "
                     "n_threads = all cores llama.cpp slows down many-fold under such contention")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quality", action="store_true", help="also build and measure a Qwen3-4B-shaped model")
    ap.add_argument("--work", type=Path, default=WORK, help="cache directory (default benchmarks/work)")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default WORK/llm_cost.json)")
    ap.add_argument("--tiktoken-python", default=None,
                    help="a Python with tiktoken installed, to cross-check the GGUF tokenizer against it")
    ap.add_argument("--knobs", action="store_true",
                    help="also time llama.cpp alone under other settings (threads, flash attention, repacking)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before measuring, wait up to S seconds for other processes to stop using the CPU")
    args = ap.parse_args()
    res = measure(args.work, quality=args.quality, tiktoken_python=args.tiktoken_python, wait_s=args.wait_quiet,
                  knobs=args.knobs)
    write_json(args.out or args.work / "llm_cost.json", res)
    print(report(res))


if __name__ == "__main__":
    main()
