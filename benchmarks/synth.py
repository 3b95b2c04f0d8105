"""Synthetic corpora made of the seed articles' own sentences, a cheap embedder for scale runs, and the
memory reading the harness shares.

The sentences are real Korean news sentences (so tokenization and chunking cost what they cost on real
news), recombined into new articles; the same seed gives the same corpus byte for byte.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (what the tables call MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def seed_sentences(seeds: Path = SEEDS) -> list[str]:
    from ragqa.corpus import is_sentence, load_corpus
    from ragqa.lexical import split_sentences

    out = []
    for article in load_corpus([seeds]).articles:
        for paragraph in article.paragraphs:
            out.extend(s for s in split_sentences(paragraph) if is_sentence(s) and len(s) >= 20)
    return sorted(set(out))


def spliced(rng: random.Random, pool: list[str]) -> str:
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
    out_dir: Path, n_articles: int, seed: int = 0, paragraphs: tuple[int, int] = (6, 14), per_file_dir: int = 1000
) -> dict:
    """Write `n_articles` .txt files (a headline, then paragraphs of 1-2 sentences) under `out_dir`."""
    rng = random.Random(seed)
    pool = seed_sentences()
    out_dir.mkdir(parents=True, exist_ok=True)
    n_paragraphs = n_chars = 0
    for i in range(n_articles):
        sub = out_dir / f"{i // per_file_dir:04d}"
        sub.mkdir(exist_ok=True)
        paras = []
        for _ in range(rng.randint(*paragraphs)):
            paras.append(" ".join(spliced(rng, pool) for _ in range(rng.randint(1, 2))))
        title = rng.choice(pool)[:40].rstrip(" ,.")
        text = title + "\n\n" + "\n\n".join(paras) + "\n"
        (sub / f"{i:07d}_synthetic.txt").write_text(text, encoding="utf-8")
        n_paragraphs += len(paras)
        n_chars += len(text)
    return {"articles": n_articles, "paragraphs": n_paragraphs, "chars": n_chars, "sentence_pool": len(pool)}


ADDED = "9999999_added.txt"  # the article the incremental benchmark adds to a corpus


def add_article(out_dir: Path, name: str = ADDED, seed: int = 12345) -> Path:
    rng = random.Random(seed)
    pool = seed_sentences()
    path = out_dir / name
    path.write_text("추가된 기사\n\n" + "\n\n".join(spliced(rng, pool) for _ in range(8)) + "\n", encoding="utf-8")
    return path


class HashEmbedder:
    """Character 2-3-gram feature hashing into `dim` dimensions, L2-normalized.

    Not a language model: a fast stand-in with the right shape (384-d, normalized, texts that share words
    end up close) so FAISS can be measured at a million chunks. Real embedding cost is measured separately
    on random-weight models of the real architectures.
    """

    def __init__(self, dim: int = 384):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.name = f"hash-{dim}"
        self.dim = dim
        self.query_prompt = self.passage_prompt = ""
        self._hv = HashingVectorizer(
            analyzer="char_wb", ngram_range=(2, 3), n_features=dim, alternate_sign=True, norm="l2"
        )

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._hv.transform(texts).todense(), dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: list[str], progress=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = 20_000
        for start in range(0, len(texts), step):
            out[start : start + step] = self._encode(texts[start : start + step])
            if progress:
                progress(min(step, len(texts) - start))
        return out
