r"""TEUS user scheduling (paper 000 Sec. II-C, IV-C, V-C): labels, train, evaluate, bench.

    python -m tasks.scheduling labels   [--config FILE] [--shard I] [--split train|val|both] [key=value ...]
    python -m tasks.scheduling train    [--config FILE] [key=value ...]
    python -m tasks.scheduling evaluate [--checkpoint FILE] [--n-test N] [--precoders mmse,wmmse,tecfp] [--tecfp FILE]
                                        [--refine S ...] [--oracle mmse|wmmse]
    python -m tasks.scheduling bench    [--checkpoint FILE] [--tecfp FILE] [--refine S ...]
    python -m tasks.scheduling fig7     [--checkpoint FILE] [--n-test N] [--snr DB] [--precoders mmse,tecfp]
                                        [--refine S ...]

Problem (12)-(13): choose :math:`K` of :math:`\tilde K` candidate users,
:math:`\boldsymbol\eta \in \{0,1\}^{\tilde K}`, :math:`\sum_{\tilde k}\eta_{\tilde k} = K`, to
maximise the sum rate :math:`R_{US}(\tilde{\mathbf H}, \boldsymbol\eta, \sigma^2)` of the
selected users under a precoder :math:`G_{CP}` (MMSE, WMMSE or TECFP).

TEUS = TEUSN (:class:`pegnn.PEGNN` on ``graphs/tenn_scheduling.yaml`` with the
:data:`pegnn.TEUSN` sizes, L = 4, D_H = 32: MDE stack → MDI over ``ant_ue`` and
``ant_bs``, eqs. 38-42) + an output layer that keeps the K largest scores
(:class:`pegnn.policies.TEUSPolicy`). Supervised on greedy labels :math:`\boldsymbol\eta^*`
(:mod:`tasks.labels`) with the binary cross-entropy (43).

What differs from the paper, and why:

* User attention (``model.attention=auto``, the default). The spec says the users'
  mutual interference is not reflected in the input H, so the plan's interference rule
  (paper 002 Sec. III-C) puts the attention processor on ``ue`` — which paper 000's
  TEUSN (mean pooling only, ``model.attention=none``) lacks. Without it the fit stalls:
  validation overlap with the greedy set 0.843-0.846 on MMSE or WMMSE labels whatever
  we changed (LR 5e-4 or 2e-3, 1000 or 3000 steps, L = 6; 0.77 on TECFP labels), train
  and validation alike. With it, 0.859 after 1000 steps (WMMSE labels; test
  WMMSE-TEUS/Greedy 0.957, ``teus_wmmse_att``) and 0.871 after 3000 (MMSE labels), and
  on the 100 test drops TEUS/Greedy rose from 0.900/0.949/0.894 to 0.933/0.962/0.915
  (MMSE/WMMSE/TECFP precoding; ``results/scheduling/teus_mmse`` vs ``teus_mmse_att``).
  1500 more steps at LR 2e-4 raised the overlap to 0.874 but not the sum rates
  (0.930/0.961/0.915, ``teus_mmse_att_cont``), so the shipped policy is the 3000-step one.
  Depth does not help either: L = 6 (``train model.layers=6 train.compile=true
  run.name=teus_mmse_att_L6``, 20.7 min) reached validation overlap 0.874 (best, step
  2000; 0.8725 at 3000) and WMMSE-TEUS/Greedy 0.964 on the same 100 test drops
  (``results/scheduling/teus_mmse_att_L6``) against 0.962: not shipped. Nor width:
  D_H = 64 at L = 4 (``model.hidden=64``, 207 k parameters instead of 52 k; 41.8 min
  sharing the CPU with another run) reached validation overlap 0.877, the highest yet,
  but WMMSE-TEUS/Greedy 0.962 on the same drops (``teus_mmse_att_h64``). Nor the loss:
  the pairwise ranking loss ``train.loss=rank`` (see :func:`objective`; 18.3 min)
  gave overlap 0.874 and 0.9615 (``teus_mmse_att_rank``). The overlap rose from 0.871
  to 0.877 without moving the sum rate: the users TEUS still gets wrong are the costly
  ones, and neither capacity nor the ranking objective finds them on this budget.

* Where the gap is. ``evaluate --oracle mmse`` schedules with the greedy-MMSE labels
  themselves (:class:`LabelOracle`, a perfect imitator): WMMSE-Oracle/Greedy is 0.987
  on the same 100 drops (``results/scheduling/oracle_mmse``), so the MMSE labels are not
  what caps TEUS at 0.962; imitation is. Per SNR 0/10/20/30/40 dB, TEUS/Greedy is
  0.992/0.985/0.967/0.956/0.953 (WMMSE) and 0.980/0.966/0.945/0.922/0.922 (MMSE), while
  the shipped policy's overlap with its own MMSE labels stays 0.85-0.88 at every SNR:
  TEUS misses as many users at 40 dB as at 0 dB, but at high SNR (interference-limited)
  each miss costs more. It is not the noise input: the log-SNR feature
  (``data.noise_feature=snr``, σ² spans four decades and 30/40 dB are both ≈ 0 on the
  linear scale; 12.9 min) gave overlap 0.863 and WMMSE-TEUS/Greedy 0.959
  (``teus_mmse_att_snr``), with the same high-SNR shortfall (0.953/0.947 at 30/40 dB).
  Nor is it that BCE weighs every SNR alike: the rate-weighted BCE (``train.loss=bce_rate``,
  12.0 min) gave overlap 0.872 and 0.960, 0.956/0.947 at 30/40 dB
  (``teus_mmse_att_bcerate``).
  Nor is it that a top-K layer must predict the whole greedy set in one pass.
  ``policy.decode=sequential train.loss=next`` (``graphs/tenn_scheduling_seq.yaml``: one
  more input, ``chosen`` over the users) trains the network on greedy's steps: given greedy's
  first s users, predict its next one (cross-entropy over the unscheduled users,
  :func:`next_pick`); it then schedules in K passes, as greedy does
  (:class:`pegnn.policies.TEUSPolicy`). With the shipped run's budget (3000 steps,
  13.6 min): next-pick accuracy 0.480 on validation, overlap with the labels 0.82-0.87
  per SNR (shipped 0.85-0.88), and TEUS/Greedy 0.915 / 0.955 / 0.913 (MMSE / WMMSE /
  TECFP) on the same drops (``teus_mmse_att_seq``), below the shipped 0.933 / 0.962 /
  0.915, while the 8 passes make TECFP-TEUS 11× faster than WMMSE-Greedy in ``bench``
  (``teus_mmse_att_seq/bench.json``) instead of the shipped policy's 76×
  (``results/bench/scheduling.json``). Learning one greedy step is not easier than
  learning its outcome on this budget.

* TEUS+S (``evaluate``/``bench --refine S ...``, default 1 and 2;
  ``pegnn.pretrained("teus", refine=S)``): TEUS's mask followed by S rounds of swap local
  search under MMSE (:func:`pegnn.wireless.swap_refine`: keep the best of the current set
  and its K(K̃ - K) = 32 single swaps), as TECFP+T adds WMMSE steps to TECFP. On the same
  100 drops (``results/scheduling/teus_mmse_att``, ``--refine 1 2 4``), TEUS+1 / TEUS+2
  over Greedy: 0.999 / 1.008 (MMSE), **0.987 / 0.990 (WMMSE)**, 0.953 / 0.960 (TECFP),
  at 1.0 ms per swap round; TECFP-TEUS+1 is above WMMSE-Rand at every SNR. But the same
  search from the *random* mask (Rand+S, also in ``eval.json``) gets there two rounds
  later: Rand+2 0.978 / 0.975 / 0.948, Rand+4 1.007 / 0.989 / 0.961, and per unit of time
  the two starts are on one curve (``refine_tradeoff.png``: TECFP-TEUS+2 78.27 bits/s/Hz
  in 4.0 ms, TECFP-Rand+4 78.35 in 4.5 ms; TECFP-TEUS alone 74.64 in 2.1 ms, TECFP-Rand+1
  74.47 in 1.2 ms; WMMSE-Greedy 326 ms). So the ≥ 0.98 × WMMSE-Greedy target is met by
  TEUS+S, but at this size the network buys about what two swap rounds buy, in about
  their time: the classical search does the work. With WMMSE labels, the target's
  wording (``train labels.precoder=wmmse data.n_train=4000 train.compile=true
  run.name=teus_wmmse_att_ref``; the 4,500 labels took ~19 min in two ``labels --shard``
  lanes, training 12.5 min; best validation overlap 0.862): TEUS 0.962, TEUS+1 0.988,
  TEUS+2 0.990 of WMMSE-Greedy (``results/scheduling/teus_wmmse_att_ref``).
  With more candidates the start matters more (``fig7 --refine 1 2 --n-test 100 --out
  results/scheduling/fig7_refine``, 20 dB; a round has K(K̃ - K) swaps, 128 at K̃ = 24):
  MMSE-TEUS+2 / MMSE-Greedy is 1.003 / 1.005 / 1.004 / 1.001 at K̃ = 12 / 16 / 20 / 24,
  Rand+2 0.979 / 0.934 / 0.895 / 0.866, and at K̃ = 24 TECFP-TEUS+1 gives 0.896 of
  TECFP-Greedy in 8.0 ms against TECFP-Rand+2's 0.877 in 8.3 ms.

* Loss. The paper takes :math:`\boldsymbol\eta^{pro} = \mathrm{Softmax}(\mathbf y)` and then
  BCE against the K-hot :math:`\boldsymbol\eta^*`. A softmax over users sums to 1, so it
  can never reach K ones and the BCE cannot be driven to 0. We use one independent
  logit per user, :math:`\mathrm{Loss} = -\frac{1}{N\tilde K}\sum_n\sum_{\tilde k}
  [\eta^*\log\varsigma(y) + (1-\eta^*)\log(1-\varsigma(y))]` with :math:`\varsigma` the
  sigmoid (``binary_cross_entropy_with_logits``). The output layer (top-K of the
  scores) is the paper's: a monotone squashing does not change which K are largest.
* Budget. The paper trains on 55 000 channels for 2·10^5 steps of batch 2000 on a GPU
  (and uses L = 3, D_H = 8 for MMSE, L = 4, D_H = 32 for WMMSE). The default here is a
  CPU budget: 10 000 UMa drops, batch 64, 3000 steps (≈ 18 min on one shared core),
  the same LR schedule shape (5e-4, ×0.1 at half).
* Data. 3GPP 38.901 UMa NLOS (Sionna) at (N_T, K̃, K, N_R) = (32, 12, 8, 2); training
  SNRs drawn from {0, 10, ..., 40} dB (paper 001). Labels: greedy over MMSE by
  default (~2 ms/sample); ``labels.precoder=wmmse`` (~0.5 s/sample) or ``tecfp``
  (``labels.tecfp=PATH``, else the shipped policy). Matching the labels to the precoder
  barely matters (same 100 test drops): without attention, TEUS on greedy-TECFP labels
  (10 000 drops, 7.5 min of labels, 1000 steps; ``teus_tecfp``) gives TECFP-TEUS/Greedy
  0.897 against 0.894 on MMSE labels; on greedy-WMMSE labels (4000 drops, 18 min of
  labels on two cores; ``teus_wmmse``, ``teus_wmmse_ft`` warm-started from the MMSE
  policy) WMMSE-TEUS/Greedy 0.949 and 0.951 against 0.949, and with attention
  (3000 steps, ``teus_wmmse_att3k``) 0.961 against 0.962 for the shipped MMSE-label policy.

Outputs: runs under ``runs/scheduling/<name>/`` (``policy.pt``); evaluations under
``results/scheduling/<run>/`` (``eval.json``, ``sum_rate_vs_snr.png``, ``time_per_sample.png``) and ``fig7/``
(``fig7.json``, ``fig7_generalisation.png``).
"""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pegnn.config import TaskArgumentParser, check_writable, out_file, non_negative_int, path_arg, positive_int
from tasks.precoding import refined     # "X+S" names of a refined scheme, shared with TECFP+T

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "tenn_scheduling.yaml"
SEQ_SPEC = ROOT / "graphs" / "tenn_scheduling_seq.yaml"   # policy.decode=sequential: adds the `chosen` input
LOSSES = {"topk": ("bce", "rank", "bce_rate"), "sequential": ("next",)}
SNRS = [0, 10, 20, 30, 40]
PROBLEM = "tenn_scheduling"
#: plot styles shared by Figs. 6 and 7: colour = precoder, line style = scheduler
COLOURS = {"MMSE": "tab:blue", "WMMSE": "tab:red", "TECFP": "tab:green"}
STYLES = {"Rand": ":v", "Greedy": "--s", "TEUS": "-o"}

