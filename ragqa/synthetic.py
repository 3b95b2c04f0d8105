"""Synthetic corpora for benchmarks and tests: new articles recombined from the seed articles' own sentences.

The sentences are real Korean news sentences (so tokenization and chunking cost what they cost on real
news); the same seed gives the same corpus byte for byte. Reads the repository's seeds/ folder by default.
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
ADDED = "9999999_added.txt"  # the article add_article writes (the incremental benchmark adds it to a corpus)
# A long paragraph has as many sentences as one article line of the seeds' multi-article file (~600 characters).
LONG_SENTENCES = (6, 10)


@functools.lru_cache(maxsize=4)
def seed_sentences(seeds: Path = SEEDS) -> tuple[str, ...]:
    """The distinct sentences (20 characters or more) of the seed articles, sorted."""
    from .corpus import is_sentence, load_corpus
    from .lexical import split_sentences

    out = set()
    for article in load_corpus([seeds]).articles:
        for paragraph in article.paragraphs:
            out.update(s for s in split_sentences(paragraph) if is_sentence(s) and len(s) >= 20)
    return tuple(sorted(out))


def spliced(rng: random.Random, pool: tuple[str, ...]) -> str:
    """A new sentence: the head of one seed sentence and the tail of another, numbers sometimes changed, so a
    million chunks are not a few hundred sentences repeated."""
    a, b = rng.choice(pool).split(), rng.choice(pool).split()
    cut_a = rng.randint(max(1, len(a) * 3 // 10), max(1, len(a) * 7 // 10))
    cut_b = rng.randint(max(1, len(b) * 3 // 10), max(1, len(b) * 7 // 10))
    words = a[:cut_a] + b[cut_b:]
    return " ".join(
        re.sub(r"\d+", lambda m: str(rng.randint(1, 999)), w) if rng.random() < 0.3 else w for w in words
    )


def write_corpus(
    out_dir: Path, n_articles: int, seed: int = 0, paragraphs: tuple[int, int] = (6, 14), per_file_dir: int = 1000,
    long_paragraphs: float = 0.0, seeds: Path = SEEDS,
) -> dict:
    """Write `n_articles` .txt files (a headline, then paragraphs of 1-2 sentences) under `out_dir`.

    `long_paragraphs` is the share of paragraphs written with LONG_SENTENCES sentences instead, like the
    seeds' multi-article file; at 0 the corpus is the same as before that option existed."""
    rng = random.Random(seed)
    pool = seed_sentences(seeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_paragraphs = n_long = n_chars = 0
    for i in range(n_articles):
        sub = out_dir / f"{i // per_file_dir:04d}"
        sub.mkdir(exist_ok=True)
        paras = []
        for _ in range(rng.randint(*paragraphs)):
            # short-circuits at 0, so the default draws exactly the random numbers it always drew
            long = bool(long_paragraphs) and rng.random() < long_paragraphs
            n_long += long
            n = rng.randint(*LONG_SENTENCES) if long else rng.randint(1, 2)
            paras.append(" ".join(spliced(rng, pool) for _ in range(n)))
        title = rng.choice(pool)[:40].rstrip(" ,.")
        text = title + "\n\n" + "\n\n".join(paras) + "\n"
        (sub / f"{i:07d}_synthetic.txt").write_text(text, encoding="utf-8")
        n_paragraphs += len(paras)
        n_chars += len(text)
    return {
        "articles": n_articles, "paragraphs": n_paragraphs, "long_paragraphs": n_long, "chars": n_chars,
        "sentence_pool": len(pool),
    }


def add_article(out_dir: Path, name: str = ADDED, seed: int = 12345, seeds: Path = SEEDS) -> Path:
    """Write one more article (8 one-sentence paragraphs) into `out_dir`; returns its path."""
    rng = random.Random(seed)
    pool = seed_sentences(seeds)
    path = out_dir / name
    path.write_text("추가된 기사\n\n" + "\n\n".join(spliced(rng, pool) for _ in range(8)) + "\n", encoding="utf-8")
    return path
