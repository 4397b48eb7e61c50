#!/usr/bin/env python3
"""One-step learning parity: from stoke's exact state at step k, does one PyTorch step give stoke's step k+1?

  step_parity.py --stoke STOKE --run RUN [--steps 0,1,2] [--loss-rtol R] [--update-rtol R] [--stat-rtol R]
                 [--break order|bn|update]

For the deep zoo models a whole free-running trajectory cannot be compared (learning_parity.py): batch norm over
small maps of a few samples magnifies fp32 rounding, and PyTorch against itself in float64 drifts apart as fast. So
each step is compared on its own. RUN is a finished `stoke train` run (CPU backend, --checkpoint-every 1 with every
checkpoint kept, --log-every 1, --bn-recalibrate 0, --augment none, --schedule constant). For each k in --steps the
twin (stoke_torch.build_model) is set to stoke's state after k steps -- the weights and batch-norm running statistics
(`stoke export` of checkpoints/step-k, or of the initial weights for k = 0) and the optimizer's moments and step
count (the checkpoint's optimizer.safetensors, converted from stoke's layout) -- and takes one step on the batch stoke
took at step k+1 (learning_parity.py's port of stoke's sampler). Compared with stoke's step k+1, each as a relative
error ||stoke - torch|| / ||torch||, the worst over tensors:
  loss     the step's loss, |stoke - torch| / |torch| (metrics.jsonl);
  update   what the step did to every parameter and optimizer moment, (state k+1) - (state k);
  stats    what it did to every batch-norm running mean and variance, (stats k+1) - (stats k).
It prints each worst case and the share of its tolerance it used; exit 0 when all are within tolerance, 1 otherwise.

--break changes the twin, not stoke, to show each comparison can fail: `order` steps on the batch after the right one,
`bn` gives the batch norms momentum 0.2 (stoke: 0.1), `update` turns SGD's Nesterov off (AdamW: Adam's L2 penalty
instead of decoupled weight decay). Each must exit 1. --also-break order,bn,update tries them in the same process
after the real comparison (one torch import and one set of exports): exit 0 only when that passes and each is caught.
--float64 runs the twin in float64: stoke's distance from it next to the fp32 twin's shows what fp32 costs.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learning_parity as lp  # noqa: E402  (sampler port, export, optimizer, losses)
import stoke_torch as st  # noqa: E402


def spatial_inputs(model, c, h, w):
    """{linear module: (C, H, W) of the map flattened into it} for linears fed a map larger than 1x1."""
    shapes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, nn.Flatten) or m.__class__.__name__ in ("AdaptiveAvgPool2d", "Identity"):
            hooks.append(m.register_forward_hook(lambda mod, i, o: shapes.__setitem__("last", tuple(o.shape[1:]))))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, c, h, w))
    for hk in hooks:
        hk.remove()
    last = shapes.get("last")
    return last if last is not None and len(last) == 3 and last[1] * last[2] > 1 else None


def to_torch_layout(raw, ref_shape, linear_map):
    """A stoke-layout tensor (conv KRSC; linear columns HWC when fed a map) in PyTorch's layout (KCRS; CHW)."""
    if raw.dim() == 4:
        return raw.permute(0, 3, 1, 2).contiguous()
    if raw.dim() == 2 and linear_map is not None and raw.shape[1] == np.prod(linear_map):
        cc, hh, ww = linear_map
        return raw.reshape(raw.shape[0], hh, ww, cc).permute(0, 3, 1, 2).reshape(ref_shape).contiguous()
    return raw.reshape(ref_shape)


def stoke_state(a, run, k, tmp, model_names, linear_map, ref):
    """(torch-layout weights and buffers, {moment name: {param name: tensor}}, optimizer steps) after k steps.

    k = 0: `stoke export --checkpoint initial`. Otherwise the checkpoint's own files, converted here from stoke's layout
    (one `stoke export` per run is enough: the newest checkpoint is exported and the conversion must reproduce it)."""
    if k == 0:
        return lp.export(a.stoke, run, "initial", os.path.join(tmp, "s0.safetensors")), {}, 0
    ck = os.path.join(run, "checkpoints", f"step-{k:08d}")
    if not os.path.isdir(ck):
        sys.exit(f"step_parity.py: no checkpoint {ck} (train with --checkpoint-every 1 --keep-checkpoints N)")
    raw, _ = st.load_safetensors(os.path.join(ck, "model.safetensors"))
    opt, _ = st.load_safetensors(os.path.join(ck, "optimizer.safetensors"))
    state = json.load(open(os.path.join(ck, "state.json")))
    sd = {}
    for name, t in ref.items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(k, dtype=t.dtype)
        else:
            sd[name] = to_torch_layout(raw[name], t.shape, linear_map)
    if os.path.realpath(ck) == os.path.realpath(st_latest(run)):
        exported = lp.export(a.stoke, ck, "latest", os.path.join(tmp, f"s{k}.safetensors"))
        bad = [n for n, t in exported.items() if not n.endswith("num_batches_tracked") and not torch.equal(t, sd[n])]
        if bad:
            sys.exit(f"step_parity.py: stoke's layout of {bad[0]} {list(raw[bad[0]].shape)} does not convert to its export")
    moments = {}
    for name, t in opt.items():
        kind, pname = name.split(".", 1)
        moments.setdefault(kind, {})[pname] = to_torch_layout(t, ref[pname].shape, linear_map)
    missing = set(model_names) - set(next(iter(moments.values()), {}).keys()) if moments else set()
    if missing:
        sys.exit(f"step_parity.py: {ck}/optimizer.safetensors lacks {sorted(missing)[:3]}")
    return sd, moments, int(state["optimizer_steps"])


