"""Seeded random channels for tests."""
from __future__ import annotations

import math

import torch


def rayleigh(gen: torch.Generator, *shape, dtype=torch.complex128) -> torch.Tensor:
    """i.i.d. CN(0, 1) entries (float64 draws from ``gen``, cast to ``dtype``)."""
    re = torch.randn(*shape, generator=gen, dtype=torch.float64)
    im = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return (torch.complex(re, im) / math.sqrt(2)).to(dtype)