DEFAULTS = {
    "spec": None,   # null: graphs/tenn_scheduling.yaml, or tenn_scheduling_seq.yaml for policy.decode=sequential
    "sizes": {"K_tilde": 12, "K": 8, "N_R": 2, "N_T": 32},
    "data": {"channel": "uma", "n_train": 10000, "n_val": 500, "seed": 0, "val_seed": 1, "snrs": SNRS,
             "noise_feature": "sigma2"},
    "labels": {"precoder": "mmse", "tecfp": None, "shard_size": None, "threads": 1},
    "model": {"hidden": 32, "layers": 4, "pattern": "all", "attention": "auto", "attention_kind": "inner",
              "pooling": "pma", "heads": 1, "residual": False, "norm": True},
    "train": {"batch_size": 64, "max_steps": 3000, "lr": 5e-4, "lr_decay": 0.1, "lr_decay_at": 0.5,
              "val_every": 500, "seed": 0, "devices": 1, "num_nodes": 1, "strategy": None, "workers": 0,
              "progress": True, "max_time": None, "log_every": 20, "val_batch_size": 500,
              "grad_clip": None, "init": None, "compile": False, "loss": "bce"},
    "policy": {"decode": "topk"},
    "run": {"name": "teus_mmse", "out": str(ROOT / "runs" / "scheduling")},
}


