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

TEUS = TEUSN (:class:`pegnn.PEGNN` on ``graphs/tenn_scheduling.yaml`` with the :data:`pegnn.TEUSN`
sizes, L = 4, D_H = 32, plus the plan's attention on ``ue``: ``model.attention=auto``; MDE stack →
MDI over ``ant_ue`` and ``ant_bs``, eqs. 38-42) giving one logit :math:`y_{\tilde k}` per user, and
an output layer that keeps the K largest (:class:`pegnn.policies.TEUSPolicy`). Loss (43): the BCE against the K-hot greedy labels
:math:`\boldsymbol\eta^*`, with one sigmoid :math:`\varsigma` per user where the paper has a softmax
(which sums to 1, so could never reach K ones), :math:`-\frac{1}{N\tilde K}\sum_n\sum_{\tilde k}
[\eta^*\log\varsigma(y) + (1-\eta^*)\log(1-\varsigma(y))]`; ``train.loss=rank|bce_rate`` and
``policy.decode=sequential train.loss=next`` are variants (:func:`objective`, :func:`next_pick`).

Labels (:mod:`tasks.labels`): the greedy scheduler's set over MMSE (default, ~2 ms/sample), WMMSE
(``labels.precoder=wmmse``, ~0.5 s/sample) or TECFP (``labels.precoder=tecfp``, ``labels.tecfp=PATH``,
else the shipped policy); computed in shards (``labels --shard I`` for parallel jobs) and cached.
Data: 3GPP 38.901 UMa NLOS (Sionna) at (N_T, K̃, K, N_R) = (32, 12, 8, 2), SNR drawn from
{0, 10, ..., 40} dB; drop seeds 0 (train, 10 000), 1 (validation, 500), 2 (test: ``evaluate``,
``fig7``); ``bench`` uses i.i.d. Rayleigh, seed 5, 10 dB. Defaults are a CPU budget: batch 64,
3000 steps, LR 5e-4 (×0.1 at half).

Evaluation (:mod:`tasks.scheduling_eval`): every scheduler × precoder, sum rate per SNR and time
per sample (Fig. 6). Schedulers: Rand, Greedy, TEUS, and with ``--refine S ...`` TEUS+S and Rand+S
(S rounds of swap search under MMSE after the mask); ``--oracle`` puts the labels themselves in
TEUS's place. ``fig7`` tests at other N_T and K̃ without retraining; ``bench`` times TEUS against
WMMSE-Greedy.

``spec=graphs/tenn_scheduling_mmse.yaml`` gives the network the MMSE precoder of all K̃ candidates
as a second input (:func:`pegnn.policies.mmse_input`): the interference reflected in an input, so
the plan puts no attention (paper 002's rule).

The shipped ``pegnn/checkpoints/teus.pt``: ``python -m tasks.scheduling train run.name=teus_mmse_att --threads 1``;
``teus_mmse.pt``: ``train spec=graphs/tenn_scheduling_mmse.yaml run.name=teus_mmsein --threads 1``.
Outputs: runs under ``runs/scheduling/<name>/`` (``policy.pt``); evaluations under
``results/scheduling/<run>/`` (``eval.json``, ``sum_rate_vs_snr.png``, ``time_per_sample.png``,
``refine_tradeoff.png``) and ``fig7/`` (``fig7.json``, ``fig7_generalisation.png``).

Results, what was tried and why: results/scheduling/README.md
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from pegnn.config import (TaskArgumentParser, check_writable, non_negative_int, out_file, path_arg, positive_int,
                          snr_db, task_main)

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "graphs" / "tenn_scheduling.yaml"
SEQ_SPEC = ROOT / "graphs" / "tenn_scheduling_seq.yaml"   # policy.decode=sequential: adds the `chosen` input
LOSSES = {"topk": ("bce", "rank", "bce_rate"), "sequential": ("next",)}
SNRS = [0, 10, 20, 30, 40]
PROBLEM = "tenn_scheduling"

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


def tecfp_policy(path=None, required=True):
    """A TECFP policy from ``path``, else the shipped one; ``None`` (or an error) if neither."""
    from pegnn.policy_files import load_policy, pretrained
    if path:
        return load_policy(path, kind="tecfp")
    try:
        return pretrained("tecfp")
    except ValueError as e:
        if required:
            raise ValueError(f"{e} — train one (python -m tasks.precoding train) and pass its policy.pt") from None
        return None


def _check(cfg: dict) -> None:
    from pegnn.config_check import check_config
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
    from tasks.labels import PRECODERS, check_counts
    check_counts(lab["shard_size"], lab["threads"])
    if lab["precoder"] not in PRECODERS:
        raise ValueError(f"labels.precoder: unknown precoder {lab['precoder']!r}; expected one of {list(PRECODERS)}")
    if lab["precoder"] == "tecfp":   # load it now: a bad path fails before the channels are made
        try:
            tecfp_policy(None if lab["tecfp"] is None else str(lab["tecfp"]))
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
    tecfp = tecfp_policy(lab["tecfp"]) if lab["precoder"] == "tecfp" else None
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
    costs most (see "Where the gap is" in results/scheduling/README.md)."""
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
    from pegnn.policies import tenn_inputs
    from pegnn.train import GraphCollate

    def graph_inputs(b):
        extra = {"chosen": b["chosen"]} if "chosen" in spec.inputs else {}
        return tenn_inputs(spec, b["H"], b["noise_var"], noise_feature, extra)
    return GraphCollate(spec, sizes_of=lambda s: {"ue": s["H"].shape[0], "ant_ue": s["H"].shape[1],
                                                  "ant_bs": s["H"].shape[2]},
                        graph_inputs=graph_inputs, pairs=())


# ---------------------------------------------------------------- train
def train(cfg: dict) -> Path | None:
    from pegnn import load_spec
    from pegnn.policy_files import save_policy
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



# ---------------------------------------------------------------- CLI
def _policy(args):
    from pegnn.policy_files import load_policy, pretrained
    if args.checkpoint:
        return load_policy(args.checkpoint, kind="teus")
    return pretrained("teus")


@task_main
def main(argv=None) -> int:
    from pegnn.config import ConfigError, load_config
    from tasks.scheduling_eval import LabelOracle, bench, evaluate, fig7, print_table
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
            q.add_argument("--snr", type=snr_db, default=20.0, help="SNR in dB")
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
            print_table(r)
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


if __name__ == "__main__":
    sys.exit(main())
