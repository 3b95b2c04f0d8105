"""Korean-aware tokenization and sentence splitting (MeCab-ko with mecab-ko-dic), English stemming (Snowball)
and BM25."""

from __future__ import annotations

import re
import string
import threading
from bisect import bisect_left
from functools import cached_property, lru_cache
from operator import attrgetter
from pathlib import Path

import numpy as np

# A Korean paragraph over the chunk budget is analysed once, for its sentences and its tokens: its pieces take
# their sentences' morphemes. Version 5: MeCab-ko instead of Kiwi (10 ms to load instead of 1.2 s, ~10x the
# characters a second on one core; the gold set scores the same or better, see the README).
TOKENIZER_VERSION = "mecab-ko-content-morphs-5-snowball-en"

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
    "according said say says tell told s t".split()  # s, t: what is left of "Orion's", "don't"
)
# Snowball stems only regular forms (rises, rising -> rise), and news reports in the irregular past (rose, fell).
# Ambiguous forms stay out: "won" is also Korea's currency, "left" a direction, "found" a verb of its own.
_IRREGULAR = {
    "rose": "rise", "risen": "rise", "fell": "fall", "fallen": "fall", "grew": "grow", "grown": "grow",
    "sank": "sink", "sunk": "sink", "shrank": "shrink", "shrunk": "shrink", "swung": "swing", "slid": "slide",
    "sold": "sell", "bought": "buy", "paid": "pay", "spent": "spend", "lost": "lose", "lent": "lend",
    "made": "make", "took": "take", "taken": "take", "gave": "give", "given": "give", "came": "come",
    "went": "go", "gone": "go", "brought": "bring", "built": "build", "held": "hold", "kept": "keep",
    "led": "lead", "began": "begin", "begun": "begin", "broke": "break", "broken": "break", "struck": "strike",
    "drove": "drive", "driven": "drive", "froze": "freeze", "frozen": "freeze", "fled": "flee", "met": "meet",
    "sought": "seek", "fought": "fight", "caught": "catch", "thought": "think", "chose": "choose",
    "chosen": "choose", "wrote": "write", "written": "write", "spoke": "speak", "spoken": "speak",
    "knew": "know", "known": "know", "saw": "see", "seen": "see", "sent": "send", "meant": "mean",
    "felt": "feel", "flew": "fly", "flown": "fly", "ran": "run", "stood": "stand", "stole": "steal",
    "stolen": "steal", "threw": "throw", "thrown": "throw", "withdrew": "withdraw", "withdrawn": "withdraw",
    "overtook": "overtake", "overtaken": "overtake", "forgave": "forgive", "hid": "hide", "hidden": "hide",
    "shook": "shake", "shaken": "shake", "bore": "bear", "borne": "bear", "wore": "wear", "worn": "wear",
    "swept": "sweep", "dealt": "deal", "rebuilt": "rebuild", "undertook": "undertake", "oversaw": "oversee",
}
# Korean headlines abbreviate countries and parties to one Hanja: 中 테크업계, 美 추월.
_HANJA_ABBR = {
    "中": "중국", "美": "미국", "日": "일본", "韓": "한국", "北": "북한", "英": "영국", "獨": "독일",
    "佛": "프랑스", "露": "러시아", "印": "인도", "與": "여당", "野": "야당",
}

_local = threading.local()  # a MeCab tagger must not be shared between threads


def tagger():
    """This thread's MeCab-ko tagger over mecab-ko-dic (Lucene Nori's dictionary): about 10 ms to open, as
    the dictionary is memory-mapped, so every command can afford it."""
    t = getattr(_local, "tagger", None)
    if t is None:
        import mecab_ko

        t = _local.tagger = mecab_ko.Tagger()
    return t


class _Morph:
    """A morpheme: its form (a stem for an inflected word: 밝혔 -> 밝히), tag, and the span in the text of the
    word it came from (what `_tokens_of` reads of it)."""

    __slots__ = ("form", "len", "start", "tag")

    def __init__(self, form: str, tag: str, start: int, length: int):
        self.form, self.tag, self.start, self.len = form, tag, start, length


