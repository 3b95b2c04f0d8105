"""Check every answer sentence against the passages it cites: IDs, numbers, quotes and content words."""

from __future__ import annotations

import re
from bisect import bisect_right

from .lexical import appears, concepts, is_korean, tokenize
from .schema import AnswerSentence

# Share of a sentence's content words that must appear in its cited passages (same-language check), and of
# a quoted evidence span's characters that must match the passages in order (cross-language check, where
# the quote is in the passages' language; small models change a particle or two when they copy).
MIN_SENTENCE_OVERLAP = 0.5
MIN_QUOTE_SHARE = 0.8
# difflib's matching costs the quote's length times the source's; the answer grammar caps a quote at 200
# characters, so a longer one (from a library caller) is compared by its beginning.
QUOTE_CHARS = 1_000

_KO_UNITS = {"조": 1e12, "억": 1e8, "만": 1e4}
_EN_UNITS = {
    "thousand": 1e3, "million": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9, "trillion": 1e12, "tn": 1e12,
}
# One Korean amount: "2조7천억", "1억8,000만", "5900억", "11만9천", "16.86". Latin letters around a number
# make it part of a name (H200, R1, GPT-4), not a quantity.
# The amounts are what these regexes find, but each is found in linear time (see _ko_amounts, _en_amounts):
#   Korean  (?<![A-Za-z\d.])(?<![A-Za-z]-)(?:\d[\d,]*(?:\.\d+)?\s?(?:천|백)?\s?(?:조|억|만)?)+(?![A-Za-z\d])
#   English (?<![A-Za-z\d.])(\d[\d,]*(?:\.\d+)?)\s?(thousand|million|billion|trillion|mn|bn|tn)\b  (ignoring case)
_KO_START = re.compile(r"(?<![A-Za-z\d.])(?<![A-Za-z]-)\d")
_KO_RUN = re.compile(r"(?:\d[\d,]*+(?:\.\d++)?+\s?+(?:천|백)?+\s?+(?:조|억|만)?+)++")
_KO_PART = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?(천|백)?\s?(조|억|만)?")
_NAME_CHAR = re.compile(r"[A-Za-z\d]")
_DIGITS = re.compile(r"\d*")
_NUMBER_RUN = re.compile(r"\d[\d,]*+")
_COMMA_DIGIT = re.compile(r",\d")
_EN_START = re.compile(r"(?<![A-Za-z\d.])\d", re.IGNORECASE)
_EN_UNIT = re.compile(r"(\.\d+)?\s?(thousand|million|billion|trillion|mn|bn|tn)\b", re.IGNORECASE)


def _ko_amounts(text: str):
    """(start, end) of each Korean amount. The regex form retries every split of a digit run into groups
    when a letter follows it ("1111...1a": exponential); its outcome is computed instead."""
    pos = 0
    while start := _KO_START.search(text, pos):
        s = start.start()
        end = run_end = _KO_RUN.match(text, s).end()
        if _NAME_CHAR.match(text, end):
            # The regex gives back the trailing digits and the unit, space, comma or point before them.
            end -= len(_DIGITS.match(text[s:end][::-1]).group()) + 1
        if end > s:
            yield s, end
            pos = end
        else:
            pos = run_end


def _en_amounts(text: str):
    """((start, end), number, unit) of each English amount. The regex form rescans a run such as "1,2,3,..."
    from every digit after a comma; all of them reach the same end, so each run is tried once."""
    for run in _NUMBER_RUN.finditer(text):
        unit = _EN_UNIT.match(text, run.end())
        if not unit:
            continue
        s = run.start()
        if not _EN_START.match(text, s):  # after a letter or point the regex starts at a digit after a comma
            comma = _COMMA_DIGIT.search(text, s, run.end())
            if not comma:
                continue
            s = comma.start() + 1
        yield (s, unit.end()), text[s:run.end()] + (unit.group(1) or ""), unit.group(2)


