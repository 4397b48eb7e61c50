#!/usr/bin/env python3
"""stoke's end-to-end jobs against their PyTorch twins (train.py --job J, tuned and naive), on the same machine.

  side_by_side.py --stoke build/bin/stoke [--job mnist|mednist|resnet50] [--epochs N] [--repeats R]
                  [--device cpu|cuda] [--data DIR --val DIR] [--configs tuned,naive]
                  [--variant NAME="--stoke-flag value ..."]... --out RESULT.json

--variant runs stoke once more per repeat with extra flags (e.g. recal0="--bn-recalibrate 0"); --configs picks the
PyTorch configurations (both by default; they differ in the input pipeline, not in what the model learns). The
result holds every side's per-epoch train and validation accuracy, and prints them as one table.

Every job's settings come from train.py's JOBS table, and stoke gets them as explicit flags (model, batch size,
epochs, optimizer, lr, weight decay, schedule, augmentation, image size), so both sides run the same recipe.
For the MNIST job (the default) that is exactly what scripts/mnist.sh runs:

stoke runs exactly as scripts/mnist.sh runs it (`stoke train --data data/mnist/train --val data/mnist/test --model
small-cnn --out DIR --overwrite`, plus --epochs N when given: mnist.sh passes extra arguments through); PyTorch runs
`train.py --job mnist --config tuned|naive` with the same epochs. The runs are interleaved (stoke, tuned, naive,
stoke, ...) so that a change in the machine's load hits every contender alike. Each process is timed from the
outside (wall, user + system CPU seconds from getrusage) with the load average before and after; img/s and test
accuracy come from each one's own result (stoke: summary.json; PyTorch: train.py's JSON). Needs the MNIST JPEG tree
(`stoke dataset mnist --out data/mnist`, which scripts/mnist.sh writes).
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def machine():
    info = {"platform": platform.platform(), "cores": len(os.sched_getaffinity(0))}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def timed(cmd, log):
    """Runs cmd, output to log; returns wall seconds, CPU seconds (user + system of the child and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    la0 = loadavg()
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if rc != 0:
        sys.exit(f"side_by_side: {' '.join(cmd)} exited {rc}; see {log}")
    return {"wall_seconds": wall, "cpu_seconds": cpu, "loadavg_before": la0, "loadavg_after": loadavg(),
            "command": " ".join(cmd)}


def stoke_numbers(run_dir):
    s = json.load(open(os.path.join(run_dir, "summary.json")))
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    hist = s["history"]
    steps_per_epoch = s["steps"] // max(len(hist), 1)
    imgs = steps_per_epoch * cfg["batch_size"]  # drop_last: full batches only
    train_s = sum(imgs / h["img_per_s"] for h in hist)
    return {"train_img_per_s": imgs * len(hist) / train_s, "train_seconds": train_s, "final_test_acc": s["final_val_acc"],
            "epochs": s["epochs"], "steps": s["steps"], "seconds_total_own": s["seconds_total"], "device": s["device"],
            "batch_size": cfg["batch_size"], "threads": cfg.get("threads"), "per_epoch_img_per_s": [h["img_per_s"] for h in hist],
            "per_epoch": per_epoch(hist)}


def per_epoch(hist):
    """Each epoch's train and validation loss and accuracy, from stoke's summary.json or train.py's history."""
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    return [dict({"epoch": i + 1}, **{k: h.get(k) for k in keys}) for i, h in enumerate(hist)]


def accuracy_table(runs):
    """Per epoch: train / validation accuracy (%) of the first repeat of every side."""
    names = [n for n in runs if runs[n]]
    lines = ["epoch  " + "  ".join(f"{n + ' train/val':>26}" for n in names)]
    for e in range(max(len(runs[n][0]["per_epoch"]) for n in names)):
        cells = []
        for n in names:
            pe = runs[n][0]["per_epoch"]
            r = pe[e] if e < len(pe) else {}
            pct = ["  -  " if r.get(k) is None else f"{100 * r[k]:5.1f}" for k in ("train_acc", "val_acc")]
            cells.append(f"{pct[0] + ' / ' + pct[1]:>26}")
        lines.append(f"{e + 1:>5}  " + "  ".join(cells))
    return "\n".join(lines)


def stoke_job_args(job):
    """stoke train flags for a train.py JOBS entry (PyTorch's Adam with weight decay 0 is stoke's adamw with 0)."""
    args = ["--model", job["model"], "--batch-size", str(job["batch_size"]), "--epochs", str(job["epochs"]),
            "--optimizer", "adamw" if job["optimizer"] in ("adam", "adamw") else job["optimizer"], "--lr", str(job["lr"]),
            "--weight-decay", str(job["weight_decay"]), "--schedule", job["schedule"], "--augment", job["augment"]]
    if job.get("image_size"):
        args += ["--image-size", str(job["image_size"])]
    return args


def main():
    sys.path.insert(0, HERE)
    from train import JOBS  # noqa: E402  (the one table of job settings)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stoke", default="build/bin/stoke")
    ap.add_argument("--job", default="mnist", choices=sorted(JOBS))
    ap.add_argument("--data", help="training ImageFolder (default: the job's)")
    ap.add_argument("--val", help="validation ImageFolder (default: the job's)")
    ap.add_argument("--epochs", type=int, help="default: the job's")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--python", default=sys.executable, help="Python with torch for train.py")
    ap.add_argument("--work", default="/tmp/stoke-side-by-side")
    ap.add_argument("--commit", help="the stoke commit the binary was built from (recorded as given)")
    ap.add_argument("--configs", default="tuned,naive", help="PyTorch configs, comma-separated ('' for none)")
    ap.add_argument("--variant", action="append", default=[], metavar='NAME="FLAGS"',
                    help="one more stoke run per repeat with these extra flags")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    job = dict(JOBS[a.job])
    if a.epochs:
        job["epochs"] = a.epochs
    a.data = a.data or job["data"]
    a.val = a.val or job["val"]
    os.makedirs(a.work, exist_ok=True)
    ep = ["--epochs", str(job["epochs"])]

    configs = [c for c in a.configs.split(",") if c]
    variants = [("stoke", [])] + [(f"stoke_{v.split('=', 1)[0]}", v.split("=", 1)[1].split()) for v in a.variant]
    runs = {name: [] for name, _ in variants}
    runs.update({f"pytorch_{c}": [] for c in configs})
    for r in range(a.repeats):
        for name, extra in variants:
            run_dir = os.path.join(a.work, f"{name}-{r}")
            t = timed([a.stoke, "train", "--data", a.data, "--val", a.val, "--out", run_dir, "--overwrite", "--device",
                       a.device] + stoke_job_args(job) + extra, os.path.join(a.work, f"{name}-{r}.log"))
            t.update(stoke_numbers(run_dir))
            t["extra_flags"] = extra
            runs[name].append(t)
            print(f"{name} #{r}: {t['wall_seconds']:.1f} s wall, {t['cpu_seconds']:.1f} s CPU, "
                  f"{t['train_img_per_s']:,.0f} img/s, acc {100 * t['final_test_acc']:.2f}%, "
                  f"load {t['loadavg_before']} -> {t['loadavg_after']}", flush=True)
        for config in configs:
            out = os.path.join(a.work, f"pytorch-{config}-{r}.json")
            t = timed([a.python, os.path.join(HERE, "train.py"), "--job", a.job, "--config", config, "--device",
                       a.device, "--data", a.data, "--val", a.val, "--out", out] + ep,
                      os.path.join(a.work, f"pytorch-{config}-{r}.log"))
            p = json.load(open(out))
            t.update({k: p[k] for k in ("train_img_per_s", "train_seconds", "final_test_acc", "epochs", "steps", "device",
                                          "batch_size", "num_workers", "pin_memory", "persistent_workers",
                                          "prefetch_factor", "amp", "channels_last", "torch_version", "gpu_busy_pct")})
            t["threads"] = p["host"]["torch_threads"]
            t["per_epoch"] = per_epoch(p["history"])
            t["wall_seconds_own"] = p["wall_seconds"]  # train.py's own clock, from before `import torch`
            runs[f"pytorch_{config}"].append(t)
            print(f"pytorch {config} #{r}: {t['wall_seconds']:.1f} s wall, {t['cpu_seconds']:.1f} s CPU, "
                  f"{t['train_img_per_s']:,.0f} img/s, acc {100 * t['final_test_acc']:.2f}%, "
                  f"load {t['loadavg_before']} -> {t['loadavg_after']}", flush=True)

    def med(name, key):
        return statistics.median(x[key] for x in runs[name])

    summary = {}
    for name in runs:
        summary[name] = {k: med(name, k) for k in ("wall_seconds", "cpu_seconds", "train_img_per_s", "final_test_acc")}
    st = summary["stoke"]
    ratios = {}
    for name in (f"pytorch_{c}" for c in configs):
        pt = summary[name]
        ratios[f"{name}_over_stoke"] = {
            "wall_seconds": pt["wall_seconds"] / st["wall_seconds"],
            "cpu_seconds": pt["cpu_seconds"] / st["cpu_seconds"],
            "stoke_img_per_s_over_pytorch": st["train_img_per_s"] / pt["train_img_per_s"],
            "test_acc_points_stoke_minus_pytorch": 100 * (st["final_test_acc"] - pt["final_test_acc"]),
        }
    result = {
        "what": f"stoke's {a.job} job vs its PyTorch twin (bench/pytorch/train.py --job {a.job})",
        "job": a.job,
        "stoke_command": " ".join(["stoke", "train", "--data", a.data, "--val", a.val] + stoke_job_args(job)),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": a.commit,
        "device": a.device,
        "epochs": job["epochs"],
        "repeats": a.repeats,
        "method": "processes run one after another, interleaved per repeat; wall = outside clock around each process "
                  "(stoke: including its normalisation estimate and per-epoch validation; PyTorch: including Python "
                  "start and `import torch`); CPU = user + system seconds of the process tree (getrusage); img/s = "
                  "training images / training seconds (validation excluded) from each side's own record; medians over "
                  "repeats",
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps({"summary": summary, "ratios": ratios}, indent=2))
    print(accuracy_table(runs))


if __name__ == "__main__":
    main()
