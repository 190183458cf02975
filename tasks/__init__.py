"""Task scripts: ``python -m tasks.<name> --help``; the README lists them."""
from __future__ import annotations

import sys
import time


def not_a_command(module: str, command: str) -> None:
    """What ``python -m tasks.<library module>`` does: one line naming the command that
    runs the module's code, and exit status 2 (it used to exit 0 having done nothing)."""
    print(f"error: python -m {module}: a library module, not a command; expected {command}", file=sys.stderr)
    sys.exit(2)


def timed(fn, reps: int = 3):
    """(result, median seconds) over ``reps`` calls of ``fn()`` — how the task commands
    time a method (batched, on the same drops as the methods it is compared with)."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, sorted(times)[len(times) // 2]
