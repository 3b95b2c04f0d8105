"""Korean-aware tokenization and sentence splitting (kiwipiepy) and BM25 (bm25s)."""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

TOKENIZER_VERSION = "kiwi-content-morphs-2"

# Content morphemes: nouns, numerals, foreign words, numbers, Hanja, roots, verb and adjective stems.
# Particles (J*), endings (E*) and affixes (XS*) are what make "알리바바는" differ from "알리바바가".
_KEEP_TAGS = ("NNG", "NNP", "NNB", "NR", "SL", "SN", "SH", "XR", "VV", "VA")
_KO_STOP = {
    "하", "있", "되", "않", "같", "없", "보", "것", "수", "등", "때", "중", "바", "데", "뿐", "따르", "위하",
    "대하", "통하", "관하", "이", "그", "저", "어떻", "무엇", "왜", "누구", "언제", "어디", "얼마나", "무슨",
}
_EN_STOP = set(
    "a an the and or but if of to in on at by for with from as is are was were be been being do does did "
    "what which who whom whose why how when where that this these those it its they them their he she his her "
    "we you i me my our your not no so than then there here about into over after before under up down out "
    "can could would should will shall may might must has have had any all some more most such only also very "
    "according said say says tell told".split()
)
# Korean headlines abbreviate countries and parties to one Hanja: 中 테크업계, 美 추월.
_HANJA_ABBR = {
    "中": "중국", "美": "미국", "日": "일본", "韓": "한국", "北": "북한", "英": "영국", "獨": "독일",
    "佛": "프랑스", "露": "러시아", "印": "인도", "與": "여당", "野": "야당",
}

_lock = threading.Lock()


@lru_cache(maxsize=1)
def kiwi():
    """The shared Kiwi analyzer (about 1 s to load, so loaded once and only when needed)."""
    from kiwipiepy import Kiwi

    with _lock:
        # The typo and multi-word dictionaries double load time and do not help edited news text.
        return Kiwi(load_typo_dict=False, load_multi_dict=False)


def _norm(form: str, tag: str) -> str | None:
    if tag == "SN":
        return form.replace(",", "")
    if tag == "SL":
        w = form.lower()
        return None if w in _EN_STOP else w
    if tag == "SH":
        return _HANJA_ABBR.get(form, form)
    base = tag.split("-")[0]
    if base not in _KEEP_TAGS or form in _KO_STOP:
        return None
    return form


def _tokens_of(morphs) -> list[str]:
    out: list[str] = []
    run: list = []  # touching Latin/number morphemes: "H200" arrives as H/SL + 200/SN
    nouns: list = []  # touching nouns of one word

    def flush():
        if len(run) == 1:
            tok = _norm(run[0].form, run[0].tag)
            if tok:
                out.append(tok)
        elif run:
            out.append("".join(m.form for m in run).lower().replace(",", ""))
        run.clear()

    def flush_nouns():
        # Kiwi splits an unknown name differently in different contexts ("브로드컴도" -> 브로드컴, but
        # "브로드컴은" -> 브로드 + 컴), so a word's touching nouns are also indexed joined together.
        if len(nouns) > 1:
            out.append("".join(m.form for m in nouns))
        nouns.clear()

    for m in morphs:
        if m.tag in ("NNG", "NNP"):
            if nouns and m.start != nouns[-1].start + nouns[-1].len:
                flush_nouns()
            nouns.append(m)
        else:
            flush_nouns()
        if m.tag in ("SL", "SN"):
            if run and m.start != run[-1].start + run[-1].len:
                flush()
            run.append(m)
            continue
        flush()
        tok = _norm(m.form, m.tag)
        if tok:
            out.append(tok)
    flush()
    flush_nouns()
    return out


def tokenize(text: str) -> list[str]:
    """Content tokens of one text: '알리바바는 H200을' -> ['알리바바', 'h200']."""
    if not text.strip():
        return []
    return _tokens_of(kiwi().tokenize(text))


def predicates(text: str) -> set[str]:
    """The verb and adjective stems of a text ('만든' -> '만들'): words a paraphrase often replaces."""
    return {m.form for m in kiwi().tokenize(text) if m.tag.split("-")[0] in ("VV", "VA")} if text.strip() else set()


def concepts(tokens: list[str]) -> list[str]:
    """Tokens with the parts of a joined noun dropped (['브로드', '컴', '브로드컴'] -> ['브로드컴']), unique."""
    uniq = list(dict.fromkeys(tokens))
    return [t for t in uniq if not any(t != u and t in u and _HANGUL_WORD.fullmatch(u) for u in uniq)]


def appears(token: str, tokens: set[str], text: str) -> bool:
    """Whether `token` occurs in a text given as its token set and raw string; Hangul words of two or more
    syllables also count when they appear inside a longer word (segmentation differs between contexts)."""
    return token in tokens or (len(token) >= 2 and bool(_HANGUL_WORD.fullmatch(token)) and token in text)


_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")


def tokenize_many(texts: list[str]) -> list[list[str]]:
    """Content tokens of many texts, analysed in Kiwi's worker threads."""
    if not texts:
        return []
    return [_tokens_of(r) for r in kiwi().tokenize(texts)]