# ---------------------------------------------------------------- data and labels
def channels(model: str, n: int, seed: int, K_tilde: int, N_R: int, N_T: int, snrs=SNRS, progress=True):
    """Cached candidate channels: ``({"H" [n, K̃, N_R, N_T], "noise_var" [n], "snr_db" [n]}, key)``."""
    from pegnn.data import cached
    ds = cached(PROBLEM, model, n, seed, sizes={"K": K_tilde, "N_R": N_R, "N_T": N_T}, snrs=snrs,
                progress=progress)
    return {k: ds.tensors[k] for k in ("H", "noise_var", "snr_db")}, ds.meta["key"]


def _tecfp(path=None, required=True):
    """A TECFP policy from ``path``, else the shipped one; ``None`` (or an error) if neither."""
    from pegnn.policies import load_policy, pretrained
    if path:
        return load_policy(path, kind="tecfp")
    try:
        return pretrained("tecfp")
    except ValueError as e:
        if required:
            raise ValueError(f"{e} — train one (python -m tasks.precoding train) and pass its policy.pt") from None
        return None


def _check(cfg: dict) -> None:
    from pegnn.train import check_config
    check_config(cfg)
    sz, lab = cfg["sizes"], cfg["labels"]
    decode = cfg["policy"]["decode"]
    if decode not in LOSSES:
        raise ValueError(f"policy.decode: expected 'topk' (the paper's output layer) or 'sequential', got {decode!r}")
    if cfg["train"]["loss"] not in LOSSES[decode]:
        raise ValueError(f"train.loss: policy.decode={decode} trains with one of {list(LOSSES[decode])} "
                         f"('bce' is eq. 43; 'next' the sequential decoder's next-pick cross-entropy), "
                         f"got {cfg['train']['loss']!r}")
    if sz["K"] > sz["K_tilde"]:
        raise ValueError(f"sizes.K: cannot schedule K = {sz['K']} of K_tilde = {sz['K_tilde']} candidates")
    from tasks.labels import PRECODERS
    if lab["precoder"] not in PRECODERS:
        raise ValueError(f"labels.precoder: unknown precoder {lab['precoder']!r}; expected one of {list(PRECODERS)}")
    if lab["precoder"] == "tecfp":   # load it now: a bad path fails before the channels are made
        try:
            _tecfp(None if lab["tecfp"] is None else str(lab["tecfp"]))
        except ValueError as e:
            raise ValueError(f"labels.tecfp: {e}") from None


def spec_path(cfg: dict) -> str:
    """``cfg["spec"]``, or the spec its ``policy.decode`` needs when that is null."""
    return cfg["spec"] or str(SEQ_SPEC if cfg["policy"]["decode"] == "sequential" else SPEC)


def labelled(cfg: dict, split: str, shard=None, progress=True):
    """Channels of ``split`` (``train``/``val``) with greedy labels ``eta`` (float, K-hot)
    and, for ``policy.decode=sequential``, the greedy ``order`` (long ``[n, K]``)."""
    from tasks.labels import greedy_labels
    sz, d, lab = cfg["sizes"], cfg["data"], cfg["labels"]
    n, seed = (d["n_train"], d["seed"]) if split == "train" else (d["n_val"], d["val_seed"])
    data, key = channels(d["channel"], n, seed, sz["K_tilde"], sz["N_R"], sz["N_T"], d["snrs"], progress)
    tecfp = _tecfp(lab["tecfp"]) if lab["precoder"] == "tecfp" else None
    seq = cfg["policy"]["decode"] == "sequential"     # only it needs greedy's order (older caches lack it)
    out = greedy_labels(data["H"], data["noise_var"], sz["K"], lab["precoder"], channels_key=key,
                        snrs=d["snrs"], tecfp=tecfp, shard_size=lab["shard_size"], shard=shard,
                        progress=progress, threads=lab["threads"], return_order=seq)
    eta, order = out if seq else (out, None)
    return data if shard is not None else {**data, "eta": eta.float(), **({"order": order} if seq else {})}