def morphemes(text: str) -> list[_Morph]:
    """MeCab-ko's morphemes of `text` with their offsets in it. An inflected or pre-analysed word (했 =
    하 + 았) gives each of its morphemes the word's span."""
    out: list[_Morph] = []
    if not text.strip():
        return out
    append = out.append
    pos = 0
    find = text.find
    # MeCab reads a C string: a NUL would end the text early (same length, so offsets stay right)
    parsed = tagger().parse(text.replace("\0", " ") if "\0" in text else text)
    for line in parsed.split("\n"):
        surface, tab, feature = line.partition("\t")
        if not tab:  # EOS
            break
        start = find(surface, pos)
        if start < 0:
            start = pos
        n = len(surface)
        pos = start + n
        f = feature.split(",", 8)
        tag = f[0]
        if len(f) < 8 or f[4] in ("*", "Compound") or f[7] == "*":
            # a dictionary compound stays whole, as news writes it: 반도체 (not 반 + 도체), 창업자, 동영상
            append(_Morph(surface, _TAGS.get(tag, tag), start, n))
        else:  # Inflect, Preanalysis: 밝혔 = 밝히/VV + 었/EP
            for part in f[7].split("+"):
                form, _, rest = part.partition("/")
                t = rest.partition("/")[0]
                append(_Morph(form, _TAGS.get(t, t), start, n))
    return _joined(text, out)


# mecab-ko-dic's counting nouns (개, 명, 년) are dependent nouns, as in the Sejong tag set
_TAGS = {"NNBC": "NNB"}
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def _joined(text: str, morphs: list[_Morph]) -> list[_Morph]:
    """Numbers and dotted abbreviations that MeCab cuts at their punctuation become one morpheme (3,142.93,
    17.4, U.S.), Hanja that mecab-ko-dic reads as a noun are tagged Hanja (中 -> SH)."""
    out: list[_Morph] = []
    append = out.append
    n = len(morphs)
    skip = 0  # morphemes before this were joined into the last one
    for i, m in enumerate(morphs):
        if i < skip:
            continue
        tag = m.tag
        if tag == "NNG":
            if not "가" <= m.form[:1] <= "힣" and _CJK.fullmatch(m.form):
                m.tag = "SH"
        elif tag == "NR":
            if m.form == "하나" and out and out[-1].start + out[-1].len == m.start:
                m.tag = "XSV"  # 제조하나?: a verb's 하 + 나 in the noun's word, not the numeral "one"
        elif tag == "SN" or tag == "SL":
            j, end = i, m.start + m.len
            while (
                j + 2 < n and morphs[j + 1].start == end and morphs[j + 1].form in (".", ",")
                and morphs[j + 2].tag == tag and morphs[j + 2].start == end + 1
            ):
                j += 2
                end = morphs[j].start + morphs[j].len
            if tag == "SL" and j > i and j + 1 < n and morphs[j + 1].form == "." and morphs[j + 1].start == end:
                j, end = j + 1, end + 1  # the last dot of U.S.
            if j > i:
                append(_Morph(text[m.start:end], tag, m.start, end - m.start))
                skip = j + 1
                continue
        append(m)
    return out


_stemmers = threading.local()  # a PyStemmer object must not be shared between threads


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        import Stemmer

        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    return stemmer.stemWord(_IRREGULAR.get(word, word))


# An acronym's plural: Snowball leaves a word ending in "us" alone, so "GPUs" would not meet "GPU".
_ACRONYM_PLURAL = re.compile(r"[A-Z]{2,}s")


def english_term(word: str) -> str | None:
    """The index term of a Latin-script word ('Tolls' -> 'toll', 'rose' -> 'rise'), None for a stop word."""
    # the dots of "U.S."
    word = word.replace(".", "")
    w = word.lower()
    if not w or w in _EN_STOP:
        return None
    if _ACRONYM_PLURAL.fullmatch(word):
        return w[:-1]
    s = _stem(w)
    return None if s in _stop_stems() else s


@lru_cache(maxsize=1)
def _stop_stems() -> frozenset[str]:
    # Inflections of stop words are stop words too: saying, telling, doing, having.
    return frozenset(_stem(w) for w in _EN_STOP)


