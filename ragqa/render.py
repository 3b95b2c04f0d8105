"""Human-readable output of answers, shared by `ragqa ask` and the REPL."""

from __future__ import annotations

import re
import shutil
import sys

from rich.cells import cell_len, get_character_cell_size

from .lexical import is_korean
from .llm import scan_sentences
from .schema import Answer

PIPE_WIDTH = 100  # cells a line when stdout is a file or a pipe: what a reader's editor shows comfortably
MIN_WIDTH = 20


def output_width(stream=None) -> int:
    """Cells available on a line of `stream` (stdout by default): the terminal's width, else PIPE_WIDTH."""
    stream = stream or sys.stdout
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return PIPE_WIDTH
    return max(MIN_WIDTH, shutil.get_terminal_size((PIPE_WIDTH, 24)).columns)


def _pieces(word: str, width: int) -> list[str]:
    """`word` cut into parts of at most `width` cells (a URL, or CJK text written without spaces)."""
    if cell_len(word) <= width:
        return [word]
    out, cur, used = [], [], 0
    for ch in word:
        w = get_character_cell_size(ch)
        if cur and used + w > width:
            out.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += w
    return out + (["".join(cur)] if cur else [])


def _fit(line: str, width: int) -> str:
    """One line cut to `width` cells with an ellipsis (a title line stays one line)."""
    if cell_len(line) <= width:
        return line
    return _pieces(line, width - 1)[0] + "…"


# A word is a run of non-space characters; a citation group "[a, b]" stays one word, on the line of the
# word before it.
_WORD = re.compile(r"(?:\[[^\[\]\n]*\]|[^\s\[]|\[)+(?:[ \t]+\[[^\[\]\n]*\])*")


def _wrap(text: str, indent: str = "    ", width: int | None = None) -> str:
    """Each line of `text` filled to `width` display cells (Hangul and CJK take two), indented."""
    avail = max(1, (width or output_width()) - cell_len(indent))
    lines = []
    for para in text.splitlines():
        cur, used = [], 0
        for word in _WORD.findall(para):
            # Too long with its citations: the word and each group on their own, then cut by cells.
            parts = [word] if cell_len(word) <= avail else re.split(r"[ \t]+(?=\[)", word)
            for piece in (p for part in parts for p in _pieces(part, avail)):
                w = cell_len(piece)
                if cur and used + 1 + w > avail:
                    lines.append(indent + " ".join(cur))
                    cur, used = [], 0
                used += w + (1 if cur else 0)
                cur.append(piece)
        lines.append(indent + " ".join(cur) if cur else "")
    return "\n".join(lines)


def label(answer: Answer, llm_name: str | None = None) -> str:
    if answer.backend == "extractive":
        quoted = {("Korean" if is_korean(s.text) else "English") for s in answer.sentences}
        asked = "Korean" if answer.language == "ko" else "English"
        if quoted and quoted != {asked}:
            return f"Extractive answer (no LLM): {' and '.join(sorted(quoted))} sentences quoted from the articles"
        return "Extractive answer (no LLM): sentences quoted from the articles"
    return label_for_llm(llm_name or "local LLM")


def answer_block(
    answer: Answer, streamed: bool, llm_name: str | None, show_context: bool = False,
    retrieved_texts: dict[str, str] | None = None, width: int | None = None,
) -> str:
    """The printed answer: its label and text (unless they were streamed already), then `details`."""
    width = width or output_width()
    parts = [] if streamed else [_wrap(label(answer, llm_name), "", width), _wrap(answer.answer, "", width)]
    rest = details(answer, show_context, retrieved_texts, width)
    return "\n".join(parts + ([rest] if rest else []))


def details(
    answer: Answer, show_context: bool = False, retrieved_texts: dict[str, str] | None = None,
    width: int | None = None,
) -> str:
    """Everything after the answer text: flags for unsupported sentences, then the cited passages, wrapped
    to `width` display cells (default: the terminal's, or PIPE_WIDTH when stdout is not one)."""
    width = width or output_width()
    out = []
    for i, s in enumerate(answer.sentences, 1):
        if s.supported is False:
            out.append(_wrap(f"! sentence {i} is not supported by its citations: {s.reason}", "", width))
        elif s.supported is None:
            out.append(_wrap(f"? sentence {i} could not be checked: {s.reason}", "", width))
    if answer.citations:
        out.append("")
        out.append("Sources:")
        for c in answer.citations:
            out.append(_fit(f"[{c.chunk_id}] {c.title}", width))
            out.append(_wrap(c.text, width=width))
    if show_context and retrieved_texts:
        out.append("")
        out.append("Context given to the model:" if answer.backend == "llm" else "Retrieved passages:")
        for r in answer.retrieved:
            mark = "*" if r["chunk_id"] in answer.context else " "
            out.append(f"{mark} [{r['chunk_id']}] score {r['score']:.4f}")
            out.append(_wrap(retrieved_texts.get(r["chunk_id"], ""), width=width))
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
