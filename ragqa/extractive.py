"""The extractive answer: the sentences of the retrieved passages that best cover the question, quoted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

from .lexical import appears, concepts, english_term, is_korean, predicates, split_sentences, tokenize, tokenize_many
from .schema import Hit

# Question words tell what kind of sentence answers (a cause, an amount, a time, a name); they are not
# content to match. Korean answers to "why" carry a causal ending or noun: 때문, 이유, 위해, 고려해 …
_WHY = {"왜", "이유", "배경", "원인", "why", "reason", "reasons"}
_HOW_MUCH = {"얼마", "얼마나", "몇", "규모", "how", "many", "much", "amount"}
_WHEN = {"언제", "날짜", "when", "date"}
# English news gives a cause with "because" or "due to", and very often with "citing" or "amid" ("cut its
# forecast, citing weaker demand"); "since" is left out, as news mostly uses it for time ("since 2023").
_CAUSAL = re.compile(
    r"때문|이유로|고려해|판단(?:이|해|했|한)|탓|덕분|로 인해|(?i:\bbecause\b|\bdue to\b|\bowing to\b|\bciting\b|\bamid\b)"
)
_NUMBER = re.compile(r"\d")
QUESTION_WORDS = _WHY | _HOW_MUCH | _WHEN | {"무엇", "무슨", "누구", "누가", "어떤", "어떻", "어디", "what", "who", "which", "where"}
# English asks for an amount or a time with a phrase whose other word is no content either: "how far did
# shares fall", "to what level did inflation fall", "at what time".
_EN_ASKING = re.compile(
    r"(?i)\b(?:how (?:many|much|far|high|low|large|big|long|fast|old|deep|severe|bad)"
    r"|what (?:(?P<when>time|date|day|month|year)|level|number|size|percentage|amount))\b"
)
_EN_TIME = re.compile(
    r"\d{1,2}:\d{2}|\b[ap]\.m\.|\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b"
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.? \d{1,2}\b"
)

# An extractive answer needs a sentence covering this share of the question's (IDF-weighted) content words;
# below it ragqa says the articles don't answer. Set on the gold set's unanswerable questions (see eval).
MIN_COVERAGE = 0.5
MAX_EXTRACT = 3
# News restates a question's verbs in other words (만든/개발한, 떨어졌/급락했) far more often than its names,
# numbers and nouns, so a verb or adjective stem counts this much of its IDF weight. MeCab tags English words
# only as foreign (SL), so English verbs count in full; their inflections (rose/rise) meet by stemming.
PREDICATE_WEIGHT = 0.5
# Across languages (with an embedding model) sentences are ranked by cosine similarity to the question plus
# this share of the lexical score (coverage, passage coverage, answer-kind cues), and quoted when within
# SIMILARITY_MARGIN of the best. Share of answerable questions whose quoted sentences include a gold evidence
# span, hybrid search with the bundled e5-small (`python benchmarks/extractive.py`, and with
# `--seeds tests/data/english/articles --gold tests/data/english/gold_en.jsonl`):
#                     English over Korean  Korean over Korean  English over English
#   lexical only       0.00                 0.84                0.73
#   cosine only        0.73                 0.78                0.60
#   cosine + 0.1 lex   0.76                 0.84                0.60
#   cosine + 0.2 lex   0.73                 0.84                0.60
#   cosine + 0.5 lex   0.68                 0.84                0.63
# In the question's own language meaning did not beat words, and embedding the sentences costs ~0.7 s an
# answer on 2 cores, so there sentences are ranked by words alone.
SIMILARITY_LEXICAL_WEIGHT = 0.1
MEANING_IN_OWN_LANGUAGE = False  # the benchmark sets it to measure the rows above
SIMILARITY_MARGIN = 0.02


@dataclass
class Extract:
    answerable: bool
    sentences: list[dict] = field(default_factory=list)  # {"text", "citations"}


def question_cues(question: str) -> tuple[list[str], set[str]]:
    """The question's content words, question words left out, and the kinds of answer it asks for (why,
    amount, when)."""
    raw = re.findall(r"\w+", question.lower())
    cues = set()
    for word in raw:
        for name, group in (("why", _WHY), ("amount", _HOW_MUCH), ("when", _WHEN)):
            if word in group or any(word.startswith(g) for g in group if not g.isascii()):
                cues.add(name)
    for m in _EN_ASKING.finditer(question):
        cues.add("when" if m.group("when") else "amount")
    question = _EN_ASKING.sub(" ", question)
    content = [t for t in concepts(tokenize(question)) if t not in _question_terms()]
    return content, cues


@lru_cache(maxsize=1)
def _question_terms() -> frozenset[str]:
    """The question words as index terms: English ones stemmed ("many" -> "mani"), as the question's are."""
    return frozenset(t for w in QUESTION_WORDS if (t := english_term(w) if w.isascii() else w))


@dataclass
class Candidate:
    """One sentence of a retrieved passage, with what the ranking uses."""

    text: str
    chunk_id: str
    rank: int  # of its passage among the hits
    pos: int  # within its passage
    cover: float  # IDF-weighted share of the question's content words it holds
    chunk_cover: float  # the same for its passage
    bonus: float  # answer-kind cues: a cause for "why", a number for "how much", a date for "when"
    causal: bool
    similarity: float | None = None  # cosine to the question, when an embedding model is at hand

    @property
    def lexical(self) -> float:
        # A sentence in a passage that covers the question as a whole answers it better than a stray match.
        return self.cover + 0.5 * self.chunk_cover + self.bonus

    @property
    def by_words(self) -> float:
        """The ranking without an embedding model: the lexical score, a little less for later passages."""
        return self.lexical - 0.02 * self.rank

    @property
    def score(self) -> float:
        if self.similarity is None:
            return self.by_words
        return self.similarity + SIMILARITY_LEXICAL_WEIGHT * self.lexical


