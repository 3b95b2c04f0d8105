"""What every benchmark script shares: paths, progress lines, JSON results, timings, tables, machine facts,
memory readings, the synthetic corpus cache and the hashing embedder.

Importing it makes the checkout's ragqa importable (also from a venv where it is not installed) and costs
only standard-library imports: cold_search.py times a cold process that imports it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
SEEDS = ROOT / "seeds"
GOLD = SEEDS / "gold_qa.jsonl"
# The ragqa under measurement: this checkout's, or the one BENCH_RAGQA_CODE names (run.py --baseline puts an
# earlier commit there, so that the same scripts measure before and after in one run).
CODE = Path(os.environ.get("BENCH_RAGQA_CODE") or ROOT).resolve()
if str(CODE) not in sys.path:
    sys.path.insert(0, str(CODE))

QUERIES_KO = [
    "미국이 H200 수출을 허용한 이유는?", "알리바바는 새 AI 칩을 어디서 제조하나?", "엔비디아 시가총액은 하루에 얼마나 증발했나?",
    "딥시크 앱은 앱스토어에서 몇 위였나?", "코어위브에 대한 엔비디아의 투자 규모는?", "과학혁신판에 상장한 기업은 몇 곳인가?",
    "선전시가 발표한 AI 지원 대책은?", "중국 정부는 화웨이 칩을 어떻게 지원하나?", "브로드컴 주가는 얼마나 떨어졌나?",
    "AMD가 수출하려는 칩은 무엇인가?",
]


# ---------------------------------------------------------------- progress, results, child processes


def log(msg: str) -> None:
    """A progress line on stderr, '[script HH:MM:SS] msg' (stdout carries only the figures)."""
    print(f"[{Path(sys.argv[0]).stem} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {path}")


def offline_env(code: Path | None = None, **extra: str) -> dict:
    """The environment for child processes: no RAGQA_* settings of the caller, no hub access, and the ragqa of
    `code` (default: the one this process measures). Python writes and reads its bytecode as for a user (pip
    compiles an installed package; an editable one is compiled on its first run): with PYTHONDONTWRITEBYTECODE
    set, as in this workplace's shell, every start would compile ragqa's modules from source (~0.1 s)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQA_") and k != "PYTHONDONTWRITEBYTECODE"}
    code = str(code or CODE)
    return {
        **env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": code, "BENCH_RAGQA_CODE": code, **extra,
    }


