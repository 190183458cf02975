r"""Channel models for MU-MIMO downlink: 3GPP UMa NLOS (Sionna), Rayleigh, loaders.

Every generator returns the downlink channels of ``K`` users as one complex tensor
``H`` of shape ``[batch, K, N_R, N_T]``: ``H[b, k]`` is the :math:`N_R \times N_T`
matrix :math:`\mathbf{H}_k` from the BS antennas to the antennas of user ``k``
(so the received signal is :math:`\mathbf{y}_k = \mathbf{H}_k \mathbf{x} + \mathbf{n}_k`).

Reproducibility. Every generator takes an integer ``seed``. Large sets are built
chunk by chunk; chunk ``i`` draws only from :func:`chunk_seed` ``(seed, i)``, so a
set of ``n`` chunks equals the concatenation of the chunks generated separately
(in other processes, on other machines) — this is what lets :mod:`pegnn.data`
shard generation. Generators never touch the caller's global RNG state.
"""
from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "chunk_seed",
    "exponential_correlation",
    "rayleigh_channels",
    "correlated_rayleigh",
    "uma_channels",
    "load_channels",
]


def _check_ints(fn: str, **values) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{fn}: {name} must be a positive int, got {v!r}")


def _check_seed(fn: str, seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: seed must be a non-negative int, got {seed!r}")


def chunk_seed(seed: int, index: int) -> int:
    """A 63-bit seed for chunk ``index`` of a set generated from ``seed``.

    Derived with :class:`numpy.random.SeedSequence`, which is stable across
    processes, platforms and numpy versions (unlike Python's salted ``hash``), and
    decorrelates neighbouring ``(seed, index)`` pairs.
    """
    _check_seed("chunk_seed", seed)
    _check_seed("chunk_seed", index)
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


# ----------------------------------------------------------------------------- Rayleigh
def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype == torch.complex64:
        return torch.float32
    if dtype == torch.complex128:
        return torch.float64
    raise ValueError(f"dtype must be torch.complex64 or torch.complex128, got {dtype}")


def _cn01(shape, seed: int, dtype: torch.dtype) -> torch.Tensor:
    # CN(0,1): real and imaginary parts i.i.d. N(0, 1/2).
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(*shape, 2, generator=g, dtype=_real_dtype(dtype)) * math.sqrt(0.5)
    return torch.view_as_complex(x)


def rayleigh_channels(batch: int, K: int, N_R: int, N_T: int, seed: int,
                      dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    r"""I.i.d. Rayleigh fading: every entry of :math:`\mathbf{H}_k` is
    :math:`\mathcal{CN}(0, 1)`, so :math:`\mathbb{E}\,\mathrm{tr}(\mathbf{H}_k
    \mathbf{H}_k^H) = N_R N_T` (the same scale as the normalised UMa channels).

    *Shapes*: output ``[batch, K, N_R, N_T]``, ``dtype`` (complex64 default).
    """
    _check_ints("rayleigh_channels", batch=batch, K=K, N_R=N_R, N_T=N_T)
    _check_seed("rayleigh_channels", seed)
    return _cn01((batch, K, N_R, N_T), seed, dtype)


def exponential_correlation(n: int, rho: float, dtype=torch.float64) -> torch.Tensor:
    r"""Exponential correlation matrix :math:`[\mathbf{R}]_{ij} = \rho^{|i-j|}`
    (Loyka's model of a uniform linear array), ``0 <= rho <= 1``.

    *Shapes*: output ``[n, n]``, real ``dtype``.
    """
    if not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"exponential_correlation: rho must lie in [0, 1], got {rho!r}")
    idx = torch.arange(n, dtype=dtype)
    return float(rho) ** (idx[:, None] - idx[None, :]).abs()


def _psd_sqrt(R: torch.Tensor) -> torch.Tensor:
    # eigh-based square root; clamping makes rho = 1 (rank one) well defined.
    w, V = torch.linalg.eigh(R)
    return (V * w.clamp_min(0).sqrt()) @ V.mT


def correlated_rayleigh(batch: int, K: int, N_R: int, N_T: int, seed: int,
                        rho_tx: float, rho_rx: float,
                        dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    r"""Kronecker-correlated Rayleigh fading
    :math:`\mathbf{H}_k = \mathbf{R}_{\mathrm{R}}^{1/2} \mathbf{G}_k
    \mathbf{R}_{\mathrm{T}}^{1/2}` with :math:`\mathbf{G}_k` i.i.d.
    :math:`\mathcal{CN}(0,1)` and exponential correlations
    :math:`\mathbf{R}_{\mathrm{T}} = [\rho_{tx}^{|i-j|}]`,
    :math:`\mathbf{R}_{\mathrm{R}} = [\rho_{rx}^{|i-j|}]`.
    Unit diagonals keep :math:`\mathbb{E}|h_{ij}|^2 = 1`; ``rho_tx = rho_rx = 0``
    reproduces :func:`rayleigh_channels` with the same seed exactly.

    *Shapes*: output ``[batch, K, N_R, N_T]``, ``dtype`` (complex64 default).
    """
    _check_ints("correlated_rayleigh", batch=batch, K=K, N_R=N_R, N_T=N_T)
    _check_seed("correlated_rayleigh", seed)
    G = _cn01((batch, K, N_R, N_T), seed, dtype)
    rdt = _real_dtype(dtype)
    R_t = _psd_sqrt(exponential_correlation(N_T, rho_tx)).to(rdt)
    R_r = _psd_sqrt(exponential_correlation(N_R, rho_rx)).to(rdt)
    # R^{1/2} is real symmetric, so R_T^{1/2} on the right needs no transpose.
    return (R_r.to(dtype) @ G) @ R_t.to(dtype)


# ----------------------------------------------------------------------------- UMa
@functools.lru_cache(maxsize=8)
def _uma_model(N_R: int, N_T: int, carrier_frequency: float, device: str):
    # Sionna is slow to import (~4 s): only pay for it when UMa channels are wanted.
    from sionna.phy.channel.tr38901 import PanelArray, UMa

    bs_array = PanelArray(num_rows_per_panel=2, num_cols_per_panel=N_T // 4,
                          polarization="dual", polarization_type="cross",
                          antenna_pattern="38.901",
                          carrier_frequency=carrier_frequency, device=device)
    ut_array = PanelArray(num_rows_per_panel=1, num_cols_per_panel=N_R,
                          polarization="single", polarization_type="V",
                          antenna_pattern="38.901",
                          carrier_frequency=carrier_frequency, device=device)
    return UMa(carrier_frequency=carrier_frequency, o2i_model="low",
               ut_array=ut_array, bs_array=bs_array, direction="downlink",
               enable_pathloss=False, enable_shadow_fading=False, device=device)


def _drop_users(n: int, K: int, gen: torch.Generator, cell_radius: float,
                min_distance: float, sector_deg: float):
    # Uniform by area in the annular sector min_distance <= r <= cell_radius,
    # |phi| <= sector/2: the CDF of r is (r^2 - r0^2)/(R^2 - r0^2).
    u = torch.rand(n, K, generator=gen, dtype=torch.float64)
    r = torch.sqrt(min_distance**2 + u * (cell_radius**2 - min_distance**2))
    half = math.radians(sector_deg) / 2
    phi = (2 * torch.rand(n, K, generator=gen, dtype=torch.float64) - 1) * half
    # TR 38.901 Table 7.8-1: UT azimuth orientation uniform on [0, 360) degrees.
    yaw = 2 * math.pi * torch.rand(n, K, generator=gen, dtype=torch.float64)
    return r * torch.cos(phi), r * torch.sin(phi), yaw


@contextlib.contextmanager
def _sionna_seeded(seed: int, device: str):
    """Seed Sionna for one chunk; restore the caller's torch RNG and Sionna seed."""
    from sionna.phy import config

    dev = torch.device(device)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        previous = config.seed
        config.seed = seed  # also re-seeds torch's default generator: hence fork_rng
        try:
            yield
        finally:
            config.seed = previous


def uma_channels(batch: int, K: int, N_R: int, N_T: int, seed: int, chunk: int = 200,
                 progress: bool = False, *, first_chunk: int = 0,
                 cell_radius: float = 500.0, min_distance: float = 35.0,
                 sector_deg: float = 120.0, h_bs: float = 25.0, h_ut: float = 1.5,
                 carrier_frequency: float = 3.5e9, device: str = "cpu",
                 return_info: bool = False):
    r"""Narrowband 3GPP TR 38.901 UMa NLOS channels, as in paper 000 Sec. V.

    Physics (the QuaDRiGa set-up of the paper, reproduced with Sionna's
    ``tr38901.UMa``): carrier :math:`f_c` = 3.5 GHz; BS UPA with
    :math:`N_{Tv} = 2` rows and :math:`N_{Th} = N_T/4` columns of dual-polarised
    (±45° cross) 38.901 elements, :math:`N_T = 2 N_{Tv} N_{Th}`, at height
    ``h_bs``, boresight along +x with no downtilt; UE ULA of :math:`N_R`
    single-polarised (V) 38.901 elements at height ``h_ut``, horizontal, with an
    azimuth uniform on [0, 360°) (TR 38.901 Table 7.8-1; the paper does not say).
    Users are dropped uniformly by area in the 120° sector :math:`|\phi| \le 60°`
    between ``min_distance`` (the UMa minimum 2D distance) and ``cell_radius``;
    all outdoor, links forced NLOS. No path loss or shadow fading. The flat
    channel is the sum of the path coefficients (the frequency response at
    :math:`f = 0`). Each drop is normalised so that
    :math:`\sum_k \mathrm{tr}(\mathbf{H}_k \mathbf{H}_k^H) = K N_R N_T`.

    BS port order is Sionna's: polarisation slowest (all :math:`N_T/2` ports of
    the first polarisation, then the second), then column, then row fastest.

    :param batch: number of drops (independent channel realisations)
    :param seed: chunk ``i`` (of ``chunk`` drops) uses :func:`chunk_seed`
        ``(seed, first_chunk + i)`` for the drop and for Sionna's RNGs, so
        ``uma_channels(2c, s, chunk=c)`` equals the concatenation of
        ``uma_channels(c, s, chunk=c, first_chunk=0)`` and ``(..., first_chunk=1)``.
        Reproducible across processes on the same device kind. The drops of a
        chunk depend on its size, so a shorter last chunk is not a prefix of a full one.
    :param chunk: drops per Sionna call; 100–250 is fastest on CPU (~1–2 GB each).
    :param progress: show a tqdm bar over drops.
    :param device: torch device for Sionna; results are reproducible per device.
    :param return_info: also return ``{"los": bool [batch, K], "ut_loc":
        float32 [batch, K, 3] (m), "ut_yaw": float32 [batch, K] (rad)}``, the
        LoS state and geometry Sionna used (``los`` is all False).

    *Shapes*: output ``H`` ``[batch, K, N_R, N_T]``, complex64, on ``device``.
    """
    _check_ints("uma_channels", batch=batch, K=K, N_R=N_R, N_T=N_T, chunk=chunk)
    _check_seed("uma_channels", seed)
    _check_seed("uma_channels", first_chunk)
    if N_T % 4:
        raise ValueError(f"uma_channels: N_T must be a multiple of 4 (2 rows x dual "
                         f"polarisation x N_Th columns), got N_T={N_T}")
    if not 0 <= min_distance < cell_radius or not 0 < sector_deg <= 360:
        raise ValueError("uma_channels: need 0 <= min_distance < cell_radius and "
                         "0 < sector_deg <= 360")
    from tqdm.auto import tqdm

    model = _uma_model(int(N_R), int(N_T), float(carrier_frequency), device)
    H_out, los_out, loc_out, yaw_out = [], [], [], []
    bar = tqdm(total=batch, unit="drop", desc="UMa channels", disable=not progress)
    for i, start in enumerate(range(0, batch, chunk)):
        n = min(chunk, batch - start)
        s = chunk_seed(seed, first_chunk + i)
        # Drops come from a private generator on the CPU: identical on every device.
        x, y, yaw = _drop_users(n, K, torch.Generator().manual_seed(s),
                                cell_radius, min_distance, sector_deg)
        ut_loc = torch.stack([x, y, torch.full_like(x, h_ut)], -1).float()
        zeros = torch.zeros(n, K, 3)
        ut_orient = zeros.clone()
        ut_orient[..., 0] = yaw.float()
        with _sionna_seeded(s, device):
            model.reset_topology()  # required whenever batch size or K change
            model.set_topology(
                ut_loc=ut_loc.to(device),
                bs_loc=torch.tensor([0.0, 0.0, h_bs]).expand(n, 1, 3).to(device),
                ut_orientations=ut_orient.to(device),
                bs_orientations=torch.zeros(n, 1, 3, device=device),
                ut_velocities=zeros.to(device),
                in_state=torch.zeros(n, K, dtype=torch.bool, device=device),
                los=False)
            # a: [n, K (rx), N_R, 1 (tx), N_T, paths, 1 time sample]
            a, _ = model(num_time_samples=1, sampling_frequency=1.0)
            los = model._scenario.los[:, 0, :].clone()  # [n, 1 BS, K] -> [n, K]
        # Sum over paths = frequency response at f = 0; float64 for exact scaling.
        h = a[:, :, :, 0, :, :, 0].to(torch.complex128).sum(-1)
        power = h.abs().square().sum(dim=(1, 2, 3), keepdim=True)
        h = h * torch.sqrt(K * N_R * N_T / power)
        H_out.append(h.to(torch.complex64))
        los_out.append(los)
        loc_out.append(ut_loc)
        yaw_out.append(yaw.float())
        bar.update(n)
    bar.close()
    H = torch.cat(H_out)
    if return_info:
        return H, {"los": torch.cat(los_out).cpu(), "ut_loc": torch.cat(loc_out),
                   "ut_yaw": torch.cat(yaw_out)}
    return H


# ----------------------------------------------------------------------------- loaders
def _pick(fn_name: str, path: Path, names: list[str], key: str | None) -> str:
    if key is not None:
        if key not in names:
            raise ValueError(f"{fn_name}: key {key!r} not in {path.name} "
                             f"(has {sorted(names)})")
        return key
    if len(names) != 1:
        raise ValueError(f"{fn_name}: {path.name} holds {sorted(names)}; pass key=")
    return names[0]


def _h5_array(path: Path, key: str | None, matlab: bool) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visititems(lambda n, obj: names.append(n)
                     if isinstance(obj, h5py.Dataset) and not n.startswith("#") else None)
        arr = f[_pick("load_channels", path, names, key)][()]
    if arr.dtype.names and {"real", "imag"} <= set(arr.dtype.names):
        arr = arr["real"] + 1j * arr["imag"]  # MATLAB v7.3 complex compound type
    # MATLAB is column-major: HDF5 sees its dimensions in reverse order.
    return arr.T if matlab else arr


def load_channels(path, key: str | None = None,
                  dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    """Load stored channels into the ``[B, K, N_R, N_T]`` complex layout.

    Formats: ``.mat`` (``scipy.io.loadmat``; MATLAB v7.3 files through ``h5py``
    with the column-major axes reversed), ``.npz`` and ``.h5``/``.hdf5``. The
    array is either complex ``[B, K, N_R, N_T]`` or real ``[B, K, N_R, N_T, 2]``
    with (real, imag) in the trailing dimension, as paper 000 stores its data
    sets. ``key`` names the variable; it may be omitted when the file holds one.

    *Shapes*: output ``[B, K, N_R, N_T]``, ``dtype`` (complex64 default).
    Raises ``ValueError`` (one line) on a missing key, a wrong rank or trailing
    dimension, a non-numeric array or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"load_channels: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arr = z[_pick("load_channels", path, list(z.files), key)]
    elif suffix in (".h5", ".hdf5"):
        arr = _h5_array(path, key, matlab=False)
    elif suffix == ".mat":
        import scipy.io

        try:
            mat = scipy.io.loadmat(path)
        except NotImplementedError:  # v7.3 files are HDF5 containers
            arr = _h5_array(path, key, matlab=True)
        else:
            names = [n for n in mat if not n.startswith("__")]
            arr = mat[_pick("load_channels", path, names, key)]
    else:
        raise ValueError(f"load_channels: unsupported extension {suffix!r} "
                         "(use .mat, .npz, .h5 or .hdf5)")
    arr = np.asarray(arr)
    expect = "complex [B, K, N_R, N_T] or real [B, K, N_R, N_T, 2]"
    if np.iscomplexobj(arr):
        ok = arr.ndim == 4
    elif arr.dtype.kind in "fiu":
        ok = arr.ndim == 5 and arr.shape[-1] == 2
        if ok:
            arr = arr[..., 0] + 1j * arr[..., 1]
    else:
        ok = False
    if not ok:
        raise ValueError(f"load_channels: {path.name} holds shape {tuple(arr.shape)} "
                         f"dtype {arr.dtype}; expected {expect}")
    if 0 in arr.shape:
        raise ValueError(f"load_channels: {path.name} holds an empty array "
                         f"{tuple(arr.shape)}")
    H = torch.from_numpy(np.ascontiguousarray(arr)).to(dtype)
    if not torch.isfinite(torch.view_as_real(H)).all():
        raise ValueError(f"load_channels: {path.name} contains NaN or Inf")
    return H
