"""How much CPU other processes use while a benchmark measures.

A 2-core machine shared with another busy process gives our threads a fraction of their speed, so every
model timing records the cores others used meanwhile: system busy time from /proc/stat (user, nice,
system, irq, softirq and hypervisor steal) minus this process's own CPU time, per second of wall time.
"""

from __future__ import annotations

import os
import time


def _snap() -> tuple[float, float, float]:
    """(system busy s, this process's CPU s, wall clock s)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.perf_counter()


class CpuMeter:
    """`with CpuMeter() as m:` times the block: m.wall_s, and m.others_cores used by other processes."""

    def __enter__(self):
        self._start = _snap()
        self.t0 = self._start[2]  # perf_counter() at the start
        return self

    def __exit__(self, *exc):
        (busy0, own0, t0), (busy1, own1, t1) = self._start, _snap()
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
