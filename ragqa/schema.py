"""Typed records shared by every step of the pipeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    # each model's validator is built on its first use, not at import: a search builds 2 of the 7 (~20 ms saved)
    model_config = ConfigDict(defer_build=True)


class Article(_Record):
    doc_id: str
    source: str  # file path as given/discovered
    title: str | None = None
    paragraphs: list[str]
    dropped: list[str] = Field(default_factory=list)  # boilerplate lines removed by the cleaner

    @property
    def display_title(self) -> str:
        if self.title:
            return self.title
        first = self.paragraphs[0] if self.paragraphs else self.doc_id
        return first if len(first) <= 60 else first[:59].rstrip() + "…"


class Chunk(_Record):
    chunk_id: str
    doc_id: str
    text: str
    hash: str  # content hash of text; decides whether a chunk must be re-embedded


class Hit(_Record):
    rank: int
    chunk_id: str
    doc_id: str
    score: float
    text: str
    title: str


class SearchResult(_Record):
    query: str
    mode: str  # the mode actually used
    hits: list[Hit]
    notes: list[str] = Field(default_factory=list)


class AnswerSentence(_Record):
    text: str
    citations: list[str]
    quote: str | None = None  # the model's verbatim evidence, asked for when answer and sources differ in language
    # True: the cited passages back the sentence; False: they don't; None: could not be checked.
    supported: bool | None = None
    reason: str | None = None


class Citation(_Record):
    chunk_id: str
    doc_id: str
    title: str
    text: str


class Answer(_Record):
    question: str
    answer: str
    answerable: bool
    backend: Literal["llm", "extractive"]
    language: Literal["ko", "en"]
    mode: str
    sentences: list[AnswerSentence]
    citations: list[Citation]
    retrieved: list[dict]
    context: list[str] = Field(default_factory=list)  # chunk IDs shown to the LLM (within the prompt budget)
    timings: dict[str, float]
    notes: list[str] = Field(default_factory=list)
