#!/usr/bin/env python3
"""The PyTorch twins of stoke's end-to-end jobs, for the side-by-side (docs/PERFORMANCE.md).

  train.py --job mnist|mednist|resnet50 --config tuned|naive [--device auto|cpu|cuda] [--data DIR --val DIR]
           [--epochs N] [--batch-size N] [--max-steps N] [--out FILE.json]

Jobs (defaults; every one can be overridden by a flag), each with the stoke command it mirrors:

  mnist     stoke's small-cnn (bench/pytorch/stoke_torch.py SmallCNN) on `stoke dataset mnist`'s JPEG tree,
            data/mnist/train -> data/mnist/test, 3 epochs, batch 128, SGD lr 0.1 momentum 0.9 Nesterov, weight decay
            5e-4 on conv/linear weights only, one-cycle (OneCycleLR: pct_start 0.25, div 25, final_div 1e4, cosine,
            momentum not cycled), no augmentation: `stoke train` with its defaults, as scripts/mnist.sh runs it.
  mednist   MONAI's DenseNet121 (module tree and names as MONAI, stoke_torch.MonaiDenseNet) on 64x64x1, 6 classes
            (`stoke dataset synthetic` -> data/mednist/{train,val}), batch 300, 4 epochs, Adam lr 1e-5, constant lr,
            no augmentation: MONAI's MedNIST tutorial settings (stoke: --model densenet121 --batch-size 300
            --epochs 4 --optimizer adamw --weight-decay 0 --lr 1e-5 --schedule constant).
  resnet50  torchvision resnet50 at 224x224x3 from JPEG folders (data/imagenet-like/{train,val}), RandomResizedCrop
            (scale 0.08-1, ratio 3/4-4/3) + horizontal flip for training, a plain resize to 224x224 for validation
            (as stoke), 3 epochs, batch 128, SGD/one-cycle as mnist (stoke: --model resnet50 --image-size 224
            --augment crop-flip).

Like stoke: classes are the sorted sub-folders, the input size and channel count come from the first image
(--image-size overrides), inputs are (pixel/255 - mean)/std with the per-channel mean/std of 2,000 random training
images, training drops the last partial batch, validation runs after every epoch.

Configs:
  tuned  DataLoader num_workers from the cores (CUDA: all cores up to 16; CPU: half, the rest computes),
         pin_memory (CUDA), persistent_workers, prefetch_factor 4, channels_last (also on the CPU: oneDNN's NHWC
         kernels ran the small CNN's step 1.9x faster on the 2-core AMD EPYC development VM); on CUDA AMP bf16 (fp16 +
         GradScaler where bf16 is missing), cudnn.benchmark, non_blocking copies. The CPU stays fp32 like stoke's CPU
         backend (--cpu-bf16 turns on CPU autocast, for a separate experiment).
  naive  num_workers 0, fp32, contiguous NCHW, no pinning: the first thing a user writes.

Output JSON (--out): job, config, device, torch version, end-to-end wall time (process start to the end, as
`time stoke train`), training img/s (images / training-loop seconds, validation excluded), GPU busy % on CUDA
(sum of CUDA-event-timed step durations / wall time of the training loops), final test accuracy, epochs, batch size
and every setting. Works with torch 1.13 (CPU) and 2.x (CUDA).
"""

import time

T_PROCESS = time.time()  # before the imports: torch's import is part of what a user waits for

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stoke_torch as st  # noqa: E402

JOBS = {
    "mnist": dict(model="small-cnn", data="data/mnist/train", val="data/mnist/test", epochs=3, batch_size=128,
                  optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="onecycle", augment="none",
                  stoke="stoke train --data data/mnist/train --val data/mnist/test --model small-cnn (scripts/mnist.sh)"),
    "mednist": dict(model="densenet121", data="data/mednist/train", val="data/mednist/val", epochs=4, batch_size=300,
                    optimizer="adam", lr=1e-5, weight_decay=0.0, schedule="constant", augment="none",
                    stoke="stoke train --data data/mednist/train --val data/mednist/val --model densenet121 "
                          "--batch-size 300 --epochs 4 --optimizer adamw --weight-decay 0 --lr 1e-5 --schedule constant"),
    "resnet50": dict(model="resnet50", data="data/imagenet-like/train", val="data/imagenet-like/val", epochs=3,
                     batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="onecycle",
                     augment="crop-flip", image_size=224,
                     stoke="stoke train --data data/imagenet-like/train --val data/imagenet-like/val --model resnet50 "
                           "--image-size 224 --augment crop-flip"),
}


