"""The shape of a task's usage error: one line on stderr and exit status 2."""
from __future__ import annotations

import pytest


def usage_error(main, argv, capsys) -> str:
    """Run ``main(argv)``, check it exits 2 with exactly one non-blank stderr line; return it."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]
