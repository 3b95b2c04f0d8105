"""Stand-ins for the models, for fast tests of the logic around them: a scripted LLM, a hashing embedder."""

from __future__ import annotations

import json
import zlib

import numpy as np

from ragqa.llm import Generation


class ScriptedLLM:
    """Returns canned outputs in order (a string, or a function of the prompt), streaming them in pieces."""

    name = "scripted"

    def __init__(self, *outputs):
        self.outputs = list(outputs)
        self.prompts: list[str] = []
        self.grammars = []

    def count(self, text: str) -> int:
        return max(1, len(text) // 2)

    def render(self, messages: list[dict]) -> str:
        return json.dumps(messages, ensure_ascii=False)

    def generate(self, prompt, grammar, max_tokens, on_text=None) -> Generation:
        self.prompts.append(prompt)
        self.grammars.append(grammar)
        out = self.outputs.pop(0)
        text = out(prompt) if callable(out) else out
        if on_text:
            for end in range(7, len(text) + 7, 7):
                on_text(text[:end])
        return Generation(text, "stop", self.count(prompt), len(text) // 3, 0.01, 0.02)


class FakeEmbedder:
    """Deterministic, torch-free dense vectors: character trigrams hashed (crc32) into `dim` dimensions and
    L2-normalized, so texts that share words land close. Mechanics, not meaning."""

    engine = "fake"
    query_prompt = passage_prompt = ""

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.name = f"fake-{dim}"
        self.identity = {"engine": self.engine, "model": self.name, "weights": "crc32-trigrams", "dim": dim,
                         "query_prompt": "", "passage_prompt": ""}

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            t = f"  {' '.join(text.lower().split())}  "
            for j in range(len(t) - 2):
                h = zlib.crc32(t[j : j + 3].encode("utf-8"))
                out[i, h % self.dim] += 1.0 if h & 0x80000000 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: list[str], progress=None) -> np.ndarray:
        vectors = self._encode(texts)
        if progress:
            progress(len(texts))
        return vectors