class GreedySteps(torch.utils.data.Dataset):
    """Teacher-forced steps of the greedy scheduler, for ``policy.decode=sequential``: item
    ``n K + s`` is sample ``n`` with greedy's first ``s`` users as ``chosen`` (float
    ``[K̃]``, 1 = scheduled) and its pick ``s`` as the target ``next`` (a user index)."""

    def __init__(self, data: dict):
        self.H, self.noise_var, self.order = data["H"], data["noise_var"], data["order"]
        self.k = self.order.shape[1]

    def __len__(self) -> int:
        return len(self.order) * self.k

    def __getitem__(self, i) -> dict:
        n, s = divmod(int(i), self.k)
        chosen = torch.zeros(self.H.shape[1])
        chosen[self.order[n, :s]] = 1.0
        return {"H": self.H[n], "noise_var": self.noise_var[n], "chosen": chosen, "next": self.order[n, s]}


def objective(samples, out, loss: str = "bce"):
    r"""The training loss on per-user logits ``y`` ``[B, K̃]`` against the K-hot greedy
    labels; metrics: top-K overlap with the label set and exact match.

    ``loss="bce"``: the BCE (43) with one independent sigmoid per user (see the module
    docstring). ``loss="rank"``: a pairwise logistic loss over (selected, unselected)
    pairs, :math:`\frac{1}{K(\tilde K-K)}\sum_{i:\eta^*_i=1}\sum_{j:\eta^*_j=0}
    \log(1+e^{y_j-y_i})`, averaged over samples. Why offer it: the output layer keeps
    the K largest scores, which is invariant to a per-sample shift of ``y``; BCE also asks
    for a calibrated threshold at 0, the ranking loss asks only for the order.
    ``loss="bce_rate"``: the BCE with each sample weighted by :math:`w_n =
    \log_2(1 + 1/\sigma_n^2)` (normalised to mean 1 over the batch), the scale of a
    user's rate at that SNR (1 bit at 0 dB, 13.3 at 40 dB). Why: the evaluation metric is the
    sum rate averaged over SNR, which high SNRs dominate, and there a wrongly scheduled user
    costs most (see "Where the gap is" in the module docstring)."""
    if loss == "next":
        return next_pick(samples, out)
    logits, target = out["eta"], samples["eta"]
    if loss == "bce_rate":
        w = torch.log2(1 + 1 / samples["noise_var"].to(logits.dtype))
        per_sample = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
        loss = (per_sample * w / w.mean()).mean()
    elif loss == "rank":
        sel = target.bool()
        diff = logits[:, None, :] - logits[:, :, None]            # [B, i, j] = y_j - y_i
        pair = (sel[:, :, None] & ~sel[:, None, :]).float()        # i selected, j not
        loss = ((F.softplus(diff) * pair).sum((1, 2)) / pair.sum((1, 2))).mean()
    else:
        loss = F.binary_cross_entropy_with_logits(logits, target)
    k = int(target[0].sum())
    from pegnn.policies import TEUSPolicy
    hit = (TEUSPolicy.top_k(logits.detach(), k) & target.bool()).sum(1)
    return loss, {"overlap": (hit.float() / k).mean(), "exact": (hit == k).float().mean()}


def next_pick(samples, out):
    r"""``loss="next"`` (``policy.decode=sequential``): the cross-entropy of greedy's next
    user among the unscheduled ones, :math:`-\log \frac{e^{y_{k^*}}}{\sum_{\tilde k \notin
    \mathcal{K}} e^{y_{\tilde k}}}` with :math:`\mathcal{K}` = ``chosen`` and :math:`k^*` =
    ``next`` (see :class:`GreedySteps`); metric: the share of steps whose argmax is greedy's."""
    y = out["eta"].masked_fill(samples["chosen"].bool(), float("-inf"))
    return F.cross_entropy(y, samples["next"]), {"next_acc": (y.argmax(1) == samples["next"]).float().mean()}


def collate(spec, noise_feature: str = "sigma2"):
    from pegnn.policies import noise_input
    from pegnn.train import GraphCollate

    def graph_inputs(b):
        extra = {"chosen": b["chosen"]} if "chosen" in spec.inputs else {}
        return {"H": b["H"], "noise": noise_input(b["noise_var"], noise_feature), **extra}
    return GraphCollate(spec, sizes_of=lambda s: {"ue": s["H"].shape[0], "ant_ue": s["H"].shape[1],
                                                  "ant_bs": s["H"].shape[2]},
                        graph_inputs=graph_inputs, pairs=())


# ---------------------------------------------------------------- train
def train(cfg: dict) -> Path | None:
    from pegnn import load_spec
    from pegnn.policies import save_policy
    from pegnn.train import DictDataset, model_from_config, train_policy
    _check(cfg)
    cfg = {**cfg, "spec": spec_path(cfg)}        # the resolved config names the spec it used
    spec = load_spec(cfg["spec"])
    decode = cfg["policy"]["decode"]
    torch.manual_seed(cfg["train"]["seed"])
    model = model_from_config(spec, cfg["model"])      # first, so a bad model key fails before the labels are made
    show = bool(cfg["train"].get("progress", True))
    tr, va = labelled(cfg, "train", progress=show), labelled(cfg, "val", progress=show)
    run_dir = Path(cfg["run"]["out"]) / cfg["run"]["name"]
    data = GreedySteps if decode == "sequential" else DictDataset
    info = train_policy(model, functools.partial(objective, loss=cfg["train"]["loss"]), data(tr), data(va),
                        collate(spec, cfg["data"]["noise_feature"]), cfg, run_dir)
    if info is None:  # a DDP worker: rank 0 writes the policy
        return None
    info.update({"k": cfg["sizes"]["K"], "labels": cfg["labels"]["precoder"]})
    save_policy(run_dir / "policy.pt", "teus", model, info,
                {"noise_feature": cfg["data"]["noise_feature"], "decode": decode})
    print(f"trained in {info['train_minutes']:.1f} min; policy: {run_dir / 'policy.pt'}")
    return run_dir / "policy.pt"


