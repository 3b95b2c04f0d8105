"""Human-readable output of answers, shared by `ragqa ask` and the REPL."""

from __future__ import annotations

import sys
import textwrap

from .generate import scan_sentences
from .schema import Answer


def _wrap(text: str, indent: str = "    ", width: int = 100) -> str:
    return "\n".join(
        textwrap.fill(line, width=width, initial_indent=indent, subsequent_indent=indent) for line in text.splitlines()
    )


def label(answer: Answer, llm_name: str | None = None) -> str:
    if answer.backend == "extractive":
        return "Extractive answer (no LLM): sentences quoted from the articles"
    return label_for_llm(llm_name or "local LLM")


def answer_block(
    answer: Answer, streamed: bool, llm_name: str | None, show_context: bool = False,
    retrieved_texts: dict[str, str] | None = None,
) -> str:
    """The printed answer: its label and text (unless they were streamed already), then `details`."""
    parts = [] if streamed else [label(answer, llm_name), answer.answer]
    rest = details(answer, show_context, retrieved_texts)
    return "\n".join(parts + ([rest] if rest else []))


def details(answer: Answer, show_context: bool = False, retrieved_texts: dict[str, str] | None = None) -> str:
    """Everything after the answer text: flags for unsupported sentences, then the cited passages."""
    out = []
    for i, s in enumerate(answer.sentences, 1):
        if s.supported is False:
            out.append(f"! sentence {i} is not supported by its citations: {s.reason}")
        elif s.supported is None:
            out.append(f"? sentence {i} could not be checked: {s.reason}")
    if answer.citations:
        out.append("")
        out.append("Sources:")
        for c in answer.citations:
            out.append(f"[{c.chunk_id}] {c.title}")
            out.append(_wrap(c.text))
    if show_context and retrieved_texts:
        out.append("")
        out.append("Context given to the model:" if answer.backend == "llm" else "Retrieved passages:")
        for r in answer.retrieved:
            mark = "*" if r["chunk_id"] in answer.context else " "
            out.append(f"{mark} [{r['chunk_id']}] score {r['score']:.4f}")
            out.append(_wrap(retrieved_texts.get(r["chunk_id"], "")))
    return "\n".join(out)


class AnswerStream:
    """Prints the answer's sentences while the LLM writes them (for a terminal)."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.shown = ""
        self.unfinished = False  # the output so far ends inside a sentence

    def __call__(self, buf: str) -> None:
        done, partial = scan_sentences(buf)
        self.unfinished = partial is not None
        text = " ".join(f"{s.get('text', '')} [{', '.join(s.get('citations') or [])}]" for s in done)
        if partial:
            text = f"{text} {partial}" if text else partial
        if text.startswith(self.shown) and len(text) > len(self.shown):
            self.out.write(text[len(self.shown):])
            self.out.flush()
            self.shown = text

    def finish(self, answer: Answer | None = None) -> None:
        """End the streamed line; say so if the model was cut off mid-sentence or gave no answer."""
        if answer is not None and not answer.answerable:
            self.out.write(("\n" if self.shown else "") + answer.answer)
        elif answer is not None and self.unfinished:
            self.out.write(" […cut off; not part of the answer]")
        if self.shown or answer is not None:
            self.out.write("\n")
        self.out.flush()


def label_for_llm(name: str) -> str:
    return f"Answer ({name})"


def timing_line(answer: Answer) -> str:
    t = answer.timings
    parts = [f"{answer.backend}", f"retrieval {t.get('retrieval_s', 0):.2f} s"]
    if "prompt_tokens" in t:
        parts.append(f"prompt {int(t['prompt_tokens'])} tokens, first token {t['first_token_s']:.1f} s")
        parts.append(f"{int(t['completion_tokens'])} tokens in {t['generation_s']:.1f} s")
    parts.append(f"total {t.get('total_s', 0):.2f} s")
    return " · ".join(parts)
