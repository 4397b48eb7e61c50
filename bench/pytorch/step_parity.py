#!/usr/bin/env python3
"""One-step learning parity: from stoke's exact state at step k, does one PyTorch step give stoke's step k+1?

  step_parity.py --stoke STOKE --run RUN [--run RUN2 ...] [--steps 1] [--loss-rtol R] [--grad-rtol R]
                 [--update-rtol R] [--stat-rtol R] [--break order|bn|update] [--also-break order,bn,update]

For the deep zoo models a whole free-running trajectory cannot be compared (learning_parity.py): batch norm over
small maps of a few samples magnifies fp32 rounding, and PyTorch against itself in float64 drifts apart as fast. So
each step is compared on its own. RUN is a finished `stoke train` run (CPU backend, --checkpoint-every 1 keeping the
checkpoints of steps k and k+1, --log-every 1, --bn-recalibrate 0, --augment none, --schedule constant); several runs
(e.g. the same model with SGD and with AdamW) share one process. For each k in --steps the twin
(stoke_torch.build_model) is set to stoke's state after k steps -- the weights and batch-norm running statistics (the
checkpoint's model.safetensors converted from stoke's layout; the conversion must reproduce `stoke export` of the
first run's newest checkpoint; k = 0: `stoke export --checkpoint initial`) and the optimizer's moments and step count
(optimizer.safetensors) -- and takes one step on the batch stoke took at step k+1 (learning_parity.py's port of
stoke's sampler). The default, k = 1, starts from non-zero moments and running statistics and, for AdamW, runs both
bias corrections at optimizer step 2. Compared with stoke's step k+1, each as a relative error
||stoke - torch|| / ||torch||, the worst over tensors:
  loss     the step's loss, |stoke - torch| / |torch| (metrics.jsonl);
  grad     what the step did to every optimizer moment: linear in the gradient (exp_avg_sq: quadratic, so it carries
           up to twice the gradient's relative error and is held to twice --grad-rtol);
  update   the update rule alone: PyTorch's optimizer from stoke's state k, fed the gradient stoke's moments imply,
           against stoke's weights and moments at k+1;
  stats    what the step did to every batch-norm running mean and variance, (stats k+1) - (stats k).
It prints each worst case and the share of its tolerance it used; exit 0 when all are within tolerance, 1 otherwise
(77 when torch, torchvision, numpy or Pillow cannot be imported).

--break changes the twin, not stoke, to show each comparison can fail: `order` steps on the batch after the right one,
`bn` gives the batch norms momentum 0.2 (stoke: 0.1), `update` turns SGD's Nesterov off (AdamW: Adam's L2 penalty
instead of decoupled weight decay). Each must exit 1. --also-break order,bn,update tries them on the first run, in the
same process after the real comparison (one torch import, one set of loads): exit 0 only when that passes and each
is caught. A break that cannot change the gradient (bn, update) reuses the real step's gradient (bn: with a forward
pass for the running statistics); one that cannot change the update-rule check (order, bn) reuses its result.
--float64 runs the twin in float64: stoke's distance from it next to the fp32 twin's shows what fp32 costs.
"""

import argparse
import json
import mmap
import os
import struct
import sys
import tempfile
import time

try:
    import numpy as np
    import PIL  # noqa: F401  (stoke_torch's decoder)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchvision  # noqa: F401  (stoke_torch's ResNets)
