"""Korean analysis on every core: a build's texts go to worker processes in batches and come back in order.

MeCab holds Python's GIL, so threads would not help. On Linux workers are forked (they start in ~10 ms and
share the build's memory); they ignore Ctrl-C, which is the build's to handle, and die with the build, so a
build killed with SIGKILL leaves no worker behind. Elsewhere, on one core, for little work, or when a worker
cannot start or dies (the out-of-memory killer), the texts are analysed in this process.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from typing import Callable, Iterator

from .lexical import batches

# Below this much text (~4,000 news paragraphs) starting workers is not worth it: the work stays here.
MIN_PARALLEL_CHARS = 500_000


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def analyse(fn: Callable, texts: list[str]) -> Iterator[tuple[int, int, list]]:
    """(start, end, [fn(text) for text in texts[start:end]]) for consecutive batches of the texts, in order.
    `fn` must be a module-level function (or a partial of one): workers are given it by name."""
    lengths = [len(t) for t in texts]
    spans = list(batches(lengths))
    workers = cores() if sys.platform.startswith("linux") else 1
    if workers < 2 or len(spans) < 2 or sum(lengths) < MIN_PARALLEL_CHARS:
        for a, b in spans:
            yield a, b, [fn(t) for t in texts[a:b]]
        return
    import gc
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # A collection in a worker would write to every object it shares with the build and so copy its memory.
    gc.freeze()
    pool = ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_worker_start, initargs=(os.getpid(),)
    )
    done = 0  # batches given back
    try:
        todo = iter(spans)
        pending: deque = deque()
        for a, b in todo:  # a few batches in flight per worker bound the memory results take
            pending.append((a, b, pool.submit(_run, fn, texts[a:b])))
            if len(pending) >= 3 * workers:
                break
        while pending:
            a, b, future = pending.popleft()
            result = future.result()
            for c, d in todo:
                pending.append((c, d, pool.submit(_run, fn, texts[c:d])))
                break
            yield a, b, result
            done += 1
    except (OSError, BrokenProcessPool):
        pass  # a worker could not start, or died (out of memory?): the rest is analysed here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()
    for a, b in spans[done:]:
        yield a, b, [fn(t) for t in texts[a:b]]


def _run(fn: Callable, texts: list[str]) -> list:
    """A worker's task (this process analyses its own share without it)."""
    return [fn(t) for t in texts]


def _worker_start(parent: int) -> None:
    import ctypes
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the build dies
    if os.getppid() != parent:  # the build died before that took effect
        os._exit(1)