def candidates(
    question: str, hits: list[Hit], idf: Callable[[str], float], follows: dict[str, str] | None = None
) -> tuple[list[Candidate], set[str]]:
    """The sentences of `hits` that could answer (headlines and deck lines left out), scored lexically, and
    the kinds of answer the question asks for.

    `follows` maps a passage added for context to the retrieved passage it follows: news states a reason
    or reaction in the paragraph after the event, and such a paragraph inherits part of its predecessor's
    match with the question.
    """
    from .corpus import is_sentence

    terms, cues = question_cues(question)
    terms = list(dict.fromkeys(terms))
    if not terms or not hits:
        return [], cues
    follows = follows or {}
    verbs = predicates(question)
    weights = {t: idf(t) * (PREDICATE_WEIGHT if t in verbs else 1.0) for t in terms}
    total = sum(weights.values()) or 1.0
    sentences = [
        (rank, pos, sentence, hit.chunk_id)
        for rank, hit in enumerate(hits)
        for pos, sentence in enumerate(split_sentences(hit.text))
        if is_sentence(sentence)  # not a headline or deck line
    ]
    texts = list(dict.fromkeys([h.text for h in hits] + [s[2] for s in sentences]))
    tokens = dict(zip(texts, map(set, tokenize_many(texts))))

    def cover(text: str) -> float:
        return sum(w for t, w in weights.items() if appears(t, tokens[text], text)) / total

    chunk_cover = {h.chunk_id: cover(h.text) for h in hits}
    for child, parent in follows.items():
        chunk_cover[child] = max(chunk_cover[child], 0.8 * chunk_cover.get(parent, 0.0))
    out = []
    for rank, pos, sentence, chunk_id in sentences:
        causal = "why" in cues and bool(_CAUSAL.search(sentence))
        bonus = 0.25 * causal
        if "amount" in cues and _NUMBER.search(sentence):
            bonus += 0.1
        if "when" in cues and (re.search(r"\d+\s?(일|월|년)|\d{4}", sentence) or _EN_TIME.search(sentence)):
            bonus += 0.1
        out.append(Candidate(sentence, chunk_id, rank, pos, cover(sentence), chunk_cover[chunk_id], bonus, causal))
    return out, cues


def extractive_answer(
    question: str,
    hits: list[Hit],
    idf: Callable[[str], float],
    follows: dict[str, str] | None = None,
    similarity: Callable[[list[str]], Sequence[float]] | None = None,
    min_similarity: float | None = None,
) -> Extract:
    """Sentences of the retrieved passages that best answer the question, each citing its passage.

    In the question's language sentences are ranked by the question's words they and their passage hold.
    When most are in another language and `similarity` is given (texts -> cosine to the question under the
    index's embedding model), they are ranked by meaning, the words a small second signal, so an English
    question gets the Korean sentences that answer it. Abstention: in the question's language the best
    sentence by words, or its passage, must cover MIN_COVERAGE of the question's words; across languages
    the best sentence must reach `min_similarity` (the model's calibrated cosine; None: no such gate).
    """
    scored, cues = candidates(question, hits, idf, follows)
    if not scored:
        return Extract(False)
    asked_korean = is_korean(question)
    across = 2 * sum(is_korean(c.text) != asked_korean for c in scored) > len(scored)
    if similarity is not None and (across or MEANING_IN_OWN_LANGUAGE):
        for c, sim in zip(scored, similarity([c.text for c in scored])):
            c.similarity = float(sim)
    # Whether to answer: in the question's language the lexically best sentence or its passage must cover
    # enough of the question (embeddings score a near miss, a question about a detail the articles leave
    # out, as high as an answer). Across languages words cannot tell: a cosine gate.
    lexical_best = max(scored, key=lambda c: c.by_words)
    scored.sort(key=lambda c: -c.score)
    best = scored[0]
    if across and best.similarity is not None:
        if min_similarity is not None and best.similarity < min_similarity:
            return Extract(False)
    elif max(lexical_best.cover, lexical_best.chunk_cover) < MIN_COVERAGE:
        return Extract(False)
    picked = [best]
    if "why" in cues and not best.causal:
        # A "why" answer needs the sentence that gives the cause, not only the one restating the event.
        reason = next((c for c in scored if c.causal), None)
        if reason and _near(reason, best, wide=True):
            picked.append(reason)
    for c in scored[1:]:
        if len(picked) >= MAX_EXTRACT:
            break
        if _near(c, best, wide=False) and c not in picked:
            picked.append(c)
    picked.sort(key=lambda c: (c.rank, c.pos))
    return Extract(True, [{"text": c.text, "citations": [c.chunk_id]} for c in picked])


def _near(c: Candidate, best: Candidate, wide: bool) -> bool:
    """Whether `c` scores close enough to the best sentence to be quoted as well (`wide`: the sentence that
    gives the cause of a "why" question, wanted even when it matches the question less)."""
    if best.similarity is None:
        return c.score >= (0.5 if wide else 0.8) * best.score
    return c.score >= best.score - SIMILARITY_MARGIN * (2 if wide else 1)
