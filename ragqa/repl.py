"""The interactive loop: models loaded once, follow-up questions, commands, errors that never end the session."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import MODES
from .errors import RagqaError, UsageError
from .lexical import tokenize

HELP = """Ask a question in English or Korean, or use a command:
  /sources        the full passages the last answer cites, and every passage retrieved
  /k N            number of passages to retrieve (now {k})
  /mode M         hybrid, dense or lexical (now {mode})
  /reset          forget the conversation (follow-ups start fresh)
  /help           this text
  /quit           leave (Ctrl-D works too; Ctrl-C cancels the answer being written)"""

MAX_TURNS = 3  # conversation kept for follow-ups; older turns are dropped

# A question that opens like this continues the conversation ("그럼 중국 정부는 어떻게 반응했어?").
_FOLLOW_UP = re.compile(
    r"^\s*(그럼|그러면|그렇다면|그래서|그리고|그런데|또|또한|그|이|저|거기|그곳|그들|그것|이것|그건|이건|그게|"
    r"and|so|then|what about|how about|also|it|its|they|their|them|that|this|those|these|he|she)\b",
    re.IGNORECASE,
)


def history_path(settings) -> Path:
    """Per-user state file (XDG_STATE_HOME, else ~/.local/state), overridable with RAGQA_HISTORY_FILE."""
    if settings.history_file:
        return settings.history_file.expanduser()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "ragqa" / "history"


@dataclass
class Turn:
    question: str
    query: str
    answer: str


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def add(self, turn: Turn) -> None:
        self.turns = (self.turns + [turn])[-MAX_TURNS:]

    def is_follow_up(self, question: str) -> bool:
        if not self.turns:
            return False
        return bool(_FOLLOW_UP.match(question)) or len(tokenize(question)) <= 1

    def standalone(self, question: str, llm=None) -> tuple[str, str | None]:
        """(search query, what was added): the follow-up rewritten by the LLM when one is loaded; else the
        question, its own content words once more (they outweigh the carried ones), and the content words of
        the previous question."""
        if not self.is_follow_up(question):
            return question, None
        if llm is not None:
            rewritten = rewrite_with_llm(llm, self.turns, question)
            if rewritten:
                return rewritten, f"rewritten as “{rewritten}”"
        from .generate import _QUESTION_WORDS

        own = [t for t in tokenize(question) if t not in _QUESTION_WORDS]
        carried = [t for t in dict.fromkeys(tokenize(self.turns[-1].query)) if t not in own and t not in _QUESTION_WORDS]
        if not carried:
            return question, None
        return " ".join([question, *own, *carried]), f"added “{' '.join(carried)}” from the previous question"


REWRITE_PROMPT = """Rewrite the user's last question so that it can be understood without the conversation.
Keep its language. Output only the rewritten question."""


def rewrite_with_llm(llm, turns: list[Turn], question: str) -> str | None:
    from .generate import grammar_for, sanitize

    history = "\n".join(f"Q: {sanitize(t.question)}\nA: {sanitize(t.answer[:300])}" for t in turns)
    messages = [
        {"role": "system", "content": REWRITE_PROMPT},
        {"role": "user", "content": f"{history}\n\nLast question: {sanitize(question)}"},
    ]
    schema = {
        "type": "object", "properties": {"question": {"type": "string", "minLength": 3, "maxLength": 200}},
        "required": ["question"], "additionalProperties": False,
    }
    import json

    gen = llm.generate(llm.render(messages), grammar_for(schema), 96)
    try:
        return json.loads(gen.text, strict=False)["question"].strip() or None
    except (json.JSONDecodeError, KeyError, AttributeError):
        return None


class Session:
    """State of one REPL: index, retriever and models loaded once, settings adjustable by commands."""

    def __init__(self, index, retriever, settings, llm=None, llm_note=None, out=None, err=None):
        self.index = index
        self.retriever = retriever
        self.settings = settings
        self.llm = llm
        self.llm_note = llm_note
        self.k = settings.top_k
        self.mode = settings.mode
        self.conversation = Conversation()
        self.last = None
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def command(self, line: str) -> bool:
        """Run a /command; False means quit."""
        from . import render

        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name == "help":
            self.say(HELP.format(k=self.k, mode=self.mode))
        elif name == "k":
            if not arg.isdigit() or not 1 <= int(arg) <= 100:
                raise UsageError(f"/k needs a number from 1 to 100, got {arg or 'nothing'!r}")
            self.k = int(arg)
            self.say(f"k = {self.k}")
        elif name == "mode":
            if arg not in MODES:
                raise UsageError(f"/mode needs hybrid, dense or lexical, got {arg or 'nothing'!r}")
            if arg == "dense" and not self.retriever.has_dense:  # hybrid works: it falls back to BM25 alone
                raise RagqaError("this index is lexical-only: rebuild it with an embedding model for dense search")
            self.mode = arg
            self.say(f"mode = {self.mode}")
        elif name == "reset":
            self.conversation = Conversation()
            self.say("conversation cleared")
        elif name == "sources":
            if self.last is None:
                self.say("no answer yet")
            else:
                texts = self.index.texts_of(r["chunk_id"] for r in self.last.retrieved)
                self.say(render.details(self.last, show_context=True, retrieved_texts=texts).lstrip("\n"))
        else:
            raise UsageError(f"unknown command /{name}; /help lists them")
        return True

    def ask(self, question: str) -> None:
        from . import render
        from .answer import ask

        query, added = self.conversation.standalone(question, self.llm)
        if added:
            self.note(f"(follow-up: {added})")
        stream = render.AnswerStream(self.out) if self.llm is not None and self.out.isatty() else None
        if stream:
            self.say(render.label_for_llm(self.llm.name))
        # The LLM answers the rewritten, self-contained question; the extractive path matches the user's own
        # words against passages retrieved with the previous question's words added.
        if self.llm is not None:
            question_for_answer, search = query, None
        else:
            question_for_answer, search = question, query
        try:
            answer = ask(
                question_for_answer, self.retriever, self.settings, llm=self.llm, k=self.k, mode=self.mode,
                on_text=stream, llm_note=self.llm_note, search_query=search,
            )
        except KeyboardInterrupt:
            if stream:
                stream.finish()
            self.note("(answer cancelled)")
            return
        if stream:
            stream.finish(answer)
        text = render.answer_block(answer, stream is not None, self.llm.name if self.llm else None)
        if text:
            self.say(text)
        self.note(render.timing_line(answer))
        self.last = answer
        self.conversation.add(Turn(question, query, answer.answer))

    def handle(self, line: str) -> bool:
        """One line of input; errors are reported and the session goes on. False means quit."""
        line = line.strip()
        if not line:
            return True
        try:
            if line.startswith("/"):
                return self.command(line)
            self.ask(line)
        except RagqaError as e:
            self.note(f"error: {e}")
        except Exception as e:  # a model failure must not end the session
            self.note(f"error: {type(e).__name__}: {e}")
        return True


def run(session: Session) -> int:
    """Read lines until /quit or end of input; line editing and history when on a terminal."""
    session.note("ragqa — ask about your articles. /help for commands, Ctrl-D to leave.")
    path = history_path(session.settings)
    if sys.stdin.isatty():
        path.parent.mkdir(parents=True, exist_ok=True)
    if sys.stdin.isatty() and os.environ.get("TERM") != "dumb":
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        prompt = PromptSession(history=FileHistory(str(path)))

        def read() -> str:
            return prompt.prompt("ragqa> ")
    elif sys.stdin.isatty():
        # A dumb terminal (an editor's shell): prompt_toolkit cannot drive it, readline can.
        import atexit
        import readline

        try:
            readline.read_history_file(path)
        except OSError:
            pass
        readline.set_history_length(1000)
        atexit.register(readline.write_history_file, path)

        def read() -> str:
            return input("ragqa> ")
    else:
        def read() -> str:
            line = sys.stdin.readline()
            if not line:
                raise EOFError
            return line

    while True:
        try:
            line = read()
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            session.say()
            return 0
        if not session.handle(line):
            return 0