def child_json(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run `cmd` (a measurement in a fresh process) and return the JSON object of its last stdout line."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or offline_env(), cwd=ROOT, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd[1:]))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- timings


def percentiles(seconds: list[float], unit: str = "ms", digits: int = 2) -> dict:
    """p50, p95, min and max of timings given in seconds, in `unit` ("ms" or "s"), and their count.

    Linear interpolation between the closest ranks (numpy's default), so p50 is the median."""
    s = sorted(seconds)
    scale = {"ms": 1000, "s": 1}[unit]

    def at(q: float) -> float:
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    values = {"p50": at(0.5), "p95": at(0.95), "min": s[0], "max": s[-1]}
    return {**{f"{k}_{unit}": round(scale * v, digits) for k, v in values.items()}, "n": len(s)}


def search_percentiles(retriever, queries: list[str], k: int, modes=("lexical", "dense", "hybrid")) -> dict:
    """Warm search latency per mode: 10 warm-up queries, then every query timed once."""
    out = {}
    for mode in modes:
        for q in queries[:10]:
            retriever.search(q, k, mode)
        times = []
        for q in queries:
            t = time.perf_counter()
            retriever.search(q, k, mode)
            times.append(time.perf_counter() - t)
        out[mode] = percentiles(times)
    return out


class StageMeter:
    """Wall time (and, with rss=True, peak RSS from a sampling thread) per stage of ragqa's progress callback:
    pass it as build_index(progress=...), then call finish()."""

    def __init__(self, rss: bool = True):
        self.stages: dict[str, dict] = {}
        self.current = None
        self.rss = rss
        self._stop = threading.Event()
        if rss:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            if self.current:
                stage = self.stages[self.current]
                stage["peak_rss_mb"] = max(stage["peak_rss_mb"], rss_mb())
            time.sleep(0.02)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.current:
            now = time.perf_counter()
            if self.current:
                self.stages[self.current]["seconds"] += now - self.stages[self.current]["_t"]
            fresh = {"seconds": 0.0, "peak_rss_mb": rss_mb()} if self.rss else {"seconds": 0.0}
            self.stages.setdefault(stage, fresh)["_t"] = now
            self.current = stage

    def finish(self) -> dict:
        """{stage: {"seconds": s, "peak_rss_mb": MB}}; a stage's time runs from its first event to the next
        stage's (approximate: some stages report only after their first batch)."""
        self("done", 0, 0)
        self._stop.set()
        self.stages.pop("done", None)
        return {
            k: {"seconds": round(v["seconds"], 3), **({"peak_rss_mb": round(v["peak_rss_mb"])} if self.rss else {})}
            for k, v in self.stages.items()
        }


# How much CPU other processes use while a benchmark measures: a 2-core machine shared with another busy
# process gives our threads a fraction of their speed, so model timings record the cores others used
# meanwhile: system busy time from /proc/stat (user, nice, system, irq, softirq and hypervisor steal) minus
# this process's own CPU time, per second of wall time.


def _cpu_snap() -> tuple[float, float, float]:
    """(system busy s, this process's CPU s, wall clock s)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()


class CpuMeter:
    """`with CpuMeter() as m:` times the block: m.wall_s, and m.others_cores used by other processes."""

    def __enter__(self):
        self._start = _cpu_snap()
        self.t0 = self._start[2]  # perf_counter() at the start
        return self

    def __exit__(self, *exc):
        (busy0, own0, t0), (busy1, own1, t1) = self._start, _cpu_snap()
        self.wall_s = t1 - t0
        self.others_cores = round(max(0.0, ((busy1 - busy0) - (own1 - own0)) / self.wall_s), 2) if self.wall_s > 0 else 0.0


def wait_quiet(max_wait: float = 60.0, threshold: float = 0.15, window: float = 0.5) -> dict:
    """Sleep until other processes use under `threshold` cores over `window` seconds (at most `max_wait`)."""
    start = time.perf_counter()
    while True:
        with CpuMeter() as m:
            time.sleep(window)
        waited = time.perf_counter() - start
        if m.others_cores < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 1), "others_cores": m.others_cores}


# ---------------------------------------------------------------- machine and memory


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(*packages: str) -> dict:
    """Installed version of each package (None when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine(*packages: str) -> dict:
    """CPU, cores, RAM, Python and the versions of `packages`: what a figure was measured on."""
    try:
        ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        ram_gb = None
    return {
        "cpu": cpu_name(), "cores": os.cpu_count(), "ram_gb": ram_gb, "arch": platform.machine(),
        "python": platform.python_version(), "versions": versions(*packages),
    }


def describe(m: dict) -> str:
    """'AMD EPYC 7B13, 2 cores, 23.5 GB RAM, Python 3.11.7'."""
    return f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM, Python {m['python']}"


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def rss_mb() -> float:
    """Resident memory of this process now, in MiB (what the tables call MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """The most resident memory this process has used, in MiB: VmHWM, its memory's high-water mark since it
    started. Not getrusage's ru_maxrss: Linux carries that across fork and exec, so a child process of a
    benchmark that held 6 GB reported 6 GB whatever it used itself."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def dir_bytes(*paths: Path) -> int:
    return sum(p.stat().st_size for root in paths if root.exists() for p in root.rglob("*") if p.is_file())


# ---------------------------------------------------------------- tables


def table(rows: list[list], header: list[str]) -> str:
    """Columns padded to their widest cell, ' | ' between them, a dashed line under the header (Markdown)."""
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)


def columns(rows: list[list], widths: list[str], indent: str = "") -> list[str]:
    """Fixed-width lines: cell i formatted with the spec widths[i] ("<32", ">12"), cells one space apart."""
    return [indent + " ".join(format(c, w) for c, w in zip(row, widths)) for row in rows]


# ---------------------------------------------------------------- ragqa under benchmark


def ragqa_default(name: str):
    """The default of one of ragqa's settings (chunk size, batch size, top k, ...)."""
    from ragqa.config import Settings

    return Settings.model_fields[name].default


def bench_settings(index_dir: Path, **overrides):
    """Settings for an index under benchmarks/work: no embedding model or LLM unless given."""
    from ragqa.config import Settings

    fields = {"models_dir": index_dir.parent / "models", "embed_model": "none", "llm": "none", **overrides}
    return Settings(index_dir=index_dir, **fields)


def synthetic_corpus(articles: int, long_paragraphs: float = 0.0) -> Path:
    """benchmarks/work/corpus-N: N synthetic articles (ragqa.synthetic, seed 0), written once and reused."""
    from ragqa.synthetic import write_corpus

    name = f"corpus-{articles}" + (f"-long{long_paragraphs:g}" if long_paragraphs else "")
    corpus = WORK / name
    if not corpus.exists():
        log(f"writing {articles} synthetic articles to {corpus}")
        tmp = corpus.with_name(name + ".tmp")  # a killed run leaves no half-written corpus behind
        shutil.rmtree(tmp, ignore_errors=True)
        write_corpus(tmp, articles, seed=0, long_paragraphs=long_paragraphs)
        tmp.rename(corpus)
    return corpus


class HashEmbedder:
    """Character 2-3-gram feature hashing into `dim` dimensions, L2-normalized.

    Not a language model: a fast stand-in with the right shape (384-d, normalized, texts that share words
    end up close) so FAISS can be measured at a million chunks. Real embedding cost is measured separately
    on random-weight models of the real architectures.
    """

    def __init__(self, dim: int = 384):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.name = f"hash-{dim}"
        self.engine = "hashing"
        self.dim = dim
        self.query_prompt = self.passage_prompt = ""
        self.identity = {
            "engine": self.engine, "model": self.name, "weights": "char-2-3-grams", "dim": dim,
            "query_prompt": "", "passage_prompt": "",
        }
        self._hv = HashingVectorizer(
            analyzer="char_wb", ngram_range=(2, 3), n_features=dim, alternate_sign=True, norm="l2"
        )

    def _encode(self, texts: list[str]):
        import numpy as np

        return np.asarray(self._hv.transform(texts).todense(), dtype=np.float32)

    def encode_queries(self, texts: list[str]):
        return self._encode(texts)

    def encode_passages(self, texts: list[str], progress=None):
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = 20_000
        for start in range(0, len(texts), step):
            out[start : start + step] = self._encode(texts[start : start + step])
            if progress:
                progress(min(step, len(texts) - start))
        return out
