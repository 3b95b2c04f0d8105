"""Korean analysis in worker processes: the same results as one process, in order; no worker outlives a build."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import SEEDS
from ragqa import lexical, workers
from ragqa.chunking import analyse_articles, chunk_articles
from ragqa.corpus import load_corpus
from ragqa.lexical import tokenize

linux_cores = pytest.mark.skipif(
    not sys.platform.startswith("linux") or workers.cores() < 2, reason="workers run on Linux with 2+ cores"
)


def pid_of(_text: str) -> int:
    return os.getpid()


@linux_cores
def test_workers_give_what_one_process_gives(monkeypatch):
    articles = load_corpus([SEEDS]).articles
    texts = [c.text for c in chunk_articles(articles, 220)]
    alone = analyse_articles(articles, 220)
    monkeypatch.setattr(workers, "MIN_PARALLEL_CHARS", 0)
    monkeypatch.setattr(lexical, "BATCH", 8)  # many batches, several in flight
    done = list(workers.analyse(tokenize, texts))
    assert [(a, b) for a, b, _ in done] == list(lexical.batches([len(t) for t in texts]))
    assert [r for _, _, rs in done for r in rs] == [tokenize(t) for t in texts]
    assert analyse_articles(articles, 220) == alone  # the long paragraphs' pieces and tokens too
    pids = {p for _, _, rs in workers.analyse(pid_of, texts) for p in rs}
    assert os.getpid() not in pids and 1 <= len(pids) <= workers.cores()


def dies(fn, texts):
    os._exit(1)


@linux_cores
def test_a_worker_that_dies_leaves_the_work_to_this_process(monkeypatch):
    texts = [c.text for c in chunk_articles(load_corpus([SEEDS]).articles, 220)]
    monkeypatch.setattr(workers, "MIN_PARALLEL_CHARS", 0)
    monkeypatch.setattr(lexical, "BATCH", 8)
    monkeypatch.setattr(workers, "_run", dies)  # what a worker killed by the out-of-memory killer looks like
    assert [r for _, _, rs in workers.analyse(tokenize, texts) for r in rs] == [tokenize(t) for t in texts]


KILLED = textwrap.dedent("""
    import sys, time
    from ragqa import workers

    def slow(text):
        time.sleep(0.05)
        return __import__("os").getpid()

    workers.MIN_PARALLEL_CHARS = 0
    for _, _, pids in workers.analyse(slow, ["칩"] * 100_000):
        print(*pids, flush=True)
""")


@linux_cores
def test_no_worker_outlives_a_killed_build(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    seen: set[int] = set()
    while len(seen) < 2:
        seen.update(int(p) for p in proc.stdout.readline().split())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in seen if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; init reaps it
