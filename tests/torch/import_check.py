#!/usr/bin/env python3
"""Does `stoke train --init` start from a torchvision state_dict exactly, and fine-tune from it as PyTorch does?

torchvision's resnet18 and densenet121 (4 classes, seeded random weights; every batch norm given random running
statistics and a non-trivial affine) are written with safetensors_write.py under torchvision's names. On 16 RGB JPEGs
(4 classes, 48x48, written here from a seed; stoke resizes them, the twin mirrors its decode and resize bit for bit)
with `--normalize imagenet`:
  predict  `stoke train --init FILE --epochs 0` then `stoke predict` on the 16 images: every class probability against
           the twin's eval-mode softmax, |stoke - torch| / torch per probability, within 1e-4;
  step     `stoke train --init FILE --epochs 1` with SGD (momentum 0.9, Nesterov, weight decay 5e-4: stoke's defaults;
           lr 0.01, DenseNet 0.005; constant schedule, no augmentation, no recalibration), the whole set as one batch
           of 16; the twin takes the same step (torch.optim.SGD, decay on conv and linear weights only, BN momentum
           0.1) and `stoke export` is compared with it: the loss (rel 1e-4), every weight tensor and every running
           statistic as ||stoke - torch|| / ||torch|| within 1e-4 (per tensor: an element near 0 has no relative
           error of its own), and what the step did to each weight, ||(W1 - W0)stoke - (W1 - W0)torch|| /
           ||(W1 - W0)torch||, within the gradient's fp32 noise (CASES): the step moves most tensors by less than 1e-3
           of their norm, so the weights' 1e-4 alone would pass a wrong update.
The grey twin of the ResNet-18 case (the same file on grey copies of the images, 1e-4 as above, predict only) checks
conv1 summed over its input channels (timm's adapt_input_conv). Each line prints the worst case as a share of its
allowance.

--break changes the twin, never stoke, to show each check can fail: `no-stem-sum` (grey conv1 from channel 0 instead
of the sum), `stats` (the twin's running statistics reset to 0/1, as if the import dropped them), `update` (SGD without
Nesterov), `bn-momentum` (BN momentum 0.2). --also-break a,b tries them after the real checks in the same process, on
stoke's outputs already made: exit 0 only when the real checks pass and every break is caught.

  import_check.py --stoke BIN --work DIR [--break B | --also-break B,B]
Exit 0 when all agree, 1 otherwise, 2 when a command fails.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "pytorch"))
import learning_parity as lp  # noqa: E402
import stoke_torch as st  # noqa: E402
from check_export import parse_predict  # noqa: E402
from safetensors_write import save_state_dict  # noqa: E402

# (model, image size, data, the step's lr (0: predict only), its update tolerance). ResNet-18 above 64 px, where stoke
# picks torchvision's own stem; DenseNet-121 at 64 px (2x2 maps in its last block; 32 would leave 1x1). The gradient
# of this random DenseNet is ill-conditioned in fp32: PyTorch's own fp32 step lies up to 9.5e-3 (per tensor) from its
# float64 twin's, stoke's 1.8e-2, hence 5e-2 for its update, and lr 0.005, at which the updated weights of PyTorch
# fp32 lie 3.3e-5 from float64's (lr 0.01: 6.6e-5, too near 1e-4). ResNet-18's update error is fp32's spacing: a
# tensor the step moves by 2.6e-5 of its norm (layer4.1.bn1.weight) keeps its update to 1e-3.
CASES = [("resnet18", 72, "rgb", 0.01, 1e-3), ("densenet121", 64, "rgb", 0.005, 5e-2), ("resnet18", 72, "grey", 0, 0)]
BREAKS = {"no-stem-sum": "grey", "stats": "predict", "update": "step", "bn-momentum": "step"}
TOL = {"predict": 1e-4, "loss": 1e-4, "weights": 1e-4, "stats": 1e-4}
STEP = ["--epochs", "1", "--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--weight-decay", "5e-4",
        "--schedule", "constant", "--warmup-epochs", "0", "--augment", "none", "--label-smoothing", "0",
        "--bn-recalibrate", "0", "--batch-size", "16", "--log-every", "1"]


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(f"import_check: FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stdout}")
        sys.exit(2)
    return p.stdout


def write_images(work):
    """16 48x48 JPEGs in 4 classes (sums of seeded sinusoids plus noise), RGB and their grey copies."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    for k in range(4):
        for i in range(4):
            wave = np.stack([np.sin(2 * np.pi * (xx * rng.uniform(0.5, 3) + yy * rng.uniform(0.5, 3)) +
                                    rng.uniform(0, 6)) for _ in range(3)], -1)
            px = np.clip(128 + 80 * wave + rng.normal(0, 20, wave.shape), 0, 255).astype(np.uint8)
            for kind, im in (("rgb", Image.fromarray(px, "RGB")), ("grey", Image.fromarray(px, "RGB").convert("L"))):
                os.makedirs(os.path.join(work, kind, f"c{k}"), exist_ok=True)
                im.save(os.path.join(work, kind, f"c{k}", f"{i}.jpg"), quality=92)


