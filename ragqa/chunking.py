"""Paragraphs -> Chunks with stable IDs; long paragraphs split at sentence boundaries."""

from __future__ import annotations

import hashlib
import math
import re
from functools import partial

from .schema import Article, Chunk

# 2: sentences end at line breaks; English split by its own rules; >20k-char paragraphs by punctuation alone.
# 3: Korean sentences found in MeCab-ko's morphemes (Kiwi's before)
CHUNKER_VERSION = 3

_HAN = "\uac00-\ud7a3\u3131-\u318e\u3400-\u9fff\uf900-\ufaff"  # Hangul syllables and letters, CJK
_LATIN_WORD = re.compile(r"[A-Za-z]+")
# approx_tokens counts one token for each Hangul/CJK character, digit (\d) and punctuation mark ([^\w\s]) without
# a match per character: that is every character but ASCII letters, _ and spaces, and other scripts' letters and
# spaces (é, ア, a no-break space), which are few in news and found here.
_ASCII_COUNTED = bytes(c for c in range(128) if re.match(r"\d|[^\w\s]", chr(c)))
_UNCOUNTED = re.compile(rf"[^\x00-\x7f{_HAN}\d\W]|[^\x00-\x7f\S]")


# Qwen2.5's byte-level BPE over the seed articles: 1.37 characters per token (what approx_tokens mimics).
CHARS_PER_TOKEN = 1.37


def approx_tokens(text: str) -> int:
    """LLM tokens of `text`, estimated without a tokenizer.

    Calibrated on Qwen2.5's byte-level BPE over the seed articles (1.37 characters per token): each
    Hangul/CJK character ~1 token, each digit 1 (Qwen splits numbers into digits), each punctuation mark 1,
    each Latin word ~1.3.
    """
    singles, words = _counts(text)
    return math.ceil(singles + 1.3 * words)


def _counts(text: str) -> tuple[int, int]:
    """(Hangul/CJK characters + digits + punctuation marks, Latin words) of `text`."""
    ascii_uncounted = len(text.encode("ascii", "ignore").translate(None, _ASCII_COUNTED))
    return len(text) - ascii_uncounted - len(_UNCOUNTED.findall(text)), len(_LATIN_WORD.findall(text))


def content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def chunk_id(doc_id: str, paragraph: int, part: int | None = None) -> str:
    """'000-5cafd9bf:p03', or '000-5cafd9bf:p03.2' for the second part of a split paragraph."""
    return f"{doc_id}:p{paragraph:02d}" + (f".{part}" if part else "")


def split_paragraph(text: str, max_tokens: int) -> list[str]:
    """Consecutive pieces of `text`, each within `max_tokens` where sentences allow, cut between sentences."""
    if approx_tokens(text) <= max_tokens:
        return [text]
    return [text[a:b] for a, b in _pieces(text, _sentence_spans(text), max_tokens)]


def _pieces(text: str, spans: list[tuple[int, int]], max_tokens: int) -> list[tuple[int, int]]:
    """(start, end) of each piece of a paragraph over budget, given its sentence spans; stripped, none empty."""
    total = approx_tokens(text)
    units: list[tuple[int, int, int]] = []  # sentences (or parts of one over budget) and their tokens
    for a, b in spans:
        n = approx_tokens(text[a:b])
        if n <= max_tokens:
            units.append((a, b, n))
        else:
            units.extend((s, e, approx_tokens(text[s:e])) for s, e in _hard_split(text, a, b, max_tokens))
    parts = math.ceil(total / max_tokens)
    target = total / parts
    cuts: list[tuple[int, int]] = []
    start, size = units[0][0], 0
    for a, b, n in units:
        if size and (size + n > max_tokens or size >= target):
            cuts.append((start, a))
            start, size = a, 0
        size += n
    cuts.append((start, len(text)))
    out = []
    for a, b in cuts:
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            a += len(piece) - len(piece.lstrip())
            out.append((a, a + len(stripped)))
    return out


# Beyond this size (a scraped page of megabytes without a line break) a paragraph is not analysed for its
# sentences: it is cut after sentence-final punctuation (and closing quotes) followed by a space, and at line
# breaks, in one linear pass.
KOREAN_SENTENCE_CHARS = 20_000
_SENTENCE_END = re.compile(r"[.!?。…][\"'”’」』)\]]*\s+|\n\s*")


def _splits_korean(text: str) -> bool:
    from .lexical import splits_korean

    return len(text) <= KOREAN_SENTENCE_CHARS and splits_korean(text)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    if len(text) <= KOREAN_SENTENCE_CHARS:
        from .lexical import sentence_spans

        return sentence_spans(text)
    starts = [0] + [m.end() for m in _SENTENCE_END.finditer(text) if m.end() < len(text)]
    return list(zip(starts, starts[1:] + [len(text)]))


