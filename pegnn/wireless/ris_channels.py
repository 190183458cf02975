r"""Channels of an RIS-aided multi-cell MU-MISO downlink (paper 002, Sec. IV-C / V).

``cells`` base stations (BSs), each with ``N_B`` antennas (``N_RF`` RF chains) and
``K`` single-antenna UEs, share one reconfigurable intelligent surface (RIS) with
``N_RE`` reflecting elements. With the RIS phases :math:`\boldsymbol\theta`
(:math:`|\theta_n| = 1`) and the transmit signal :math:`\mathbf{x}_m` of BS ``m``,
UE ``j`` receives

.. math::
    y_j = \sum_m \big(\mathbf{h}_{d,m,j}^H
          + \boldsymbol\theta^H \mathrm{diag}(\mathbf{h}_{r,j}^H)\,\mathbf{G}_m\big)
          \mathbf{x}_m + n_j, \qquad n_j \sim \mathcal{CN}(0, \sigma_0^2),

the convention of Guo, Liang, Chen, Larsson (TWC 2020), the BCD baseline [34].

Channel model (paper 002 Sec. V): large-scale gain :math:`\beta(d) =
10^{-(32.6 + 36.7 \log_{10} d)/10}` (``d`` in metres) on every link; the LoS
links BS→RIS and RIS→UE are Rician with factor :math:`\kappa = 10`,

.. math::
    \mathbf{h} = \sqrt{\beta}\Big(\sqrt{\tfrac{\kappa}{1+\kappa}}\,
    e^{j\varphi}\,\mathbf{h}^{\mathrm{LoS}} +
    \sqrt{\tfrac{1}{1+\kappa}}\,\mathbf{h}^{\mathrm{NLoS}}\Big),

with unit-modulus LoS array responses, a uniform LoS phase :math:`\varphi` (the
propagation phase :math:`2\pi d/\lambda` modulo :math:`2\pi`) and
:math:`\mathbf{h}^{\mathrm{NLoS}}` i.i.d. :math:`\mathcal{CN}(0,1)`. The direct
BS→UE links are Rayleigh (``kappa_direct = 0``; the paper only says its channels
are Rician, and the RIS is deployed where the direct path is obstructed).
:math:`P_{\max}` = 30 dBm per BS, :math:`\sigma_0^2` = −80 dBm.

Geometry (paper 002 is silent; we chose and document it here). 2-D coordinates
in metres with the RIS at the origin; cell ``m`` is cell 0 rotated about the RIS
by :math:`\psi_m = 2\pi m/\mathrm{cells}`. Cell 0: BS at ``(-d_bs_ris, 0)``,
its UEs uniform (by area) in a disc of radius ``ue_radius`` centred at
``(0, d_ue_ris)``. The BS array is a half-wavelength ULA perpendicular to its
BS→RIS line (the RIS is at its broadside); the RIS is a half-wavelength ULA along
the x-axis. A ULA with axis :math:`\mathbf{u}` seen from direction
:math:`\mathbf{v}` has response :math:`[e^{j\pi n\, \mathbf{u}\cdot\mathbf{v}}]_n`.
Defaults give path gains of about −106 dB (BS→RIS and BS→UE) and −87 dB
(RIS→UE), i.e. a direct-link SNR of about 3 dB per BS antenna at P_max. With one
path-loss law on every link the reflected path of one element is ~80 dB below
the direct path, so the RIS matters little at these sizes — a property of the
paper's set-up. Blocking the direct link alone (``direct_loss_db``) does not help:
the cascaded SNR is then about −50 dB. RIS studies give the LoS RIS links their
own law, e.g. :math:`35.6 + 22\log_{10} d` for the RIS links and
:math:`32.6 + 36.7\log_{10} d` for the direct links (Pan et al., "Multicell MIMO
communications relying on intelligent reflecting surfaces", IEEE TWC 2020, whose
numbers paper 002 Sec. V quotes); ``ris_path_loss=(35.6, 22.0)`` selects that law
for BS→RIS and RIS→UE. The ``"ris"`` regime of ``tasks/ris_data.py`` combines it with a partly
blocked direct link and a shorter geometry so that the RIS phases matter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

__all__ = ["RISChannels", "ris_channels", "path_gain_db"]


def path_gain_db(d: torch.Tensor) -> torch.Tensor:
    """Large-scale gain ``-(32.6 + 36.7 log10(d))`` in dB for distances ``d`` [m]."""
    return -(32.6 + 36.7 * torch.log10(d))


@dataclass(frozen=True)
class RISChannels:
    r"""One batch of RIS-aided multi-cell MISO channels.

    Field names and conventions match the canonical layout of
    :mod:`pegnn.wireless.ris` (rate, BCD baseline), which accepts this object
    directly. UEs are numbered cell-major: global UE ``u = m*K + k`` is UE ``k``
    of cell ``m`` (served by BS ``m``); ``cell_of_ue[u] = m``. Row vectors are
    stored already conjugated, so no ``.conj()`` is needed to apply them.

    *Shapes* (``B`` samples, ``M = cells``, ``U = cells*K`` UEs; complex tensors
    are ``complex64`` unless another ``dtype`` was asked for):

    - ``h_d``: ``[B, M, U, N_B]`` complex — ``h_d[b, m, u]`` is the row
      :math:`\mathbf{h}_{d,m,u}^H` (BS ``m`` → UE ``u``): UE ``u`` receives
      ``h_d[b, m, u] @ x_m`` directly from BS ``m``.
    - ``G``: ``[B, M, N_RE, N_B]`` complex — :math:`\mathbf{G}_m`, BS ``m`` →
      RIS; the RIS elements receive ``G[b, m] @ x_m``.
    - ``h_r``: ``[B, U, N_RE]`` complex — ``h_r[b, u]`` is the row
      :math:`\mathbf{h}_{r,u}^H` (RIS → UE ``u``). The effective row from BS ``m``
      to UE ``u`` is ``h_d[b, m, u] + (theta.conj() * h_r[b, u]) @ G[b, m]``
      (:meth:`effective`).
    - ``noise_var``: float, :math:`\sigma_0^2` in W (``1.0`` when the channels
      were normalised by the noise, see ``normalize_noise``).
    - ``P_max``: float, per-BS transmit power budget in W.
    - ``bs_pos``: ``[M, 2]`` float32, ``ue_pos``: ``[B, U, 2]`` float32 (m);
      the RIS is at the origin.
    - ``N_RF``: int, RF chains per BS (a problem size; no channel depends on it).
    """

    h_d: torch.Tensor
    G: torch.Tensor
    h_r: torch.Tensor
    noise_var: float
    P_max: float
    bs_pos: torch.Tensor
    ue_pos: torch.Tensor
    N_RF: int

    @property
    def cells(self) -> int:
        return self.G.shape[1]

    @property
    def K(self) -> int:
        return self.h_r.shape[1] // self.cells

    @property
    def cell_of_ue(self) -> torch.Tensor:
        """``[U]`` int64: the serving cell of every UE."""
        return torch.arange(self.cells).repeat_interleave(self.K)

    def __iter__(self):
        """Unpack as the channel tuple ``(h_d, G, h_r, noise_var, P_max)`` that every
        function of :mod:`pegnn.wireless.ris` (and ``policy(*channels)``) accepts::

            h_d, G, h_r, noise_var, P_max = ris_channels(8, seed=0)
        """
        return iter((self.h_d, self.G, self.h_r, self.noise_var, self.P_max))

    def effective(self, theta: torch.Tensor) -> torch.Tensor:
        r"""Effective rows :math:`\mathbf{h}_{m,u}^H = \mathbf{h}_{d,m,u}^H +
        \boldsymbol\theta^H \mathrm{diag}(\mathbf{h}_{r,u}^H)\mathbf{G}_m`.

        *Shapes*: ``theta`` ``[B, N_RE]`` complex → ``[B, M, U, N_B]`` complex;
        UE ``u`` receives ``out[b, m, u] @ x_m`` from BS ``m``.
        """
        return self.h_d + torch.einsum("bn,bun,bmnt->bmut", theta.conj(), self.h_r, self.G)

    def to(self, device=None, dtype: torch.dtype | None = None) -> "RISChannels":
        """Move every tensor to ``device``; cast the complex ones to ``dtype``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                out[f.name] = v.to(device=device,
                                   dtype=dtype if v.is_complex() and dtype else None)
        return replace(self, **out)

    def tensors(self) -> dict[str, torch.Tensor]:
        """All fields as tensors (scalars as 0-d float64/int64), e.g. for caching."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if isinstance(v, torch.Tensor) else torch.tensor(
                v, dtype=torch.float64 if isinstance(v, float) else torch.int64)
        return out

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor]) -> "RISChannels":
        """Inverse of :meth:`tensors`."""
        return cls(h_d=d["h_d"], G=d["G"], h_r=d["h_r"], noise_var=float(d["noise_var"]),
                   P_max=float(d["P_max"]), bs_pos=d["bs_pos"], ue_pos=d["ue_pos"],
                   N_RF=int(d["N_RF"]))


def _ula(axis: torch.Tensor, direction: torch.Tensor, n: int) -> torch.Tensor:
    # Half-wavelength ULA: phase pi * n * cos(angle between axis and direction).
    cos = (direction * axis).sum(-1, keepdim=True) / direction.norm(dim=-1, keepdim=True)
    return torch.polar(torch.ones_like(cos) * torch.ones(n, dtype=cos.dtype),
                       math.pi * torch.arange(n, dtype=cos.dtype) * cos)


def _cn(shape, gen, dtype) -> torch.Tensor:
    return torch.complex(torch.randn(shape, generator=gen, dtype=dtype),
                         torch.randn(shape, generator=gen, dtype=dtype)) * math.sqrt(0.5)


def ris_channels(batch: int, seed: int | None = None, K: int = 3, N_B: int = 8,
                 N_RF: int = 6, N_RE: int = 8, cells: int = 1, *,
                 kappa: float = 10.0, kappa_direct: float = 0.0,
                 P_max_dbm: float = 30.0, noise_dbm: float = -80.0,
                 d_bs_ris: float = 100.0, d_ue_ris: float = 30.0,
                 ue_radius: float = 10.0, direct_loss_db: float = 0.0,
                 ris_path_loss: tuple[float, float] | None = None,
                 normalize_noise: bool = False,
                 dtype: torch.dtype = torch.complex64) -> RISChannels:
    r"""Draw ``batch`` independent RIS-aided channel samples (see module docstring).

    :param seed: seeds a private ``torch.Generator`` (CPU), so the caller's global
        RNG is not touched; ``None`` draws the seed from torch's global RNG (then
        ``torch.manual_seed`` controls the result).
    :param kappa: Rician factor of the BS→RIS and RIS→UE links (paper: 10).
    :param kappa_direct: Rician factor of the direct links (0 = Rayleigh); their
        LoS response is the BS array response towards the UE.
    :param direct_loss_db: extra attenuation of the direct links (blockage), 0 in
        the paper's set-up; raise it to study RIS-dominated regimes.
    :param ris_path_loss: ``(A, B)``: the RIS links (BS→RIS and RIS→UE) get the
        gain :math:`-(A + B\log_{10} d)` dB instead of the paper's law; ``None``
        (default) keeps :func:`path_gain_db` on every link. ``(35.6, 22.0)`` is the
        LoS law of Pan et al. (TWC 2020) for RIS links.
    :param normalize_noise: divide ``h_d`` and ``G`` by
        :math:`\sigma_0` so that every received signal is in units of the noise
        and ``noise_var = 1`` (what the BCD authors' code does); keeps float32
        arithmetic far from its range limits. Rates are unchanged.
    :param N_RF: recorded in the result; hybrid precoders need ``N_B >= N_RF``.

    *Shapes*: see :class:`RISChannels`.
    """
    for name, v in dict(batch=batch, K=K, N_B=N_B, N_RF=N_RF, N_RE=N_RE,
                        cells=cells).items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"ris_channels: {name} must be a positive int, got {v!r}")
    if N_RF > N_B:
        raise ValueError(f"ris_channels: need N_RF <= N_B, got N_RF={N_RF}, N_B={N_B}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"ris_channels: seed must be None or a non-negative int, got {seed!r}")
    from .rates import check_reals
    check_reals("ris_channels", kappa=kappa, kappa_direct=kappa_direct, d_bs_ris=d_bs_ris, d_ue_ris=d_ue_ris,
                ue_radius=ue_radius, db=dict(P_max_dbm=P_max_dbm, noise_dbm=noise_dbm, direct_loss_db=direct_loss_db))
    if kappa < 0 or kappa_direct < 0 or min(d_bs_ris, d_ue_ris, ue_radius) <= 0:
        raise ValueError("ris_channels: kappa, kappa_direct >= 0 and distances > 0")
    if ris_path_loss is not None and (len(ris_path_loss) != 2
                                      or not all(math.isfinite(float(v)) for v in ris_path_loss)):
        raise ValueError(f"ris_channels: ris_path_loss must be (A, B) finite, got {ris_path_loss!r}")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"ris_channels: dtype must be complex64/complex128, got {dtype}")
    from ..cpu import check_fits     # the channels alone, in float64 where they are drawn
    check_fits(16 * batch * (cells * cells * K * N_B + cells * N_RE * N_B + cells * K * N_RE),
               f"ris_channels: {batch} drops of these sizes")
    gen = torch.Generator()
    gen.manual_seed(int(seed) if seed is not None else int(torch.empty((), dtype=torch.int64)
                                                            .random_().item()))
    f64 = torch.float64  # geometry and gains in float64, cast once at the end
    J = cells * K

    # Geometry: cell m is cell 0 rotated by psi_m about the RIS (at the origin).
    psi = 2 * math.pi * torch.arange(cells, dtype=f64) / cells
    e = torch.stack([psi.cos(), psi.sin()], -1)            # [M, 2]
    f = torch.stack([-psi.sin(), psi.cos()], -1)           # [M, 2], e rotated by 90°
    bs_pos = -d_bs_ris * e                                  # [M, 2]
    r = ue_radius * torch.rand(batch, J, generator=gen, dtype=f64).sqrt()
    phi = 2 * math.pi * torch.rand(batch, J, generator=gen, dtype=f64)
    centre = (d_ue_ris * f).repeat_interleave(K, 0)        # [J, 2]
    ue_pos = centre + torch.stack([r * phi.cos(), r * phi.sin()], -1)  # [B, J, 2]

    ris_axis = torch.tensor([1.0, 0.0], dtype=f64)
    bs_axis = f                                             # ULA ⟂ BS→RIS line

    def rician(beta, los, k, shape, phase_shape):
        # beta: gains broadcastable to shape; los: unit-modulus LoS response; one
        # uniform LoS phase per link (phase_shape broadcasts to shape).
        nlos = _cn(shape, gen, f64)
        if k == 0:
            return beta.sqrt() * nlos
        ph = torch.polar(torch.ones(phase_shape, dtype=f64),
                         2 * math.pi * torch.rand(phase_shape, generator=gen, dtype=f64))
        return beta.sqrt() * (math.sqrt(k / (1 + k)) * ph * los
                              + math.sqrt(1 / (1 + k)) * nlos)

    # BS m -> RIS: G_m = a_RIS(towards BS m) a_BS(towards RIS)^H.
    def ris_gain_db(d):
        if ris_path_loss is None:
            return path_gain_db(d)
        return -(float(ris_path_loss[0]) + float(ris_path_loss[1]) * torch.log10(d))

    beta_g = 10 ** (ris_gain_db(bs_pos.norm(dim=-1)) / 10)            # [M]
    a_ris = _ula(ris_axis, bs_pos, N_RE)                               # [M, N_RE]
    a_bs = _ula(bs_axis, -bs_pos, N_B)                                 # [M, N_B]
    G_los = (a_ris[:, :, None] * a_bs[:, None, :].conj()).expand(batch, -1, -1, -1)
    G = rician(beta_g[None, :, None, None], G_los, kappa, (batch, cells, N_RE, N_B),
               (batch, cells, 1, 1))

    # RIS -> UE j: h_r,j = a_RIS(towards UE j).
    beta_r = 10 ** (ris_gain_db(ue_pos.norm(dim=-1)) / 10)            # [B, J]
    h_r = rician(beta_r[..., None], _ula(ris_axis, ue_pos, N_RE), kappa,
                 (batch, J, N_RE), (batch, J, 1))

    # BS m -> UE j (direct): Rayleigh unless kappa_direct > 0.
    d_vec = ue_pos[:, None, :, :] - bs_pos[None, :, None, :]          # [B, M, J, 2]
    beta_d = 10 ** ((path_gain_db(d_vec.norm(dim=-1)) - direct_loss_db) / 10)  # [B,M,J]
    d_los = _ula(bs_axis[None, :, None, :], d_vec, N_B)               # [B, M, J, N_B]
    h_d = rician(beta_d[..., None], d_los, kappa_direct, (batch, cells, J, N_B),
                 (batch, cells, J, 1))

    noise = 10 ** ((noise_dbm - 30) / 10)
    if normalize_noise:
        # Scaling the BS-side factors by 1/sigma scales every received term by it.
        h_d, G, noise = h_d / math.sqrt(noise), G / math.sqrt(noise), 1.0
    # Stored as rows (conjugated columns), the layout of pegnn.wireless.ris.
    return RISChannels(h_d=h_d.conj().to(dtype), G=G.to(dtype),
                       h_r=h_r.conj().to(dtype), noise_var=noise, P_max=10 ** ((P_max_dbm - 30) / 10),
                       bs_pos=bs_pos.float(), ue_pos=ue_pos.float(), N_RF=N_RF)
