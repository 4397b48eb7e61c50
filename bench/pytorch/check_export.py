#!/usr/bin/env python3
"""Checks that a stoke run's PyTorch export is what it claims to be.

  check_export.py --stoke build/bin/stoke --run runs/mnist [--export model.safetensors] [--data DIR | IMAGE ...]

1. `stoke export` (unless --export names an existing file) -> a safetensors file;
2. the matching PyTorch module (torchvision resnetN -- with stoke's small-input stem when conv1 is 3x3 --,
   MONAI's DenseNet121 module tree, or stoke's small CNN), model.load_state_dict(..., strict=True);
3. `stoke predict --json` (every class's probability at full precision) on the images, and the same images decoded, resized and normalised as stoke
   does it (the mean/std from the export's metadata) through the PyTorch model in eval mode;
4. the class probabilities must agree within --tol (absolute, default 1e-3); the worst difference is printed.

Exit status: 0 match, 1 mismatch (or a load_state_dict failure), 2 usage/setup error.
Works with torch 1.13 (CPU) and 2.x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stoke_torch as st  # noqa: E402


def fail(msg, code=1):
    print(f"check_export: FAIL: {msg}", file=sys.stderr)
    sys.exit(code)


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        fail(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}{p.stderr}", 2)
    return p.stdout


def parse_predict(text, images, classes):
    """`stoke predict --json` prints one object per image and line: path, class, probability, probabilities
    (every class, full precision) -- or path and error."""
    probs = {}
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        j = json.loads(line)
        if "error" in j:
            fail(f"stoke predict could not read {j['path']}: {j['error']}", 2)
        p = np.full(len(classes), np.nan)
        for name, v in j["probabilities"].items():
            if name not in classes:
                fail(f"stoke predict names an unknown class {name!r}", 2)
            p[classes.index(name)] = float(v)
        probs[j["path"]] = p
    for path in images:
        if path not in probs or np.isnan(probs[path]).any():
            fail(f"stoke predict printed no complete result for {path}", 2)
    return probs


def pick_images(folder, per_class):
    classes, samples = st.list_image_folder(folder)
    chosen, count = [], {}
    for path, k in samples:
        if count.get(k, 0) < per_class:
            chosen.append(path)
            count[k] = count.get(k, 0) + 1
    return chosen


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", default="build/bin/stoke", help="the stoke binary")
    ap.add_argument("--run", required=True, help="stoke run folder")
    ap.add_argument("--checkpoint", default="best", choices=["best", "latest"])
    ap.add_argument("--export", help="safetensors file to check (written with `stoke export` when missing)")
    ap.add_argument("--data", help="ImageFolder to take images from (default: the run's --val, else --data)")
    ap.add_argument("--per-class", type=int, default=2, help="images per class taken from --data")
    ap.add_argument("--tol", type=float, default=1e-3, help="largest absolute probability difference allowed")
    ap.add_argument("--min-informative", type=int, default=0,
                    help="fail (exit 2) unless at least this many of stoke's probabilities lie in [0.01, 0.99]: a "
                         "model whose outputs are all 0 or 1 cannot show a wrong weight layout")
    ap.add_argument("--break", dest="breakage", choices=["none", "rename", "no-transpose"], default="none",
                    help="self-test: damage the loaded tensors on purpose (rename one key, or lay conv weights out as "
                         "stoke stores them, KRSC bytes under the OIHW shape) -- the check must then fail")
    ap.add_argument("images", nargs="*", help="JPEG files (instead of --data)")
    a = ap.parse_args()

    if not os.path.isfile(a.stoke) or not os.access(a.stoke, os.X_OK):
        fail(f"no stoke binary at {a.stoke}", 2)
    with open(os.path.join(a.run, "config.json")) as f:
        config = json.load(f)

    tmp = tempfile.TemporaryDirectory(prefix="check-export-")
    export = a.export or os.path.join(tmp.name, "model.safetensors")
    if not (a.export and os.path.exists(a.export)):
        run([a.stoke, "export", "--run", a.run, "--checkpoint", a.checkpoint, "-o", export])

    tensors, meta = st.load_safetensors(export)
    try:
        model_name = meta["stoke_model"]
        h, w, c = (int(v) for v in meta["input_hwc"].split("x"))
        classes = json.loads(meta["classes"])
        mean = json.loads(meta["normalize_mean"])
        std = json.loads(meta["normalize_std"])
    except (KeyError, ValueError) as e:
        fail(f"{export}: metadata lacks or garbles {e}")
    if config.get("normalize_mean") is not None and not np.allclose(config["normalize_mean"], mean, rtol=0, atol=1e-6):
        fail(f"export's normalize_mean {mean} differs from config.json's {config['normalize_mean']}")
    if config.get("normalize_std") is not None and not np.allclose(config["normalize_std"], std, rtol=0, atol=1e-6):
        fail(f"export's normalize_std {std} differs from config.json's {config['normalize_std']}")

    if a.breakage == "rename":
        first = next(iter(tensors))
        tensors[first + "_renamed"] = tensors.pop(first)
        print(f"check_export: --break rename: {first} -> {first}_renamed")
    elif a.breakage == "no-transpose":
        n = 0
        for name, t in tensors.items():
            if t.dim() == 4 and t.shape[2] * t.shape[3] > 1:  # OIHW -> the KRSC bytes read as OIHW
                tensors[name] = t.permute(0, 2, 3, 1).contiguous().reshape(t.shape)
                n += 1
        print(f"check_export: --break no-transpose: {n} conv weights left in stoke's KRSC order")

    small_stem = None
    if model_name.startswith("resnet"):
        k = tensors["conv1.weight"].shape[-1] if "conv1.weight" in tensors else None
        small_stem = k == 3
        if small_stem != st.stoke_small_stem(h, w):
            print(f"check_export: note: conv1 is {k}x{k} but stoke's automatic stem rule for {h}x{w} says "
                  f"{'small' if st.stoke_small_stem(h, w) else 'torchvision'}")
    model = st.build_model(model_name, c, len(classes), h, w, small_stem=small_stem)
    try:
        missing_unexpected = model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        fail(f"load_state_dict(strict=True) into the PyTorch {model_name} failed:\n{e}")
    del missing_unexpected
    n_params = sum(p.numel() for p in model.parameters())
    print(f"check_export: {export}: {model_name} {h}x{w}x{c}, {len(classes)} classes, {len(tensors)} tensors, "
          f"{n_params:,} parameters: load_state_dict(strict=True) ok")

    images = a.images
    if not images:
        folder = a.data or config.get("val") or config.get("data")
        if not folder or not os.path.isdir(folder):
            fail(f"no images: give --data DIR or image paths (the run's folder {folder!r} is not there)", 2)
        images = pick_images(folder, a.per_class)
    if not images:
        fail("no images to compare", 2)

    out = run([a.stoke, "predict", "--json", "--run", a.run, "--checkpoint", a.checkpoint] + images)
    ref = parse_predict(out, images, classes)

    px = np.stack([st.decode_like_stoke(p, h, w, c) for p in images])
    x = st.normalize(px, mean, std)
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(x).double(), dim=1).numpy()

    diff = np.abs(probs - np.stack([ref[p] for p in images]))
    i, k = np.unravel_index(int(np.argmax(diff)), diff.shape)
    worst = float(diff[i, k])
    agree = int(sum(int(np.argmax(probs[j])) == int(np.argmax(ref[images[j]])) for j in range(len(images))))
    print(f"check_export: {len(images)} images: worst |p_torch - p_stoke| = {worst:.2e} "
          f"({images[i]}, class {classes[k]}: torch {probs[i, k]:.6f}, stoke {ref[images[i]][k]:.6f}); "
          f"top-1 agrees on {agree}/{len(images)}; tolerance {a.tol:g}")
    informative = int(sum(int(((ref[p] >= 0.01) & (ref[p] <= 0.99)).sum()) for p in images))
    print(f"check_export: {informative} of {len(images) * len(classes)} stoke probabilities lie in [0.01, 0.99]")
    if not np.isfinite(worst) or worst > a.tol:
        fail(f"PyTorch and stoke disagree: worst probability difference {worst:.3e} > {a.tol:g}")
    if informative < a.min_informative:
        fail(f"only {informative} probabilities in [0.01, 0.99] (--min-informative {a.min_informative}): the model's "
             f"outputs are too saturated for the comparison to mean much", 2)
    print("check_export: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