def torchvision_model(name):
    import torchvision

    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(num_classes=4)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(1 + 0.1 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
                mod.running_mean.copy_(0.1 * torch.randn_like(mod.running_mean))
                mod.running_var.copy_(0.5 + torch.rand_like(mod.running_var))
    return m


def twin_of(model, kind, brk):
    twin = copy.deepcopy(model)
    if kind == "grey":  # conv1 summed over its input channels, as stoke said it did
        w = model.conv1.weight.detach()
        twin.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            twin.conv1.weight.copy_(w[:, :1] if brk == "no-stem-sum" else w.sum(dim=1, keepdim=True))
    for mod in twin.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = 0.2 if brk == "bn-momentum" else 0.1
            if brk == "stats":
                mod.reset_running_stats()
    return twin


class Case:
    def __init__(self, a, model, size, kind, lr, update_tol, files):
        self.a, self.model, self.size, self.kind, self.step = a, model, size, kind, lr > 0
        self.tol = dict(TOL, update=update_tol)
        self.data = os.path.join(a.work, kind)
        self.tag = f"{model} {size}x{size} {kind}"
        if model not in files:
            files[model] = (torchvision_model(model), os.path.join(a.work, f"{model}.safetensors"))
            save_state_dict(files[model][0].state_dict(), files[model][1], {"format": "pt"})
        self.torch_model, init = files[model]
        common = [a.stoke, "train", "--data", self.data, "--model", model, "--image-size", str(size), "--init", init,
                  "--normalize", "imagenet", "--threads", "2", "--decoders", "1", "--seed", "0"]
        out0 = os.path.join(a.work, f"{model}-{kind}-as-is")
        log = run(common + ["--epochs", "0", "--out", out0])
        if kind == "grey" and "summed over its input channels" not in log:
            print(f"import_check: FAIL: stoke did not say it summed conv1 for grey data:\n{log}")
            sys.exit(1)
        cfg = json.load(open(os.path.join(out0, "config.json")))
        classes, samples = st.list_image_folder(self.data)
        self.images = [p for p, _ in samples]
        self.y = torch.tensor([k for _, k in samples])
        px = np.stack([st.decode_like_stoke(p, size, size, cfg["input"][2]) for p in self.images])
        self.x = st.normalize(px, cfg["normalize_mean"], cfg["normalize_std"])
        self.probs = parse_predict(run([a.stoke, "predict", "--json", "--run", out0] + self.images), self.images,
                                   classes)
        if self.step:
            out1 = os.path.join(a.work, f"{model}-{kind}-step")
            run(common + STEP + ["--lr", str(lr), "--out", out1])
            self.cfg = json.load(open(os.path.join(out1, "config.json")))
            self.loss = lp.stoke_losses(out1)[1]
            exported = os.path.join(a.work, f"{model}-{kind}-step.safetensors")
            run([a.stoke, "export", "--run", out1, "-o", exported])
            self.tensors, _ = st.load_safetensors(exported)

    def check_predict(self, brk):
        """[(check, where, relative error)] of every class probability of the 16 images."""
        twin = twin_of(self.torch_model, self.kind, brk).eval()
        with torch.no_grad():
            probs = torch.softmax(twin(self.x).double(), dim=1).numpy()
        out = []
        for i, p in enumerate(self.images):
            rel = np.abs(self.probs[p] - probs[i]) / probs[i]
            j = int(np.argmax(rel))
            out.append(("predict", f"{os.path.relpath(p, self.a.work)} class {j} ({probs[i][j]:.3g})", float(rel[j])))
        return out

    def check_step(self, brk):
        twin = twin_of(self.torch_model, self.kind, brk).train()
        start = {n: t.detach().clone() for n, t in twin.state_dict().items()}
        opt = lp.make_optimizer(twin, self.cfg, brk == "update")
        loss = F.cross_entropy(twin(self.x), self.y)
        loss.backward()
        opt.step()
        out = [("loss", "loss", abs(self.loss - float(loss)) / abs(float(loss)))]
        params = {n for n, _ in twin.named_parameters()}
        self.moved = []  # how far the step moved each weight tensor, as a share of its norm
        for name, ref in twin.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            got, ref = self.tensors[st.monai_densenet_name(name)].double(), ref.double()
            out.append(("weights" if name in params else "stats", name, float((got - ref).norm() / ref.norm())))
            if name in params:
                moved = ref - start[name].double()
                out.append(("update", name, float((got - ref).norm() / moved.norm())))
                if start[name].norm() > 0:  # (DenseNet's classifier bias starts at 0)
                    self.moved.append(float(moved.norm() / start[name].double().norm()))
        return out


def report(case, checks, label=""):
    """Prints the worst case of each check as a share of its allowance; returns the failures."""
    tol, worst = case.tol, {}
    for what, where, e in checks:
        if what not in worst or not e / tol[what] <= worst[what][1] / tol[what]:
            worst[what] = (where, e)
    parts = [f"{what} {e:.2g} ({100 * e / tol[what]:.1f}% of {tol[what]:g}, {where})"
             for what, (where, e) in worst.items()]
    moved = ""
    if "update" in worst:
        moved = (f" (lr {case.cfg['lr']:.3g}: the step moved the weight tensors by {min(case.moved):.1e} to "
                 f"{max(case.moved):.1e} of their norm, median {np.median(case.moved):.1e})")
    print(f"{case.tag}{label}: worst " + "; ".join(parts) + moved, flush=True)
    return [f"{case.tag}{label}: {what} {where}: {e:.3g} > {tol[what]:g}" for what, where, e in checks
            if not e <= tol[what]]


def applies(brk, case):
    need = BREAKS[brk]
    return case.kind == "grey" if need == "grey" else (case.kind == "rgb" and (need == "predict" or case.step))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--break", dest="brk", choices=sorted(BREAKS), help="change the twin: this must exit 1")
    ap.add_argument("--also-break", default="", help="comma-separated breaks tried after the real checks")
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    write_images(a.work)
    files, cases, bad = {}, [], []
    for spec in CASES:
        case = Case(a, *spec, files)
        cases.append(case)
        checks = case.check_predict(a.brk) + (case.check_step(a.brk) if case.step else [])
        bad += report(case, checks, f", broken: {a.brk}" if a.brk else "")
    t1 = time.time()
    missed = []
    for brk in [b for b in a.also_break.split(",") if b]:
        case = next(c for c in cases if applies(brk, c))
        checks = case.check_predict(brk) if BREAKS[brk] in ("grey", "predict") else case.check_step(brk)
        caught = report(case, checks, f", --break {brk}")
        print(f"  --break {brk}: {'caught' if caught else 'NOT CAUGHT'} ({len(caught)} failures)")
        if not caught:
            missed.append(brk)
    for b in bad[:8]:
        print(f"import_check: FAIL: {b}")
    if len(bad) > 8:
        print(f"import_check: FAIL: ... and {len(bad) - 8} more")
    if missed:
        print(f"import_check: FAIL: the checks cannot see --break {','.join(missed)}")
    print(f"  [{t1 - t0:.1f} s for stoke and the checks, {time.time() - t1:.1f} s for the breaks]")
    return 1 if bad or missed else 0


if __name__ == "__main__":
    sys.exit(main())
