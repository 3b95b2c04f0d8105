"""Property-based tests: the cleaner, sentence splitter, chunker and tokenizer on arbitrary Unicode."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragqa.chunking import chunk_article, split_paragraph
from ragqa.corpus import build_articles, clean_lines
from ragqa.lexical import sentence_spans, tokenize
from ragqa.schema import Article

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
NEWSY = st.text(
    # any character a decoded file can hold (lone surrogates cannot: the reader never produces them)
    alphabet=st.one_of(HANGUL, st.sampled_from(list("  .,?!\"'()%·…\n0123456789ABCxyz中美")), st.characters(codec="utf-8")),
    max_size=600,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@FAST
@given(NEWSY)
def test_cleaner_never_crashes_and_keeps_or_drops_every_line(text):
    lines = text.split("\n")
    kept, dropped = clean_lines(lines)
    assert len([k for k in kept if k]) + len(dropped) == len([ln for ln in lines if ln.strip()])


@FAST
@given(NEWSY)
def test_articles_are_well_formed(text):
    for article in build_articles(text, "doc"):
        assert article.paragraphs and all(p.strip() for p in article.paragraphs)
        assert article.doc_id.startswith("doc")


@FAST
@given(NEWSY)
def test_sentence_spans_cover_the_text_exactly_once_in_order(text):
    spans = sentence_spans(text)
    if text:
        assert spans[0][0] == 0 and spans[-1][1] == len(text)
        assert all(a < b for a, b in spans) and all(b == c for (_, b), (c, _) in zip(spans, spans[1:]))


@FAST
@given(st.lists(NEWSY.filter(lambda s: s.strip()), min_size=1, max_size=5), st.integers(min_value=40, max_value=300))
def test_chunks_cover_the_article_once_in_order_with_unique_stable_ids(paragraphs, budget):
    article = Article(doc_id="d", source="d.txt", paragraphs=[p.strip() for p in paragraphs])
    chunks = chunk_article(article, budget)
    assert squash("".join(c.text for c in chunks)) == squash("".join(article.paragraphs))
    ids = [c.chunk_id for c in chunks]
    assert len(set(ids)) == len(ids)
    assert [(c.chunk_id, c.hash) for c in chunk_article(article, budget)] == [(c.chunk_id, c.hash) for c in chunks]
    for p in article.paragraphs:
        assert squash("".join(split_paragraph(p, budget))) == squash(p)


@FAST
@given(NEWSY)
def test_tokenizer_never_crashes_and_gives_clean_tokens(text):
    tokens = tokenize(text)
    assert all(t and not t.isspace() and t == t.strip() for t in tokens)
    assert tokens == tokenize(text)  # deterministic