# ---------------------------------------------------------------- evaluate
def precoders(names, tecfp_path=None) -> dict:
    """``{"MMSE": fn, "WMMSE": fn, "TECFP": fn}`` for the requested names; TECFP is
    skipped with a message when no policy is available."""
    from tasks.labels import make_precoder
    out = {}
    for name in names:
        tecfp = None
        if name == "tecfp":
            tecfp = _tecfp(tecfp_path, required=bool(tecfp_path))
            if tecfp is None:
                print("TECFP: skipped (no shipped TECFP policy yet; pass --tecfp runs/precoding/<run>/policy.pt)")
                continue
        out[name.upper()] = make_precoder(name, tecfp)[0]
    return out


class LabelOracle:
    """Stands in for TEUS and returns its training labels exactly: the greedy set over
    ``precoder`` (``"mmse"`` or ``"wmmse"``, :mod:`tasks.labels`). ``evaluate --oracle
    mmse`` thus measures what perfect imitation of the labels would reach, the ceiling of
    a TEUS trained on them; the gap between it and TEUS is the learner's."""

    def __init__(self, precoder: str):
        from tasks.labels import make_precoder
        self.P = make_precoder(precoder)[0]
        self.info = {"labels": precoder, "oracle": True}

    def __call__(self, H, s2, k: int):
        from pegnn.wireless.scheduling import greedy_schedule
        return greedy_schedule(H, s2, k, self.P)


def _style(sname: str, refine) -> str:
    """Line style of a scheduler: the paper's three from :data:`STYLES`; ``X+S``
    dash-dotted (TEUS) or dotted (Rand), one marker per ``S`` of ``refine``."""
    if sname in STYLES:
        return STYLES[sname]
    base, S = sname.split("+")
    return ("-." if base == "TEUS" else ":") + "^dP*"[list(refine).index(int(S)) % 4]


def _schemes(H, s2, k, teus, precs: dict, seed: int, refine=()) -> dict:
    """Sum rate (bits/s/Hz, mean over samples) and seconds per sample of every
    scheduler × precoder on one batch; the time covers scheduling *and* the final
    precoding of the selected users (the greedy search's own precoder calls included).
    ``refine``: also TEUS+S for each S, TEUS's mask after S rounds of swap search under
    MMSE (:func:`pegnn.wireless.swap_refine`), timed from the channels (TEUS included),
    and Rand+S, the same search from the random mask: what the network's start is worth."""
    from pegnn.wireless.precoders import mmse
    from pegnn.wireless.rates import sum_rate
    from pegnn.wireless.scheduling import greedy_schedule, random_schedule, swap_refine
    B, Kt = H.shape[:2]
    res, masks = {}, {}
    for pname, P in precs.items():
        sched = {"Rand": lambda: random_schedule(B, Kt, k, torch.Generator().manual_seed(seed)),
                 "Greedy": lambda: greedy_schedule(H, s2, k, P),
                 "TEUS": lambda: teus(H, s2, k),
                 **{name: (lambda S=S: swap_refine(H, s2, teus(H, s2, k), mmse, S))
                    for name, S in zip(refined(refine, "TEUS"), refine)},
                 **{name: (lambda S=S: swap_refine(H, s2, sched["Rand"](), mmse, S))
                    for name, S in zip(refined(refine, "Rand"), refine)}}
        for sname, fn in sched.items():
            t0 = time.perf_counter()
            mask = fn()
            H_sub = H[mask].reshape(B, k, *H.shape[2:])  # selected users in ascending order
            V = P(H_sub, s2)
            sec = (time.perf_counter() - t0) / B
            R = sum_rate(H_sub.to(torch.complex128), V.to(torch.complex128), s2)
            res[f"{pname}-{sname}"] = {"sum_rate": float(R.mean()), "sec_per_sample": sec}
            masks[(pname, sname)] = mask
        for sname in ("TEUS",) + refined(refine, "TEUS"):
            g, t = masks[(pname, "Greedy")], masks[(pname, sname)]
            res[f"{pname}-{sname}"]["overlap_with_greedy"] = float((g & t).sum(1).float().mean() / k)
    return res


