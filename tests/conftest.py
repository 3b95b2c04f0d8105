"""Shared fixtures: the seed corpus, tiny real models built once per session, ready-made indexes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
for key in [k for k in os.environ if k.startswith("RAGQA_")]:
    del os.environ[key]

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


@pytest.fixture(scope="session")
def seed_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt"))]


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_embedder_path(tiny_dir, seed_texts) -> Path:
    """A tiny random BERT sentence-transformers model whose WordPiece vocab covers the seeds' Hangul."""
    from tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tiny_dir / "tiny-embedder", seed_texts + ENGLISH, seed=0)


@pytest.fixture(scope="session")
def tiny_gguf(tiny_dir, seed_texts) -> Path:
    """A tiny random llama-architecture GGUF with its own Hangul-covering BPE and a ChatML template."""
    from tiny_models import build_tiny_gguf

    return build_tiny_gguf(tiny_dir / "tiny-llm.gguf", seed_texts + ENGLISH, seed=0)


@pytest.fixture(scope="session")
def tiny_llm(tiny_gguf, tmp_path_factory):
    """The tiny GGUF loaded through ragqa's LocalLLM (loaded once, like the REPL does)."""
    from ragqa.llm import LocalLLM

    return LocalLLM(tiny_gguf, make_settings(tmp_path_factory.mktemp("llm"), n_ctx=4096, n_threads=2))


ENGLISH = [
    "Why did the US allow H200 exports to China? Huawei already has comparable chips, Bloomberg reported. "
    "Alibaba developed its own AI chip. DeepSeek shocked Nvidia investors; the stock fell 17 percent."
]


def make_settings(tmp: Path, **kw):
    from ragqa.config import Settings

    base = dict(index_dir=tmp / "index", models_dir=tmp / "models", seeds_dir=SEEDS, embed_model="none", llm="none")
    base.update(kw)
    return Settings(**base)


def index_copy(settings, tmp: Path):
    """Settings of a private copy of a built index, for a test that damages or rebuilds it."""
    copy = settings.model_copy(update={"index_dir": tmp / "index"})
    shutil.copytree(settings.index_dir, copy.index_dir)
    return copy


def manifest_of(settings) -> dict:
    return json.loads((settings.index_dir / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(settings, manifest: dict) -> None:
    (settings.index_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def subprocess_env() -> dict:
    """The environment for running ragqa as a subprocess from this checkout (offline, as every test is)."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def lexical_index(tmp_path_factory):
    """Settings of a lexical-only index over the seeds, built once."""
    from ragqa.build import build_index

    tmp = tmp_path_factory.mktemp("lexical")
    settings = make_settings(tmp)
    build_index([SEEDS], settings)
    return settings


@pytest.fixture(scope="session")
def dense_index(tmp_path_factory, tiny_embedder_path):
    """Settings of a hybrid index over the seeds built with the tiny embedder, built once."""
    from ragqa.build import build_index

    tmp = tmp_path_factory.mktemp("dense")
    settings = make_settings(tmp, embed_model=str(tiny_embedder_path))
    build_index([SEEDS], settings, embed_explicit=True)
    return settings


@pytest.fixture(scope="session")
def fake_engine(tmp_path_factory):
    """An Engine over a hybrid index of the seeds built with the torch-free FakeEmbedder (logic tests)."""
    from fakes import FakeEmbedder
    from ragqa.engine import Engine

    settings = make_settings(tmp_path_factory.mktemp("fake-dense"), embed_model="fake-64")
    engine = Engine(settings, embedder=FakeEmbedder())
    engine.index([SEEDS])
    return engine


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """A private copy of the seed articles that a test may modify."""
    dst = tmp_path / "corpus"
    dst.mkdir()
    for p in SEEDS.glob("*.txt"):
        shutil.copy(p, dst / p.name)
    return dst