class Folder(torch.utils.data.Dataset):
    """(path, label) samples -> (normalised float32 CHW tensor, label), decoded with PIL."""

    def __init__(self, samples, h, w, c, mean, std, augment):
        import torchvision.transforms as T

        self.samples = samples
        self.mode = "L" if c == 1 else "RGB"
        if augment == "crop-flip":
            geo = [T.RandomResizedCrop((h, w)), T.RandomHorizontalFlip()]
        elif augment == "flip":
            geo = [T.Resize((h, w)), T.RandomHorizontalFlip()]
        else:
            geo = [T.Resize((h, w))]  # a no-op when the image is already h x w
        self.tf = T.Compose(geo + [T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        with Image.open(path) as im:
            x = self.tf(im.convert(self.mode))
        return x, label


def estimate_normalization(samples, h, w, c, seed):
    """stoke's trainer: per-channel mean and std of pixel/255 over up to 2,000 training images (a seeded choice)."""
    from PIL import Image

    rng = random.Random(seed)
    pick = rng.sample(range(len(samples)), min(2000, len(samples)))
    s = np.zeros(c)
    s2 = np.zeros(c)
    n = 0
    for i in pick:
        with Image.open(samples[i][0]) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            px = np.asarray(im, dtype=np.float64).reshape(-1, c) / 255.0
        s += px.sum(0)
        s2 += (px * px).sum(0)
        n += px.shape[0]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 1e-6))
    return [float(v) for v in mean], [float(v) for v in std]


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", required=True, choices=sorted(JOBS))
    ap.add_argument("--config", default="tuned", choices=["tuned", "naive"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--data", help="training ImageFolder (default: the job's)")
    ap.add_argument("--val", help="validation/test ImageFolder (default: the job's; 'none' to skip)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--image-size", type=int, help="resize inputs to SxS (default: the data's own size; resnet50: 224)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many training steps (smoke tests)")
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: from the config)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op CPU threads (0: all cores, both configs)")
    ap.add_argument("--cpu-bf16", action="store_true", help="on the CPU: autocast to bf16 (not part of either config)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--out", help="write the result JSON here")
    a = ap.parse_args()

    job = dict(JOBS[a.job])
    for k in ("data", "val", "epochs", "batch_size", "lr"):
        if getattr(a, k) is not None:
            job[k] = getattr(a, k)
    if a.image_size:
        job["image_size"] = a.image_size
    tuned = a.config == "tuned"
    if a.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(a.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("train.py: --device cuda but torch.cuda.is_available() is False", file=sys.stderr)
            return 2
    cuda = device.type == "cuda"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # Both configs use every core for the CPU's intra-op threads, as stoke's --threads 0 does (Debian's torch 1.13
    # starts with 1 thread on some VMs, whatever the core count).
    torch.set_num_threads(a.threads or cores)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)

    # ---- data ---------------------------------------------------------------------------------------------------
    if not os.path.isdir(job["data"]):
        print(f"train.py: no training folder {job['data']}", file=sys.stderr)
        return 2
    classes, train_samples = st.list_image_folder(job["data"])
    if not train_samples:
        print(f"train.py: no JPEGs under {job['data']}", file=sys.stderr)
        return 2
    val_samples = []
    if job["val"] and job["val"] != "none":
        val_classes, val_samples = st.list_image_folder(job["val"])
        if val_classes != classes:
            print(f"train.py: the classes of {job['val']} differ from {job['data']}'s", file=sys.stderr)
            return 2
    from PIL import Image

    with Image.open(train_samples[0][0]) as im:
        w0, h0 = im.size
        c = 1 if im.mode in ("L", "1", "I", "I;16", "F") else 3
    h, w = (job["image_size"], job["image_size"]) if job.get("image_size") else (h0, w0)
    mean, std = estimate_normalization(train_samples, h, w, c, a.seed)

    if tuned:
        workers = a.workers if a.workers is not None else (min(16, cores) if cuda else max(1, cores // 2))
    else:
        workers = a.workers if a.workers is not None else 0
    loader_kw = dict(num_workers=workers, pin_memory=tuned and cuda)
    if workers > 0 and tuned:
        loader_kw.update(persistent_workers=True, prefetch_factor=4)
    train_ds = Folder(train_samples, h, w, c, mean, std, job["augment"])
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=job["batch_size"], shuffle=True, drop_last=True,
                                           **loader_kw)
    val_dl = None
    if val_samples:
        val_dl = torch.utils.data.DataLoader(Folder(val_samples, h, w, c, mean, std, "none"),
                                             batch_size=job["batch_size"], shuffle=False, drop_last=False, **loader_kw)
    steps_per_epoch = len(train_dl)
    if steps_per_epoch == 0:
        print(f"train.py: {len(train_samples)} training images make no full batch of {job['batch_size']}", file=sys.stderr)
        return 2

    # ---- model, optimizer, schedule -------------------------------------------------------------------------------
    model = st.build_model(job["model"], c, len(classes), h, w)  # initialised as its reference (docs/MODELS.md)
    channels_last = tuned
    amp_dtype = None
    if tuned and cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        torch.backends.cudnn.benchmark = True
    elif a.cpu_bf16 and not cuda:
        amp_dtype = torch.bfloat16
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": job["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if job["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=job["lr"], momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.Adam(groups, lr=job["lr"])
    total_steps = steps_per_epoch * job["epochs"]
    if a.max_steps:
        total_steps = min(total_steps, a.max_steps)
    sched = None
    if job["schedule"] == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=job["lr"], total_steps=total_steps, pct_start=0.25,
                                                    anneal_strategy="cos", cycle_momentum=False, div_factor=25.0,
                                                    final_div_factor=1e4)
    scaler = None
    if amp_dtype == torch.float16:  # torch.amp.GradScaler("cuda") from 2.3 on; torch.cuda.amp's is deprecated there
        scaler = torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()
    loss_fn = nn.CrossEntropyLoss()

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    def to_device(x, y):
        x = x.to(device, non_blocking=tuned)
        y = y.to(device, non_blocking=tuned)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def evaluate():
        model.eval()
        correct = total = 0
        loss_sum = 0.0
        with torch.no_grad():
            for x, y in val_dl:
                x, y = to_device(x, y)
                with autocast():
                    out = model(x)
                loss_sum += float(loss_fn(out.float(), y)) * y.numel()
                correct += int((out.argmax(1) == y).sum())
                total += y.numel()
        model.train()
        return correct / max(total, 1), loss_sum / max(total, 1), total

    # ---- training -------------------------------------------------------------------------------------------------
    dev_name = torch.cuda.get_device_name(device) if cuda else f"CPU: {cpu_name()}, {cores} cores"
    if not a.quiet:
        print(f"train.py: {a.job} ({job['model']} {h}x{w}x{c}, {len(classes)} classes, {len(train_samples):,} train / "
              f"{len(val_samples):,} val images) on {dev_name}, config {a.config}: {workers} workers, "
              f"{'AMP ' + str(amp_dtype).replace('torch.', '') if amp_dtype else 'fp32'}"
              f"{', channels_last' if channels_last else ''}; torch {torch.__version__}", flush=True)
    model.train()
    step = 0
    epochs_log = []
    train_seconds = 0.0
    busy_ms = 0.0
    images = 0
    stop = False
    final = {}
    for epoch in range(job["epochs"]):
        events = []
        if cuda:
            torch.cuda.synchronize()
        t0 = time.time()
        seen = correct = 0
        loss_sum = 0.0
        for x, y in train_dl:
            x, y = to_device(x, y)
            if cuda:
                ev = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                ev[0].record()
            with autocast():
                out = model(x)
                loss = loss_fn(out.float(), y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            if sched is not None:
                sched.step()
            if cuda:
                ev[1].record()
                events.append(ev)
            # Running sums stay on the device: no per-step synchronisation.
            loss_sum = loss.detach() * y.numel() + loss_sum
            correct = (out.argmax(1) == y).sum() + correct
            seen += y.numel()
            step += 1
            if a.max_steps and step >= a.max_steps:
                stop = True
                break
        if cuda:
            torch.cuda.synchronize()
        dt = time.time() - t0
        ep_busy = sum(s.elapsed_time(e) for s, e in events) if cuda else 0.0
        busy_ms += ep_busy
        train_seconds += dt
        images += seen
        rec = {"epoch": epoch + 1, "steps": step, "train_loss": float(loss_sum) / max(seen, 1),
               "train_acc": float(correct) / max(seen, 1), "img_per_s": seen / max(dt, 1e-9), "train_seconds": dt}
        if cuda:
            rec["gpu_busy_pct"] = 100.0 * ep_busy / 1000.0 / max(dt, 1e-9)
        if val_dl is not None:
            t1 = time.time()
            rec["val_acc"], rec["val_loss"], final["test_images"] = evaluate()
            rec["val_seconds"] = time.time() - t1
        epochs_log.append(rec)
        if not a.quiet:
            print(f"epoch {epoch + 1}/{job['epochs']}  train loss {rec['train_loss']:.4f} acc {100 * rec['train_acc']:.2f}%"
                  + (f"  |  val acc {100 * rec['val_acc']:.2f}%" if "val_acc" in rec else "")
                  + f"  |  {rec['img_per_s']:,.0f} img/s, {dt:.1f} s"
                  + (f", GPU busy {rec['gpu_busy_pct']:.0f}%" if cuda else ""), flush=True)
        if stop:
            break

    wall = time.time() - T_PROCESS
    result = {
        "job": a.job,
        "config": a.config,
        "model": job["model"],
        "device": dev_name,
        "device_type": device.type,
        "torch_version": torch.__version__,
        "torchvision_version": __import__("torchvision").__version__,
        "python": platform.python_version(),
        "host": {"cpu": cpu_name(), "cores": cores, "torch_threads": torch.get_num_threads()},
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": wall,
        "wall_method": "process start (before importing torch) to the end of the last validation",
        "train_seconds": train_seconds,
        "train_images": images,
        "train_img_per_s": images / max(train_seconds, 1e-9),
        "gpu_busy_pct": (100.0 * busy_ms / 1000.0 / max(train_seconds, 1e-9)) if cuda else None,
        "gpu_busy_method": ("sum over steps of CUDA-event time from before forward to after the optimizer step, divided "
                            "by the wall time of the training loops (synchronised at each epoch's end; validation "
                            "excluded); gaps inside a step where the GPU waits for the CPU count as busy, so this is "
                            "an upper bound") if cuda else "not on CUDA",
        "final_test_acc": epochs_log[-1].get("val_acc") if epochs_log else None,
        "test_images": final.get("test_images", 0),
        "epochs": job["epochs"],
        "epochs_run": len(epochs_log),
        "steps": step,
        "max_steps": a.max_steps or None,
        "batch_size": job["batch_size"],
        "input": [h, w, c],
        "classes": len(classes),
        "optimizer": job["optimizer"],
        "lr": job["lr"],
        "weight_decay": job["weight_decay"],
        "schedule": job["schedule"],
        "augment": job["augment"],
        "normalize_mean": mean,
        "normalize_std": std,
        "num_workers": workers,
        "pin_memory": loader_kw["pin_memory"],
        "persistent_workers": loader_kw.get("persistent_workers", False),
        "prefetch_factor": loader_kw.get("prefetch_factor"),
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
        "channels_last": channels_last,
        "data": job["data"],
        "val": job["val"],
        "stoke_equivalent": job["stoke"],
        "history": epochs_log,
    }
    if not a.quiet:
        acc = result["final_test_acc"]
        print(f"train.py: {wall:.1f} s end to end, {result['train_img_per_s']:,.0f} img/s training"
              + (f", test accuracy {100 * acc:.2f}%" if acc is not None else "")
              + (f", GPU busy {result['gpu_busy_pct']:.0f}%" if cuda else ""))
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    if any(not math.isfinite(r["train_loss"]) for r in epochs_log):
        print("train.py: the training loss is not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