def _norm(form: str, tag: str) -> str | None:
    if tag == "SN":
        return form.replace(",", "").rstrip(".")  # "14." ends a sentence
    if tag == "SL":
        return english_term(form)
    if tag == "SH":
        return _HANJA_ABBR.get(form, form)
    if tag not in _KEEP_TAGS or form in _KO_STOP:
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
            joined = "".join(m.form for m in run)
            # "H200" stays one name; letters alone are one English word.
            if any(m.tag == "SN" for m in run):
                tok = joined.lower().replace(",", "").rstrip(".")
            else:
                tok = english_term(joined)
            if tok:
                out.append(tok)
        run.clear()

    def flush_nouns():
        # An unknown name splits into nouns (mecab-ko-dic reads 엔비디아 as 엔비 + 디아), and not the same
        # way in every context, so a word's touching nouns are also indexed joined together.
        if len(nouns) > 1:
            out.append("".join(m.form for m in nouns))
        nouns.clear()

    for m in morphs:
        tag = m.tag
        if tag == "NNG" or tag == "NNP":
            if nouns and m.start != nouns[-1].start + nouns[-1].len:
                flush_nouns()
            nouns.append(m)
        elif nouns:
            flush_nouns()
        if tag == "SL" or tag == "SN":
            if run and m.start != run[-1].start + run[-1].len:
                flush()
            run.append(m)
            continue
        if run:
            flush()
        if tag in _KEEP_TAGS:  # _norm's answer for every other tag (SL and SN went to `run`) is None
            tok = _norm(m.form, tag)
            if tok:
                out.append(tok)
    flush()
    flush_nouns()
    return out


def tokenize(text: str) -> list[str]:
    """Content tokens of one text: '알리바바는 H200을' -> ['알리바바', 'h200']."""
    return _tokens_of(morphemes(text))


def predicates(text: str) -> set[str]:
    """The verb and adjective stems of a text ('만든' -> '만들'): words a paraphrase often replaces."""
    return {m.form for m in morphemes(text) if m.tag in ("VV", "VA")}


def concepts(tokens: list[str]) -> list[str]:
    """Tokens with the parts of a joined noun dropped (['브로드', '컴', '브로드컴'] -> ['브로드컴']), unique."""
    uniq = list(dict.fromkeys(tokens))
    return [t for t in uniq if not any(t != u and t in u and _HANGUL_WORD.fullmatch(u) for u in uniq)]


def appears(token: str, tokens: set[str], text: str) -> bool:
    """Whether `token` occurs in a text given as its token set and raw string; Hangul words of two or more
    syllables also count when they appear inside a longer word (segmentation differs between contexts)."""
    return token in tokens or (len(token) >= 2 and bool(_HANGUL_WORD.fullmatch(token)) and token in text)


_HANGUL_WORD = re.compile(r"[\uac00-\ud7a3]+")


# A build analyses texts in batches of at most this many texts and characters (a longer text goes alone):
# the unit of its progress reports and of a worker process's task, ~0.1 s of news.
BATCH, BATCH_CHARS = 256, 32_000


def batches(lengths: list[int]):
    """(start, end) of consecutive batches for texts of these lengths in characters."""
    start = chars = 0
    for i, n in enumerate(lengths):
        if i > start and (i - start >= BATCH or chars + n > BATCH_CHARS):
            yield start, i
            start, chars = i, 0
        chars += n
    if start < len(lengths):
        yield start, len(lengths)


def tokenize_many(texts: list[str]) -> list[list[str]]:
    """Content tokens of each text (MeCab holds Python's GIL: one core, however many threads)."""
    return [tokenize(t) for t in texts]


