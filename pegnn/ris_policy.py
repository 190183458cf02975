"""The RIS GNN as a policy on plain tensors (paper 002 Sec. IV-C, problem P-R): the
network's inputs, its two output forms and the batch plumbing.

    policy = pegnn.pretrained("ris_gnn")
    out = policy(pegnn.wireless.ris_channels(100, seed=2, **policy.channels))   # RISHybrid
"""
from __future__ import annotations

import numbers
from typing import Mapping

import torch
from torch import Tensor

from .graph import build_batch
from .models import PEGNN
from .policies import finite_outputs
from .spec import ProblemSpec
from .wireless.ris import (RISDigital, RISHybrid, _effective_rows, as_ris_channels, hybrid_from_digital,
                           normalize_hybrid_power, rf_assignment, unit_modulus)
from .wireless.ris_ascent import dual_precoder

__all__ = ["RISPolicy"]


class RISPolicy:
    r"""RIS-aided hybrid precoding (paper 002 Sec. IV-C, problem P-R): a :class:`PEGNN`
    with attention on the UEs maps the channels to the baseband precoder, the analog
    precoder and the RIS phases (``tasks/ris_precoding.py`` trains it).

        policy = pegnn.pretrained("ris_gnn")
        ch = pegnn.wireless.ris_channels(100, seed=2, **policy.channels)   # the training regime
        out = policy(ch)                     # or policy(*ch): RISHybrid(baseband, analog, theta)
        se = pegnn.wireless.ris_rate(ch, out)

    *Network inputs* (:meth:`graph_inputs`, all computed per sample, so each is a
    permutation-equivariant function of the channels): with
    :math:`a = \sqrt{P_{\max}/\sigma^2}`, the spec's ``H_d``, ``G``, ``h_r`` divided by
    their own RMS over all entries (a global norm per sample: permutation invariant);
    the cascaded channel ``H_c[u, n, t]`` = ``h_r[u, n] G[n, t]`` (RMS-normalised);
    ``snr_d`` = log10 of the mean :math:`|a\,h_d|^2` and ``snr_c`` = log10 of
    :math:`N_{RE}^2` times the mean :math:`|a\,H_c|^2` (direct and coherent cascaded
    SNR, which the normalisation removes), clipped to [−3, 3]; ``rf_tag`` over
    ``[rf, ue]``; and ``W_0`` over ``[ant_bs, rf]``, an initial analog precoder:
    column ``r`` is :math:`\sum_k` ``rf_tag[r, k]`` :math:`\mathbf h_{d,k}^*` (MRT on
    the direct link of the chain's UE, RMS-normalised) — the "initial solution" input
    that paper 001 App. G suggests for outputs over sets no channel carries.

    *Why ``rf_tag``.* No channel carries the RF set, and an equivariant map cannot
    tell apart elements that its inputs do not distinguish: without an input over
    ``rf`` every analog column and every baseband row would be equal (a rank-one
    precoder; the plan warns about it). ``rf_tag[r, k]`` is ±1 when RF chain ``r``
    of a BS is "assigned" to its UE ``k = r mod K`` (sign + on even rounds ``r // K``,
    − on odd ones, so two chains of one UE differ), 0 otherwise, within a cell — the
    layout of the exact two-chains-per-stream hybrid decomposition (Sohrabi & Yu
    2016). The model is equivariant jointly in (channels, ``rf_tag``); for fixed
    ``rf_tag``, permuting UEs permutes the precoder ``W_RF W_BB`` accordingly
    whenever ``K`` divides ``N_RF`` (a UE permutation of the tag is then an RF
    permutation of it, which leaves ``W_RF W_BB`` unchanged).

    *Output layer*, one of two forms, chosen by the spec's outputs (:meth:`output_form`):

    * ``"hybrid"`` (``graphs/ris_pr.yaml``, paper 002's outputs ``W_BB``, ``W_RF``,
      ``theta``; :meth:`output_layer`): ``analog`` and ``theta`` are projected on the
      unit circle (:func:`~pegnn.wireless.ris.unit_modulus`), ``baseband`` is scaled so
      that :math:`\|\mathbf W_{RF,m}\mathbf W_{BB,m}\|_F^2 = P_{\max}` per BS
      (:func:`~pegnn.wireless.ris.normalize_hybrid_power`).
    * ``"dual"`` (``graphs/ris_pr_dual.yaml``, outputs ``q``, ``p`` over the UEs and
      ``theta``; :meth:`dual_output`): ``q`` and ``p`` are softmaxed per cell into the
      power shares of the sum-SE-optimal beamforming structure,
      :math:`\mathbf w_k \propto \sqrt{p_k}\,(\mathbf I + \tfrac{P}{\sigma^2}\sum_u q_u
      \mathbf h_u\mathbf h_u^H)^{-1}\mathbf h_k` on the effective channel of ``theta``
      (:func:`~pegnn.wireless.ris_ascent.dual_precoder`, in complex128: the inverse is
      ill-conditioned at high SNR), then realised in hybrid form by
      :func:`~pegnn.wireless.ris.hybrid_from_digital` (exact when ``N_RF >= 2K``).
      What TECFP's CFP is to paper 000's network, this closed form is to the RIS GNN:
      the network chooses ``2K + N_RE`` numbers instead of the whole precoder. No output
      runs over the RF chains, so the spec has no ``rf`` set and no ``rf_tag`` input,
      and the policy is equivariant to UE permutations for every ``N_RF``.

    *Shapes*: channels as in :mod:`pegnn.wireless.ris` (``h_d`` ``[B, M, M K, N_B]``,
    ``G`` ``[B, M, N_RE, N_B]``, ``h_r`` ``[B, M K, N_RE]``, single-cell tensors may
    drop ``M``) → :class:`~pegnn.wireless.ris.RISHybrid` with ``baseband``
    ``[B, M, N_RF, K]``, ``analog`` ``[B, M, N_B, N_RF]``, ``theta`` ``[B, N_RE]``.
    """

    kind = "ris"
    EXTRA_INPUTS = {
        "H_c": {"dims": ["ue", "re", "ant_bs"], "complex": True,
                "description": "cascaded channel h_r[u, n] G[n, t] (RMS-normalised)"},
        "rf_tag": {"dims": ["rf", "ue"], "description": "RF-chain/UE assignment, breaks the RF tie"},
        "W_0": {"dims": ["ant_bs", "rf"], "complex": True,
                "description": "initial analog precoder: each chain's tagged direct channel (RMS-normalised)"},
        "snr_d": {"dims": [], "description": "log10 mean direct SNR per entry"},
        "snr_c": {"dims": [], "description": "log10 N_RE^2 x mean cascaded SNR per entry"},
    }

    def __init__(self, model: PEGNN, N_RF: int = 6, channels: Mapping | None = None):
        self.model, self.spec, self.N_RF = model.eval(), model.spec, int(N_RF)
        self.channels = dict(channels or {})  # ris_channels keywords of the training regime
        self.form = self.output_form(self.spec)

    @staticmethod
    def output_form(spec: ProblemSpec) -> str:
        """``"hybrid"`` for outputs ``W_BB``, ``W_RF``, ``theta``; ``"dual"`` for ``q``, ``p``,
        ``theta`` (see the class docstring); a ``ValueError`` otherwise."""
        outs = set(spec.outputs)
        for form, names in (("hybrid", {"W_BB", "W_RF", "theta"}), ("dual", {"q", "p", "theta"})):
            if outs == names:
                return form
        raise ValueError(f"RISPolicy: spec {spec.name!r} has outputs {sorted(outs)}; expected "
                         "[W_BB, W_RF, theta] (graphs/ris_pr.yaml) or [q, p, theta] (graphs/ris_pr_dual.yaml)")

    @classmethod
    def extend_spec(cls, spec: ProblemSpec, W_0: bool = False) -> ProblemSpec:
        """The P-R spec (``graphs/ris_pr.yaml`` or ``graphs/ris_pr_dual.yaml``) plus the
        inputs of the class docstring (``W_0`` optional: a model uses the inputs its spec
        declares; the inputs over ``rf`` only where the spec has RF chains)."""
        has_rf = cls.output_form(spec) == "hybrid"
        if W_0 and not has_rf:
            raise ValueError("features.W_0: the dual-form spec has no RF chains, and W_0 is an input over "
                             "[ant_bs, rf]; use it with graphs/ris_pr.yaml")
        keep = lambda k: (W_0 or k != "W_0") and (has_rf or k not in ("rf_tag", "W_0"))
        d = spec.to_dict()
        d["inputs"] = {**d["inputs"], **{k: v for k, v in cls.EXTRA_INPUTS.items() if keep(k)}}
        return ProblemSpec.from_dict(d, source=f"{spec.name}+RISPolicy")

    @staticmethod
    def rf_tag(M: int, K: int, N_RF: int, dtype=torch.float32) -> Tensor:
        """``[M N_RF, M K]``: ±1 where RF chain ``r`` of cell ``m`` serves UE ``r mod K`` of ``m``
        (:func:`pegnn.wireless.ris.rf_assignment`)."""
        return rf_assignment(M, K, N_RF, dtype)

    @staticmethod
    def graph_inputs(h_d: Tensor, G: Tensor, h_r: Tensor, noise_var, P_max, rf_tag: Tensor | None,
                     W_0: bool = False) -> dict:
        """Network inputs over the spec's global element ids (see the class docstring).
        ``rf_tag`` ``[M N_RF, M K]`` or ``[B, M N_RF, M K]``, or ``None`` for a spec without
        RF chains (the dual form); ``W_0`` only when asked (when the model's spec declares
        it, see :meth:`extend_spec`)."""
        B, M, U, N_B = h_d.shape
        real = h_d.real.dtype
        a = (torch.as_tensor(P_max, dtype=real) / torch.as_tensor(noise_var, dtype=real)).sqrt()
        a = a.reshape(-1).expand(B)
        Hd = h_d.permute(0, 2, 1, 3).reshape(B, U, M * N_B)          # [B, U, M N_B]
        Gg = G.permute(0, 2, 1, 3).reshape(B, G.shape[2], M * N_B)    # [B, N_RE, M N_B]
        Hc = h_r[..., None] * Gg[:, None]                             # [B, U, N_RE, M N_B]

        def ms(x):  # mean power per entry of each sample
            return x.abs().square().flatten(1).mean(1).clamp_min(1e-30)

        def unit(x):
            return x / ms(x).sqrt().reshape(-1, *[1] * (x.dim() - 1))

        # SNRs saturate at ±30 dB (a link is then negligible or dominant either way): a
        # large constant input (the paper's geometry has snr_c ≈ −6.5) kills the ReLUs.
        out = {"H_d": unit(Hd), "G": unit(Gg), "h_r": unit(h_r), "H_c": unit(Hc),
               "snr_d": torch.log10(ms(Hd) * a ** 2).clamp(-3, 3),
               "snr_c": torch.log10(ms(Hc) * a ** 2 * G.shape[2] ** 2).clamp(-3, 3)}
        if rf_tag is not None:
            out["rf_tag"] = tag = rf_tag.to(real).expand(B, *rf_tag.shape[-2:])
        if W_0:
            out["W_0"] = unit(torch.einsum("brk,bkt->btr", tag.to(Hd.dtype), Hd.conj()))   # [B, M N_B, M N_RF]
        return out

    @staticmethod
    def output_layer(raw: Mapping[str, Tensor], M: int, P_max):
        """Dense network outputs → feasible :class:`~pegnn.wireless.ris.RISHybrid`."""
        W_BB, W_RF = raw["W_BB"], raw["W_RF"]        # [B, M, M N_RF, M K], [B, M, M N_B, M N_RF]
        n_rf, K, N_B = W_BB.shape[2] // M, W_BB.shape[3] // M, W_RF.shape[2] // M
        bb = torch.stack([W_BB[:, m, m * n_rf:(m + 1) * n_rf, m * K:(m + 1) * K] for m in range(M)], 1)
        an = torch.stack([W_RF[:, m, m * N_B:(m + 1) * N_B, m * n_rf:(m + 1) * n_rf] for m in range(M)], 1)
        analog = unit_modulus(an)
        return RISHybrid(normalize_hybrid_power(bb, analog, P_max), analog, unit_modulus(raw["theta"]))

    @staticmethod
    def dual_output(raw: Mapping[str, Tensor], channels):
        """Dense network outputs of the dual form → :class:`~pegnn.wireless.ris.RISDigital`
        ``(W [B, M, N_B, K], theta [B, N_RE])`` in complex128, differentiable (the training
        objective's precoder; :meth:`forward` realises it in hybrid form). ``raw["q"]``,
        ``raw["p"]`` ``[B, M K]`` (UEs cell by cell) are softmaxed per cell."""
        ch = as_ris_channels(channels)
        cd = torch.complex128
        B, M, U, _ = ch.h_d.shape
        q, p = (raw[k].to(torch.float64).reshape(B, M, U // M).softmax(-1) for k in ("q", "p"))
        theta = unit_modulus(raw["theta"].to(cd))
        h = _effective_rows(ch.h_d.to(cd), ch.G.to(cd), ch.h_r.to(cd), theta)
        return RISDigital(dual_precoder(h, q, p, ch.P_max, ch.noise_var), theta)

    def forward(self, channels, rf_tag: Tensor | None = None, N_RF: int | None = None):
        """As :meth:`__call__`, with gradients (for training or fine-tuning)."""
        ch = as_ris_channels(channels)
        B, M, U, N_B = ch.h_d.shape
        K, N_RE = U // M, ch.G.shape[2]
        n_rf = N_RF if N_RF is not None else (getattr(channels, "N_RF", None) or self.N_RF)
        if isinstance(n_rf, bool) or not isinstance(n_rf, numbers.Integral) or n_rf < 1:
            raise ValueError(f"RISPolicy: N_RF must be a positive int, got {n_rf!r}")
        n_rf = int(n_rf)
        hybrid = self.form == "hybrid"
        if not hybrid and rf_tag is not None:
            raise ValueError("RISPolicy: rf_tag is an input of the hybrid form only; this policy is in the dual "
                             "form (no RF chains in its spec)")
        tag = (self.rf_tag(M, K, n_rf) if rf_tag is None else rf_tag) if hybrid else None
        dt = torch.complex128 if next(self.model.parameters()).dtype == torch.float64 else torch.complex64
        inputs = self.graph_inputs(ch.h_d.to(dt), ch.G.to(dt), ch.h_r.to(dt), ch.noise_var, ch.P_max, tag,
                                   W_0="W_0" in self.spec.inputs)
        sizes = {"cell": M, "ue": K, "ant_bs": N_B, "re": N_RE, **({"rf": n_rf} if hybrid else {})}
        raw = finite_outputs("RISPolicy", self.model(build_batch(self.spec, sizes, inputs, pairs=())))
        if hybrid:
            return self.output_layer(raw, M, ch.P_max)
        W, theta = self.dual_output(raw, ch)
        bb, analog = (x.to(ch.h_d.dtype) for x in hybrid_from_digital(W, n_rf)[:2])
        # the power again in the output dtype: when N_RF < 2K the realisation's W_BB can be
        # large, and W_RF W_BB's power then moves in complex64 rounding
        return RISHybrid(normalize_hybrid_power(bb, analog, ch.P_max), analog, theta.to(ch.h_d.dtype))

    @torch.no_grad()
    def __call__(self, *channels, rf_tag: Tensor | None = None, N_RF: int | None = None):
        """``policy(channels)`` (a :class:`~pegnn.wireless.ris_channels.RISChannels`,
        mapping or tuple) or ``policy(h_d, G, h_r[, noise_var[, P_max]])``."""
        ch = channels[0] if len(channels) == 1 else tuple(channels)
        return self.forward(ch, rf_tag, N_RF)


