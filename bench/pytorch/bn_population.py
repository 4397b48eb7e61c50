#!/usr/bin/env python3
"""Which batch-norm statistics a stoke run's final weights evaluate best with, and is --bn-recalibrate precise BN?

  bn_population.py --stoke STOKE --run RUN --val DIR [--recal-run RUN2] [--batches N]

RUN: a finished `stoke train` run with --bn-recalibrate 0 (its checkpoint holds the exponential running averages).
The final weights go into the PyTorch twin, and the validation folder is evaluated (eval mode) with four sets of
running statistics:
  ema         the run's own (momentum 0.1 over its steps);
  stoke       --bn-recalibrate's definition (engine/bn_recalibrate.h): over the first N batches of the epoch after the
              last (stoke's sampler, learning_parity.py), the average of each batch's mean and of each batch's
              unbiased variance, from training-mode forward passes;
  population  precise BN as Wu & Johnson define it (Rethinking "Batch" in BatchNorm, 2021, sec. 3): the same batches,
              mean = E[batch mean], variance = E[batch mean^2 + biased batch variance] - mean^2, i.e. the variance of
              all the batches' values together (the 'stoke' variance lacks the spread of the batch means);
  recal       RUN2's own statistics (the same run with --bn-recalibrate N), when given; its distance from 'stoke'
              checks the implementation.
N defaults to what --bn-recalibrate auto takes: min(20, steps per epoch).
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learning_parity as lp  # noqa: E402
import stoke_torch as st  # noqa: E402


def load_folder(root, cfg):
    h, w, c = cfg["input"]
    _, samples = st.list_image_folder(root)
    x = st.normalize(np.stack([st.decode_like_stoke(p, h, w, c) for p, _ in samples]), cfg["normalize_mean"],
                     cfg["normalize_std"])
    return x, torch.tensor([k for _, k in samples], dtype=torch.int64)


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 100]).argmax(1) for i in range(0, len(y), 100)])
    return float((pred == y).float().mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--recal-run")
    ap.add_argument("--batches", type=int, default=0)
    ap.add_argument("--out", help="write the numbers as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    classes, _ = st.list_image_folder(cfg["data"])
    h, w, c = cfg["input"]
    x_all, y_all = load_folder(cfg["data"], cfg)
    xv, yv = load_folder(a.val, cfg)
    tmp = tempfile.TemporaryDirectory(prefix="bn-population-")
    sd = lp.export(a.stoke, a.run, "latest", os.path.join(tmp.name, "final.safetensors"))
    model = st.build_model(cfg["model"], c, len(classes), h, w)
    model.load_state_dict(sd, strict=True)
    bns = {name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}

    batch, n = cfg["batch_size"], len(y_all)
    per_epoch = n // batch
    nb = a.batches or min(20, per_epoch)
    sums = {name: [0.0, 0.0, 0.0] for name in bns}  # per channel: sum of means, unbiased vars, (biased var + mean^2)
    captured = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=name: captured.__setitem__(name, inp[0].detach()))
             for name, m in bns.items()]
    model.train()
    with torch.no_grad():
        for k in range(nb):  # stoke: next_train(epochs, k), batches k of the epoch after the last
            epoch, b = cfg["epochs"] + k // per_epoch, k % per_epoch
            perm = lp.epoch_permutation(n, cfg["seed"], epoch)
            model(x_all[perm[b * batch:(b + 1) * batch]])
            for name, t in captured.items():
                t = t.double()
                mean = t.mean((0, 2, 3))
                var_b = t.var((0, 2, 3), unbiased=False)
                var_u = t.var((0, 2, 3), unbiased=True)
                s = sums[name]
                s[0] = s[0] + mean
                s[1] = s[1] + var_u
                s[2] = s[2] + var_b + mean * mean
    for hk in hooks:
        hk.remove()
    stats = {"ema": {}, "stoke": {}, "population": {}}
    for name in bns:
        s = sums[name]
        mean = s[0] / nb
        stats["ema"][name] = (sd[name + ".running_mean"].double(), sd[name + ".running_var"].double())
        stats["stoke"][name] = (mean, s[1] / nb)
        stats["population"][name] = (mean, s[2] / nb - mean * mean)
    out = {"run": a.run, "model": cfg["model"], "batches": nb, "batch_size": batch, "val_images": len(yv)}
    if a.recal_run:
        rsd = lp.export(a.stoke, a.recal_run, "latest", os.path.join(tmp.name, "recal.safetensors"))
        wdiff = max(lp.rel(rsd[k], v) for k, v in sd.items() if "running_" not in k and "num_batches" not in k)
        stats["recal"] = {name: (rsd[name + ".running_mean"].double(), rsd[name + ".running_var"].double())
                          for name in bns}
        em = max(lp.rel(stats["recal"][k][0], stats["stoke"][k][0]) for k in bns)
        ev = max(lp.rel(stats["recal"][k][1], stats["stoke"][k][1]) for k in bns)
        out.update(recal_weights_vs_run_max_rel=wdiff, recal_vs_stoke_definition_mean_max_rel=em,
                   recal_vs_stoke_definition_var_max_rel=ev)
        print(f"recal run vs this run's weights: worst parameter {wdiff:.1e}; its statistics vs the average of "
              f"per-batch mean / unbiased variance: worst mean {em:.1e}, worst variance {ev:.1e}")
    gap = max(float(((stats["population"][k][1] - stats["stoke"][k][1]) / stats["population"][k][1]).abs().max())
              for k in bns)
    out["population_vs_stoke_var_max_rel_per_channel"] = gap
    print(f"population variance vs the average of per-batch unbiased variances: at most {100 * gap:.2f}% per channel")
    out["val_acc"] = {}
    for which, s in stats.items():
        for name, m in bns.items():
            m.running_mean.copy_(s[name][0].float())
            m.running_var.copy_(s[name][1].float())
        acc = accuracy(model, xv, yv)
        out["val_acc"][which] = acc
        print(f"validation accuracy with the {which:10s} statistics: {100 * acc:.2f}%", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
