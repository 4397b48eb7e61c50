#!/usr/bin/env python3
"""Learning parity: does a stoke run learn exactly as its PyTorch twin does from the same start?

  learning_parity.py --stoke STOKE --run RUN [--loss-rtol 1e-4] [--weight-rtol 1e-3] [--break order|bn|update]
                     [--val DIR] [--verbose]

RUN is a finished `stoke train` run (CPU backend, --log-every 1, --bn-recalibrate 0, --augment none, --schedule
constant, no --limit-train). The twin (stoke_torch.build_model) gets:
  - stoke's initial weights (`stoke export --checkpoint initial`) and the run's normalisation (config.json);
  - the same batches in the same order: the training folder decoded as stoke decodes it (stoke_torch.decode_like_stoke,
    bit-exact), each epoch's order recomputed here from the run's seed with stoke's sampler (base/permutation.h, ported
    below), full batches only (drop_last);
  - the same optimizer (torch.optim.SGD or AdamW with the run's settings; weight decay on conv and linear weights only,
    as stoke) and cross-entropy loss, fp32, in training mode.
Then it compares, step by step, the loss with the one stoke logged (metrics.jsonl), and at the end every parameter and
batch-norm running statistic with stoke's last checkpoint (`stoke export --checkpoint latest`), each as
||stoke - torch|| / ||torch||. It prints the largest of each and the share of its tolerance it used; exit 0 when all
are within tolerance, 1 otherwise.

--break shows that the comparison can fail (the twin is changed, stoke is not): `order` trains the twin on the
epochs' batches in reverse order, `bn` gives its batch norms momentum 0.2 (stoke: 0.1), `update` turns SGD's Nesterov
off (or, for AdamW, its weight decay into Adam's L2 penalty). Each must make this script exit 1.

--val DIR also evaluates the twin (eval mode, its own running statistics) on that folder after every epoch and prints
its accuracy beside stoke's (summary.json): the same start and batches, so a gap there is the engines', not the seed's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stoke_torch as st  # noqa: E402

# ---- stoke's sample order (base/rng.h, base/permutation.h) ---------------------------------------------------------
_M = (1 << 64) - 1


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M
    return x ^ (x >> 31)


def hash_key(a, b=0, c=0, d=0):
    h = mix64(a & _M)
    h = mix64(h ^ (b & _M))
    h = mix64(h ^ (c & _M))
    return mix64(h ^ (d & _M))


def epoch_permutation(n, seed, epoch):
    """base/permutation.h epoch_permutation: Fisher-Yates with one keyed draw (uniform_below) per position."""
    out = list(range(n))
    key = hash_key(seed, 0x5A3B1E, epoch)
    for i in range(n - 1, 0, -1):
        j = (mix64(key ^ mix64(i)) * (i + 1)) >> 64
        out[i], out[j] = out[j], out[i]
    return out


# ---- the run --------------------------------------------------------------------------------------------------------


def export(stoke, run, which, path):
    subprocess.run([stoke, "export", "--run", run, "--checkpoint", which, "-o", path], check=True,
                   stdout=subprocess.DEVNULL)
    tensors, _ = st.load_safetensors(path)
    return tensors


def stoke_losses(run):
    """{global step (1-based): loss} from metrics.jsonl's train lines (one per step with --log-every 1)."""
    losses = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "train":
                losses[int(r["step"])] = float(r["loss"])
    return losses


def make_optimizer(model, cfg, broken):
    decay = [p for p in model.parameters() if p.dim() > 1]  # conv and linear weights, as stoke's ParamInfo says
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    wd = cfg["weight_decay"]
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg["optimizer"] == "sgd":
        nesterov = cfg["nesterov"] and cfg["momentum"] > 0 and not broken
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=nesterov)
    betas = (cfg["beta1"], cfg["beta2"])
    if broken:  # L2 in the gradient instead of decoupled decay
        return torch.optim.Adam(groups, lr=cfg["lr"], betas=betas, eps=cfg["eps"])
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=betas, eps=cfg["eps"])