# A line longer than twice this (a scraped page without a line break) is analysed in windows cut at spaces,
# so time and memory stay linear.
SENTENCE_WINDOW = 10_000


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Contiguous (start, end) spans of the sentences of `text`; together they cover it exactly.

    Korean text is split by its morphemes (`korean_sentences`), English (Latin script outnumbering Hangul)
    by `english_sentence_spans`.
    """
    if not text.strip():
        return [(0, len(text))] if text else []
    if not splits_korean(text):
        return english_sentence_spans(text)
    return korean_sentences(text)[0]


def splits_korean(text: str) -> bool:
    """Whether `sentence_spans` splits this (non-blank) text as Korean rather than by English rules."""
    return bool(text.strip()) and (is_korean(text) or not _LATIN_CHAR.search(text))


def korean_sentences(text: str) -> tuple[list[tuple[int, int]], list[_Morph]]:
    """Sentence spans of Korean text (as `sentence_spans` gives them) and its morphemes (offsets in the
    text), from one analysis: `tokens_between` turns the morphemes of a piece into its index tokens.

    A line break always ends a sentence: a headline or deck line joined to the paragraph below it
    (◇"中, 엔비디아 칩 접근 제한…") has no final punctuation. A blank line joins the sentence before it."""
    spans: list[tuple[int, int]] = []
    morphs: list[_Morph] = []
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        line = text[start:end]
        if line.strip():
            for a, b in _windows(line):
                window = line[a:b]
                found = morphemes(window)
                starts = _sentence_starts(window, found)
                spans.extend((x + a + start, y + a + start) for x, y in zip(starts, starts[1:] + [b - a]))
                if a + start:
                    for m in found:
                        m.start += a + start
                morphs.extend(found)
        elif spans:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
        start = end
    return spans, morphs


def _windows(line: str) -> list[tuple[int, int]]:
    if len(line) <= 2 * SENTENCE_WINDOW:
        return [(0, len(line))]
    out, start = [], 0
    while start < len(line):
        end = min(len(line), start + SENTENCE_WINDOW)
        if end < len(line):
            cut = line.rfind(" ", start + SENTENCE_WINDOW // 2, end)
            end = cut + 1 if cut > 0 else end
        out.append((start, end))
        start = end
    return out


_PAIRS = {"“": "”", "‘": "’", "「": "」", "『": "』", "(": ")", "[": "]", "《": "》", "〈": "〉"}
_CLOSING = set(_PAIRS.values()) | {'"', "'"}


def _sentence_starts(line: str, morphs: list[_Morph]) -> list[int]:
    """Where the sentences of one line start: after sentence-final punctuation (. ? !, and the closing quotes
    right after it) followed by a space, unless it is inside quotes or brackets that close later in the line
    ('그는 "개발했다. 정말이다"라고 말했다.' is one sentence; a quote closed right after its own final
    punctuation and followed by a space ends one). Always 0 first."""
    starts = [0]
    open_: list[str] = []  # closers awaited
    straight = line.count('"') % 2 == 0  # unpaired straight quotes are ignored
    seen = 0  # characters up to here were read as closers of a sentence end
    for m in morphs:
        if m.start < seen:
            continue
        if m.tag == "SF" and not open_:
            end = m.start + m.len
            while end < len(line) and line[end] in _CLOSING:
                end += 1
            seen = end
            _start_after(line, end, starts)
            continue
        if m.tag.startswith("S"):
            for i, ch in enumerate(m.form, m.start):
                if open_ and ch == open_[-1]:
                    open_.pop()
                    if not open_ and line[i - 1] in ".?!":  # “수출은 허용됐다.” 그가 말했다.
                        _start_after(line, i + 1, starts)
                elif ch == '"' and straight:
                    open_.append('"')
                elif ch in _PAIRS and line.find(_PAIRS[ch], i + 1) >= 0:
                    open_.append(_PAIRS[ch])
    return starts


def _start_after(line: str, end: int, starts: list[int]) -> None:
    """A sentence ends at `end` if a space follows: the next starts after the spaces."""
    k = end
    while k < len(line) and line[k].isspace():
        k += 1
    if end < k < len(line):
        starts.append(k)


def tokens_between(morphs: list, a: int, b: int) -> list[str]:
    """Index tokens of text[a:b] from the morphemes `korean_sentences` gave for the whole text (in the order
    of their offsets)."""
    start = attrgetter("start")
    return _tokens_of(morphs[bisect_left(morphs, a, key=start):bisect_left(morphs, b, key=start)])


def split_sentences(text: str) -> list[str]:
    return [t for a, b in sentence_spans(text) if (t := text[a:b].strip())]


# A period after these never ends a sentence: a title precedes a name (Mr. Ruiz, Sen. Moreno, St. Mark's).
_TITLES = set(
    "mr mrs ms messrs dr prof sen sens rep reps gov lt gen col maj capt cmdr adm sgt cpl pvt insp supt det "
    "rev fr hon pres st mt ft".split()
)
# After these (and dotted acronyms such as U.S. or a.m., and initials) a sentence ends only if the next
# word is one that usually starts a sentence: "Altair Microdevices Inc. and" vs "Kestrel Corp. It takes".
_ABBREVIATIONS = set(
    "inc corp co ltd llc plc bros assn dept univ jr sr esq jan feb mar apr jun jul aug sep sept oct nov dec "
    "mon tue tues wed thu thur thurs fri sat sun no nos vol vols fig figs approx est etc vs ave blvd rd hwy".split()
)
_STARTERS = set(
    "a an the this that these those it its he she they we i you his her their our my there here in on at for "
    "by with from to as if when while after before since although though but and or so yet however meanwhile "
    "still also then what why how who where which shares".split()
)
# A terminator, closing quotes and the space after them; or a line break (a byline or dateline line).
# Possessive runs, a match starting only at the first terminator of a run, and a scan that stops before
# trailing whitespace keep it linear (40k dots or 200k blank lines took 34 s and 94 s with plain `+`).
_EN_BOUNDARY = re.compile(r"(?<![.!?\u2026])([.!?\u2026]++)([\"'\u2019\u201d)\]\u00bb]*+)\s++(?=(\S))|\n\s*+(?=\S)")
_WORD_BEFORE = re.compile(r"[\"'\u2018\u201c(\[]*(\S{1,30})$")
_WORD_AFTER = re.compile(r"[\"'\u2018\u201c(\[]*(\w{1,20})")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]|[A-Z]")
# '"If you're told to go, go!" Lindgren said.': the attribution after a quote belongs to it.
_ATTRIBUTION = re.compile(r"(?:[A-Z][\w.'\u2019-]{0,30}\s{1,3}){1,4}(?:said|says|asked|told|added|wrote)\b")


def english_sentence_spans(text: str) -> list[tuple[int, int]]:
    """Contiguous sentence spans of English text. A sentence ends at a line break, or at . ! ? or … (and
    any closing quotes) followed by a space and a word that does not start in lower case, unless the period
    ends an abbreviation (Mr., Inc., U.S., Jan.) or an initial, or a quote runs on into its attribution
    ('go!" Lindgren said'). Decimals (3.5) never qualify: no space follows. One pass over the text, with a
    bounded look at the words on either side of each candidate."""
    starts = [0]
    for m in _EN_BOUNDARY.finditer(text, 0, len(text.rstrip())):
        if "\n" in m.group():
            starts.append(m.end())
            continue
        nxt = m.group(3)
        if nxt.islower() or nxt in ",;:%)]}-":
            continue
        if m.group(2):
            after = _WORD_AFTER.match(text, m.end())
            if after and after.group(1).lower() not in _STARTERS and _ATTRIBUTION.match(text, m.end()):
                continue
        elif m.group(1) == ".":
            before = _WORD_BEFORE.search(text, max(0, m.start() - 31), m.start())
            word = before.group(1) if before else ""
            if word.lower() in _TITLES:
                continue
            if word.lower() in _ABBREVIATIONS or _DOTTED.fullmatch(word):
                after = _WORD_AFTER.match(text, m.end())
                if not after or after.group(1).lower() not in _STARTERS:
                    continue
        starts.append(m.end())
    return list(zip(starts, starts[1:] + [len(text)]))


_LATIN_CHAR = re.compile(r"[A-Za-z]")
_LATIN_LETTERS = string.ascii_letters.encode()
_NEITHER_ASCII_NOR_HANGUL = re.compile(r"[^\x00-\x7f\uac00-\ud7a3\u3131-\u318e]+")


def is_korean(text: str) -> bool:
    """True when Hangul (syllables and letters) is at least a third as frequent as Latin letters (decides the
    answer language)."""
    # Counted without a match per character (a scraped page can be a 50 MB paragraph): what is left of the
    # text without the runs of other non-ASCII characters is its ASCII and its Hangul.
    ascii_ = text.encode("ascii", "ignore")
    latin = len(ascii_) - len(ascii_.translate(None, _LATIN_LETTERS))
    hangul = len(_NEITHER_ASCII_NOR_HANGUL.sub("", text)) - len(ascii_)
    return hangul > 0 and hangul * 3 >= latin


def language(text: str) -> str:
    """'ko', 'en' (Latin script) or 'other': the language mix the manifest records."""
    if is_korean(text):
        return "ko"
    return "en" if _LATIN_CHAR.search(text) else "other"


# ---------------------------------------------------------------- BM25


class Postings:
    """One segment's inverted index with raw counts: the rows holding token t are indices[indptr[t]:indptr[t+1]]
    (rows local to the segment, ascending) with term frequencies tf[...]; lengths[r] is row r's token count.
    Raw counts, not scores: scores depend on corpus statistics that change whenever any segment is added."""

    FILES = ("bm25_indptr", "bm25_indices", "bm25_tf", "bm25_lengths")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, tf: np.ndarray, lengths: np.ndarray):
        self.indptr, self.indices, self.tf, self.lengths = indptr, indices, tf, lengths

    @classmethod
    def build(cls, flat: np.ndarray, offsets: np.ndarray, vocab_size: int) -> "Postings":
        """From all rows' token ids concatenated (`flat`) and each row's start in it (`offsets`, n+1)."""
        n = len(offsets) - 1
        lengths = np.diff(offsets).astype(np.int32)
        docs = np.repeat(np.arange(n, dtype=np.int64), lengths)
        pairs, tf = np.unique(np.asarray(flat).astype(np.int64) * max(n, 1) + docs, return_counts=True)
        tokens, rows = pairs // max(n, 1), pairs % max(n, 1)  # sorted by token, then row
        indptr = np.zeros(vocab_size + 1, dtype=np.int64)
        np.cumsum(np.bincount(tokens, minlength=vocab_size), out=indptr[1:])
        return cls(indptr, rows.astype(np.int32), tf.astype(np.int32), lengths)

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def df(self, vocab_size: int) -> np.ndarray:
        """Rows holding each token id (ids this segment never saw: 0)."""
        out = np.zeros(vocab_size, dtype=np.int64)
        held = np.diff(np.asarray(self.indptr))
        out[: len(held)] = held
        return out

    def save(self, directory: Path) -> None:
        for name, arr in zip(self.FILES, (self.indptr, self.indices, self.tf, self.lengths)):
            np.save(directory / f"{name}.npy", arr, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, rows: int) -> "Postings":
        indptr, indices, tf, lengths = (
            np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in cls.FILES
        )
        if len(indices) != len(tf) or int(indptr[-1]) != len(tf) or len(lengths) != rows:
            raise ValueError(
                f"BM25 arrays disagree ({len(indices)} indices, {len(tf)} counts, {int(indptr[-1])} expected, "
                f"{len(lengths)} lengths for {rows} rows)"
            )
        if len(indices) and int(indices.max(initial=0)) >= rows:
            raise ValueError(f"postings refer to rows beyond the {rows} of the segment")
        return cls(indptr, indices, tf, lengths)


class BM25:
    """Okapi BM25 with Lucene's IDF over one or more segments' postings: global row = segment offset + local
    row. Scores are computed at query time from raw term frequencies and lengths with the corpus statistics of
    the live rows (their number, total length and document frequencies), so a segment added later, or rows
    deleted (`dead`), change every score exactly as a rebuild of the live rows would.
    """

    K1, B = 1.5, 0.75

    def __init__(self, parts: list[Postings], df: np.ndarray, num_docs: int, total_length: int, vocab=None,
                 dead: np.ndarray | None = None):
        self.parts = parts
        self.starts = np.concatenate([[0], np.cumsum([p.rows for p in parts])]).astype(np.int64)
        self.doc_freq = np.asarray(df)
        self.num_docs = num_docs  # live rows
        self.avgdl = total_length / num_docs if num_docs and total_length else 1.0
        self.vocab: dict[str, int] = vocab if vocab is not None else {}
        self.dead = np.zeros(0, np.int64) if dead is None else np.asarray(dead, dtype=np.int64)

    @classmethod
    def build(cls, flat: np.ndarray, offsets: np.ndarray, vocab_size: int, vocab=None) -> "BM25":
        """One segment from all rows' token ids concatenated (`flat`) and each row's start in it (`offsets`)."""
        postings = Postings.build(flat, offsets, vocab_size)
        return cls([postings], postings.df(vocab_size), postings.rows, int(postings.lengths.sum()), vocab)

    def save(self, directory: Path) -> None:
        """A one-segment BM25 (see `load`)."""
        self.parts[0].save(directory)

    @classmethod
    def load(cls, directory: Path, num_docs: int, vocab=None) -> "BM25":
        """A one-segment BM25 as `save` wrote it, its statistics taken from its own rows."""
        postings = Postings.load(directory, num_docs)
        size = len(postings.indptr) - 1
        return cls([postings], postings.df(size), num_docs, int(np.asarray(postings.lengths).sum()), vocab)

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    @cached_property
    def _norm(self) -> np.ndarray:
        """K1·(1 − B + B·length/avgdl) of every row, float32 (scoring is memory traffic: half of it)."""
        lengths = np.concatenate([np.asarray(p.lengths, dtype=np.float64) for p in self.parts]) if self.parts else np.zeros(0)
        return (self.K1 * (1 - self.B + self.B * lengths / self.avgdl)).astype(np.float32)

    def ids(self, tokens: list[str]) -> list[int]:
        return [self.vocab[t] for t in tokens if t in self.vocab and self.vocab[t] < len(self.doc_freq)]

    def scores(self, tokens: list[str]) -> np.ndarray:
        """Score of every row (0 for dead rows); a token repeated in the query counts again (used to weight
        follow-ups). Summed in place in float32, a query token at a time: ~12-50 ns a posting (the rarer the
        token, the more of it is cache misses), and a common word of a million-chunk index has 500,000."""
        out = np.zeros(self.rows, dtype=np.float32)
        for t, weight in self.query_weights(tokens).items():
            for start, p in zip(self.starts.tolist(), self.parts):
                if t >= len(p.indptr) - 1 or p.indptr[t] == p.indptr[t + 1]:
                    continue
                a, b = int(p.indptr[t]), int(p.indptr[t + 1])
                rows = np.asarray(p.indices[a:b])  # local and ascending: each row once per token
                tf = np.asarray(p.tf[a:b], dtype=np.float32)
                part = np.take(self._norm[start : start + p.rows], rows)  # faster than [rows]
                part += tf
                np.divide(tf, part, out=part)
                part *= np.float32(weight)  # IDF × tf / (tf + K1·(1 − B + B·length/avgdl))
                np.add.at(out[start : start + p.rows], rows, part)
        out[self.dead] = 0
        return out

    def df(self, token: str) -> int:
        """How many live chunks contain `token`."""
        tid = self.vocab.get(token)
        return int(self.doc_freq[tid]) if tid is not None and tid < len(self.doc_freq) else 0

    @classmethod
    def document_weights(cls, flat: np.ndarray, offsets: np.ndarray, rows, avgdl: float) -> list[dict[int, float]]:
        """The document side of BM25 for `rows`: {token id: tf / (tf + K1·(1 − B + B·length/avgdl))}. Times
        `query_weights` it is the BM25 score; a store such as Milvus keeps these as sparse vectors."""
        out = []
        for r in rows:
            ids, tf = np.unique(np.asarray(flat[offsets[r] : offsets[r + 1]]), return_counts=True)
            norm = cls.K1 * (1 - cls.B + cls.B * int(offsets[r + 1] - offsets[r]) / avgdl)
            out.append({int(t): float(f / (f + norm)) for t, f in zip(ids, tf)})
        return out

    def query_weights(self, tokens: list[str]) -> dict[int, float]:
        """The query side of BM25: {token id: IDF × times the query holds it}."""
        out: dict[int, float] = {}
        for t in self.ids(tokens):
            df = int(self.doc_freq[t])
            if df:
                out[t] = out.get(t, 0.0) + self._idf(df)
        return out

    def idf(self, token: str) -> float:
        """Lucene's BM25 IDF; a token no chunk contains gets the maximum."""
        return self._idf(self.df(token))

    def _idf(self, df: int) -> float:
        return float(np.log1p((self.num_docs - df + 0.5) / (df + 0.5)))

    def search(self, tokens: list[str], k: int) -> list[tuple[int, float]]:
        """Top-k (row, score) pairs with a positive score, best first."""
        return top_k(self.scores(tokens), k)


