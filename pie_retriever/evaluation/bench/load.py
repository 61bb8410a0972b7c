"""A bounded CPU hog to measure speed on a loaded machine: ``with cpu_hog(2): ...`` runs two busy-loop processes.

Each hog is a separate Python process spinning on the CPU; it stops by itself after ``max_seconds`` (so a
crashed benchmark cannot leave it behind) and is killed, by its own process id, when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from typing import Iterator

__all__ = ["cpu_hog", "load_average"]

_HOG = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, rounded (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@contextlib.contextmanager
def cpu_hog(processes: int = 2, max_seconds: float = 600.0, settle_s: float = 0.5) -> Iterator[list[int]]:
    """Run ``processes`` busy-loop processes for the duration of the block (at most ``max_seconds``); yields their pids."""
    procs = [subprocess.Popen([sys.executable, "-c", _HOG.format(seconds=float(max_seconds))],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(max(0, int(processes)))]
    try:
        time.sleep(settle_s)  # let them reach the run queue
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
