"""Timing calls and the peak resident-set growth over them, each measurement in a forked child (Linux only).

Why this way: torch's CPU allocator is invisible to ``tracemalloc``, and ``getrusage().ru_maxrss`` carries a
parent's high-water mark into its children across fork + exec (a child of a 300 MB process reads 319 MB before it
allocates anything). So a worker that has imported the libraries and loaded the inputs, but run no op, forks one
child per measurement; the child warms up, returns freed heap to the OS (``malloc_trim``), restarts the peak
(``/proc/self/clear_refs`` 5), reads VmRSS and reports VmHWM minus it after the timed calls.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["measure_calls", "run_in_forked_child", "timed"]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_calls(call, warmup: int, iterations: int, settle=None) -> dict[str, Any]:
    """``call()`` returns its own seconds: warm-up, then the timed calls and the peak RSS growth over them."""
    for _ in range(warmup):
        call()
    if settle is not None:
        settle()
    gc.collect()
    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):  # glibc: freed heap back to the OS, so that reuse of it counts as growth
        libc.malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        reset = True
    except OSError:  # then VmHWM also covers the warm-up (the same calls): close, not exact
        reset = False
    baseline = _status_kb("VmRSS")
    times = [call() for _ in range(iterations)]
    peak_mb = max(_status_kb("VmHWM") - baseline, 0) / 1024
    return {"times_ms": [1e3 * t for t in times], "peak_mb": peak_mb, "peak_reset": reset}


def timed(fn):
    """``fn`` as a call that returns the seconds it took (what :func:`measure_calls` times)."""

    def call() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return call


def run_in_forked_child(step, path: Path) -> int:
    """Run ``step()`` in a forked child that writes its JSON to ``path``; the child's exit status."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns to the caller
        code = 0
        try:
            path.write_text(json.dumps(step()))
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
