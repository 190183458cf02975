"""Random elements of a spec's symmetry group, acting on sizes and dense tensors.

A group element is one relabelling σ_s of the global element ids of every set s:
a normal set gets a random permutation; a nested set moves each child block with
its parent (σ_parent) and permutes the children inside each block independently
(the wreath product); a declared joint group shares one within-block permutation.
"""
from __future__ import annotations

import torch

from pegnn.sizes import Sets, resolve_sizes
from pegnn.spec import ProblemSpec


def random_sizes_tensors(spec: ProblemSpec, sizes, gen: torch.Generator, dtype=torch.float64):
    S = Sets(spec, resolve_sizes(sizes), "sizes")
    inputs = {}
    for name, t in spec.inputs.items():
        shape = tuple(S.n[d] for d in t.dims)
        if t.complex:
            inputs[name] = torch.complex(torch.randn(shape, generator=gen, dtype=dtype),
                                         torch.randn(shape, generator=gen, dtype=dtype))
        else:
            inputs[name] = torch.randn(shape, generator=gen, dtype=dtype)
    return S, inputs


def random_group_element(spec: ProblemSpec, S: Sets, gen: torch.Generator):
    """Returns (sigma, new_sizes): sigma[s][old_id] = new_id."""
    sigma: dict[str, torch.Tensor] = {}
    new_sizes: dict = {}
    joint_perm: dict[tuple, dict[int, torch.Tensor]] = {}
    for s in sorted(spec.sets, key=spec.depth):
        p = spec.parent(s)
        if p is None:
            sigma[s] = torch.randperm(S.n[s], generator=gen)
            new_sizes[s] = S.n[s]
            continue
        old_counts = torch.bincount(S.parent[s], minlength=S.n[p])
        new_counts = torch.zeros_like(old_counts)
        new_counts[sigma[p]] = old_counts
        starts = torch.cumsum(new_counts, 0) - new_counts
        grp = spec.joint_group(s)
        out = torch.empty(S.n[s], dtype=torch.long)
        for q in range(S.n[p]):
            kids = (S.parent[s] == q).nonzero().view(-1)
            if grp is not None:
                tau = joint_perm.setdefault(grp, {}).setdefault(q, torch.randperm(len(kids), generator=gen))
            else:
                tau = torch.randperm(len(kids), generator=gen)
            out[kids] = starts[sigma[p][q]] + tau
        sigma[s] = out
        new_sizes[s] = [int(c) for c in new_counts]
    return sigma, new_sizes


def act(t: torch.Tensor, dims, sigma) -> torch.Tensor:
    """Permute a dense tensor over ``dims``: out[σ(i1), σ(i2), ...] = t[i1, i2, ...]."""
    out = t
    for ax, d in enumerate(dims):
        inv = torch.argsort(sigma[d])
        out = out.index_select(ax, inv)
    return out