def evaluate(teus, n_test: int, out_dir: Path, names=("mmse", "wmmse", "tecfp"), tecfp_path=None,
             channel="uma", sizes=(32, 12, 8, 2), progress=True, refine=(1, 2)) -> dict:
    """Paper 000 Fig. 6: sum rate of Rand/Greedy/TEUS on every precoder per SNR, on
    held-out channels (seed 2), and the time per sample of each scheme (batched);
    also TEUS+S, S rounds of swap search after TEUS, for each S in ``refine``.

    Cost at the default ``n_test = 100`` (2 CPU cores): MMSE and TECFP schemes take
    seconds; Greedy-WMMSE takes ~0.5 s per sample per SNR (0.46 s measured), i.e. ~4 minutes
    for the five SNRs — use ``--precoders mmse`` or a smaller ``--n-test`` for a quick look.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm
    N_T, Kt, k, N_R = sizes
    precs = precoders(names, tecfp_path)
    test, key = channels(channel, n_test, 2, Kt, N_R, N_T, SNRS, progress)
    H = test["H"].to(torch.complex128)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"n_test": n_test, "channel": channel, "channels_key": key,
              "sizes": {"N_T": N_T, "K_tilde": Kt, "K": k, "N_R": N_R},
              "teus": {"labels": getattr(teus, "info", {}).get("labels"),
                       "model": teus.model.config if hasattr(teus, "model") else "label oracle",
                       "decode": getattr(teus, "decode", "greedy (oracle)")},
              "precoders": list(precs), "per_snr": {}}
    for snr in tqdm(SNRS, desc="SNR", disable=not progress):
        s2 = torch.full((n_test,), 10 ** (-snr / 10), dtype=torch.float64)
        result["per_snr"][snr] = _schemes(H, s2, k, teus, precs, seed=snr, refine=refine)
    schemes = list(result["per_snr"][SNRS[0]])
    result["average_over_snr"] = {m: sum(result["per_snr"][s][m]["sum_rate"] for s in SNRS) / len(SNRS)
                                  for m in schemes}
    result["sec_per_sample"] = {m: sum(result["per_snr"][s][m]["sec_per_sample"] for s in SNRS) / len(SNRS)
                                for m in schemes}
    avg = result["average_over_snr"]
    result["teus_over_greedy"] = {p: avg[f"{p}-TEUS"] / avg[f"{p}-Greedy"] for p in precs}
    result["refined_over_greedy"] = {m: {p: avg[f"{p}-{m}"] / avg[f"{p}-Greedy"] for p in precs}
                                     for m in refined(refine, "TEUS") + refined(refine, "Rand")}
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    # Fig. 6: sum rate vs SNR, colour = precoder, line style = scheduler (the paper's three)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    paper = [m for m in schemes if m.split("-")[1] in STYLES]
    for m in paper:
        p, s = m.split("-")
        ax.plot(SNRS, [result["per_snr"][x][m]["sum_rate"] for x in SNRS], STYLES[s], color=COLOURS[p],
                label=f"{p}-{s}", ms=5)
    ax.set(xlabel="SNR (dB)", ylabel="sum rate (bits/s/Hz)",
           title=f"scheduling, UMa NLOS, N_T={N_T}, K̃={Kt}, K={k}, N_R={N_R}, {n_test} drops")
    ax.grid(alpha=.3); ax.legend(fontsize=8, ncol=len(precs))
    fig.tight_layout(); fig.savefig(out_dir / "sum_rate_vs_snr.png", dpi=130); plt.close(fig)
    # time per sample (the measured counterpart of Table II)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.bar(paper, [result["sec_per_sample"][m] for m in paper], color=[COLOURS[m.split("-")[0]] for m in paper])
    ax.set(yscale="log", ylabel="seconds per sample (batched, avg over SNR)",
           title=f"batch of {n_test}, this CPU, same run")
    fig.autofmt_xdate(); fig.tight_layout(); fig.savefig(out_dir / "time_per_sample.png", dpi=130); plt.close(fig)
    if refine:
        _tradeoff_plot(result, refine, out_dir / "refine_tradeoff.png")
    return result


def _tradeoff_plot(result: dict, refine, path: Path) -> None:
    """Sum rate / Greedy (avg over SNR) against time per sample for TEUS+S and Rand+S,
    S = 0, refine..., one curve per start and precoder; Greedy is the point (·, 1)."""
    import matplotlib.pyplot as plt
    avg, sec = result["average_over_snr"], result["sec_per_sample"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for p in result["precoders"]:
        for base, ls in (("TEUS", "-o"), ("Rand", ":v")):
            ms = [f"{p}-{base}"] + [f"{p}-{m}" for m in refined(refine, base)]
            ax.plot([1e3 * sec[m] for m in ms], [avg[m] / avg[f"{p}-Greedy"] for m in ms], ls, color=COLOURS[p],
                    label=f"{p}-{base}+S", ms=5)
            for m in ms[1:]:
                ax.annotate(m.split("+")[1], (1e3 * sec[m], avg[m] / avg[f"{p}-Greedy"]), fontsize=7,
                            xytext=(3, -9), textcoords="offset points", color=COLOURS[p])
        ax.plot([1e3 * sec[f"{p}-Greedy"]], [1.0], "s", color=COLOURS[p], ms=7, label=f"{p}-Greedy")
    ax.set(xscale="log", xlabel="ms per sample (batched, this CPU, avg over SNR)", ylabel="sum rate / Greedy",
           title=f"swap search after TEUS or a random set (S = {', '.join(map(str, refine))} rounds)")
    ax.grid(alpha=.3); ax.legend(fontsize=7, ncol=3)
    fig.tight_layout(); fig.savefig(path, dpi=130); plt.close(fig)


# ---------------------------------------------------------------- Fig. 7
#: paper 000 Fig. 7: the TEUS trained at (N_T, K̃, K, N_R) = (32, 12, 8, 2), tested at other N_T and K̃
FIG7 = {"N_T": [16, 24, 32, 48, 64], "K_tilde": [10, 12, 16, 20, 24]}


def fig7(teus, n_test: int, out_dir: Path, names=("mmse", "tecfp"), tecfp_path=None, snr: float = 20.0,
         channel="uma", sweeps=FIG7, progress=True, refine=()) -> dict:
    """Paper 000 Fig. 7: sum rate of Rand/Greedy/TEUS on each precoder when N_T or K̃
    differs from the training scenario (K = 8, N_R = 2 fixed; the other size at its
    training value), at one SNR, on held-out drops (seed 2), without retraining.

    WMMSE is off by default: Greedy-WMMSE costs ~2-6 s per drop per point on this CPU
    (``--precoders mmse,tecfp,wmmse`` adds it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm
    precs = precoders(names, tecfp_path)
    base = {"N_T": 32, "K_tilde": 12}
    k, N_R = 8, 2
    res = {"n_test": n_test, "channel": channel, "snr_db": snr, "trained_at": {"N_T": 32, "K_tilde": 12, "K": k,
           "N_R": N_R}, "precoders": list(precs), "sweeps": {}}
    points = [(var, v) for var, vals in sweeps.items() for v in vals]
    done: dict = {}  # the training point sits on both sweeps: compute it once
    for var, v in tqdm(points, desc="Fig. 7 points", disable=not progress):
        sz = {**base, var: v}
        if sz["K_tilde"] < k:
            raise ValueError(f"K_tilde = {sz['K_tilde']} < K = {k}: nothing to schedule")
        at = (sz["N_T"], sz["K_tilde"])
        if at not in done:
            data, key = channels(channel, n_test, 2, sz["K_tilde"], N_R, sz["N_T"], SNRS, False)
            H = data["H"].to(torch.complex128)
            s2 = torch.full((n_test,), 10 ** (-snr / 10), dtype=torch.float64)
            done[at] = {"sizes": {**sz, "K": k, "N_R": N_R}, "channels_key": key,
                        **_schemes(H, s2, k, teus, precs, seed=0, refine=refine)}
        res["sweeps"].setdefault(var, []).append(done[at])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fig7.json").write_text(json.dumps(res, indent=2) + "\n")
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.6 * len(sweeps), 4.2), squeeze=False)
    for ax, (var, rows) in zip(axes[0], res["sweeps"].items()):
        xs = [r["sizes"][var] for r in rows]
        for m in [m for m in rows[0] if "-" in m]:
            p_, s_ = m.split("-")
            ax.plot(xs, [r[m]["sum_rate"] for r in rows], _style(s_, refine), color=COLOURS[p_], label=m, ms=5)
        ax.axvline(base[var], color="k", lw=0.8, ls="--")
        fixed = "K̃=12" if var == "N_T" else "N_T=32"
        ax.set(xlabel={"N_T": "N_T", "K_tilde": "K̃ (candidates)"}[var], ylabel="sum rate (bits/s/Hz)",
               title=f"{fixed}, K={k}, N_R={N_R}, {snr:g} dB, {n_test} drops\n(trained at the dashed line)")
        ax.grid(alpha=.3)
    axes[0][0].legend(fontsize=8, ncol=len(precs))
    fig.suptitle("Fig. 7: TEUS generalisation without retraining, UMa NLOS", fontsize=10)
    fig.tight_layout(); fig.savefig(out_dir / "fig7_generalisation.png", dpi=130); plt.close(fig)
    return res


