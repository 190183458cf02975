"""Channel models: UMa (Sionna), Rayleigh, RIS geometry, loaders."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from pegnn.wireless.channels import (chunk_seed, correlated_rayleigh, exponential_correlation,
                                     load_channels, rayleigh_channels, uma_channels)
from pegnn.wireless.ris_channels import RISChannels, path_gain_db, ris_channels

UMA_ARGS = dict(batch=6, K=3, N_R=2, N_T=8, seed=11, chunk=4)


@pytest.fixture(scope="module")
def uma():
    return uma_channels(**UMA_ARGS, return_info=True)


# ----------------------------------------------------------------------------- UMa
def test_uma_shape_dtype_normalisation(uma):
    H, _ = uma
    K, N_R, N_T = UMA_ARGS["K"], UMA_ARGS["N_R"], UMA_ARGS["N_T"]
    assert H.shape == (UMA_ARGS["batch"], K, N_R, N_T) and H.dtype == torch.complex64
    power = H.to(torch.complex128).abs().square().sum(dim=(1, 2, 3))
    torch.testing.assert_close(power, torch.full_like(power, K * N_R * N_T),
                               rtol=1e-5, atol=0)


def test_uma_nlos_and_drop_geometry(uma):
    _, info = uma
    assert info["los"].shape == (UMA_ARGS["batch"], UMA_ARGS["K"])
    assert not info["los"].any(), "every link must be NLOS"
    x, y = info["ut_loc"][..., 0], info["ut_loc"][..., 1]
    r = torch.hypot(x, y)
    assert (r >= 35 - 1e-3).all() and (r <= 500 + 1e-3).all()
    assert (torch.atan2(y, x).abs() <= math.radians(60) + 1e-6).all()


def test_uma_per_user_rank(uma):
    H, _ = uma
    s = torch.linalg.svdvals(H)  # [B, K, N_R]
    assert (s[..., -1] / s[..., 0] > 1e-3).all(), "each H_k must have rank N_R"


def test_uma_chunks_concatenate_and_rng_untouched(uma):
    H, _ = uma
    state = torch.get_rng_state()
    a = uma_channels(4, 3, 2, 8, seed=11, chunk=4, first_chunk=0)
    b = uma_channels(2, 3, 2, 8, seed=11, chunk=4, first_chunk=1)
    assert torch.equal(torch.cat([a, b]), H)
    assert torch.equal(torch.get_rng_state(), state), "caller's global RNG changed"
    assert not torch.equal(uma_channels(4, 3, 2, 8, seed=12, chunk=4), a)


def test_uma_reproducible_across_processes(uma, tmp_path):
    # A fresh interpreter (no Sionna state, no cached model) must reproduce the
    # drops generated in this process, which has already run other UMa calls.
    H, _ = uma
    code = textwrap.dedent(f"""
        import sys, torch
        from pegnn.wireless.channels import uma_channels
        torch.save(uma_channels(**{UMA_ARGS!r}), sys.argv[1])
    """)
    out = tmp_path / "h.pt"
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.equal(torch.load(out), H)


@pytest.mark.parametrize("kw, word", [
    (dict(N_T=30), "N_T"), (dict(batch=0), "batch"), (dict(K=2.0), "K"),
    (dict(seed=-1), "seed"), (dict(chunk=True), "chunk")])
def test_uma_argument_errors(kw, word):
    args = {**dict(batch=2, K=2, N_R=1, N_T=8, seed=0), **kw}
    with pytest.raises(ValueError, match=word) as e:
        uma_channels(**args)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- Rayleigh
def test_rayleigh_statistics_and_seed():
    H = rayleigh_channels(4000, 4, 2, 8, seed=3)
    assert H.shape == (4000, 4, 2, 8) and H.dtype == torch.complex64
    assert abs(H.mean().abs().item()) < 0.01
    assert abs(H.real.var().item() - 0.5) < 0.01 and abs(H.imag.var().item() - 0.5) < 0.01
    assert abs((H.real * H.imag).mean().item()) < 0.01  # circular symmetry
    assert torch.equal(H, rayleigh_channels(4000, 4, 2, 8, seed=3))
    assert not torch.equal(H, rayleigh_channels(4000, 4, 2, 8, seed=4))
    assert rayleigh_channels(2, 1, 1, 1, 0, dtype=torch.complex128).dtype == torch.complex128


def test_correlated_rayleigh_kronecker():
    assert torch.equal(correlated_rayleigh(50, 2, 2, 4, 5, 0.0, 0.0),
                       rayleigh_channels(50, 2, 2, 4, 5))
    H = correlated_rayleigh(20000, 2, 3, 4, seed=1, rho_tx=0.7, rho_rx=0.4)
    assert abs(H.abs().square().mean().item() - 1) < 0.02
    tx = (H[..., 0] * H[..., 1].conj()).mean().real.item()   # adjacent BS antennas
    rx = (H[..., 0, :] * H[..., 1, :].conj()).mean().real.item()
    far = (H[..., 0] * H[..., 2].conj()).mean().real.item()
    assert abs(tx - 0.7) < 0.03 and abs(rx - 0.4) < 0.03 and abs(far - 0.49) < 0.03
    R = exponential_correlation(3, 0.5)
    torch.testing.assert_close(R, torch.tensor([[1, .5, .25], [.5, 1, .5], [.25, .5, 1]],
                                                dtype=torch.float64))
    with pytest.raises(ValueError, match="rho"):
        correlated_rayleigh(1, 1, 1, 2, 0, rho_tx=1.5, rho_rx=0)


def test_chunk_seed_stable_and_distinct():
    seeds = {chunk_seed(s, i) for s in range(4) for i in range(50)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)
    assert chunk_seed(7, 3) == chunk_seed(7, 3)


# ----------------------------------------------------------------------------- RIS
def test_ris_shapes_units_and_seed():
    ch = ris_channels(5, seed=2, K=3, N_B=8, N_RF=6, N_RE=10, cells=2)
    assert isinstance(ch, RISChannels)
    assert ch.h_d.shape == (5, 2, 6, 8) and ch.G.shape == (5, 2, 10, 8)
    assert ch.h_r.shape == (5, 6, 10) and ch.ue_pos.shape == (5, 6, 2)
    assert ch.h_d.dtype == ch.G.dtype == ch.h_r.dtype == torch.complex64
    assert ch.P_max == pytest.approx(1.0) and ch.noise_var == pytest.approx(1e-11)
    assert ch.cell_of_ue.tolist() == [0, 0, 0, 1, 1, 1] and ch.N_RF == 6
    again = ris_channels(5, seed=2, K=3, N_B=8, N_RF=6, N_RE=10, cells=2)
    assert all(torch.equal(a, b) for a, b in zip(ch.tensors().values(),
                                                 again.tensors().values()))
    back = RISChannels.from_tensors(ch.tensors())
    assert torch.equal(back.h_r, ch.h_r) and back.noise_var == ch.noise_var
    with pytest.raises(ValueError, match="N_RF"):
        ris_channels(1, seed=0, N_B=4, N_RF=6)


def test_ris_path_gain_and_rician_factor():
    ch = ris_channels(20000, seed=0, K=2, N_B=4, N_RF=2, N_RE=4, dtype=torch.complex128)
    d_ue = ch.ue_pos.double().norm(dim=-1)                        # RIS at the origin
    d_bu = (ch.ue_pos[:, None] - ch.bs_pos[None, :, None]).double().norm(dim=-1)
    gain = lambda d: 10 ** (path_gain_db(d) / 10)
    assert (ch.h_r.abs().square().mean(-1) / gain(d_ue)).mean().item() == pytest.approx(1, abs=0.02)
    assert (ch.h_d.abs().square().mean(-1) / gain(d_bu)).mean().item() == pytest.approx(1, abs=0.02)
    g = ch.G[:, 0] / gain(ch.bs_pos[0].double().norm()).sqrt()
    assert g.abs().square().mean().item() == pytest.approx(1, abs=0.02)
    # Entries share the LoS term: |E[g_ab g_cd^*]| = kappa/(1+kappa) = 10/11 for (a,b) != (c,d).
    assert (g[:, 0, 0] * g[:, 1, 2].conj()).mean().abs().item() == pytest.approx(10 / 11, abs=0.02)
    # Direct links are Rayleigh: different antennas uncorrelated.
    assert (ch.h_d[..., 0] * ch.h_d[..., 1].conj()).mean().abs() / gain(d_bu).mean() < 0.03


def test_ris_effective_channel_and_noise_normalisation():
    ch = ris_channels(3, seed=4, K=2, N_B=4, N_RF=2, N_RE=6, cells=2)
    theta = torch.polar(torch.ones(3, 6), torch.rand(3, 6, generator=torch.Generator().manual_seed(0)))
    eff = ch.effective(theta.to(torch.complex64))
    b, m, u = 1, 1, 2
    row = ch.h_d[b, m, u] + (theta[b].conj() * ch.h_r[b, u]) @ ch.G[b, m]
    torch.testing.assert_close(eff[b, m, u], row.to(torch.complex64))
    nrm = ris_channels(3, seed=4, K=2, N_B=4, N_RF=2, N_RE=6, cells=2, normalize_noise=True)
    assert nrm.noise_var == 1.0
    snr = eff.abs().square() / ch.noise_var
    torch.testing.assert_close(nrm.effective(theta.to(torch.complex64)).abs().square(), snr,
                               rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------- loaders
def _write_matlab_v73(path, name, arr):
    # MATLAB v7.3 is HDF5 with a 512-byte user block, column-major axes and
    # complex numbers as a (real, imag) compound type.
    with h5py.File(path, "w", userblock_size=512) as f:
        data = np.ascontiguousarray(arr.T)
        if np.iscomplexobj(data):
            ct = np.dtype([("real", "<f8"), ("imag", "<f8")])
            comp = np.empty(data.shape, ct)
            comp["real"], comp["imag"] = data.real, data.imag
            data = comp
        f.create_dataset(name, data=data)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file".ljust(116) + b"\x00" * 8 + b"\x00\x02IM")


@pytest.mark.parametrize("fmt", ["mat", "mat73", "npz", "h5"])
@pytest.mark.parametrize("layout", ["complex", "real2"])
def test_loaders_round_trip(tmp_path, fmt, layout):
    H = rayleigh_channels(3, 2, 2, 4, seed=0)
    arr = H.numpy() if layout == "complex" else torch.view_as_real(H).numpy()
    path = tmp_path / ("x.mat" if fmt.startswith("mat") else f"x.{fmt}")
    if fmt == "mat":
        scipy.io.savemat(path, {"H": arr})
    elif fmt == "mat73":
        _write_matlab_v73(path, "H", arr.astype(np.complex128 if layout == "complex" else np.float64))
    elif fmt == "npz":
        np.savez(path, H=arr)
    else:
        with h5py.File(path, "w") as f:
            f["H"] = arr
    out = load_channels(path)
    assert out.shape == (3, 2, 2, 4) and out.dtype == torch.complex64
    assert torch.equal(out, H)
    assert torch.equal(load_channels(path, key="H"), H)


def test_loaders_reject_bad_inputs(tmp_path):
    np.savez(tmp_path / "rank.npz", H=np.zeros((2, 3, 4), np.complex64))
    np.savez(tmp_path / "last.npz", H=np.zeros((2, 2, 2, 4, 3), np.float32))
    np.savez(tmp_path / "two.npz", H=np.zeros((1, 1, 1, 1), np.complex64), G=np.zeros(1))
    np.savez(tmp_path / "nan.npz", H=np.full((1, 1, 1, 1, 2), np.nan, np.float32))
    np.savez(tmp_path / "real4.npz", H=np.zeros((2, 2, 2, 4), np.float32))
    (tmp_path / "x.csv").write_text("1")
    cases = [("rank.npz", None, "shape"), ("last.npz", None, "shape"),
             ("two.npz", None, "key"), ("two.npz", "Z", "key"), ("nan.npz", None, "NaN"),
             ("real4.npz", None, "shape"), ("x.csv", None, "extension"),
             ("missing.mat", None, "no such file")]
    for name, key, word in cases:
        with pytest.raises(ValueError, match=word) as e:
            load_channels(tmp_path / name, key=key)
        assert "\n" not in str(e.value), name
