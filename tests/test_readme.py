"""README.md: its Python snippets run as written, and every task command it shows exists."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.S)
#: the one change the test makes: the "Your own problem" snippet trains for 5 steps, not 200
SHORT = ('"train.max_steps=200", "run.name=mine"',
         '"train.max_steps=5", "train.val_every=5", "train.progress=false", "run.name=mine", "run.out=RUNS"')


def test_readme_has_the_three_snippets():
    assert len(SNIPPETS) == 3 and SHORT[0] in SNIPPETS[1]


@pytest.mark.parametrize("i", range(3))
def test_readme_python_snippet_runs_as_written(i, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(ROOT)                                  # the snippets read graphs/ relative to the repo
    monkeypatch.setenv("PEGNN_CACHE", str(tmp_path / "cache"))
    code = SNIPPETS[i].replace(SHORT[0], SHORT[1].replace("RUNS", str(tmp_path / "runs")))
    scope: dict = {}
    exec(compile(code, f"README.md python snippet {i + 1}", "exec"), scope)
    if i == 0:
        assert scope["out"]["A"].shape == (16, 8, 2, 2)
    if i == 1:
        assert (tmp_path / "runs" / "mine").is_dir() and scope["info"] is not None
    if i == 2:
        assert scope["V"].shape == (16, 8, 2, 32) and scope["mask"].sum(-1).eq(8).all()
        assert (scope["info"]["se"] >= scope["info"]["se_init"] - 1e-9).all()


def _task_commands():
    """(module, subcommand or None) for every ``python -m tasks.X [a|b|c]`` line of the README's sh blocks."""
    cmds = set()
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        for m in re.finditer(r"^python -m (tasks\.\w+)(?: ([a-z0-9|]+))?", block, re.M):
            for sub in (m.group(2) or "").split("|"):
                cmds.add((m.group(1), sub or None))
    return sorted(cmds, key=str)


def test_readme_shows_task_commands():
    assert len(_task_commands()) >= 20


@pytest.mark.parametrize("module, sub", _task_commands())
def test_readme_task_command_exists(module, sub, capsys):
    main = importlib.import_module(module).main
    argv = [sub, "--help"] if sub else ["--help"]
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc in (0, None), capsys.readouterr().err
    assert "usage" in capsys.readouterr().out.lower()