def top_k(scores: np.ndarray, k: int, block: int = 1024) -> list[tuple[int, float]]:
    """Rows with the k highest positive scores, best first, ties broken by row order.

    Over a long array only the blocks of `block` rows whose best score reaches the k-th best block maximum are
    read again: k blocks reach it, so the k-th best score does too, and no row outside them can beat it."""
    scores = np.asarray(scores)
    if k <= 0:
        return []
    full = len(scores) // block * block
    rows = None
    if full >= 64 * block and k * block * 8 <= full:
        maxima = scores[:full].reshape(-1, block).max(axis=1)
        bound = float(np.partition(maxima, len(maxima) - k)[len(maxima) - k])
        if bound > 0:
            blocks = np.flatnonzero(maxima >= bound)
            rows = np.concatenate([(blocks[:, None] * block + np.arange(block)).ravel(), np.arange(full, len(scores))])
            rows = rows[scores[rows] > 0]
    if rows is None:
        rows = np.flatnonzero(scores > 0)
    if rows.size > k:
        kth = np.partition(scores[rows], rows.size - k)[rows.size - k]
        rows = rows[scores[rows] >= kth]  # every row tied with the k-th, so that row order breaks the tie
    rows = rows[np.lexsort((rows, -scores[rows]))][:k]
    return [(int(r), float(scores[r])) for r in rows]