def rel(a, b):
    a = a.double()
    b = b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def load_run_data(run, who):
    """A run's config and its whole training set decoded and normalised as stoke does; exits unless the run's recipe
    is one a twin can follow step for step (constant schedule, no augmentation, smoothing, subset, clipping, warm-up)."""
    cfg = json.load(open(os.path.join(run, "config.json")))
    need = {"schedule": "constant", "augment": "none", "label_smoothing": 0.0, "limit_train": 0, "clip_grad_norm": 0.0}
    off = {k: cfg.get(k) for k, v in need.items() if cfg.get(k) != v}
    if off or float(cfg.get("warmup_epochs", 0)) != 0.0:
        sys.exit(f"{who}: the run must use {need} and no warm-up; it has {off}")
    h, w, c = cfg["input"]
    classes, samples = st.list_image_folder(cfg["data"])
    if classes != cfg["classes"]:
        sys.exit(f"{who}: {cfg['data']} has classes {classes}, the run {cfg['classes']}")
    px = np.stack([st.decode_like_stoke(p, h, w, c) for p, _ in samples])
    x_all = st.normalize(px, cfg["normalize_mean"], cfg["normalize_std"])
    y_all = torch.tensor([k for _, k in samples], dtype=torch.int64)
    return cfg, samples, x_all, y_all


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--loss-rtol", type=float, default=1e-4, help="per step, |stoke - torch| / |torch|")
    ap.add_argument("--weight-rtol", type=float, default=1e-3, help="per tensor, ||stoke - torch|| / ||torch||")
    ap.add_argument("--break", dest="broken", choices=["order", "bn", "update"])
    ap.add_argument("--verbose", action="store_true", help="print both losses at every step")
    ap.add_argument("--val", help="validation folder: the twin's accuracy after every epoch beside stoke's")
    a = ap.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))

    cfg, samples, x_all, y_all = load_run_data(a.run, "learning_parity.py")
    (h, w, c), classes = cfg["input"], cfg["classes"]

    tmp = tempfile.TemporaryDirectory(prefix="learning-parity-")
    init = export(a.stoke, a.run, "initial", os.path.join(tmp.name, "initial.safetensors"))
    final = export(a.stoke, a.run, "latest", os.path.join(tmp.name, "final.safetensors"))
    model = st.build_model(cfg["model"], c, len(classes), h, w)
    model.load_state_dict(init, strict=True)
    if a.broken == "bn":
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.2
    opt = make_optimizer(model, cfg, a.broken == "update")
    model.train()

    batch, n = cfg["batch_size"], len(samples)
    losses = []
    val = None
    if a.val:
        _, vs = st.list_image_folder(a.val)
        val = (st.normalize(np.stack([st.decode_like_stoke(p, h, w, c) for p, _ in vs]), cfg["normalize_mean"],
                            cfg["normalize_std"]), torch.tensor([k for _, k in vs], dtype=torch.int64))
        hist = json.load(open(os.path.join(a.run, "summary.json"))).get("history", [])
    for epoch in range(cfg["epochs"]):
        perm = epoch_permutation(n, cfg["seed"], epoch)
        order = list(range(n // batch))  # drop_last: full batches only
        if a.broken == "order":
            order.reverse()
        for b in order:
            ids = perm[b * batch:(b + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[ids]), y_all[ids])
            loss.backward()
            opt.step()
            losses.append(float(loss))
        if val is not None:
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model(val[0][i:i + 100]).argmax(1) for i in range(0, len(val[1]), 100)])
            model.train()
            mine = float((pred == val[1]).float().mean())
            theirs = hist[epoch].get("val_acc") if epoch < len(hist) else None
            print(f"epoch {epoch + 1}: validation accuracy twin {100 * mine:.2f}%, stoke "
                  + ("-" if theirs is None else f"{100 * theirs:.2f}%") + f" ({len(val[1])} images)", flush=True)

    logged = stoke_losses(a.run)
    if sorted(logged) != list(range(1, len(losses) + 1)):
        sys.exit(f"learning_parity.py: metrics.jsonl logs steps {sorted(logged)[:5]}..., expected 1..{len(losses)} "
                 "(train with --log-every 1)")
    what = f"{cfg['model']} {h}x{w}x{c}, {cfg['optimizer']} lr {cfg['lr']:g}, batch {batch}, {len(losses)} steps"
    fails = []
    loss_err = [abs(logged[s + 1] - losses[s]) / abs(losses[s]) for s in range(len(losses))]
    worst_step = int(np.argmax(loss_err))
    if a.verbose:
        for s in range(len(losses)):
            print(f"step {s + 1:3d}  stoke {logged[s + 1]:.7f}  torch {losses[s]:.7f}  relative {loss_err[s]:.1e}")
    if max(loss_err) > a.loss_rtol:
        fails.append(f"loss at step {worst_step + 1}: stoke {logged[worst_step + 1]:.7f}, torch {losses[worst_step]:.7f}")
    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    errs = {k: rel(final[k], v) for k, v in sd.items()}
    stats = {k: e for k, e in errs.items() if "running_" in k}
    params = {k: e for k, e in errs.items() if "running_" not in k}
    wp, ws = max(params, key=params.get), max(stats, key=stats.get) if stats else None
    for k, e in errs.items():
        if e > a.weight_rtol:
            fails.append(f"{k}: ||stoke - torch|| / ||torch|| = {e:.2e}")
    print(f"{what}: losses {losses[0]:.4f} -> {losses[-1]:.4f}; worst loss step {worst_step + 1}: "
          f"{loss_err[worst_step]:.1e} ({100 * loss_err[worst_step] / a.loss_rtol:.0f}% of {a.loss_rtol:g}); "
          f"loss after the last step {loss_err[-1]:.1e}; worst parameter {wp} {params[wp]:.1e} "
          f"({100 * params[wp] / a.weight_rtol:.0f}% of {a.weight_rtol:g})"
          + (f"; worst running statistic {ws} {stats[ws]:.1e} ({100 * stats[ws] / a.weight_rtol:.0f}%)" if ws else ""))
    for f in fails[:8]:
        print(f"FAIL {f}")
    if len(fails) > 8:
        print(f"FAIL ... and {len(fails) - 8} more")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
