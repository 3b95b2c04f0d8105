"""Builders for tiny random-weight GGUF (llama.cpp) and sentence-transformers models used by the tests."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

# Qwen2.5-style ChatML template (without the tool-calling branches). It deliberately differs from
# llama_cpp.llama_chat_format.CHATML_CHAT_TEMPLATE, so llama-cpp-python renders it through its
# Jinja2ChatFormatter ("chat_template.default") exactly as it does for a real Qwen2.5 GGUF.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Same split regex as Qwen2's tokenizer.json, i.e. what llama.cpp applies for tokenizer.ggml.pre = "qwen2",
# so the merges learned here are applied to the same pre-token chunks at inference time.
_QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _is_clean_piece(token: str, byte_decoder: dict[str, int]) -> bool:
    try:
        text = bytes(byte_decoder[ch] for ch in token).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _train_byte_level_bpe(texts: list[str], vocab_size: int) -> tuple[list[str], list[str]]:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        # all 256 byte symbols, so any UTF-8 input is representable
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        # llama-cpp-python's detokenize() has a 32-byte buffer per token and drops longer pieces.
        max_token_length=16,
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    by_id = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    tokens = [t for t, _ in by_id]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    if not merges:
        # llama.cpp refuses a gpt2-type vocabulary without merges ("cannot find tokenizer merges")
        raise ValueError("texts are too small to learn any BPE merge")
    return tokens, merges


def build_tiny_gguf(
    path: Path,
    texts: list[str],
    *,
    seed: int = 0,
    chat_template: str | None = CHATML_TEMPLATE,
    vocab_size: int = 3000,
) -> Path:
    """Write a tiny random-weight llama-architecture GGUF with a byte-level BPE trained on `texts`."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    tokens, merges = _train_byte_level_bpe(texts, vocab_size - 3)
    specials = [ENDOFTEXT, IM_START, IM_END]
    token_types = [gguf.TokenType.NORMAL] * len(tokens) + [gguf.TokenType.CONTROL] * len(specials)
    tokens = tokens + specials
    ids = {t: i for i, t in enumerate(tokens)}
    n_vocab = len(tokens)

    n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx = 64, 2, 4, 2, 128, 4096
    head_dim = n_embd // n_head

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("ragqa-tiny-random")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids[ENDOFTEXT])
    w.add_eos_token_id(ids[IM_END])
    # llama.cpp stops on eos and eot, and on any control token named <|endoftext|> or <|im_end|>.
    w.add_eot_token_id(ids[ENDOFTEXT])
    w.add_pad_token_id(ids[ENDOFTEXT])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    rng = np.random.default_rng(seed)

    def mat(rows: int, cols: int) -> np.ndarray:
        # numpy shape (rows, cols) becomes ggml ne = [cols, rows], i.e. (out_features, in_features)
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    # The llama architecture has no output bias, so residual dimension 0 is pinned to a constant
    # (set in every embedding, never written by attention/FFN); column 0 of output.weight then acts
    # as a per-token logit bias, which pushes down byte-fragment tokens (invalid UTF-8
    # on their own), tokens with control characters and <|im_start|>. Otherwise a random model emits
    # stray UTF-8 bytes, which llama-cpp-python decodes with errors="ignore" differently when streaming,
    # and raw control characters inside JSON strings, which its json-schema grammar does not forbid.
    token_embd = mat(n_vocab, n_embd)
    token_embd[:, 0] = 1.0
    output = mat(n_vocab, n_embd)
    output[:, 0] = 0.0
    byte_decoder = {c: b for b, c in gguf.vocab.bytes_to_unicode().items()}  # token text -> raw bytes
    for i, t in enumerate(tokens):
        fragment = token_types[i] == gguf.TokenType.NORMAL and not _is_clean_piece(t, byte_decoder)
        if fragment or t == IM_START:
            output[i, 0] = -5.0

    n_embd_kv = n_head_kv * head_dim
    w.add_tensor("token_embd.weight", token_embd)
    for i in range(n_layer):
        p = f"blk.{i}."
        attn_out, ffn_down = mat(n_embd, n_embd), mat(n_embd, n_ff)
        attn_out[0, :] = 0.0
        ffn_down[0, :] = 0.0
        w.add_tensor(p + "attn_norm.weight", ones(n_embd))
        w.add_tensor(p + "attn_q.weight", mat(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", mat(n_embd_kv, n_embd))
        w.add_tensor(p + "attn_v.weight", mat(n_embd_kv, n_embd))
        w.add_tensor(p + "attn_output.weight", attn_out)
        w.add_tensor(p + "ffn_norm.weight", ones(n_embd))
        w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", ffn_down)
    w.add_tensor("output_norm.weight", ones(n_embd))
    w.add_tensor("output.weight", output)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def build_tiny_sentence_transformer(
    path: Path,
    texts: list[str],
    *,
    seed: int = 0,
    vocab_size: int = 3000,
) -> Path:
    """Write a tiny random-weight BERT sentence-transformers model with a WordPiece vocab trained on `texts`."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Normalize, Pooling, Transformer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # tokenizers' WordPieceTrainer is not deterministic (hash-map order decides ties and ids), so a
    # plain BPE is trained on the same normalized words (deterministic: sorted alphabet) and every
    # piece is used both word-initially and as a "##" continuation.
    # strip_accents=False matters: stripping runs NFD, which would split Hangul syllables into jamo.
    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    bpe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=(vocab_size - len(specials)) // 2, special_tokens=[], show_progress=False
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    pieces = [t for t, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])]
    vocab: dict[str, int] = {}
    for t in specials + pieces + ["##" + t for t in pieces]:
        vocab.setdefault(t, len(vocab))

    tokenizer = BertTokenizerFast(
        vocab=vocab,
        do_lower_case=False,
        strip_accents=False,
        tokenize_chinese_chars=True,
        model_max_length=512,
    )

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=vocab["[PAD]"],
    )
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # keep the pooler so that reloading through AutoModel initializes nothing at random
        bert = BertModel(config)
        # With random position embeddings every mean-pooled vector is dominated by the same
        # position signal (pairwise cosine ~0.98); zeroed, texts that share words end up closer.
        with torch.no_grad():
            bert.embeddings.position_embeddings.weight.zero_()
            bert.embeddings.token_type_embeddings.weight.zero_()
        bert.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        transformer = Transformer(tmp, max_seq_length=256)
        pooling = Pooling(config.hidden_size, pooling_mode="mean")
        st = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
        st.save(str(path))
    return path
