"""Policy files: saving and loading trained policies, and the checkpoints shipped with pegnn.

    policy = pegnn.pretrained("tecfp")            # pegnn/checkpoints/tecfp.pt
    save_policy("runs/x/policy.pt", "tecfp", model, info)
    policy = load_policy("runs/x/policy.pt")

A policy file (``pegnn/checkpoints/<name>.pt``) is small and self-contained: the
spec (as a dict), the model config, the weights, and the run's git revision, seed
and measured metrics — so it loads without the YAML files of ``graphs/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from .models import PEGNN
from .policies import TECFPPolicy, TEUSPolicy
from .ris_policy import RISPolicy
from .spec import ProblemSpec

__all__ = ["pretrained", "save_policy", "load_policy", "load_named_policies", "read_policy_file",
           "load_task_policy", "CHECKPOINTS"]

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
_KINDS = {"tecfp": TECFPPolicy, "teus": TEUSPolicy, "ris": RISPolicy}


def save_policy(path: str | Path, kind: str, model: PEGNN, info: Mapping | None = None,
                policy_kwargs: Mapping | None = None) -> None:
    """Write a self-contained policy file (spec dict, model config, weights, info, and the
    keyword arguments the policy class needs, e.g. its noise feature)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": kind, "spec": model.spec.to_dict(), "model": model.config,
                "state_dict": model.state_dict(), "info": dict(info or {}),
                "policy_kwargs": dict(policy_kwargs or {})}, path)


def read_policy_file(path: str | Path, kind: str | None = None) -> dict:
    """The dict :func:`save_policy` wrote (``kind``, ``spec``, ``model``, ``state_dict``,
    ``info``, ``policy_kwargs``), checked. ``kind``, when given, is the kind the caller
    needs: a file of another kind is refused. Raises ``ValueError`` with one line for a
    missing file or one that is not a policy file (e.g. a Lightning ``.ckpt``:
    :func:`pegnn.train.load_policy_checkpoint` reads those)."""
    if Path(path).is_dir():
        raise ValueError(f"{path}: a folder, expected a policy file (e.g. {Path(path) / 'policy.pt'})")
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such policy file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or foreign file: pickle/zip errors of many kinds
        raise ValueError(f"{path}: not a policy file ({type(e).__name__}: {str(e).splitlines()[0][:120]})") \
            from None
    missing = [k for k in ("kind", "spec", "model", "state_dict") if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise ValueError(f"{path}: not a policy file written by save_policy (missing {missing})")
    if kind is not None and ck["kind"] != kind:
        raise ValueError(f"{path}: a {ck['kind']!r} policy, expected a {kind!r} one")
    return ck


def load_task_policy(path: str | Path, kind: str, policy_cls, task: str):
    """``policy_cls(model, info)`` from a policy file of a task's own ``kind`` (one that
    :func:`load_policy` does not know, e.g. ``"pc"``), written by ``python -m tasks.<task>
    train``; one-line ``ValueError`` for a missing or foreign file."""
    from .train import model_from_config
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no policy file {str(p)!r} (train one with `python -m tasks.{task} train`)")
    ck = read_policy_file(p, kind=kind)
    model = model_from_config(ProblemSpec.from_dict(ck["spec"], source=str(p)), ck["model"])
    model.load_state_dict(ck["state_dict"])
    return policy_cls(model, {**ck.get("info", {}), "path": str(p)})


def load_named_policies(items, kind: str, option: str = "--checkpoint", shipped: bool = False) -> dict:
    """``NAME=FILE`` strings (a task's ``option`` list, e.g. ``--checkpoint``) → ``{NAME:
    policy}``, each loaded by :func:`load_policy` with ``kind``; with ``shipped``, a bare
    ``NAME`` loads the shipped policy of that name (:func:`pretrained`). A malformed item
    or a bad file raises ``ValueError`` naming ``option`` and the item."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if shipped and not sep and name in _shipped():
            path = CHECKPOINTS / f"{name}.pt"
        if not name or not path:
            also = " or the name of a shipped policy" if shipped else ""
            raise ValueError(f"{option} {item!r}: expected NAME=FILE{also}")
        try:
            out[name] = load_policy(path, kind=kind)
        except ValueError as e:
            raise ValueError(f"{option} {item!r}: {e}") from None
    return out


def _shipped() -> list[str]:
    return sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))


def load_policy(path: str | Path, kind: str | None = None, **policy_kwargs):
    """Load a policy file written by :func:`save_policy` (checked by
    :func:`read_policy_file`, with ``kind`` the kind the caller needs, if any); keyword
    arguments override the policy keyword arguments stored in it."""
    ck = read_policy_file(path, kind)
    if ck["kind"] not in _KINDS:
        raise ValueError(f"{path}: policy kind {ck['kind']!r} is not one of {sorted(_KINDS)} "
                         f"(a task's own kind, e.g. 'pc', loads through that task)")
    spec = ProblemSpec.from_dict(ck["spec"], source=str(path))
    model = PEGNN(spec, **ck["model"])
    model.load_state_dict(ck["state_dict"])
    try:
        policy = _KINDS[ck["kind"]](model, **{**ck.get("policy_kwargs", {}), **policy_kwargs})
    except TypeError as e:  # an override the policy class does not take
        raise ValueError(f"{path}: a {ck['kind']!r} policy takes no {sorted(policy_kwargs)} ({e})") from None
    policy.info = ck.get("info", {})
    return policy


def pretrained(name: str, **policy_kwargs):
    """A policy shipped with pegnn (``pegnn/checkpoints/<name>.pt``): ``"tecfp"``,
    ``"tecfp_r2"`` (TECFP trained through 2 WMMSE steps in CFP form), ``"tecfp_mmse"``
    (TECFP whose TEPN also reads the MMSE precoder, :func:`mmse_input`), ``"tecfp_mmse_r"``
    (and the MMSE precoder's stream rates, :func:`stream_rate_input`), ``"teus"``
    (paper 000), ``"teus_mmse"`` (TEUSN reading the MMSE precoder of all candidates) or
    ``"ris_gnn"`` (paper 002) or ``"ris_gnn_dual"`` (the RIS GNN with the dual-form output,
    ``graphs/ris_pr_dual.yaml``). Keyword arguments override the policy's own (e.g.
    ``pretrained("tecfp", refine=5)``: 5 WMMSE steps after TECFP;
    ``pretrained("teus", refine=2)``: 2 rounds of swap search after TEUS)."""
    have = _shipped()
    path = CHECKPOINTS / f"{name}.pt"
    if name not in have:        # a name, not a path: "../x" must not load a file from elsewhere
        raise ValueError(f"no shipped policy {name!r}; available: {have or 'none yet'}")
    return load_policy(path, **policy_kwargs)