except ImportError as e:
    print(f"SKIP: {sys.executable} cannot import {e.name} (Debian: apt-get install python3-torch python3-torchvision "
          "python3-numpy python3-pil, or set STOKE_TORCH_PYTHON)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learning_parity as lp  # noqa: E402  (sampler port, export, optimizer, run data)
import stoke_torch as st  # noqa: E402

TIMES = {"load": 0.0, "export": 0.0, "twin": 0.0, "compare": 0.0}


class timed:
    def __init__(self, what):
        self.what = what

    def __enter__(self):
        self.t = time.time()

    def __exit__(self, *exc):
        TIMES[self.what] += time.time() - self.t


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


def load_views(path):
    """{name: tensor} of a safetensors file as views of the file mapped copy-on-write (stoke_torch.load_safetensors
    reads, copies and clones: three passes, and three sets of fresh pages, over each of these 100-300 MB files)."""
    if sys.byteorder != "little":
        return st.load_safetensors(path)[0]
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # writable: torch.frombuffer warns otherwise
    (n,) = struct.unpack("<Q", mapped[:8])
    header = json.loads(mapped[8:8 + n])
    header.pop("__metadata__", None)
    size = len(mapped) - 8 - n
    out = {}
    for name, info in header.items():
        dtype, width = st._DTYPES[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= size) or end - begin != count * width:
            sys.exit(f"step_parity.py: {path}: tensor {name}: data_offsets {begin}..{end} do not hold {shape}")
        out[name] = (torch.frombuffer(mapped, dtype=dtype, count=count, offset=8 + n + begin).reshape(shape) if count
                     else torch.zeros(shape, dtype=dtype))
    return out


class Run:
    """One stoke run: its data, its twin, stoke's states and what the comparisons of one step share."""

    def __init__(self, a, path):
        self.a, self.path = a, path
        self.cfg, samples, self.x, self.y = lp.load_run_data(path, "step_parity.py")
        (h, w, c), classes = self.cfg["input"], self.cfg["classes"]
        self.n, self.batch = len(samples), self.cfg["batch_size"]
        self.per_epoch = self.n // self.batch
        self.logged = lp.stoke_losses(path)
        self.model = st.build_model(self.cfg["model"], c, len(classes), h, w)
        self.linear_map = spatial_inputs(self.model, c, h, w)
        self.params = [k for k, _ in self.model.named_parameters()]
        sd = self.model.state_dict()
        self.buffers = [k for k in sd if k not in self.params and not k.endswith("num_batches_tracked")]
        self.names = self.params + self.buffers
        self.shapes = {k: sd[k].shape for k in self.names}
        self.dtype = torch.float64 if a.float64 else torch.float32
        self.x = self.x.to(self.dtype)
        self.model.to(self.dtype)
        self.cache = {}

    def batch_ids(self, step):  # 1-based global step -> the sample ids stoke trained on
        epoch, b = divmod(step - 1, self.per_epoch)
        return lp.epoch_permutation(self.n, self.cfg["seed"], epoch)[b * self.batch:(b + 1) * self.batch]

    def latest(self):
        with open(os.path.join(self.path, "checkpoints", "latest")) as f:
            return os.path.join(self.path, "checkpoints", f.read().strip())

    def state(self, k, tmp):
        """(torch-layout weights and buffers, {moment kind: {param: tensor}}, optimizer steps) after k steps."""
        if k in self.cache:
            return self.cache[k]
        if k == 0:
            with timed("export"):
                sd = lp.export(self.a.stoke, self.path, "initial", os.path.join(tmp, "s0.safetensors"))
            self.cache[0] = ({n: sd[n] for n in self.names}, {}, 0)
            return self.cache[0]
        ck = os.path.join(self.path, "checkpoints", f"step-{k:08d}")
        if not os.path.isdir(ck):
            sys.exit(f"step_parity.py: no checkpoint {ck} (train with --checkpoint-every 1 --keep-checkpoints N)")
        with timed("load"):
            raw = load_views(os.path.join(ck, "model.safetensors"))
            opt = load_views(os.path.join(ck, "optimizer.safetensors"))
            with open(os.path.join(ck, "state.json")) as f:
                steps = int(json.load(f)["optimizer_steps"])
            if set(raw) != set(self.names):
                sys.exit(f"step_parity.py: {ck}/model.safetensors holds {sorted(set(raw) ^ set(self.names))[:3]}, "
                         "which the twin does not (or the reverse)")
            sd = {n: to_torch_layout(raw[n], self.shapes[n], self.linear_map) for n in self.names}
            moments = {}
            for name, t in opt.items():
                kind, pname = name.split(".", 1)
                moments.setdefault(kind, {})[pname] = to_torch_layout(t, self.shapes[pname], self.linear_map)
            for kind, per in moments.items():
                if set(per) != set(self.params):
                    sys.exit(f"step_parity.py: {ck}/optimizer.safetensors's {kind} does not hold every parameter")
        self.cache[k] = (sd, moments, steps)
        return self.cache[k]

    def check_export(self, k, tmp):
        """stoke's own export of its newest checkpoint must be what the layout conversion made of it."""
        ck = os.path.join(self.path, "checkpoints", f"step-{k:08d}")
        if os.path.realpath(ck) != os.path.realpath(self.latest()):
            sys.exit(f"step_parity.py: the newest checkpoint of {self.path} must be step {k}, the last compared")
        with timed("export"):
            exported = lp.export(self.a.stoke, ck, "latest", os.path.join(tmp, f"s{k}.safetensors"))
        sd = self.state(k, tmp)[0]
        bad = [n for n in self.names if not torch.equal(exported[n], sd[n])]
        if bad:
            sys.exit(f"step_parity.py: stoke's layout of {bad[0]} {list(sd[bad[0]].shape)} does not convert to its export")

    def load(self, sd, k, broken):
        full = dict(sd)
        for name, t in self.model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                full[name] = torch.tensor(k, dtype=t.dtype)
        self.model.load_state_dict({n: t.to(self.dtype) if t.is_floating_point() else t for n, t in full.items()},
                                   strict=True)
        for m in self.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.2 if broken == "bn" else 0.1
        self.model.train()

    def optimizer(self, mom0, k, broken):
        opt = lp.make_optimizer(self.model, self.cfg, broken == "update")
        if k > 0:
            for name, p in self.model.named_parameters():
                if self.cfg["optimizer"] == "sgd":
                    opt.state[p] = {"momentum_buffer": mom0["momentum"][name].to(self.dtype).clone()}
                else:
                    opt.state[p] = {"step": torch.tensor(float(k)), "exp_avg": mom0["exp_avg"][name].to(self.dtype).clone(),
                                    "exp_avg_sq": mom0["exp_avg_sq"][name].to(self.dtype).clone()}
        return opt

    def compare(self, k, broken, tmp):
        """The checks of one twin step from stoke's state k: [(what, tensor name, relative error)]."""
        if k + 1 not in self.logged:
            sys.exit(f"step_parity.py: metrics.jsonl has no loss for step {k + 1} (train with --log-every 1)")
        for old in [j for j in self.cache if (j if isinstance(j, int) else j[1]) < k]:
            del self.cache[old]
        sd0, mom0, steps0 = self.state(k, tmp)
        sd1, mom1, _ = self.state(k + 1, tmp)
        if steps0 != k:
            sys.exit(f"step_parity.py: checkpoint step-{k} counts {steps0} optimizer steps (a skipped step?)")
        kinds = sorted(mom1)
        mom0_or_zero = mom0 or {kind: {n: torch.zeros_like(t) for n, t in per.items()} for kind, per in mom1.items()}

        with timed("twin"):
            self.load(sd0, k, broken)
            opt = self.optimizer(mom0, k, broken)
            ids = self.batch_ids(k + 2 if broken == "order" else k + 1)
            if broken in (None, "order") or ("grad", k) not in self.cache:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(self.model(self.x[ids]), self.y[ids])
                loss.backward()
                if broken is None:
                    self.cache[("grad", k)] = [p.grad.clone() for p in self.model.parameters()]
            else:  # the gradient does not depend on the BN momentum or the update rule: the real step's
                with torch.no_grad():  # (training mode: the forward pass updates the running statistics)
                    loss = F.cross_entropy(self.model(self.x[ids]), self.y[ids])
                for p, g in zip(self.model.parameters(), self.cache[("grad", k)]):
                    p.grad = g.clone()
            opt.step()
        with timed("compare"):
            checks = [("loss", "loss", abs(self.logged[k + 1] - float(loss)) / abs(float(loss)))]
            # The free step's weights (informative: Adam's first step is sign(grad)) and running statistics.
            sd = self.model.state_dict()
            for n in self.names:
                checks.append(("stats" if n in self.buffers else "free", n, rel(sd1[n], sd[n], sd0[n])))
            # The gradient, seen through what the step did to the moments (linear in it).
            tm = self.twin_moments(opt)
            for kind in kinds:
                for n in self.params:
                    checks.append(("grad", f"{kind}.{n}", rel(mom1[kind][n], tm[kind][n], mom0_or_zero[kind][n])))

        # The update rule alone: PyTorch's optimizer, from stoke's state k, fed the gradient stoke's moments imply,
        # must land on stoke's weights and moments at k+1 (no gradient noise in this one). Neither the batch nor
        # the BN momentum enters it: the order and bn breaks reuse the real comparison's result.
        if broken in ("order", "bn") and ("update", k) in self.cache:
            return checks + self.cache[("update", k)]
        with timed("twin"):
            self.load(sd0, k, broken)
            opt = self.optimizer(mom0, k, broken)
            if ("implied", k) not in self.cache:
                decay, implied = self.cfg["weight_decay"], []
                for name, p in self.model.named_parameters():
                    if self.cfg["optimizer"] == "sgd":
                        g0 = mom0["momentum"][name].double() if mom0 else 0.0
                        g = (mom1["momentum"][name].double() - self.cfg["momentum"] * g0
                             - (decay * sd0[name].double() if p.dim() > 1 else 0.0))
                    else:
                        g0 = mom0["exp_avg"][name].double() if mom0 else 0.0
                        g = (mom1["exp_avg"][name].double() - self.cfg["beta1"] * g0) / (1.0 - self.cfg["beta1"])
                    implied.append(g.to(self.dtype))
                self.cache[("implied", k)] = implied
            for p, g in zip(self.model.parameters(), self.cache[("implied", k)]):
                p.grad = g.clone()
            opt.step()
        with timed("compare"):
            update = [("update", n, rel(sd1[n], p, sd0[n])) for n, p in self.model.named_parameters()]
            um = self.twin_moments(opt)
            for kind in kinds:
                for n in self.params:
                    update.append(("update", f"{kind}.{n}", rel(mom1[kind][n], um[kind][n])))
        if broken is None:
            self.cache[("update", k)] = update
        return checks + update

    def twin_moments(self, opt):
        out = {}
        for name, p in self.model.named_parameters():
            s = opt.state[p]
            if self.cfg["optimizer"] == "sgd":
                out.setdefault("momentum", {})[name] = s["momentum_buffer"]
            else:
                out.setdefault("exp_avg", {})[name] = s["exp_avg"]
                out.setdefault("exp_avg_sq", {})[name] = s["exp_avg_sq"]
        return out


_SCRATCH = {}


def _diff(a, b):
    """a - b in a reused buffer (a fresh 10 MB tensor per difference costs more in page faults than the arithmetic)."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    buf = _SCRATCH.get(dtype)
    if buf is None or buf.numel() < a.numel():
        buf = _SCRATCH[dtype] = torch.empty(a.numel(), dtype=dtype)
    return torch.sub(a, b, out=buf[:a.numel()].view(a.shape))


def rel(stoke, twin, start=None):
    """||stoke - twin|| / ||twin - start||: how far stoke's tensor is from the twin's, relative to what the twin's
    step did to it (start None: relative to the twin's tensor itself). Each difference is rounded once to fp32 (2^-24
    of it) and the norms accumulate in fp32 (measured 4e-5 of the norm for 2.4 M values): errors of the measured
    error, far below what separates any worst case here from its tolerance."""
    with torch.no_grad():
        num = float(torch.linalg.vector_norm(_diff(stoke, twin)))
        den = float(torch.linalg.vector_norm(twin if start is None else _diff(twin, start)))
    return num / max(den, 1e-30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", required=True)
    ap.add_argument("--run", required=True, action="append", help="a stoke run (repeatable)")
    ap.add_argument("--steps", default="1", help="k: compare stoke's step k+1 with one twin step from stoke's k")
    ap.add_argument("--loss-rtol", type=float, default=1e-5)
    ap.add_argument("--grad-rtol", type=float, default=1e-2)
    ap.add_argument("--update-rtol", type=float, default=1e-4)
    ap.add_argument("--stat-rtol", type=float, default=1e-3)
    ap.add_argument("--break", dest="broken", choices=["order", "bn", "update"])
    ap.add_argument("--also-break", help="comma-separated breaks to try after the comparison, on the first run and "
                                         "the last of --steps; exit 1 unless every one is caught")
    ap.add_argument("--float64", action="store_true", help="the twin computes in float64 (the fp32 noise floor)")
    ap.add_argument("--threads", type=int, default=0, help="torch's CPU threads (0: every core this process may use)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads if a.threads > 0 else max(1, len(os.sched_getaffinity(0))))
    t_start = time.time()
    tmp = tempfile.TemporaryDirectory(prefix="step-parity-")
    steps = [int(s) for s in a.steps.split(",")]
    tol = {"loss": a.loss_rtol, "grad": a.grad_rtol, "update": a.update_rtol, "stats": a.stat_rtol}

    def tol_of(what, name):  # exp_avg_sq is quadratic in the gradient: twice the gradient's relative error
        return tol[what] * (2 if what == "grad" and name.startswith("exp_avg_sq.") else 1) if what in tol else None

    def summary(checks):
        worst = {w: (-1.0, -1.0, "", None) for w in ("loss", "grad", "update", "stats", "free")}
        for what, name, e, step in checks:
            t = tol_of(what, name)
            share = e / t if t else e
            if share > worst[what][0] or not np.isfinite(e):  # (an exact 0 is printed too)
                worst[what] = (share, e, f"{name} at step {step}", t)
        return "; ".join(f"worst {what} {e:.1e} " + (f"({100 * e / t:.0f}% of {t:g}, {where})" if t
                                                      else f"({where}, not checked)")
                         for what, (_, e, where, t) in worst.items() if where)

    def failures(checks):
        return [f"step {step}: {what} {name}: {e:.2e} > {tol_of(what, name):g}" for what, name, e, step in checks
                if what in tol and not e <= tol_of(what, name)]

    status = 0
    for i, path in enumerate(a.run):
        run = Run(a, path)
        cfg, (h, w, c) = run.cfg, run.cfg["input"]
        if i == 0:
            run.check_export(max(steps) + 1, tmp.name)
        elif os.path.realpath(run.latest()) != os.path.realpath(
                os.path.join(path, "checkpoints", f"step-{max(steps) + 1:08d}")):
            sys.exit(f"step_parity.py: the newest checkpoint of {path} must be step {max(steps) + 1}, the last compared")
        checks = [(what, name, e, k + 1) for k in steps for what, name, e in run.compare(k, a.broken, tmp.name)]
        fails = failures(checks)
        print(f"{cfg['model']} {h}x{w}x{c}, {cfg['optimizer']} lr {cfg['lr']:g}, batch {run.batch}, twin in "
              f"{run.dtype}{', broken: ' + a.broken if a.broken else ''}, one step from stoke's state at steps "
              f"{a.steps}: {summary(checks)}", flush=True)
        for f in fails[:8]:
            print(f"FAIL {f}")
        if len(fails) > 8:
            print(f"FAIL ... and {len(fails) - 8} more")
        missed = []
        for b in [b for b in (a.also_break or "").split(",") if b and i == 0]:
            bc = [(what, name, e, steps[-1] + 1) for what, name, e in run.compare(steps[-1], b, tmp.name)]
            bf = failures(bc)
            print(f"  --break {b} (step {steps[-1] + 1}): {'caught' if bf else 'NOT CAUGHT'}, {len(bf)} failures; "
                  f"{summary(bc)}", flush=True)
            if not bf:
                missed.append(b)
        if missed:
            print(f"FAIL the comparison cannot see --break {','.join(missed)}")
        if fails or missed:
            status = 1
        del run
    print(f"  [{time.time() - t_start:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items()) + "]")
    return status


if __name__ == "__main__":
    sys.exit(main())
