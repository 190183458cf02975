"""Benchmarks: ``python -m tasks.bench {engine,wireless} [options]``.

Each writes JSON under ``results/bench/``. Speed lives here, never in tests.
"""
from __future__ import annotations

import importlib
import sys

BENCHES = {"engine": "tasks.bench_engine", "wireless": "tasks.bench_wireless"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: python -m tasks.bench {{{','.join(BENCHES)}}} [options]\n\n{__doc__.strip()}\n\n"
              f"python -m tasks.bench <benchmark> --help lists a benchmark's options")
        return 0
    if not argv or argv[0] not in BENCHES:
        what = f"unknown benchmark {argv[0]!r}" if argv else "no benchmark named"
        print(f"error: python -m tasks.bench: {what}; expected one of {{{','.join(BENCHES)}}} "
              f"(usage: python -m tasks.bench {{{','.join(BENCHES)}}} [options])", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