SENTENCE_WINDOW = 10_000


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Contiguous (start, end) spans of the sentences of `text`; together they cover it exactly."""
    if not text.strip():
        return [(0, len(text))] if text else []
    if len(text) > 2 * SENTENCE_WINDOW:
        # Kiwi analyses a whole paragraph at once; a megabyte without a line break (a scraped page) is
        # split at whitespace into windows first, so time and memory stay linear.
        spans, start = [], 0
        while start < len(text):
            end = min(len(text), start + SENTENCE_WINDOW)
            if end < len(text):
                cut = text.rfind(" ", start + SENTENCE_WINDOW // 2, end)
                end = cut + 1 if cut > 0 else end
            spans.extend((a + start, b + start) for a, b in sentence_spans(text[start:end]))
            start = end
        return spans
    starts = sorted({s.start for s in kiwi().split_into_sents(text)} | {0})
    starts = [s for s in starts if 0 <= s < len(text)]
    ends = starts[1:] + [len(text)]
    return list(zip(starts, ends))


def split_sentences(text: str) -> list[str]:
    return [t for a, b in sentence_spans(text) if (t := text[a:b].strip())]


def is_korean(text: str) -> bool:
    """True when Hangul outnumbers Latin letters (decides the answer language)."""
    hangul = len(re.findall(r"[\uac00-\ud7a3\u3131-\u318e]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return hangul > 0 and hangul * 3 >= latin


# ---------------------------------------------------------------- BM25


class BM25:
    """Okapi BM25 (Lucene's IDF) with every (token, chunk) score precomputed in a sparse column layout:
    the chunks holding token t are indices[indptr[t]:indptr[t+1]], with their scores in data[...].

    Built with a few vectorized numpy passes from cached token ids, so rebuilding it after adding one article
    to a million chunks takes seconds; stored as .npy files and memory-mapped on load.
    """

    K1, B = 1.5, 0.75

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, num_docs: int, vocab=None):
        self.indptr, self.indices, self.data = indptr, indices, data
        self.num_docs = num_docs
        self.vocab: dict[str, int] = vocab if vocab is not None else {}

    @classmethod
    def build(cls, flat: np.ndarray, offsets: np.ndarray, vocab_size: int, vocab=None) -> "BM25":
        """From all chunks' token ids concatenated (`flat`) and each chunk's start in it (`offsets`, n+1)."""
        n = len(offsets) - 1
        lengths = np.diff(offsets)
        docs = np.repeat(np.arange(n, dtype=np.int64), lengths)
        pairs, tf = np.unique(flat.astype(np.int64) * max(n, 1) + docs, return_counts=True)
        tokens, rows = pairs // max(n, 1), pairs % max(n, 1)  # sorted by token, then chunk
        df = np.bincount(tokens, minlength=vocab_size)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        avgdl = float(lengths.mean()) if n and lengths.sum() else 1.0
        norm = cls.K1 * (1 - cls.B + cls.B * lengths / avgdl)
        data = (idf[tokens] * tf / (tf + norm[rows])).astype(np.float32)
        indptr = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        return cls(indptr, rows.astype(np.int32), data, n, vocab)

    FILES = ("bm25_indptr", "bm25_indices", "bm25_data")

    def save(self, directory: Path) -> None:
        for name, arr in zip(self.FILES, (self.indptr, self.indices, self.data)):
            np.save(directory / f"{name}.npy", arr, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, num_docs: int, vocab=None) -> "BM25":
        arrays = [np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in cls.FILES]
        indptr, indices, data = arrays
        if len(indices) != len(data) or int(indptr[-1]) != len(data):
            raise ValueError(f"BM25 arrays disagree ({len(indices)} indices, {len(data)} scores, {int(indptr[-1])} expected)")
        return cls(indptr, indices, data, num_docs, vocab)

    def ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab[t] for t in tokens if t in self.vocab and self.vocab[t] < len(self.indptr) - 1]

    def scores(self, tokens: list[str]) -> np.ndarray:
        """Score of every chunk; a token repeated in the query counts again (used to weight follow-ups)."""
        spans = [(int(self.indptr[t]), int(self.indptr[t + 1])) for t in self.ids(tokens)]
        spans = [(a, b) for a, b in spans if b > a]
        if not spans:
            return np.zeros(self.num_docs, dtype=np.float32)
        rows = np.concatenate([self.indices[a:b] for a, b in spans])
        weights = np.concatenate([self.data[a:b] for a, b in spans])
        return np.bincount(rows, weights=weights, minlength=self.num_docs).astype(np.float32)

    def idf(self, token: str) -> float:
        """Lucene's BM25 IDF; a token no chunk contains gets the maximum."""
        tid = self.vocab.get(token)
        df = int(self.indptr[tid + 1] - self.indptr[tid]) if tid is not None and tid < len(self.indptr) - 1 else 0
        return float(np.log1p((self.num_docs - df + 0.5) / (df + 0.5)))

    def search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """Top-k (row, score) pairs with a positive score, best first."""
        return top_k(self.scores(tokens), k)


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Rows with the k highest positive scores, best first (ties broken by row order)."""
    positive = np.flatnonzero(scores > 0)
    if positive.size == 0:
        return []
    if positive.size > k:
        part = np.argpartition(-scores[positive], k - 1)[:k]
        positive = positive[part]
    order = sorted(positive.tolist(), key=lambda r: (-scores[r], r))
    return [(r, float(scores[r])) for r in order]