def numbers(text: str) -> list[tuple[float, int]]:
    """Quantities in `text` as (value, decimals shown): '5900억달러' -> 5.9e11, '$590 billion' -> 5.9e11."""
    out: list[tuple[float, int]] = []
    taken: list[tuple[int, int]] = []
    for span, num, unit in _en_amounts(text):
        out.append((float(num.replace(",", "")) * _EN_UNITS[unit.casefold()], 0))
        taken.append(span)
    starts = [a for a, _ in taken]
    for a, b in _ko_amounts(text):
        i = bisect_right(starts, a) - 1
        if i >= 0 and a < taken[i][1]:
            continue
        total, decimals, has_unit = 0.0, 0, False
        for num, small, big in _KO_PART.findall(text, a, b):
            decimals = len(num.split(".")[1]) if "." in num else 0
            total += float(num.replace(",", "")) * {"천": 1e3, "백": 1e2}.get(small, 1) * _KO_UNITS.get(big, 1)
            has_unit |= bool(small or big)
        out.append((total, 0 if has_unit else decimals))
    return out


def _same(claim: tuple[float, int], source: float) -> bool:
    value, decimals = claim
    if source == 0 or value == 0:
        return value == source
    if abs(value - source) / abs(source) <= 0.005:
        return True
    return round(source, decimals) == value  # "nearly 17%" for 16.86%


def quote_share(quote: str, source: str) -> float:
    """Share of the quote's characters (of its first QUOTE_CHARS) found, in order, in the source (1.0 for a
    verbatim quote)."""
    from difflib import SequenceMatcher

    q, src = " ".join(quote.split()), " ".join(source.split())
    if not q:
        return 0.0
    if q in src:
        return 1.0
    q = q[:QUOTE_CHARS]
    matcher = SequenceMatcher(None, q, src, autojunk=False)
    return sum(b.size for b in matcher.get_matching_blocks() if b.size >= 3) / len(q)


def check_sentence(text: str, cited: list[str], quote: str | None = None) -> tuple[bool | None, str | None]:
    """(supported, reason). None means the sentence could not be checked (no shared language or anchors)."""
    if not cited:
        return False, "no citation"
    source = "\n".join(cited)
    source_numbers = [v for v, _ in numbers(source)]
    for claim in numbers(text):
        if not any(_same(claim, s) for s in source_numbers):
            shown = f"{claim[0]:,.{claim[1]}f}"
            return False, f"the number {shown} is not in the cited passages"
    source_tokens = set(tokenize(source))
    if quote is not None:
        share = quote_share(quote, source)
        if share < MIN_QUOTE_SHARE:
            return False, f"the quoted evidence is not in the cited passages (only {share:.0%} of it matches)"
    if is_korean(text) != is_korean(source):
        # Across languages only numbers and the quote can be compared word for word.
        if quote and quote.strip():
            return True, None
        latin = [t for t in tokenize(text) if t.isascii() and t in source_tokens]
        return (True, None) if latin or numbers(text) else (None, "answer and passages are in different languages")
    words = concepts(tokenize(text))
    if not words:
        return None, "no content words to check"
    share = sum(appears(t, source_tokens, source) for t in words) / len(words)
    if share < MIN_SENTENCE_OVERLAP:
        return False, f"only {share:.0%} of its content words appear in the cited passages"
    return True, None


# "[000-5cafd9bf:p03]" inside article text (or copied by the model) would read as a citation; real ones are
# only ever appended by ragqa, so look-alikes in sentence text get different brackets.
_MARKER = re.compile(r"\[\s*([^\[\]\s]{1,60}:p\d{1,4}(?:\.\d+)?)\s*\]")


def neutralize_markers(text: str) -> str:
    return _MARKER.sub(r"〔\1〕", text)


def verify(raw: list[dict], allowed: dict) -> list[AnswerSentence]:
    """Keep each sentence, flagged: citations must name passages given to the model and back the sentence."""
    out = []
    for s in raw:
        text = neutralize_markers(str(s.get("text", "")).strip())
        if not text:
            continue
        cites = [str(c) for c in dict.fromkeys(s.get("citations") or [])]
        foreign = [c for c in cites if c not in allowed]
        cites = [c for c in cites if c in allowed]
        quote = s.get("quote")
        if foreign:
            supported, reason = False, f"cites passages that were not retrieved: {', '.join(foreign)}"
        else:
            supported, reason = check_sentence(text, [allowed[c].text for c in cites], quote)
        out.append(AnswerSentence(text=text, citations=cites, quote=quote, supported=supported, reason=reason))
    return out