# ---------------------------------------------------------------- bench
def bench(teus, out: Path, tecfp_path=None, n: int = 200, n_wmmse: int = 10, refine=(1, 2)) -> dict:
    """Per-sample time (batched) of TEUS+TECFP (TEUS+MMSE when no TECFP policy exists)
    and of its swap-refined TEUS+S (``refine``) against WMMSE-Greedy at (N_T, K̃, K, N_R)
    = (32, 12, 8, 2), 10 dB, i.i.d. Rayleigh; WMMSE schemes on the first ``n_wmmse``
    samples (Greedy-WMMSE costs seconds each). Also the training throughput (samples/s,
    forward + backward of TEUSN + its loss)."""
    N_T, Kt, k, N_R = 32, 12, 8, 2
    data, _ = channels("rayleigh", n, 5, Kt, N_R, N_T, SNRS, False)
    H = data["H"].to(torch.complex128)
    s2 = torch.full((n,), 0.1, dtype=torch.float64)
    fast = precoders(["mmse", "tecfp"], tecfp_path)
    res = _schemes(H, s2, k, teus, fast, seed=0, refine=refine)
    res.update(_schemes(H[:n_wmmse], s2[:n_wmmse], k, teus, precoders(["wmmse"]), seed=0, refine=refine))
    ours = "TECFP-TEUS" if "TECFP" in fast else "MMSE-TEUS"
    model = teus.model.train()
    col = collate(teus.spec, teus.noise_feature)
    seq = teus.decode == "sequential"   # a training sample is then one greedy step (GreedySteps)
    extra = {"chosen": torch.zeros(Kt), "next": torch.tensor(0)} if seq else {}
    batch = col([{"H": data["H"][i], "noise_var": data["noise_var"][i],
                  "eta": torch.zeros(Kt).index_fill_(0, torch.arange(k), 1.0), **extra} for i in range(min(n, 64))])
    g, samples = batch[0]
    t0 = time.perf_counter()
    for _ in range(5):
        model.zero_grad()
        loss, _ = objective(samples, model(g), loss="next" if seq else "bce")
        loss.backward()
    thr = 5 * len(samples["H"]) / (time.perf_counter() - t0)
    model.eval()
    result = {"sizes": {"N_T": N_T, "K_tilde": Kt, "K": k, "N_R": N_R, "batch": n, "batch_wmmse": n_wmmse},
              "snr_db": 10, "channel": "rayleigh", "schemes": res, "ours": ours,
              f"speedup_{ours}_over_WMMSE-Greedy": res["WMMSE-Greedy"]["sec_per_sample"] / res[ours]["sec_per_sample"],
              "speedup_refined_over_WMMSE-Greedy": {m: res["WMMSE-Greedy"]["sec_per_sample"] / res[m]["sec_per_sample"]
                                                    for m in refined(refine, ours)},
              "training_samples_per_s": thr, "threads": torch.get_num_threads(),
              "paper_table_II_multiplications": {"MMSE-Greedy": 1.8e6, "MMSE-TEUS": 1.4e6, "WMMSE-Greedy": 6.4e8,
                                                 "WMMSE-TEUS": 5.8e7, "TECFP-TEUS": 2.8e7}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------- CLI
def _policy(args):
    from pegnn.policies import load_policy, pretrained
    if args.checkpoint:
        return load_policy(args.checkpoint, kind="teus")
    return pretrained("teus")


def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    ap = TaskArgumentParser(prog="python -m tasks.scheduling", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("labels", "train"):
        p = sub.add_parser(name, help="greedy labels (cached, sharded)" if name == "labels" else "train TEUSN")
        p.add_argument("--config", type=path_arg, help="YAML config (defaults: the paper's setup on a CPU budget)")
        p.add_argument("overrides", nargs="*", help="key=value, e.g. labels.precoder=wmmse train.max_steps=500")
        if name == "labels":
            p.add_argument("--split", default="both", choices=["train", "val", "both"])
            p.add_argument("--shard", type=non_negative_int, default=None,
                           help="compute only this shard (parallel jobs)")
    for name in ("evaluate", "bench", "fig7"):
        q = sub.add_parser(name)
        q.add_argument("--checkpoint", type=path_arg, help="a TEUS policy.pt from a run (default: the shipped one)")
        q.add_argument("--tecfp", type=path_arg, help="a TECFP policy.pt (default: the shipped one, if any)")
        q.add_argument("--out", type=out_file if name == "bench" else path_arg,   # bench writes one JSON
                       default=str(ROOT / "results" / "bench" / "scheduling.json") if name == "bench" else None)
        if name == "evaluate":
            q.add_argument("--n-test", type=positive_int, default=100,
                           help="test drops (Greedy-WMMSE: ~0.5 s each per SNR)")
            q.add_argument("--channel", default="uma", choices=["uma", "rayleigh"])
            q.add_argument("--precoders", default="mmse,wmmse,tecfp", help="comma list of mmse, wmmse, tecfp")
            q.add_argument("--oracle", choices=["mmse", "wmmse"], default=None,
                           help="schedule with the greedy labels themselves (a perfect imitator) instead of TEUS")
        if name in ("evaluate", "bench"):
            q.add_argument("--refine", type=positive_int, nargs="*", default=[1, 2], metavar="S",
                           help="also TEUS+S: S rounds of swap search under MMSE after TEUS (default: 1 2; "
                                "--refine alone: none)")
        if name == "fig7":
            q.add_argument("--n-test", type=positive_int, default=50, help="test drops per point")
            q.add_argument("--snr", type=float, default=20.0, help="SNR in dB")
            q.add_argument("--channel", default="uma", choices=["uma", "rayleigh"])
            q.add_argument("--precoders", default="mmse,tecfp", help="comma list of mmse, wmmse, tecfp")
            q.add_argument("--refine", type=positive_int, nargs="*", default=[], metavar="S",
                           help="also TEUS+S and Rand+S (swap search after the mask; default: none)")
    args = ap.parse_task(argv)
    try:
        if args.cmd in ("labels", "train"):
            cfg = load_config(args.config or {}, args.overrides, defaults=DEFAULTS)
            _check(cfg)
            if args.cmd == "labels" and args.shard is not None and args.split == "both":
                raise ValueError("--shard: name the split it belongs to (--split train or --split val)")
            if args.cmd == "train":
                train(cfg)
            else:
                for split in (("train", "val") if args.split == "both" else (args.split,)):
                    labelled(cfg, split, shard=args.shard)
                print("labels ready" + (f" (shard {args.shard})" if args.shard is not None else ""))
        elif args.cmd in ("evaluate", "fig7"):
            names = [s.strip() for s in args.precoders.split(",") if s.strip()]
            bad = sorted(set(names) - {"mmse", "wmmse", "tecfp"})
            if bad or not names:
                raise ValueError(f"--precoders: expected a comma list of mmse, wmmse, tecfp, got {args.precoders!r}")
            if getattr(args, "oracle", None):
                if args.checkpoint:
                    raise ValueError("--oracle: schedules without a policy; drop --checkpoint")
                pol = LabelOracle(args.oracle)
            else:
                pol = _policy(args)
            if args.cmd == "fig7":
                import math
                if not math.isfinite(args.snr):
                    raise ValueError(f"--snr: expected a finite number of dB, got {args.snr}")
                out = check_writable(args.out or ROOT / "results" / "scheduling" / "fig7", "--out")
                r = fig7(pol, args.n_test, out, names, args.tecfp, args.snr, args.channel, refine=tuple(args.refine))
                for var, rows in r["sweeps"].items():
                    for row in rows:
                        print(f"{var}={row['sizes'][var]:>3}: " + ", ".join(
                            f"{m} {row[m]['sum_rate']:.2f}" for m in row if "-" in m))
                print(f"wrote {out / 'fig7.json'}, {out / 'fig7_generalisation.png'}")
                return 0
            run = (f"oracle_{args.oracle}" if args.oracle else
                   Path(args.checkpoint).parent.name if args.checkpoint else "pretrained")
            out = check_writable(args.out or ROOT / "results" / "scheduling" / run, "--out")
            r = evaluate(pol, args.n_test, out, names, args.tecfp, args.channel, refine=tuple(args.refine))
            _print_table(r)
            if args.oracle:
                print(f"(TEUS here = the greedy-{args.oracle.upper()} labels themselves, a perfect imitator)")
            print(f"wrote {out / 'eval.json'}, {out / 'sum_rate_vs_snr.png'}, {out / 'time_per_sample.png'}"
                  + (f", {out / 'refine_tradeoff.png'}" if args.refine else ""))
        elif args.cmd == "bench":
            r = bench(_policy(args), Path(args.out), args.tecfp, refine=tuple(args.refine))
            print(json.dumps({k: v for k, v in r.items() if k.startswith(("speedup", "training", "ours"))}, indent=2))
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_table(r: dict) -> None:
    from tasks.precoding import snr_table
    schemes = list(next(iter(r["per_snr"].values())))
    for p in r["precoders"]:                                     # one table per precoder
        cols = [m for m in schemes if m.split("-")[0] == p]
        print("\n".join(snr_table(r, width=13, methods=cols)))
        print(f"{'s/smp':>5} " + " ".join(f"{r['sec_per_sample'][m]:13.2e}" for m in cols))
    print("TEUS / Greedy (avg over SNR): " + ", ".join(f"{p} {v:.3f}" for p, v in r["teus_over_greedy"].items()))
    for m, ratios in r.get("refined_over_greedy", {}).items():
        print(f"{m} / Greedy (avg over SNR): " + ", ".join(f"{p} {v:.3f}" for p, v in ratios.items()))


if __name__ == "__main__":
    sys.exit(main())
