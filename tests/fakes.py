"""A scripted stand-in for the LLM, for fast tests of the answer logic around it."""

from __future__ import annotations

import json

from ragqa.generate import Generation


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
