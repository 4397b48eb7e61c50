#!/usr/bin/env python3
"""Does stoke initialise each zoo model as its PyTorch reference does? Per tensor, the spread of stoke's initial
weights (`stoke export --checkpoint initial`) against the same tensor of the reference module built by PyTorch with
its own initialisation (docs/MODELS.md):

  resnet18/34/50  torchvision.models.resnetXX(num_classes=K)       (3 channels, > 64 px: torchvision's own stem)
  densenet121     torchvision.models.densenet121(num_classes=K)    (its init is MONAI's: fan_in convs, BN 1/0,
                                                                    zero linear bias; keys renamed to MONAI's)
  small-cnn*      bench/pytorch/stoke_torch.py SmallCNN            (stoke's own model: its twin is the reference)

  check_init.py --export INIT.safetensors... [--seed 0] [--sigmas 5]

Constant tensors (BN weights and biases, zero biases, running statistics) must be equal. Random ones: the standard
deviation and the mean must agree within --sigmas sampling errors of the two samples (a sample's std has a standard
error of about std / sqrt(2n) for a normal, less for a uniform; its mean std / sqrt(n)). Prints the worst use of
that allowance. Exit 0 when every tensor agrees, 1 otherwise.
"""

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stoke_torch as st  # noqa: E402


def reference(model, channels, classes, height, width):
    """The reference module with PyTorch's (or the twin's) own initialisation, and a function from its state_dict
    keys to stoke's names."""
    import torchvision

    if model in ("resnet18", "resnet34", "resnet50"):
        if channels != 3 or st.stoke_small_stem(height, width):
            sys.exit("check_init.py: use 3-channel inputs above 64 px for the ResNets (torchvision's own stem)")
        return getattr(torchvision.models, model)(num_classes=classes), lambda k: k
    if model == "densenet121":
        if channels != 3:
            sys.exit("check_init.py: torchvision's densenet121 takes 3 channels")

        return torchvision.models.densenet121(num_classes=classes), st.monai_densenet_name
    return st.build_model(model, channels, classes, height, width), lambda k: k


def compare(name, a, b, sigmas):
    """(ok, use of the allowance in [0, inf), what) for stoke's tensor a against the reference's b."""
    if tuple(a.shape) != tuple(b.shape):
        return False, math.inf, f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    a = a.double().flatten()
    b = b.double().flatten()
    if float(b.std(unbiased=False)) == 0.0 or a.numel() == 1:  # a constant in the reference
        same = bool(torch.equal(a, b))
        return same, 0.0 if same else math.inf, f"constant {float(b[0]):g}" + ("" if same else f", stoke {a[:4].tolist()}")
    n = a.numel()
    sa, sb = float(a.std(unbiased=False)), float(b.std(unbiased=False))
    ma, mb = float(a.mean()), float(b.mean())
    se_std = math.sqrt(sa * sa / (2 * n) + sb * sb / (2 * n))
    se_mean = math.sqrt(sa * sa / n + sb * sb / n)
    use = max(abs(sa - sb) / (sigmas * se_std), abs(ma - mb) / (sigmas * se_mean))
    return use <= 1.0, use, f"std {sa:.5g} vs {sb:.5g}, mean {ma:+.3g} vs {mb:+.3g} (n {n})"


def check(path, seed, sigmas):
    tensors, meta = st.load_safetensors(path)
    try:
        model = meta["stoke_model"]
        h, w, c = (int(v) for v in meta["input_hwc"].split("x"))
        classes = len(json.loads(meta["classes"]))
    except (KeyError, ValueError) as e:
        sys.exit(f"check_init.py: {path}: metadata lacks or garbles {e}")
    torch.manual_seed(seed)
    ref, rename = reference(model, c, classes, h, w)
    ref_sd = {rename(k): v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    mine = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(ref_sd) ^ set(mine))
    if missing:
        print(f"FAIL {model}: names differ: {missing[:6]}")
        return 1
    worst, worst_what, bad = 0.0, "", []
    for name, b in ref_sd.items():
        ok, use, what = compare(name, mine[name], b, sigmas)
        if not ok:
            bad.append(f"{name}: {what}")
        if use > worst and math.isfinite(use):
            worst, worst_what = use, f"{name}: {what}"
    for line in bad[:10]:
        print(f"FAIL {model} {line}")
    print(f"{model} {h}x{w}x{c}: {len(ref_sd)} tensors, {len(bad)} differ; worst random tensor uses "
          f"{100 * worst:.0f}% of {sigmas:g} sampling errors ({worst_what})")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, nargs="+",
                    help="stoke export --checkpoint initial of a run (several: one Python start for all)")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for the reference")
    ap.add_argument("--sigmas", type=float, default=5.0)
    a = ap.parse_args()
    failed = [path for path in a.export if check(path, a.seed, a.sigmas)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
