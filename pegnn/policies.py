"""Trained policies on plain tensors: a :class:`~pegnn.models.PEGNN` wrapped so that it
maps channels to decisions (TECFP, TEUS; the RIS GNN: :mod:`pegnn.ris_policy`), with the input features they share.

    policy = pegnn.pretrained("tecfp")
    V = policy(H, noise_var)           # H [B, K, N_R, N_T] complex → V [B, K, N_R, N_T], power 1

Saving, loading and the shipped checkpoints: :mod:`pegnn.policy_files`.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from .graph import build_batch
from .models import PEGNN
from .wireless.rates import _non_negative_int
from .wireless.scheduling import _check_k

__all__ = ["TECFPPolicy", "TEUSPolicy", "noise_input", "finite_outputs", "mmse_input", "stream_rate_input",
           "tenn_inputs", "MMSE_INPUT", "STREAM_RATE_INPUT", "compile_policy"]

NOISE_FEATURES = ("sigma2", "snr")


def __getattr__(name):
    # RISPolicy lives in pegnn.ris_policy, saving/loading in pegnn.policy_files; importing
    # them from here keeps working (lazily: both modules import this one)
    if name == "RISPolicy":
        from .ris_policy import RISPolicy
        return RISPolicy
    from . import policy_files
    if name in policy_files.__all__:
        return getattr(policy_files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def noise_input(noise_var: Tensor, feature: str = "snr") -> Tensor:
    r"""The scalar noise input fed to the network.

    ``"sigma2"`` feeds :math:`\sigma^2` itself; ``"snr"`` feeds
    :math:`-\log_{10}\sigma^2` = SNR(dB)/10 (with :math:`P_T = 1`). Training SNRs span
    0-40 dB, i.e. σ² over four decades: on the log scale the feature is O(1) over the
    whole range, so a normalised network sees the SNR as clearly at 40 dB as at 0 dB.
    """
    if feature not in NOISE_FEATURES:
        raise ValueError(f"noise feature must be one of {NOISE_FEATURES}, got {feature!r}")
    try:
        s2 = torch.as_tensor(noise_var, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"noise_var must be a float or a tensor [B] of noise variances, "
                         f"got {type(noise_var).__name__}") from None
    if not torch.isfinite(s2).all() or (s2 <= 0).any():
        raise ValueError("noise_var must be finite and > 0")
    return s2 if feature == "sigma2" else -torch.log10(s2)


def finite_outputs(who: str, out: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """The network's outputs, or one clear error when some are NaN/Inf: inputs far outside
    the training range (e.g. channels scaled by 1e7, σ² ≥ 1e10) overflow its float32
    arithmetic, and a mask or precoder built from NaN would look valid."""
    bad = [k for k, v in out.items() if not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{who}: the network's outputs {bad} are not finite: the inputs are far outside the range "
                         "it was trained on and overflow its float32 arithmetic; normalise the channels "
                         "(mean |h|² ≈ 1 per entry for the TENN policies) and give noise_var on the same scale")
    return out


#: The optional input of a TENN precoding spec that carries the MMSE precoder
#: (``graphs/tenn_precoding_mmse.yaml``); see :func:`mmse_input`.
MMSE_INPUT = "V_mmse"
#: The optional input of a TENN precoding spec that carries, per user and receive
#: antenna, the MMSE precoder's stream rates (``graphs/tenn_precoding_mmse_r.yaml``); see
#: :func:`stream_rate_input`.
STREAM_RATE_INPUT = "r_mmse"


def mmse_input(H: Tensor, noise_var: Tensor) -> Tensor:
    r"""The MMSE precoder :math:`\mathbf{H}^H(\mathbf{H}\mathbf{H}^H + K N_R\sigma^2\mathbf{I})^{-1}`
    (:func:`pegnn.wireless.mmse`) as a network input, scaled per sample to
    :math:`\|\mathbf{H}\|_F`.

    Why: the interference terms of the sum rate are products :math:`\mathbf{H}_k\mathbf{W}_j`
    across users, which a TEPN whose layers aggregate users by means sees only as sums;
    the MMSE precoder is a joint function of every user's channel (through the
    :math:`K N_R \times K N_R` inverse), so as an input it reflects the interference and
    ordinary processors suffice (paper 002's interference rule). Permuting the users,
    the receive antennas or the BS antennas of ``H`` permutes the MMSE precoder the
    same way and leaves the norms unchanged, so the symmetry group stays that of
    eq. (11). The scale matches the two inputs (MMSE's total power is ``P_T``, spread
    over ``K N_R N_T`` entries).

    *Shapes*: ``H`` ``[B, K, N_R, N_T]`` complex, ``noise_var`` ``[B]`` → ``[B, K, N_R, N_T]``
    complex64.
    """
    from .wireless.precoders import mmse
    H = H.to(torch.complex64)
    V = mmse(H, noise_var)
    return V * (H.flatten(1).norm(dim=1) / V.flatten(1).norm(dim=1))[:, None, None, None]


def stream_rate_input(H: Tensor, noise_var: Tensor) -> Tensor:
    r"""Per-stream rates of the MMSE precoder with MMSE receivers,
    :math:`r_{k,i} = -\log_2 [\mathbf{E}_k]_{ii}`, from the MSE matrices
    :math:`\mathbf{E}_k = \mathbf{I} - \mathbf{F}_k^H\mathbf{H}_k\mathbf{T}_k = \mathbf{\Xi}_k^{-1}`
    of one WMMSE step (receive filters and weights, eq. (8)-(9) of paper 000) from
    :func:`pegnn.wireless.mmse` (:func:`pegnn.wireless.wmmse.wmmse_auxiliary`).

    Why: WMMSE turns streams off where it cannot separate them (at full load,
    :math:`N_T = K N_R`, about half of them), a near-discrete choice which a TEPN reading
    only ``H`` and ``V_mmse`` makes from sums over users, and gets wrong away from its
    training size (``python -m tasks.full_load``). :math:`[\mathbf{E}_k]_{ii} \in (0, 1]`
    says how well the MMSE precoder serves stream ``i`` of user ``k``: ``r`` is near 0 for
    a stream it hardly serves and grows like the SNR in dB for a clean one; by Hadamard's
    inequality :math:`\sum_i r_{k,i} \le -\log_2\det\mathbf{E}_k = R_k`, user ``k``'s
    rate under MMSE precoding. Permuting users or receive antennas of ``H`` permutes
    ``r`` the same way (:math:`\mathbf{E}_k \mapsto \mathbf{P}\mathbf{E}_k\mathbf{P}^T`);
    permuting BS antennas leaves it unchanged, so the group stays that of eq. (11).

    *Shapes*: ``H`` ``[B, K, N_R, N_T]`` complex, ``noise_var`` ``[B]`` → ``[B, K, N_R]``
    float32 (≥ 0).
    """
    from .wireless.precoders import mmse
    from .wireless.wmmse import wmmse_auxiliary
    H = H.to(torch.complex128)
    _, Xi = wmmse_auxiliary(H, mmse(H, noise_var), noise_var)
    E = torch.linalg.inv(Xi).to(torch.complex64)          # Xi is Hermitian positive definite
    return -torch.log2(torch.diagonal(E, dim1=-2, dim2=-1).real.clamp_min(1e-12))


def tenn_inputs(spec, H: Tensor, s2: Tensor, noise_feature: str, extra: Mapping | None = None) -> dict:
    """The inputs of a TENN spec (``ue``, ``ant_ue``, ``ant_bs``) for channels ``H``
    ``[B, K, N_R, N_T]`` and noise variances ``s2`` ``[B]``: ``H``, the noise feature
    (:func:`noise_input`), :data:`MMSE_INPUT` and :data:`STREAM_RATE_INPUT` where the spec
    declares them, and ``extra`` (any further inputs, e.g. the sequential scheduler's
    ``chosen`` ``[B, K]``)."""
    H = H.to(torch.complex64)
    x = {"H": H, "noise": noise_input(s2, noise_feature)}
    if MMSE_INPUT in spec.inputs:
        x[MMSE_INPUT] = mmse_input(H, s2)
    if STREAM_RATE_INPUT in spec.inputs:
        x[STREAM_RATE_INPUT] = stream_rate_input(H, s2)
    return x | dict(extra or {})


def _channel_batch(who: str, spec, H: Tensor, noise_var, noise_feature: str, extra: Mapping | None = None):
    """The graph batch of the TENN specs (``ue``, ``ant_ue``, ``ant_bs``) for channels
    ``H`` ``[B, K, N_R, N_T]`` and ``noise_var`` (float or ``[B]``); ``extra`` holds any
    further inputs of the spec (e.g. the sequential scheduler's ``chosen`` ``[B, K]``)."""
    if not torch.is_tensor(H) or H.dim() != 4 or min(H.shape) == 0:
        raise ValueError(f"{who}: H must be a tensor [B, K, N_R, N_T] (complex), "
                         f"got {tuple(H.shape) if torch.is_tensor(H) else type(H).__name__}")
    B, K, N_R, N_T = H.shape
    s2 = noise_input(noise_var, "sigma2")      # checked: a float or [B] of finite σ² > 0
    s2 = s2.expand(B) if s2.dim() == 0 else s2
    return build_batch(spec, {"ue": K, "ant_ue": N_R, "ant_bs": N_T}, tenn_inputs(spec, H, s2, noise_feature, extra))


class TECFPPolicy:
    """TECFP (paper 000 Sec. IV-B): TEPN predicts the auxiliary tensors (A, U) and the
    closed form CFP (6) turns them into the precoder.

    ``refine = T > 0`` follows the CFP with ``T`` WMMSE steps in the same closed form
    (:func:`pegnn.wireless.cfp_refine`): "TECFP+T", a speed/quality knob on top of the
    paper's TECFP (``refine = 0``); a policy trained with ``policy.refine = T`` learned
    its (A, U) for what the steps make of them.
    """

    kind = "tecfp"

    def __init__(self, model: PEGNN, P_T: float = 1.0, noise_feature: str = "sigma2", refine: int = 0):
        self.model, self.spec, self.P_T = model.eval(), model.spec, P_T
        self.noise_feature = noise_feature
        self.refine = _non_negative_int("TECFPPolicy", "refine", refine)

    def auxiliary(self, H: Tensor, noise_var) -> tuple[Tensor, Tensor]:
        """(A, U), each ``[B, K, N_R, N_R]`` complex, from H ``[B, K, N_R, N_T]``."""
        out = finite_outputs("TECFPPolicy", self.model(_channel_batch("TECFPPolicy", self.spec, H, noise_var,
                                                               self.noise_feature)))
        return out["A"], out["U"]

    @torch.no_grad()
    def __call__(self, H: Tensor, noise_var) -> Tensor:
        from .wireless.precoders import cfp
        from .wireless.wmmse import cfp_refine
        A, U = self.auxiliary(H, noise_var)
        H = H.to(torch.complex64)
        return cfp_refine(H, cfp(H, A, U, noise_var, P_T=self.P_T), noise_var, self.refine, P_T=self.P_T)


class TEUSPolicy:
    r"""TEUS (paper 000 Sec. IV-C): TEUSN scores the :math:`\tilde K` candidate users and an
    output layer turns the scores into a K-user mask.

    ``decode="topk"`` (the paper's): keep the ``k`` highest scores, :math:`\hat\eta_{\tilde k}
    = 1` iff :math:`y_{\tilde k}` is among the ``k`` largest (the paper's "largest K elements
    are set to 1"; its softmax is monotone, so ranking the raw scores selects the same users).

    ``decode="sequential"`` (ours): ``k`` passes, as the greedy scheduler it imitates. The
    spec has one more input, ``chosen`` over the users (1 for a user already scheduled,
    else 0); pass :math:`s` scores the users given the :math:`s` already chosen and adds the
    highest-scoring unscheduled one. The network is trained to predict greedy's next user
    (cross-entropy over the unscheduled users, teacher-forced on greedy's own prefixes), so
    it learns one greedy step rather than the whole greedy set at once.

    ``refine = S > 0`` follows either decoder with ``S`` rounds of swap local search under
    MMSE precoding (:func:`pegnn.wireless.swap_refine`: each round keeps the best of the
    current set and its ``k (K̃ - k)`` single swaps): "TEUS+S", a speed/quality knob on
    top of the paper's TEUS (``refine = 0``), as TECFP+T is for precoding.

    The scores are equivariant to permuting the candidates and invariant to permuting
    the UE or BS antennas (eqs. 40-42); ``chosen`` is a per-user input permuted with the
    users, and the swap search only compares sum rates, so the mask is equivariant
    whatever the decoding and refinement (ties aside).

    *Shapes*: ``H`` ``[B, K̃, N_R, N_T]`` complex, ``noise_var`` float or ``[B]`` →
    ``mask`` bool ``[B, K̃]`` with exactly ``k`` True per row.
    """

    kind = "teus"
    DECODES = ("topk", "sequential")

    def __init__(self, model: PEGNN, noise_feature: str = "sigma2", decode: str = "topk", refine: int = 0):
        self.model, self.spec = model.eval(), model.spec
        self.noise_feature = noise_feature
        self.refine = _non_negative_int("TEUSPolicy", "refine", refine)
        if decode not in self.DECODES:
            raise ValueError(f"TEUSPolicy: decode must be one of {self.DECODES}, got {decode!r}")
        if (decode == "sequential") != ("chosen" in self.spec.inputs):
            need = "with" if decode == "sequential" else "without"
            raise ValueError(f"TEUSPolicy: decode={decode!r} needs a spec {need} a 'chosen' input over the users; "
                             f"{self.spec.name!r} has inputs {sorted(self.spec.inputs)}")
        self.decode = decode

    def logits(self, H: Tensor, noise_var, chosen: Tensor | None = None) -> Tensor:
        """Per-user scores ``[B, K̃]`` from H ``[B, K̃, N_R, N_T]`` (and, for the sequential
        decoder, the bool ``chosen`` ``[B, K̃]``)."""
        extra = None if chosen is None else {"chosen": chosen.float()}
        return finite_outputs("TEUSPolicy", self.model(_channel_batch("TEUSPolicy", self.spec, H, noise_var,
                                                               self.noise_feature, extra)))["eta"]

    @staticmethod
    def _check_k(k, K: int) -> int:
        return _check_k("TEUSPolicy", k, K)

    @staticmethod
    def top_k(scores: Tensor, k: int) -> Tensor:
        """Bool mask ``[B, K̃]`` of the ``k`` largest ``scores`` per row (exactly ``k``,
        ties broken by :func:`torch.topk`)."""
        k = TEUSPolicy._check_k(k, scores.shape[-1])
        mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        return mask.scatter_(-1, scores.topk(k, dim=-1).indices, True)

    @torch.no_grad()
    def __call__(self, H: Tensor, noise_var, k: int) -> Tensor:
        mask = self.decoded(H, noise_var, k)
        if self.refine:
            from .wireless.precoders import mmse
            from .wireless.scheduling import swap_refine
            mask = swap_refine(H, noise_var, mask, mmse, self.refine)
        return mask

    @torch.no_grad()
    def decoded(self, H: Tensor, noise_var, k: int) -> Tensor:
        """The network's mask before any swap refinement."""
        if self.decode == "topk":
            return self.top_k(self.logits(H, noise_var), k)
        k = self._check_k(k, H.shape[1])
        chosen = torch.zeros(H.shape[:2], dtype=torch.bool, device=H.device)
        rows = torch.arange(H.shape[0], device=H.device)
        for _ in range(k):
            y = self.logits(H, noise_var, chosen).masked_fill(chosen, float("-inf"))
            chosen[rows, y.argmax(1)] = True
        return chosen


def compile_policy(policy, **compile_kwargs):
    """``torch.compile`` the policy's network in place (``nn.Module.compile``); returns
    the policy. Keyword arguments go to ``torch.compile``.

    Why: between its linear maps the engine does element-wise work (means, products,
    ReLU, LayerNorm) that eager PyTorch runs one pass over the state at a time; inductor
    fuses it into generated C++ loops. The shipped RIS GNN (1 thread): 2.12 → 1.49 ms per
    drop at batch 100, 1.08 ms at batch 20, after a one-off compile of ~16 s (reused
    from torch's on-disk cache afterwards). Needs a C++ compiler; a new set of sizes
    compiles once more (``dynamic=False`` by default: the layout is Python over the
    sizes, so every set of sizes is its own graph). Outputs agree with the eager network
    to float32 rounding."""
    policy.model.compile(**{"dynamic": False, **compile_kwargs})
    return policy
