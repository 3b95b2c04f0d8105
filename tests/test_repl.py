"""The REPL: a real session through a pseudo-terminal, and the session logic with a scripted LLM."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from rich.cells import cell_len

from conftest import ROOT, subprocess_env
from fakes import ScriptedLLM
from ragqa import store
from ragqa.engine import Engine
from ragqa.repl import MAX_TURNS, Conversation, Session, Turn, _Steered, file_history, names, open_history, subject
from ragqa.lexical import tokenize
from ragqa.retrieve import MAX_QUERY_CHARS, Retriever


def spawn(index_dir, history, term="xterm", columns=200):
    env = {
        **subprocess_env(), "TERM": term,
        "RAGQA_HISTORY_FILE": str(history), "RAGQA_INDEX_DIR": str(index_dir),
    }
    return pexpect.spawn(
        sys.executable, ["-m", "ragqa", "repl", "--llm", "none"], env=env, encoding="utf-8", timeout=60,
        cwd=str(ROOT), dimensions=(50, columns),
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
    child.expect("17.4%")  # its own name leads: the App Store passage of the previous answer does not
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
    return Session(Engine(lexical_index), out=io.StringIO(), err=io.StringIO())


def test_follow_up_detection_and_bounded_history():
    conv = Conversation()
    assert not conv.is_follow_up("그럼 중국은?")  # nothing to follow yet
    for i in range(MAX_TURNS + 2):
        conv.add(Turn(f"질문 {i}", f"알리바바 칩 {i}", "답"))
    assert len(conv.turns) == MAX_TURNS and conv.turns[-1].question == f"질문 {MAX_TURNS + 1}"
    assert conv.is_follow_up("그럼 중국 정부는 어떻게 반응했어?")
    assert conv.is_follow_up("What about Huawei?") and conv.is_follow_up("왜?")
    assert not conv.is_follow_up("코어위브에 대한 엔비디아의 투자 규모는?")
    plan = conv.standalone("그럼 화웨이는?")
    assert plan.query.startswith("그럼 화웨이는?") and "알리바바" in plan.query and "알리바바" in plan.note
    assert plan.avoid == []  # the previous question names no subject


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


def test_repl_fits_passages_to_the_terminal(lexical_index, tmp_path):
    child = spawn(lexical_index.index_dir, tmp_path / "h", term="dumb", columns=80)
    child.expect("ragqa> ")
    child.sendline("미국이 H200 수출을 허용한 이유는?")
    child.expect("Sources:")
    child.expect("extractive ·")
    shown = child.before
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in shown.replace("\r", "").split("\n")]
    passages = [line for line in lines if line.startswith("    ")]
    assert len(passages) >= 6 and any("블룸버그" in line for line in passages)
    assert all(cell_len(line) <= 80 for line in lines if not line.startswith("extractive")), max(lines, key=cell_len)


# ---------------------------------------------------------------- history that cannot be written


@pytest.mark.parametrize("term", ["xterm", "dumb"])  # prompt_toolkit's history, and readline's
def test_repl_without_a_writable_history(lexical_index, tmp_path, term):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    child = spawn(lexical_index.index_dir, blocker / "ragqa" / "history", term=term)
    child.expect("history is not saved")
    child.expect("ragqa>")
    for question, reply in (("딥시크 앱은 앱스토어에서 몇 위였나?", r"\[003-8169c992:p12\]"), ("/k 3", "k = 3")):
        child.sendline(question)
        child.expect(reply)
        child.expect("ragqa>")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    output = child.before
    assert child.exitstatus == 0
    assert "Traceback" not in output and "error" not in output  # said once, at the start, then quiet


def test_open_history_refuses_what_cannot_be_a_history_file(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    for bad in (folder, blocker / "history", blocker / "deeper" / "history"):
        path, why = open_history(bad)
        assert path is None and str(bad) in why
    assert open_history(None) == (None, "no home folder to keep it in; set RAGQA_HISTORY_FILE")
    fresh = tmp_path / "new" / "state" / "history"
    assert open_history(fresh) == (fresh, None) and fresh.is_file()
    if os.geteuid() != 0:  # root writes read-only files anyway
        ro = tmp_path / "read-only"
        ro.write_text("", encoding="utf-8")
        ro.chmod(0o444)
        assert open_history(ro)[0] is None


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_history_that_fails_mid_session_is_reported_once(tmp_path):
    notes = []
    history = file_history(Path("/dev/full"), notes.append)  # every write fails: no space left on device
    history.store_string("one")
    history.store_string("two")
    assert len(notes) == 1 and "history is not saved" in notes[0] and "/dev/full" in notes[0]
    assert list(file_history(tmp_path, notes.append).load_history_strings()) == []  # a folder reads as empty


# ---------------------------------------------------------------- stdout closed, huge lines


def test_repl_stops_quietly_when_stdout_is_closed(lexical_index):
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first answer hits EPIPE, as `ragqa repl | head -0` would
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ragqa", "repl", "--llm", "none"],
            input="딥시크 앱은 앱스토어에서 몇 위였나?\n미국이 H200 수출을 허용한 이유는?\n".encode(),
            stdout=write_end, stderr=subprocess.PIPE, cwd=str(ROOT), timeout=120,
            env={**subprocess_env(), "RAGQA_INDEX_DIR": str(lexical_index.index_dir)},
        )
    finally:
        os.close(write_end)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "error" not in err and "BrokenPipe" not in err
    assert "extractive ·" not in err  # it stopped at the first answer instead of answering the second


def test_a_closed_stdout_ends_the_session(session):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    session.out = Closed()
    with pytest.raises(BrokenPipeError):
        session.handle("딥시크 앱은 앱스토어에서 몇 위였나?")
    assert "error" not in session.err.getvalue()


def test_a_huge_line_is_cut_before_it_is_read(session):
    session.handle("딥시크 앱은 앱스토어에서 몇 위였나? " * 500_000)  # 11 million characters
    assert f"only the first {MAX_QUERY_CHARS:,} are used" in session.err.getvalue()
    assert len(session.last.question) <= MAX_QUERY_CHARS
    assert "[003-8169c992:p12]" in session.last.answer
    assert len(session.conversation.turns[-1].question) <= MAX_QUERY_CHARS
    session.err = io.StringIO()
    assert session.handle("\x00\x07\x1b ") is True and session.err.getvalue() == ""  # nothing to ask
    assert session.handle("/" + "x" * 50_000) is True
    error = session.err.getvalue().splitlines()[-1]
    assert error.startswith("error: unknown command /xxx") and len(error) < 100


# ---------------------------------------------------------------- follow-ups that change the subject


def test_names_and_subjects():
    assert names("미국이 H200 수출을 허용한 이유는?") == ["미국", "h200"]
    assert names("Why did the US allow Nvidia H200 exports?") == ["us", "nvidia", "h200"]
    assert names("美, H200 수출 깜짝 허용") == ["미국", "h200"]
    assert subject("미국이 H200 수출을 허용한 이유는?") == ["미국"]  # 이유는: a question word, not a topic
    assert subject("그럼 중국 정부는?") == ["중국", "정부"]
    assert subject("What about Huawei?") == []


def test_a_follow_up_naming_a_new_subject_replaces_the_old_one():
    asked = "미국이 H200 수출을 허용한 이유는?"
    conv = Conversation([Turn(asked, asked, "답")])
    plan = conv.standalone("그럼 중국 정부는?")
    assert plan.query == "그럼 중국 정부는? h200"  # the name carried, not 수출/허용/미국
    assert plan.avoid == ["미국"] and "ranked last" in plan.note
    same = conv.standalone("그럼 성능은?")  # no name: still about the US decision
    assert same.avoid == [] and same.query == "그럼 성능은? 미국"
    bare = conv.standalone("왜?")  # nothing of its own: the whole previous question carries
    assert bare.query == "왜? 미국 h200 수출 허용" and bare.avoid == []
    english = Conversation([Turn("Why did the US allow H200 exports?", "Why did the US allow H200 exports?", "")])
    plan = english.standalone("What about Huawei?")
    assert plan.query == "What about Huawei? us" and plan.avoid == []


def test_steered_search_ranks_the_replaced_subject_last(lexical_index):
    retriever = Retriever(store.load(lexical_index.index_dir), lexical_index)
    plain = retriever.search("중국 정부 h200", 5, "lexical").hits
    steered = _Steered(retriever, ["미국"]).search("중국 정부 h200", 5, "lexical").hits
    assert "미국" in plain[0].text  # the US-side passage would lead
    assert [h.rank for h in steered] == [1, 2, 3, 4, 5]
    assert not any({"미국", "미"} & set(tokenize(h.text)) for h in steered)  # 미 행정 당국: the US too


def test_follow_up_about_china_cites_the_china_side(session):
    session.handle("미국이 H200 수출을 허용한 이유는?")
    first = {c.chunk_id for c in session.last.citations}
    assert "000-5cafd9bf:p04" in first
    session.handle("그럼 중국 정부는?")
    answer = session.last
    cited = {c.chunk_id for c in answer.citations}
    assert "000-5cafd9bf:p09" in cited and "승인 절차" in answer.answer  # China plans approval for buyers
    assert not cited & first and "미국 정부는" not in answer.answer  # not the US side again
    assert "passages on “미국” ranked last" in session.err.getvalue()
