"""The interactive loop: models loaded once, follow-up questions, commands, errors that never end the session."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import MODES
from .errors import RagqaError, UsageError
from .extractive import QUESTION_WORDS
from .lexical import tokenize
from .retrieve import MAX_QUERY_CHARS, clean_query

HELP = """Ask a question in English or Korean, or use a command:
  /sources        the full passages the last answer cites, and every passage retrieved
  /k N            number of passages to retrieve (now {k})
  /mode M         hybrid, dense or lexical (now {mode})
  /reset          forget the conversation (follow-ups start fresh)
  /help           this text
  /quit           leave (Ctrl-D works too; Ctrl-C cancels the answer being written)"""

MAX_TURNS = 3  # conversation kept for follow-ups; older turns are dropped
_READ_CAP = 4 * MAX_QUERY_CHARS  # characters of a line looked at (control characters and spaces shrink it)

# A question that opens like this continues the conversation ("그럼 중국 정부는 어떻게 반응했어?").
_FOLLOW_UP = re.compile(
    r"^\s*(그럼|그러면|그렇다면|그래서|그리고|그런데|또|또한|그|이|저|거기|그곳|그들|그것|이것|그건|이건|그게|"
    r"and|so|then|what about|how about|also|it|its|they|their|them|that|this|those|these|he|she)\b",
    re.IGNORECASE,
)


def history_path(settings) -> Path | None:
    """Per-user state file (XDG_STATE_HOME, else ~/.local/state), overridable with RAGQA_HISTORY_FILE."""
    try:
        if settings.history_file:
            return settings.history_file.expanduser()
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    except RuntimeError:  # no HOME and no passwd entry (a bare container user)
        return None
    return base / "ragqa" / "history"


def open_history(path: Path | None) -> tuple[Path | None, str | None]:
    """(the history file, None) when it can be read and appended to, else (None, why not)."""
    if path is None:
        return None, "no home folder to keep it in; set RAGQA_HISTORY_FILE"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
        with open(path, "rb"):
            pass
    except OSError as e:
        return None, f"{path}: {e.strerror or e}"
    return path, None


def _no_history_note(why: str) -> str:
    return f"note: history is not saved ({why}); set RAGQA_HISTORY_FILE to a writable file to keep it"


def file_history(path: Path, note: Callable[[str], None]):
    """prompt_toolkit's FileHistory that goes on without history when the file stops working mid-session
    (disk full, file replaced by a folder) and says so once."""
    from prompt_toolkit.history import FileHistory

    class _History(FileHistory):
        broken = False

        def load_history_strings(self):
            try:
                return list(super().load_history_strings())
            except OSError:
                return []

        def store_string(self, string: str) -> None:
            if self.broken:
                return
            try:
                super().store_string(string)
            except OSError as e:
                self.broken = True
                note(_no_history_note(f"{path}: {e.strerror or e}"))

    return _History(str(path))


@dataclass
class Turn:
    question: str
    query: str
    answer: str


@dataclass
class Plan:
    """How one question is asked: the question as searched for and answered (a follow-up completed from
    the conversation), the words whose passages rank last (a subject it replaced), what to tell the user."""

    query: str
    avoid: list[str] = field(default_factory=list)
    note: str | None = None


# A follow-up keeps the names of the conversation (proper nouns, Hanja, capitalized Latin words and codes
# such as H200); common nouns and verbs ("수출을 허용한") belong to the earlier question's own predicate and
# would outvote the follow-up's words.
_NOUN_TAGS = ("NNP", "NNG", "NNB", "NR", "SL", "SN", "SH", "XR")
_SUBJECT_PARTICLES = ("JKS", "JX")  # 이/가, 은/는/도: what marks a Korean question's subject or topic
_HANGUL = re.compile(r"[\uac00-\ud7a3]+")


def _morphs(text: str):
    from .lexical import morphemes

    return [(m.form, m.tag, m.start, m.len) for m in morphemes(text)]


def names(text: str) -> list[str]:
    """The content tokens of `text` that are names: '미국이 H200 수출을 허용한 이유는?' -> ['미국', 'h200']."""
    from .lexical import _HANJA_ABBR

    parts = set()
    for form, tag, _, _ in _morphs(text):
        if tag == "NNP" or (tag == "SL" and form != form.lower()):
            parts.add(form.lower())
        elif tag == "SH":
            parts.add(_HANJA_ABBR.get(form, form))
    return [
        t for t in dict.fromkeys(tokenize(text))
        if t in parts
        or (re.search(r"[a-z]", t) and re.search(r"\d", t))  # H200, MI308
        or any(len(p) > 1 and _HANGUL.fullmatch(p) and p in t for p in parts)  # 브로드 + 컴 -> 브로드컴
    ]


def subject(text: str) -> list[str]:
    """Content tokens of the first subject or topic of a Korean question: '그럼 중국 정부는?' -> ['중국',
    '정부']; the question word of '…이유는?' is no subject."""
    run: list = []
    for _form, tag, start, length in _morphs(text):
        if tag in _NOUN_TAGS:
            run.append((start, length))
            continue
        if tag in _SUBJECT_PARTICLES and run:
            words = [t for t in tokenize(text[run[0][0]: sum(run[-1])]) if t not in QUESTION_WORDS]
            if words:
                return words
        run = []
    return []


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def add(self, turn: Turn) -> None:
        self.turns = (self.turns + [turn])[-MAX_TURNS:]

    def is_follow_up(self, question: str) -> bool:
        if not self.turns:
            return False
        return bool(_FOLLOW_UP.match(question)) or len(tokenize(question)) <= 1

    def standalone(self, question: str, llm=None) -> Plan:
        """How to ask `question` after this conversation: rewritten by the LLM when one is loaded; else
        completed offline, its own words leading and the previous question lending only context.

        Offline, the question gets the names of the previous query (H200, 엔비디아), never more of them than
        it has words of its own (a bare "왜?" gets all the previous words); the extractive answer must cover
        the same words. When it puts a new name where the previous question's subject was ("미국이 …?",
        then "그럼 중국 정부는?"), that subject is left out and its passages rank last."""
        if not self.is_follow_up(question):
            return Plan(question)
        if llm is not None:
            rewritten = rewrite_with_llm(llm, self.turns, question)
            if rewritten:
                return Plan(rewritten, note=f"rewritten as “{rewritten}”")
        previous = self.turns[-1]
        own = [t for t in dict.fromkeys(tokenize(question)) if t not in QUESTION_WORDS]
        # Only a name replaces a name: "그럼 성능은?" asks about the same subject, "그럼 중국 정부는?" not.
        new_named = set(subject(question)) & set(names(question))
        replaced = [t for t in subject(previous.question) if t in names(previous.question) and t not in own]
        replaced = replaced if new_named else []
        pool = names(previous.query) if own else tokenize(previous.query)
        carried = [t for t in dict.fromkeys(pool) if t not in own and t not in replaced and t not in QUESTION_WORDS]
        carried = carried[: len(own)] if own else carried
        if not carried and not replaced:
            return Plan(question)
        notes = [f"added “{' '.join(carried)}” from the previous question"] if carried else []
        if replaced:
            notes.append(f"passages on “{' '.join(replaced)}” ranked last")
        return Plan(" ".join([question, *carried]), replaced, "; ".join(notes))


# News writes a country as one syllable next to another noun ("미 행정 당국", "중 정부"): a passage that
# says 미 is about 미국 as much as one that spells it out.
_SHORT_NAMES = {"미국": "미", "중국": "중", "일본": "일", "한국": "한", "북한": "북", "러시아": "러", "영국": "영"}


class _Steered:
    """A retriever whose hits that mention a replaced subject rank after the others: after "미국이 H200
    수출을 허용한 이유는?", "그럼 중국 정부는?" asks about China, and the passages on the US side answered
    the first question already."""

    def __init__(self, retriever, avoid: list[str]):
        self.retriever = retriever
        self.avoid = avoid + [_SHORT_NAMES[t] for t in avoid if t in _SHORT_NAMES]

    def __getattr__(self, name):
        return getattr(self.retriever, name)

    def search(self, query: str, k: int | None = None, mode: str | None = None):
        from .lexical import appears

        k = k or self.retriever.settings.top_k
        result = self.retriever.search(query, max(4 * k, 20), mode)

        def stale(hit) -> bool:
            have = set(tokenize(hit.text))
            return any(appears(t, have, hit.text) for t in self.avoid)

        ordered = sorted(result.hits, key=stale)  # stable: the search's order within each group
        hits = [h.model_copy(update={"rank": i}) for i, h in enumerate(ordered[:k], 1)]
        return result.model_copy(update={"hits": hits})


REWRITE_PROMPT = """Rewrite the user's last question so that it can be understood without the conversation.
Keep its language. Output only the rewritten question."""


def rewrite_with_llm(llm, turns: list[Turn], question: str) -> str | None:
    from .llm import grammar_for, sanitize

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
    """State of one REPL over one Engine (index and models loaded once); k and mode adjustable by commands."""

    def __init__(self, engine, out=None, err=None):
        self.engine = engine
        self.index = engine.opened
        self.retriever = engine.retriever
        self.settings = engine.settings
        self.llm = engine.llm
        self.llm_note = engine.llm_note
        self.k = self.settings.top_k
        self.mode = self.settings.mode
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
                width = render.output_width(self.out)
                self.say(render.details(self.last, show_context=True, retrieved_texts=texts, width=width).lstrip("\n"))
        else:
            raise UsageError(f"unknown command /{name[:40]}; /help lists them")
        return True

    def ask(self, question: str) -> None:
        from . import render
        from .answer import ask

        plan = self.conversation.standalone(question, self.llm)
        if plan.note:
            self.note(f"(follow-up: {plan.note})")
        stream = render.AnswerStream(self.out) if self.llm is not None and self.out.isatty() else None
        if stream:
            self.say(render.label_for_llm(self.llm.name))
        retriever = _Steered(self.retriever, plan.avoid) if plan.avoid else self.retriever

        def answer_to(q: str):
            return ask(
                q, retriever, self.settings, llm=self.llm, k=self.k, mode=self.mode, on_text=stream,
                llm_note=self.llm_note, search_query=plan.query if self.llm is None else None,
            )

        try:
            answer = answer_to(plan.query)
            if self.llm is None and not answer.answerable and plan.query != question:
                # The carried names only choose between sentences; they must not make the follow-up
                # unanswerable when a sentence covers its own words.
                answer = answer_to(question)
        except KeyboardInterrupt:
            if stream:
                stream.finish()
            self.note("(answer cancelled)")
            return
        if stream:
            stream.finish(answer)
        text = render.answer_block(
            answer, stream is not None, self.llm.name if self.llm else None, width=render.output_width(self.out)
        )
        if text:
            self.say(text)
        self.note(render.timing_line(answer))
        self.last = answer
        self.conversation.add(Turn(question, plan.query, answer.answer))

    def handle(self, line: str) -> bool:
        """One line of input; errors are reported and the session goes on. False means quit.

        A closed stdout (BrokenPipeError) is not an error to report but the end of the session: it propagates.
        """
        line = line.strip()
        if not line:
            return True
        long = len(line)
        try:
            # Cut before anything looks at every character: a pasted 10-million-character line would
            # otherwise be normalized, tokenized and scored in full.
            line, truncated = clean_query(line[:_READ_CAP])
        except UsageError:
            return True  # only control characters: nothing to ask
        if truncated:
            self.note(f"note: the line has {long:,} characters; only the first {MAX_QUERY_CHARS:,} are used")
        try:
            if line.startswith("/"):
                return self.command(line)
            self.ask(line)
        except BrokenPipeError:
            raise
        except RagqaError as e:
            self.note(f"error: {e}")
        except Exception as e:  # a model failure must not end the session
            self.note(f"error: {type(e).__name__}: {e}")
        return True


def run(session: Session) -> int:
    """Read lines until /quit or end of input; line editing and history when on a terminal."""
    session.note("ragqa — ask about your articles. /help for commands, Ctrl-D to leave.")
    path = None
    if sys.stdin.isatty():
        path, why = open_history(history_path(session.settings))
        if path is None:
            session.note(_no_history_note(why))
    if sys.stdin.isatty() and os.environ.get("TERM") != "dumb":
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        prompt = PromptSession(history=file_history(path, session.note) if path else InMemoryHistory())

        def read() -> str:
            return prompt.prompt("ragqa> ")
    elif sys.stdin.isatty():
        # A dumb terminal (an editor's shell): prompt_toolkit cannot drive it, readline can.
        import atexit
        import readline

        readline.set_history_length(1000)
        if path:
            try:
                readline.read_history_file(path)
            except OSError:
                pass

            def save() -> None:
                try:
                    readline.write_history_file(path)
                except OSError as e:
                    session.note(_no_history_note(f"{path}: {e.strerror or e}"))

            atexit.register(save)

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
