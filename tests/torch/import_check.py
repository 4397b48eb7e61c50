#!/usr/bin/env python3
"""Does `stoke train --init` start from a torchvision state_dict exactly? A torchvision resnet18 (num_classes=6, random
init, batch-norm statistics and affine parameters made non-trivial) is written with safetensors_write.py; stoke trains
one step from it on the whole (grey) training set at a learning rate too small to move a weight, exports, and predicts.
The PyTorch twin takes the same step: conv1 summed over its input channels for 1-channel data (timm's
adapt_input_conv), one train-mode forward over the same images (which moves the running statistics as stoke's step
does), then eval mode. Compared:
  - every weight and bias of stoke's export with the twin's (abs 1e-6),
  - every running mean and variance (abs 1e-6 + rel 1e-6: a batch statistic summed in another order),
  - the class probabilities of `stoke predict` with the twin's eval-mode softmax on the same preprocessed images
    (abs 2e-6). Each line prints the worst case as a share of its allowance.

  import_check.py --stoke BIN --data FOLDER --val FOLDER --work DIR [--break no-stem-sum]
Exit 0 when all agree, 1 otherwise, 2 when a command fails.
"""

import argparse
import copy
import json
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "pytorch"))
import stoke_torch as st  # noqa: E402
from check_export import parse_predict, pick_images  # noqa: E402
from safetensors_write import save_state_dict  # noqa: E402

SIZE = 72  # > 64: stoke picks torchvision's own stem (7x7 stride-2 conv1 and max pool)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        print(f"import_check: FAIL: {' '.join(cmd)} exited {p.returncode}:\n{p.stdout}")
        sys.exit(2)
    return p.stdout


def torch_resnet18():
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=6)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.copy_(1 + 0.1 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
                mod.running_mean.copy_(0.1 * torch.randn_like(mod.running_mean))
                mod.running_var.copy_(0.5 + torch.rand_like(mod.running_var))
    return m


def images_as_stoke(paths, mean, std):
    px = np.stack([st.decode_like_stoke(p, SIZE, SIZE, 1) for p in paths])
    return st.normalize(px, mean, std)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--break", dest="brk", default="", help="no-stem-sum: the twin takes channel 0 instead of the sum")
    a = ap.parse_args()
    model = torch_resnet18()
    init = os.path.join(a.work, "resnet18.safetensors")
    save_state_dict(model.state_dict(), init, {"format": "pt"})
    out = os.path.join(a.work, "run")
    log = run([a.stoke, "train", "--data", a.data, "--model", "resnet18", "--image-size", str(SIZE), "--init", init,
               "--epochs", "1", "--lr", "1e-30", "--bn-recalibrate", "0", "--batch-size", "1000", "--threads", "2",
               "--out", out])
    if "summed over its input channels" not in log:
        print(f"import_check: FAIL: stoke did not say it summed conv1 for grey data:\n{log}")
        return 1
    exported = os.path.join(a.work, "exported.safetensors")
    run([a.stoke, "export", "--run", out, "-o", exported])
    cfg = json.load(open(os.path.join(out, "config.json")))
    mean, std = cfg["normalize_mean"], cfg["normalize_std"]

    twin = copy.deepcopy(model)
    w = model.conv1.weight.detach()
    twin.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    with torch.no_grad():
        twin.conv1.weight.copy_(w[:, :1] if a.brk == "no-stem-sum" else w.sum(dim=1, keepdim=True))
    _, samples = st.list_image_folder(a.data)
    twin.train()
    with torch.no_grad():  # stoke's one step: the batch is the whole training set
        twin(images_as_stoke([p for p, _ in samples], mean, std))
    twin.eval()

    tensors, _ = st.load_safetensors(exported)
    worst_w, worst_b, bad = 0.0, 0.0, []
    for name, ref in twin.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        got = tensors[name].double()
        diff = (got - ref.double()).abs()
        if name.endswith(("running_mean", "running_var")):
            use = (diff / (1e-6 + 1e-6 * ref.double().abs())).max().item()
            worst_b = max(worst_b, use)
        else:
            use = diff.max().item() / 1e-6
            worst_w = max(worst_w, use)
        if use > 1:
            bad.append(f"{name}: {diff.max().item():.3g}")
    print(f"weights: worst {100 * worst_w:.1f}% of 1e-6; running statistics: worst {100 * worst_b:.1f}% of "
          f"1e-6 + 1e-6 |x| over {len(tensors)} tensors")

    classes = cfg["classes"]
    images = pick_images(a.val, 2)
    ref = parse_predict(run([a.stoke, "predict", "--json", "--run", out] + images), images, classes)
    with torch.no_grad():
        probs = torch.softmax(twin(images_as_stoke(images, mean, std)).double(), dim=1).numpy()
    worst_p = max(float(np.abs(probs[i] - ref[p]).max()) for i, p in enumerate(images))
    print(f"probabilities of {len(images)} images: worst difference {worst_p:.3g} (allowed 2e-6)")
    if worst_p > 2e-6:
        bad.append(f"probabilities differ by {worst_p:.3g}")
    for b in bad[:8]:
        print(f"import_check: FAIL: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
