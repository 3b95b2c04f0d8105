"""The extractive answer: the sentences of the retrieved passages that best cover the question, quoted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from .lexical import appears, concepts, english_term, predicates, split_sentences, tokenize
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
# numbers and nouns, so a verb or adjective stem counts this much of its IDF weight. Kiwi tags English words
# only as foreign (SL), so English verbs count in full; their inflections (rose/rise) meet by stemming.
PREDICATE_WEIGHT = 0.5


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


def extractive_answer(
    question: str, hits: list[Hit], idf: Callable[[str], float], follows: dict[str, str] | None = None
) -> Extract:
    """Sentences of the retrieved passages that best cover the question, each citing its passage.

    `follows` maps a passage added for context to the retrieved passage it follows: news states a reason
    or reaction in the paragraph after the event, and such a paragraph inherits part of its predecessor's
    match with the question.
    """
    from .corpus import is_sentence

    terms, cues = question_cues(question)
    terms = list(dict.fromkeys(terms))
    if not terms or not hits:
        return Extract(False)
    follows = follows or {}
    verbs = predicates(question)
    weights = {t: idf(t) * (PREDICATE_WEIGHT if t in verbs else 1.0) for t in terms}
    total = sum(weights.values()) or 1.0

    def cover(text: str) -> float:
        have = set(tokenize(text))
        return sum(w for t, w in weights.items() if appears(t, have, text)) / total

    chunk_cover = {h.chunk_id: cover(h.text) for h in hits}
    for child, parent in follows.items():
        chunk_cover[child] = max(chunk_cover[child], 0.8 * chunk_cover.get(parent, 0.0))
    scored = []
    for rank, hit in enumerate(hits):
        for pos, sentence in enumerate(split_sentences(hit.text)):
            if not is_sentence(sentence):
                continue  # a headline or deck line, not an answer
            c = cover(sentence)
            causal = "why" in cues and bool(_CAUSAL.search(sentence))
            bonus = 0.25 * causal
            if "amount" in cues and _NUMBER.search(sentence):
                bonus += 0.1
            if "when" in cues and (re.search(r"\d+\s?(일|월|년)|\d{4}", sentence) or _EN_TIME.search(sentence)):
                bonus += 0.1
            # A sentence in a passage that covers the question as a whole answers it better than a stray match.
            score = c + 0.5 * chunk_cover[hit.chunk_id] + bonus - 0.02 * rank
            scored.append((score, c, chunk_cover[hit.chunk_id], rank, pos, sentence, hit.chunk_id, causal))
    if not scored:
        return Extract(False)
    scored.sort(key=lambda s: -s[0])
    best = scored[0]
    if max(best[1], best[2]) < MIN_COVERAGE:  # the sentence or its passage covers too little of the question
        return Extract(False)
    picked = [best]
    if "why" in cues and not best[7]:
        # A "why" answer needs the sentence that gives the cause, not only the one restating the event.
        reason = next((s for s in scored if s[7]), None)
        if reason and reason[0] >= 0.5 * best[0]:
            picked.append(reason)
    for s in scored[1:]:
        if len(picked) >= MAX_EXTRACT:
            break
        if s[0] >= 0.8 * best[0] and s not in picked:
            picked.append(s)
    picked.sort(key=lambda s: (s[3], s[4]))
    return Extract(True, [{"text": s[5], "citations": [s[6]]} for s in picked])
