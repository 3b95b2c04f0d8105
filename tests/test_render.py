"""Human output: passages and answers wrapped by display width (Hangul takes two cells) to the terminal."""

from __future__ import annotations

import io

import pytest
from rich.cells import cell_len

from conftest import SEEDS
from ragqa import render
from ragqa.schema import Answer, AnswerSentence, Citation

KOREAN = (SEEDS / "000_5cafd9bf1db64a43.txt").read_text(encoding="utf-8").split("\n")[5]
MIXED = "엔비디아(NVIDIA)의 H200 칩은 https://example.com/a/very/long/path/that/never/breaks/anywhere/at/all 참고. 中美 AI 경쟁"


def words(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("width", [20, 40, 80, 100, 160])
@pytest.mark.parametrize("text", [KOREAN, MIXED, "short", "", "한" * 300])
def test_wrap_fits_the_width_in_cells_and_keeps_the_text(text, width):
    out = render._wrap(text, width=width)
    lines = out.split("\n")
    assert all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    assert words(out) == words(text)  # nothing lost, nothing added but line breaks and the indent
    assert all(line.startswith("    ") for line in lines if line)


def test_wrap_uses_the_width_hangul_needs():
    out = render._wrap(KOREAN, width=80).split("\n")
    assert len(out) >= 3 and max(cell_len(line) for line in out) > 70  # lines are filled, not cut short
    assert max(len(line) for line in out) < 60  # … in far fewer characters than cells


def test_width_of_the_output():
    assert render.output_width(io.StringIO()) == render.PIPE_WIDTH  # a file or a pipe

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert render.output_width(Tty()) >= render.MIN_WIDTH


@pytest.mark.parametrize("width", [40, 80, 160])
def test_answer_block_fits(width):
    text = KOREAN
    answer = Answer(  # a long answer, a long flag, a long title: every line of it must fit
        question="q", answer=f"{text} [000-5cafd9bf:p04, 000-5cafd9bf:p05]", answerable=True,
        backend="extractive", language="ko", mode="lexical",
        sentences=[AnswerSentence(text=text, citations=["000-5cafd9bf:p04"], supported=False, reason="숫자 " * 40)],
        citations=[Citation(chunk_id="000-5cafd9bf:p04", doc_id="000", title="제목 " * 50, text=text)],
        retrieved=[{"chunk_id": "000-5cafd9bf:p04", "score": 1.0}], context=["000-5cafd9bf:p04"], timings={},
    )
    out = render.answer_block(answer, False, None, True, {"000-5cafd9bf:p04": text}, width=width)
    lines = out.split("\n")
    assert all(cell_len(line) <= width for line in lines), max(lines, key=cell_len)
    assert "[000-5cafd9bf:p04, 000-5cafd9bf:p05]" in out  # a citation group is never split
    assert words(text) in words(out)