def _hard_split(text: str, a: int, b: int, max_tokens: int) -> list[tuple[int, int]]:
    """A sentence longer than the budget is cut at spaces (or anywhere, for unbroken text)."""
    out, start, size = [], a, 0
    for m in re.finditer(r"\S+\s*", text[a:b]):
        n = approx_tokens(m.group())
        if size and size + n > max_tokens:
            out.append((start, a + m.start()))
            start, size = a + m.start(), 0
        size += n
    out.append((start, b))
    # A single "word" over budget (no spaces at all) is cut every `max_tokens` characters.
    fine: list[tuple[int, int]] = []
    for s, e in out:
        cuts = _cuts(text, s, e, max_tokens)
        fine.extend((c, c + max_tokens) for c in range(s, cuts, max_tokens))
        fine.append((cuts, e))
    return fine


def _cuts(text: str, s: int, e: int, step: int) -> int:
    """Where the last piece starts when text[s:e] is cut every `step` characters while the rest is over `step`
    tokens and `step` characters: the loop `while approx_tokens(text[s:e]) > step and e - s > step: s += step`,
    in linear time. The rest's tokens only shrink as `s` advances, so the starts are tried from the last one
    back, counting each piece once (a Latin word split by a cut counts once in the rest)."""
    ints, words, nxt = 0, 0, e
    last = s + (e - s - step - 1) // step * step  # the last start that leaves more than `step` characters
    for start in range(last, s - 1, -step):
        piece = text[start:nxt]
        singles, latin = _counts(piece)
        ints, words = ints + singles, words + latin
        if nxt < e and text[nxt - 1:nxt + 1].isascii() and text[nxt - 1:nxt + 1].isalpha():
            words -= 1
        if math.ceil(ints + 1.3 * words) > step:
            return start + step
        nxt = start
    return s


def chunk_article(article: Article, max_tokens: int) -> list[Chunk]:
    return analyse_articles([article], max_tokens)[0][0]


def chunk_articles(articles: list[Article], max_tokens: int) -> list[Chunk]:
    return [c for chunks, _ in analyse_articles(articles, max_tokens) for c in chunks]


def _korean_pieces(text: str, max_tokens: int) -> tuple[list[tuple[int, int]], list[list[str]]]:
    """The pieces of a Korean paragraph over budget and each piece's tokens, from one analysis."""
    from .lexical import korean_sentences, tokens_between

    spans, morphs = korean_sentences(text)
    ranges = _pieces(text, spans, max_tokens)
    return ranges, [tokens_between(morphs, a, b) for a, b in ranges]


def _paragraph(text: str, max_tokens: int) -> tuple[list[tuple[int, int]], list[list[str]] | None] | None:
    """None for a paragraph within budget; else its pieces, with their tokens if it was split as Korean."""
    if approx_tokens(text) <= max_tokens:
        return None
    if _splits_korean(text):
        return _korean_pieces(text, max_tokens)
    return _pieces(text, _sentence_spans(text), max_tokens), None


def analyse_articles(articles: list[Article], max_tokens: int) -> list[tuple[list[Chunk], list[list[str] | None]]]:
    """Each article's chunks, and each chunk's index tokens where they came with the chunking: a Korean
    paragraph over budget is split into sentences by the same analysis that gives its tokens, so it is
    analysed once. Other chunks (paragraphs within budget, English ones) get None: the build tokenizes them,
    unless the previous index already has their text. Paragraphs are measured and split in worker processes
    when there are many (`workers.analyse`) while this one makes the chunks of those done."""
    from . import workers

    paragraphs = [(i, n, text) for i, article in enumerate(articles) for n, text in enumerate(article.paragraphs, 1)]
    # Tokens wait here until the build numbers them: one string per distinct token keeps a million chunks' worth
    # at a pointer each.
    interned: dict[str, str] = {}
    out: list[tuple[list[Chunk], list]] = [([], []) for _ in articles]
    texts = [text for _, _, text in paragraphs]
    for start, end, results in workers.analyse(partial(_paragraph, max_tokens=max_tokens), texts):
        for (i, n, text), result in zip(paragraphs[start:end], results):
            chunks, toks = out[i]
            doc_id = articles[i].doc_id
            if result is None:
                chunks.append(Chunk(chunk_id=chunk_id(doc_id, n), doc_id=doc_id, text=text, hash=content_hash(text)))
                toks.append(None)
                continue
            ranges, tokens = result
            for j, (a, b) in enumerate(ranges, 1):
                piece = text[a:b]
                cid = chunk_id(doc_id, n, j if len(ranges) > 1 else None)
                chunks.append(Chunk(chunk_id=cid, doc_id=doc_id, text=piece, hash=content_hash(piece)))
                toks.append([interned.setdefault(t, t) for t in tokens[j - 1]] if tokens else None)
    return out
