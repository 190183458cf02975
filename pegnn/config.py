"""Run configs: YAML files with ``key.sub=value`` command-line overrides.

    cfg = load_config("tasks/configs/precoding.yaml", ["model.hidden=16", "train.max_steps=2000"])

Values in overrides are parsed as YAML (``3`` → int, ``[1, 2]`` → list, ``none`` → None);
``3e-4`` is a float, as in YAML 1.2 (PyYAML's 1.1 rules would read it as a string).
Every user mistake raises :class:`ConfigError` with one line naming the key; with
``defaults`` every value must also have its default's kind. The task scripts' command
lines use :class:`TaskArgumentParser` and the ``positive_int``/``non_negative_int`` flag
types, so their flag mistakes are one line too.
"""
from __future__ import annotations

import argparse
import copy
import functools
import re
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import yaml

__all__ = ["ConfigError", "load_config", "apply_overrides", "dump_config", "positive_int", "non_negative_int",
           "path_arg", "out_file", "check_writable", "TaskArgumentParser", "out_of_memory", "task_main"]


class ConfigError(ValueError):
    """A malformed config or override: ``<source>: <key>: <what is wrong>``."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-style numbers: ``1e-3`` and ``2E5`` are floats (no dot
    needed), and ``1:30`` stays a string (YAML 1.1 reads it as the base-60 int 90,
    which turned ``train.max_time=1:30`` into "got 90")."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    # no leading zeros: SafeConstructor reads "0..." as octal, so "08" would be an error and
    # "010" would be 8; such values stay strings (e.g. run.name=08)
    _INT, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def load_config(base: str | Path | Mapping, overrides: Sequence[str] = (), defaults: Mapping | None = None) -> dict:
    """Merge ``defaults`` ← ``base`` (a YAML path or a mapping) ← ``overrides``."""
    cfg = copy.deepcopy(dict(defaults or {}))
    if isinstance(base, Mapping):
        data, src = dict(base), "<dict>"
    else:
        src = str(base)
        try:
            data = _yaml(Path(base).read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{src}: <file>: cannot read the config ({e.strerror or e})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{src}: <file>: not a text (UTF-8) file; expected a YAML config") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{src}: <yaml>: malformed YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{src}: <root>: expected a mapping of settings")
    _merge(cfg, data, src, "", strict=defaults is not None)
    cfg = apply_overrides(cfg, overrides, strict=defaults is not None)
    if defaults is not None:
        _check_types(cfg, defaults, "")
    return cfg


#: keys that may be ``null`` although their default is not: "no time limit", "no clipping"
NULLABLE = frozenset({"max_time", "grad_clip"})


def _check_types(cfg: dict, defaults: Mapping, prefix: str) -> None:
    """Each value must have its default's kind (bool, int, number, string, list), so that
    ``train.lr=abc`` fails here, in one line, and not minutes later inside the run.
    Anything is accepted where the default is ``None`` (the consumer checks it);
    ``null`` elsewhere only for the keys in :data:`NULLABLE` (``train.seed=`` is null
    too, and would fail deep inside the run). Ints are accepted for a float default
    (and converted); numbers for a string default (YAML reads ``run.name=1`` as an int)."""
    for k, d in defaults.items():
        v, path = cfg.get(k), f"{prefix}{k}"
        if d is None:
            continue
        if v is None:
            if k in NULLABLE:
                continue
            raise ConfigError(f"config: {path}: expected a value like its default {d!r}, got null "
                              f"(an empty {path}= is null)")
        if isinstance(d, Mapping):
            if not isinstance(v, dict):
                raise ConfigError(f"config: {path}: expected a section (mapping), got {v!r}")
            _check_types(v, d, path + ".")
            continue
        is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
        if isinstance(d, bool):
            ok, want = isinstance(v, bool), "true or false"
        elif isinstance(d, int):
            ok, want = is_num and float(v).is_integer(), "an integer"
            if ok:
                cfg[k] = int(v)
        elif isinstance(d, float):
            ok, want = is_num, "a number"
            if ok:
                cfg[k] = float(v)
        elif isinstance(d, str):
            ok, want = isinstance(v, str) or is_num, "a string"
            if ok:
                cfg[k] = str(v)
        elif isinstance(d, (list, tuple)):
            ok, want = isinstance(v, (list, tuple)), "a list"
        else:
            ok, want = True, ""
        if not ok:
            raise ConfigError(f"config: {path}: expected {want} (default {d!r}), got {v!r}")


def apply_overrides(cfg: dict, overrides: Sequence[str], strict: bool = True) -> dict:
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override: {ov}: expected KEY=VALUE, e.g. model.hidden=16")
        key, raw = ov.split("=", 1)
        try:
            value = _yaml(raw)
        except yaml.YAMLError:
            value = raw
        node, parts = cfg, key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override: {ov}: empty key name in {key.strip()!r}; expected e.g. model.hidden=16")
        for i, p in enumerate(parts[:-1]):
            if p not in node:
                if strict:
                    raise ConfigError(f"override: {key}: unknown key {'.'.join(parts[:i + 1])!r}; "
                                      f"expected one of {sorted(node)}")
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"override: {key}: {'.'.join(parts[:i + 1])!r} is not a section")
            node = node[p]
        if strict and parts[-1] not in node:
            raise ConfigError(f"override: {key}: unknown key; expected one of {sorted(node)}")
        node[parts[-1]] = value
    return cfg


def _merge(dst: dict, src: Mapping, source: str, prefix: str, strict: bool) -> None:
    for k, v in src.items():
        path = f"{prefix}{k}"
        if strict and k not in dst:
            raise ConfigError(f"{source}: {path}: unknown key; expected one of {sorted(dst)}")
        if isinstance(v, Mapping) and isinstance(dst.get(k), dict):
            _merge(dst[k], v, source, path + ".", strict)
        else:
            dst[k] = copy.deepcopy(v)


def dump_config(cfg: Mapping, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False))


def _int_at_least(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    parse.__name__ = what.replace(" ", "_")
    return parse


#: argparse ``type=`` for counts: ``--batch -1`` is refused in one line, exit 2
positive_int = _int_at_least(1, "a positive int")
non_negative_int = _int_at_least(0, "a non-negative int")


def snr_db(text: str) -> float:
    """argparse ``type=`` for an SNR in dB: finite and within ±100 dB (the range
    ``data.snrs`` takes; beyond it the noise variance under- or overflows float32)."""
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not -100 <= v <= 100:
        raise argparse.ArgumentTypeError(f"expected an SNR in dB within [-100, 100], got {text!r}")
    return v


def path_arg(text: str) -> str:
    """argparse ``type=`` for a path: an empty one (``--checkpoint "$UNSET"``) is refused
    rather than read as "not given" and silently replaced by a default."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def check_writable(path: str | Path, what: str) -> Path:
    """Raise ``ValueError`` naming ``what`` (``"--out"``, ``"run.out"``) unless a folder
    can be made at ``path`` and written in; nothing it makes stays. Called before any
    work, so an unwritable output is one line at once, not a traceback after a long run."""
    p = Path(path)
    made, q = [], p
    while not q.exists() and q != q.parent:   # the folders this check creates, deepest first
        made.append(q)
        q = q.parent
    try:
        if q.exists() and not q.is_dir():
            raise NotADirectoryError(20, f"{q} is a file")
        p.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=p).close()
    except OSError as e:
        raise ValueError(f"{what}: cannot write to {str(p)!r} ({e.strerror or e})") from None
    finally:
        for m in made:
            try:
                m.rmdir()
            except OSError:
                pass
    return p