def st_latest(run):
    with open(os.path.join(run, "checkpoints", "latest")) as f:
        return os.path.join(run, "checkpoints", f.read().strip())


def load_optimizer_state(opt, model, moments, steps, cfg):
    if steps == 0:
        return
    params = dict(model.named_parameters())
    for name, p in params.items():
        if cfg["optimizer"] == "sgd":
            opt.state[p] = {"momentum_buffer": moments["momentum"][name].clone()}
        else:
            opt.state[p] = {"step": torch.tensor(float(steps)), "exp_avg": moments["exp_avg"][name].clone(),
                            "exp_avg_sq": moments["exp_avg_sq"][name].clone()}


def torch_moments(opt, model, cfg):
    out = {}
    for name, p in model.named_parameters():
        s = opt.state[p]
        if cfg["optimizer"] == "sgd":
            out.setdefault("momentum", {})[name] = s["momentum_buffer"]
        else:
            out.setdefault("exp_avg", {})[name] = s["exp_avg"]
            out.setdefault("exp_avg_sq", {})[name] = s["exp_avg_sq"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--steps", default="0,1,2", help="k: compare stoke's step k+1 with one twin step from stoke's k")
    ap.add_argument("--loss-rtol", type=float, default=1e-5)
    ap.add_argument("--grad-rtol", type=float, default=1e-2)
    ap.add_argument("--update-rtol", type=float, default=1e-4)
    ap.add_argument("--stat-rtol", type=float, default=1e-3)
    ap.add_argument("--break", dest="broken", choices=["order", "bn", "update"])
    ap.add_argument("--also-break", help="comma-separated breaks to try after the comparison, each on the last of "
                                         "--steps; exit 1 unless every one is caught")
    ap.add_argument("--float64", action="store_true", help="the twin computes in float64 (the fp32 noise floor)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    t_start = time.time()

    cfg, samples, x_all, y_all = lp.load_run_data(a.run, "step_parity.py")
    (h, w, c), classes = cfg["input"], cfg["classes"]
    batch, n = cfg["batch_size"], len(samples)
    per_epoch = n // batch
    logged = lp.stoke_losses(a.run)

    def batch_ids(step):  # 1-based global step -> the sample ids stoke trained on
        epoch, b = divmod(step - 1, per_epoch)
        perm = lp.epoch_permutation(n, cfg["seed"], epoch)
        return perm[b * batch:(b + 1) * batch]

    model = st.build_model(cfg["model"], c, len(classes), h, w)
    linear_map = spatial_inputs(model, c, h, w)
    names = [k for k, _ in model.named_parameters()]
    tmp = tempfile.TemporaryDirectory(prefix="step-parity-")
    steps = [int(s) for s in a.steps.split(",")]
    tol = {"loss": a.loss_rtol, "grad": a.grad_rtol, "update": a.update_rtol, "stats": a.stat_rtol}
    dtype = torch.float64 if a.float64 else torch.float32
    x_all = x_all.to(dtype)
    model.to(dtype)
    cache = {}
    ref = stoke_state(a, a.run, 0, tmp.name, names, linear_map, None)[0]  # the initial weights: names and shapes
    cache[0] = (ref, {}, 0)
    if int(os.path.basename(st_latest(a.run)).split("-")[-1]) != max(steps) + 1:
        sys.exit(f"step_parity.py: the newest checkpoint of {a.run} must be step {max(steps) + 1}, the last compared")

    def state_at(k):  # each checkpoint exported once, though consecutive k share one
        if k not in cache:
            cache[k] = stoke_state(a, a.run, k, tmp.name, names, linear_map, ref)
        return cache[k]

    def compare(broken, ks):
        """One twin step from each k in ks; returns ({what: (worst error, where)}, [failures])."""
        worst = {"loss": (0.0, ""), "grad": (0.0, ""), "update": (0.0, ""), "stats": (0.0, ""), "free": (0.0, "")}
        fails = []
        for k in ks:
            if k + 1 not in logged:
                sys.exit(f"step_parity.py: metrics.jsonl has no loss for step {k + 1} (train with --log-every 1)")
            for old in [j for j in cache if j < k]:
                del cache[old]
            sd0, mom0, opt_steps = state_at(k)
            sd1, mom1, _ = state_at(k + 1)
            if opt_steps != k:
                sys.exit(f"step_parity.py: checkpoint step-{k} counts {opt_steps} optimizer steps (a skipped step?)")
            model.load_state_dict(sd0, strict=True)
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum = 0.2 if broken == "bn" else 0.1
            model.train()
            opt = lp.make_optimizer(model, cfg, broken == "update")
            load_optimizer_state(opt, model, {kind: {n: t.to(dtype) for n, t in per.items()}
                                              for kind, per in mom0.items()}, k, cfg)
            ids = batch_ids(k + 2 if broken == "order" else k + 1)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x_all[ids]), y_all[ids])
            loss.backward()
            opt.step()
            checks = [("loss", "loss", abs(logged[k + 1] - float(loss)) / abs(float(loss)))]
            after = {kk: v.detach().clone() for kk, v in model.state_dict().items()
                     if not kk.endswith("num_batches_tracked")}
            for name, t in after.items():  # the free step's weights: informative (Adam's first step is sign(grad))
                what = "stats" if "running_" in name else "free"
                checks.append((what, name, lp.rel(sd1[name] - sd0[name], t.double() - sd0[name].double())))
            # The gradient, seen through what the step did to the moments (linear in it).
            for kind, per in torch_moments(opt, model, cfg).items():
                for name, t in per.items():
                    before = mom0[kind][name].double() if mom0 else torch.zeros_like(t, dtype=torch.float64)
                    checks.append(("grad", f"{kind}.{name}", lp.rel(mom1[kind][name] - before, t.double() - before)))
            # The update rule alone: PyTorch's optimizer, from stoke's state k, fed the gradient stoke's moments imply,
            # must land on stoke's weights and moments at k+1 (no gradient noise in this one).
            model.load_state_dict(sd0, strict=True)
            opt = lp.make_optimizer(model, cfg, broken == "update")
            load_optimizer_state(opt, model, {kind: {n: t.to(dtype) for n, t in per.items()}
                                              for kind, per in mom0.items()}, k, cfg)
            decay = cfg["weight_decay"]
            for name, p in model.named_parameters():
                if cfg["optimizer"] == "sgd":
                    m0 = mom0["momentum"][name] if mom0 else torch.zeros_like(p)
                    g = (mom1["momentum"][name].double() - cfg["momentum"] * m0.double()
                         - (decay * sd0[name].double() if p.dim() > 1 else 0.0))
                else:
                    m0 = mom0["exp_avg"][name] if mom0 else torch.zeros_like(p)
                    g = (mom1["exp_avg"][name].double() - cfg["beta1"] * m0.double()) / (1.0 - cfg["beta1"])
                p.grad = g.to(dtype)
            opt.step()
            for name, p in model.named_parameters():
                checks.append(("update", name, lp.rel(sd1[name] - sd0[name], p.detach().double() - sd0[name].double())))
            for kind, per in torch_moments(opt, model, cfg).items():
                for name, t in per.items():
                    checks.append(("update", f"{kind}.{name}", lp.rel(mom1[kind][name], t)))
            for what, name, e in checks:
                if e > worst[what][0] or not np.isfinite(e):
                    worst[what] = (e, f"{name} at step {k + 1}")
                if what in tol and not e <= tol[what]:
                    fails.append(f"step {k + 1}: {what} {name}: {e:.2e} > {tol[what]:g}")
        return worst, fails

    def summary(worst):
        return "; ".join(f"worst {what} {e:.1e} " + (f"({100 * e / tol[what]:.0f}% of {tol[what]:g}, {where})"
                                                      if what in tol else f"({where}, not checked)")
                         for what, (e, where) in worst.items() if where)

    worst, fails = compare(a.broken, steps)
    print(f"{cfg['model']} {h}x{w}x{c}, {cfg['optimizer']} lr {cfg['lr']:g}, batch {batch}, twin in {dtype}"
          f"{', broken: ' + a.broken if a.broken else ''}, one step from stoke's state at steps {a.steps}: "
          f"{summary(worst)}", flush=True)
    for f in fails[:8]:
        print(f"FAIL {f}")
    if len(fails) > 8:
        print(f"FAIL ... and {len(fails) - 8} more")
    missed = []
    for b in [b for b in (a.also_break or "").split(",") if b]:
        bw, bf = compare(b, steps[-1:])
        print(f"  --break {b} (step {steps[-1] + 1}): {'caught' if bf else 'NOT CAUGHT'}, {len(bf)} failures; "
              f"{summary(bw)}", flush=True)
        if not bf:
            missed.append(b)
    if missed:
        print(f"FAIL the comparison cannot see --break {','.join(missed)}")
    print(f"  [{time.time() - t_start:.1f} s]")
    return 1 if fails or missed else 0

if __name__ == "__main__":
    sys.exit(main())
