"""Trained policies on plain tensors, and the checkpoints shipped with pegnn.

    policy = pegnn.pretrained("tecfp")
    V = policy(H, noise_var)           # H [B, K, N_R, N_T] complex → V [B, K, N_R, N_T], power 1

A policy file (``pegnn/checkpoints/<name>.pt``) is small and self-contained: the
spec (as a dict), the model config, the weights, and the run's git revision, seed
and measured metrics — so it loads without the YAML files of ``graphs/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from .graph import build_batch
from .models import PEGNN
from .spec import ProblemSpec

__all__ = ["TECFPPolicy", "pretrained", "save_policy", "load_policy", "CHECKPOINTS"]

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


class TECFPPolicy:
    """TECFP (paper 000 Sec. IV-B): TEPN predicts the auxiliary tensors (A, U) and the
    closed form CFP (6) turns them into the precoder."""

    kind = "tecfp"

    def __init__(self, model: PEGNN, P_T: float = 1.0):
        self.model, self.spec, self.P_T = model.eval(), model.spec, P_T

    def auxiliary(self, H: Tensor, noise_var) -> tuple[Tensor, Tensor]:
        """(A, U), each ``[B, K, N_R, N_R]`` complex, from H ``[B, K, N_R, N_T]``."""
        B, K, N_R, N_T = H.shape
        s2 = torch.as_tensor(noise_var, dtype=torch.float32).expand(B) if torch.as_tensor(noise_var).dim() == 0 \
            else torch.as_tensor(noise_var, dtype=torch.float32)
        g = build_batch(self.spec, {"ue": K, "ant_ue": N_R, "ant_bs": N_T},
                        {"H": H.to(torch.complex64), "noise": s2})
        out = self.model(g)
        return out["A"], out["U"]

    @torch.no_grad()
    def __call__(self, H: Tensor, noise_var) -> Tensor:
        from .wireless.precoders import cfp
        A, U = self.auxiliary(H, noise_var)
        return cfp(H.to(torch.complex64), A, U, noise_var, P_T=self.P_T)


_KINDS = {"tecfp": TECFPPolicy}


def save_policy(path: str | Path, kind: str, model: PEGNN, info: Mapping | None = None) -> None:
    """Write a self-contained policy file (spec dict, model config, weights, info)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": kind, "spec": model.spec.to_dict(), "model": model.config,
                "state_dict": model.state_dict(), "info": dict(info or {})}, path)


def load_policy(path: str | Path):
    """Load a policy file written by :func:`save_policy`."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    spec = ProblemSpec.from_dict(ck["spec"], source=str(path))
    model = PEGNN(spec, **ck["model"])
    model.load_state_dict(ck["state_dict"])
    policy = _KINDS[ck["kind"]](model)
    policy.info = ck.get("info", {})
    return policy


def pretrained(name: str):
    """A policy shipped with pegnn: ``"tecfp"`` (more as tasks ship them)."""
    path = CHECKPOINTS / f"{name}.pt"
    if not path.exists():
        have = sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))
        raise ValueError(f"no shipped policy {name!r}; available: {have or 'none yet'}")
    return load_policy(path)
