"""Engine: one index and its models, opened once; every front end (CLI, REPL, eval, Python) is built on it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .errors import IndexMissing, ModelUnavailable

Notify = Callable[[str], None]


class Engine:
    """Open an index, search it, answer questions from it, (re)build it.

        with Engine(index_dir="index", llm="none") as engine:
            print(engine.ask("Why did the US allow H200 exports?").answer)

    Settings come as a `Settings` object or as keyword overrides of the RAGQA_* environment. The index is
    loaded on first use (and built from the seeds folder when there is none and `build_missing` is set);
    the embedding model and the LLM are loaded lazily, once per Engine. `notify` receives one-line notes
    meant for a person (a model being downloaded, an index being built). `embedder` (an object with the
    embed.Embedder protocol) replaces the configured embedding model for building and searching.
    """

    def __init__(self, settings=None, *, notify: Notify | None = None, build_missing: bool = True, embedder=None,
                 **overrides):
        from .config import load_settings

        self.settings = settings if settings is not None else load_settings(**overrides)
        if settings is not None and overrides:
            self.settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        self.notify: Notify = notify or (lambda _msg: None)
        self.build_missing = build_missing
        self.embedder = embedder
        self.progress = None  # a front end may set a progress callback for builds started on first use
        self._index = None
        self._retriever = None
        self._llm = None
        self._llm_note: str | None = None
        self._llm_opened = False

    # ------------------------------------------------------------ what the user chose

    def chose(self, field: str) -> bool:
        """Whether the user set `field` (as an argument or a RAGQA_* variable) rather than taking the default."""
        return field in self.settings.model_fields_set

    # ------------------------------------------------------------ the index

    def index(self, paths: list[Path] | tuple = (), *, replace: bool = False, strict: bool = False, progress=None,
              lock_wait: float | None = None, on_wait: Notify | None = None):
        """Build or bring up to date the index (see `build.build_index`); returns its BuildReport."""
        from .build import build_index

        report = build_index(
            [Path(p) for p in paths], self.settings, embed_explicit=self.chose("embed_model"), progress=progress, strict=strict,
            lock_wait=lock_wait, on_wait=on_wait, embedder=self.embedder, replace=replace,
        )
        self._index = self._retriever = None  # the next search opens the new generation
        return report

    @property
    def opened(self):
        """The loaded index (store.Index)."""
        if self._index is None:
            from . import store

            try:
                self._index = store.load(self.settings.index_dir)
            except IndexMissing:
                if not self.build_missing:
                    raise
                seeds = self.settings.seeds_dir
                if not seeds.is_dir():
                    raise IndexMissing(
                        f"no index in {self.settings.index_dir.absolute()}: index your articles first with "
                        "`ragqa index PATH/TO/ARTICLES`, or point --index-dir (RAGQA_INDEX_DIR) at an existing index"
                    ) from None
                self.notify(f"no index in {self.settings.index_dir} yet: building one from {seeds}/ first")
                try:
                    report = self.index([seeds], progress=self.progress)
                finally:
                    if hasattr(self.progress, "close"):  # a live progress bar ends with the build
                        self.progress.close()
                if report.dense_note:
                    self.notify(f"note: lexical-only index — {report.dense_note}")
                self._index = store.load(self.settings.index_dir)
        return self._index

    @property
    def retriever(self):
        if self._retriever is None:
            from .retrieve import Retriever

            self._retriever = Retriever(
                self.opened, self.settings, embedder=self.embedder, embed_explicit=self.chose("embed_model")
            )
        return self._retriever

    def load_embedder(self) -> str | None:
        """Load the embedding model now rather than on the first question; returns why not, if it cannot be."""
        if self.retriever.has_dense:
            try:
                self.retriever.embedder()
            except ModelUnavailable as e:
                return str(e)
        return None

    # ------------------------------------------------------------ the LLM

    @property
    def llm(self):
        """The local LLM, or None (extractive answers); opened once. `llm_note` says why there is none."""
        if not self._llm_opened:
            from .answer import open_llm

            self._llm, self._llm_note = open_llm(self.settings, explicit=self.chose("llm"), notify=self.notify)
            self._llm_opened = True
        return self._llm

    @property
    def llm_note(self) -> str | None:
        self.llm  # noqa: B018 - opens it
        return self._llm_note

    # ------------------------------------------------------------ questions

    def search(self, query: str, k: int | None = None, mode: str | None = None):
        """The passages that best match `query` (a SearchResult)."""
        return self.retriever.search(query, k, mode)

    def ask(self, question: str, k: int | None = None, mode: str | None = None, on_text=None,
            search_query: str | None = None):
        """An Answer to `question`: written by the LLM, or quoted from the articles; every sentence cited."""
        from .answer import ask

        return ask(
            question, self.retriever, self.settings, llm=self.llm, k=k, mode=mode, on_text=on_text,
            llm_note=self.llm_note, search_query=search_query,
        )

    # ------------------------------------------------------------ lifetime

    def close(self) -> None:
        if self._llm is not None and hasattr(self._llm, "close"):
            self._llm.close()
        self._index = self._retriever = self._llm = None
        self._llm_opened = False

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
