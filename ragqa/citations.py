"""Check every answer sentence against the passages it cites: IDs, numbers, and content words."""

from __future__ import annotations

import re

from .lexical import appears, concepts, is_korean, tokenize

# Share of a sentence's content words that must appear in its cited passages (same-language check), and of
# a quoted evidence span's characters that must match the passages in order (cross-language check, where
# the quote is in the passages' language; small models change a particle or two when they copy).
MIN_SENTENCE_OVERLAP = 0.5
MIN_QUOTE_SHARE = 0.8

_KO_UNITS = {"조": 1e12, "억": 1e8, "만": 1e4}
_EN_UNITS = {
    "thousand": 1e3, "million": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9, "trillion": 1e12, "tn": 1e12,
}
# One Korean amount: "2조7천억", "1억8,000만", "5900억", "11만9천", "16.86". Latin letters around a number
# make it part of a name (H200, R1, GPT-4), not a quantity.
_KO_GROUP = r"\d[\d,]*(?:\.\d+)?\s?(?:천|백)?\s?(?:조|억|만)?"
_KO_AMOUNT = re.compile(rf"(?<![A-Za-z\d.])(?<![A-Za-z]-)(?:{_KO_GROUP})+(?![A-Za-z\d])")
_KO_PART = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?(천|백)?\s?(조|억|만)?")
_EN_AMOUNT = re.compile(
    r"(?<![A-Za-z\d.])(\d[\d,]*(?:\.\d+)?)\s?(thousand|million|billion|trillion|mn|bn|tn)\b", re.IGNORECASE
)


def numbers(text: str) -> list[tuple[float, int]]:
    """Quantities in `text` as (value, decimals shown): '5900억달러' -> 5.9e11, '$590 billion' -> 5.9e11."""
    out: list[tuple[float, int]] = []
    taken: list[tuple[int, int]] = []
    for m in _EN_AMOUNT.finditer(text):
        out.append((float(m.group(1).replace(",", "")) * _EN_UNITS[m.group(2).lower()], 0))
        taken.append(m.span())
    for m in _KO_AMOUNT.finditer(text):
        if any(a <= m.start() < b for a, b in taken):
            continue
        total, decimals, has_unit = 0.0, 0, False
        for num, small, big in _KO_PART.findall(m.group()):
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
    """Share of the quote's characters found, in order, in the source (1.0 for a verbatim quote)."""
    from difflib import SequenceMatcher

    q, src = " ".join(quote.split()), " ".join(source.split())
    if not q:
        return 0.0
    if q in src:
        return 1.0
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
