"""The REPL: a real session through a pseudo-terminal, and the session logic with a scripted LLM."""

from __future__ import annotations

import io
import json
import sys

import pexpect
import pytest

from conftest import ROOT, subprocess_env
from fakes import ScriptedLLM
from ragqa import store
from ragqa.repl import MAX_TURNS, Conversation, Session, Turn
from ragqa.retrieve import Retriever


def spawn(index_dir, history, term="xterm"):
    env = {
        **subprocess_env(), "TERM": term,
        "RAGQA_HISTORY_FILE": str(history), "RAGQA_INDEX_DIR": str(index_dir),
    }
    return pexpect.spawn(
        sys.executable, ["-m", "ragqa", "repl", "--llm", "none"], env=env, encoding="utf-8", timeout=60,
        cwd=str(ROOT), dimensions=(50, 200),
    )


def test_repl_session_through_a_pty(lexical_index, tmp_path):
    history = tmp_path / "history"
    child = spawn(lexical_index.index_dir, history)
    child.expect("ragqa>")
    child.sendline("미국이 H200 수출을 허용한 이유는?")
    child.expect("Extractive answer")
    child.expect(r"\[000-5cafd9bf:p05\]")  # the Huawei passage is cited
    child.expect("ragqa>")
    child.sendline("딥시크 앱은 앱스토어에서 몇 위였나?")
    child.expect(r"\[003-8169c992:p12\]")
    child.expect("ragqa>")
    child.sendline("그럼 브로드컴은 얼마나 떨어졌어?")
    child.expect("follow-up: added")
    child.expect("17.4%")
    child.expect("ragqa>")
    child.sendline("/sources")
    child.expect("Sources:")
    child.expect("Retrieved passages:")
    child.expect("ragqa>")
    child.sendline("/bogus")
    child.expect("error: unknown command /bogus")
    child.expect("ragqa>")
    child.sendcontrol("c")  # cancels the line, not the session
    child.expect("ragqa>")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    saved = history.read_text(encoding="utf-8")
    assert "그럼 브로드컴은 얼마나 떨어졌어?" in saved and "/bogus" in saved


def test_repl_on_a_dumb_terminal(lexical_index, tmp_path):
    child = spawn(lexical_index.index_dir, tmp_path / "h", term="dumb")
    child.expect("ragqa> ")
    child.sendline("/k 3")
    child.expect("k = 3")
    child.expect("ragqa> ")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


# ---------------------------------------------------------------- session logic


@pytest.fixture
def session(lexical_index):
    retriever = Retriever(store.load(lexical_index.index_dir), lexical_index)
    return Session(retriever.index, retriever, lexical_index, out=io.StringIO(), err=io.StringIO())


def test_follow_up_detection_and_bounded_history():
    conv = Conversation()
    assert not conv.is_follow_up("그럼 중국은?")  # nothing to follow yet
    for i in range(MAX_TURNS + 2):
        conv.add(Turn(f"질문 {i}", f"알리바바 칩 {i}", "답"))
    assert len(conv.turns) == MAX_TURNS and conv.turns[-1].question == f"질문 {MAX_TURNS + 1}"
    assert conv.is_follow_up("그럼 중국 정부는 어떻게 반응했어?")
    assert conv.is_follow_up("What about Huawei?") and conv.is_follow_up("왜?")
    assert not conv.is_follow_up("코어위브에 대한 엔비디아의 투자 규모는?")
    query, added = conv.standalone("그럼 화웨이는?")
    assert query.startswith("그럼 화웨이는?") and "알리바바" in query and "알리바바" in added


def test_llm_rewrites_the_follow_up(session):
    session.llm = ScriptedLLM(
        json.dumps({"answerable": False, "sentences": []}),
        json.dumps({"question": "미국의 H200 수출 허용에 중국 정부는 어떻게 반응했나?"}),
        json.dumps({"answerable": False, "sentences": []}),
    )
    session.handle("미국이 H200 수출을 허용한 이유는?")
    session.handle("그럼 중국 정부는 어떻게 반응했어?")
    assert "rewritten as “미국의 H200 수출 허용에 중국 정부는 어떻게 반응했나?”" in session.err.getvalue()
    assert "미국이 H200 수출을 허용한 이유는?" in session.llm.prompts[1]  # the rewrite saw the conversation
    assert "미국의 H200 수출 허용에 중국 정부는" in session.llm.prompts[2]  # and the answer the rewrite


def test_errors_and_cancellation_keep_the_session(session):
    def boom(prompt):
        raise RuntimeError("model exploded")

    def interrupt(prompt):
        raise KeyboardInterrupt

    session.llm = ScriptedLLM(boom, interrupt)
    assert session.handle("딥시크 앱 순위") is True
    assert session.handle("딥시크 앱 순위") is True
    assert session.handle("/k 0") is True and session.handle("/mode dense") is True
    assert session.handle("/mode hybrid") is True and session.mode == "hybrid"  # the session's own default
    errors = session.err.getvalue()
    assert "error: RuntimeError: model exploded" in errors and "(answer cancelled)" in errors
    assert "/k needs a number" in errors and "lexical-only" in errors
    assert session.handle("/quit") is False
