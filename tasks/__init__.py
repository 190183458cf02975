"""Task scripts: ``python -m tasks.<name> --help``; the README lists them."""
from __future__ import annotations

import sys


def not_a_command(module: str, command: str) -> None:
    """What ``python -m tasks.<library module>`` does: one line naming the command that
    runs the module's code, and exit status 2 (it used to exit 0 having done nothing)."""
    print(f"error: python -m {module}: a library module, not a command; expected {command}", file=sys.stderr)
    sys.exit(2)