def out_file(text: str) -> str:
    """argparse ``type=`` for an output file (a results JSON): a non-empty path whose
    folder can be written (:func:`check_writable`). argparse also runs it on a string
    default, so the default output is checked at parse time too, before any work."""
    try:
        check_writable(Path(path_arg(text)).parent, "out")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    return text


class TaskArgumentParser(argparse.ArgumentParser):
    """The task scripts' parser: a usage mistake (``--n-test 0``, an unknown flag, a
    missing command) is one line ``error: <prog>: <message> (see --help)`` on stderr and
    exit status 2, the same shape as every other user error of the tasks. Subcommand
    parsers inherit the class."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):
        # a missing command is named by its choices ("required: {train,evaluate}"), not by
        # the subparsers' dest ("cmd"); the usage line is what argparse shows anyway
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction) and a.metavar is None:
                a.metavar = "{" + ",".join(a.choices) + "}"
        return super().parse_known_args(args, namespace)

    def parse_task(self, argv=None, untimed: Sequence[str] = ("train", "labels")):
        """Parse a task command line and apply what every task command shares.

        * ``--threads N`` on each command (or on the parser, without commands): torch's
          intra-op threads. Default 1 for commands that time methods, i.e. all but those
          in ``untimed`` (training keeps torch's default); see
          :func:`pegnn.train.set_threads` for why.
        * :func:`pegnn.cpu.keep_freed_memory` (large batch tensors reuse heap memory).
        """
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        for q in (list(subs[0].choices.values()) if subs else [self]):
            if not any("--threads" in a.option_strings for a in q._actions):
                q.add_argument("--threads", type=positive_int, default=None,
                               help="torch threads (default: 1 for commands that time methods, see "
                                    "pegnn.train.set_threads; torch's default for training)")
        args = self.parse_args(argv)
        from .cpu import keep_freed_memory
        from .train import set_threads
        keep_freed_memory()
        if args.threads is not None or getattr(args, "cmd", None) not in untimed:
            set_threads(1 if args.threads is None else args.threads)
        return args


def out_of_memory(e: BaseException) -> str | None:
    """What an allocation failure needed, in one phrase ("one tensor alone needs 931 GiB"),
    or None when ``e`` is not one. torch's CPU allocator raises a RuntimeError
    ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes"), numpy
    and :func:`pegnn.data.cached` a MemoryError with a message; all come from sizes too
    large for this machine."""
    if not isinstance(e, MemoryError) and not (isinstance(e, RuntimeError) and "allocate" in str(e)):
        return None
    need = re.search(r"allocate (\d+) bytes", str(e))
    if need:
        return f"one tensor alone needs {int(need.group(1)) / 2**30:,.0f} GiB"
    return str(e) if isinstance(e, MemoryError) and str(e) else type(e).__name__


def task_main(main):
    """Decorator for a task's ``main(argv) -> int``: an allocation failure (a config whose
    sizes do not fit in memory, ``sizes.N_T=100000000``) is one line on stderr and exit
    status 2, like every other user error of the tasks, instead of torch's traceback.
    A process killed by the kernel's OOM killer (sizes that fit in virtual memory but not
    in RAM) never gets here."""
    @functools.wraps(main)
    def wrapped(argv=None) -> int:
        try:
            return main(argv)
        except (MemoryError, RuntimeError) as e:
            what = out_of_memory(e)
            if what is None:
                raise
            module = sys.modules[main.__module__]     # run with -m, __module__ is "__main__"
            name = module.__spec__.name if getattr(module, "__spec__", None) else main.__module__
            print(f"error: python -m {name}: out of memory ({what}); expected sizes, batch "
                  f"sizes or counts that fit in this machine's memory", file=sys.stderr)
            return 2
    return wrapped
