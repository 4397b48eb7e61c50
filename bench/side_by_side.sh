#!/usr/bin/env bash
# The side-by-side in one command: stoke against PyTorch (tuned and naive DataLoader configurations) on the
# same machine, data and recipe, for each job, then one result file.
#
#   bench/side_by_side.sh OUTDIR [mnist] [mednist] [resnet50]      (default: all three)
#
# On the GPU machine (one device call; see docs/PERFORMANCE.md):
#   run(command="bench/side_by_side.sh $OUT", carry=["build-gpu", "data/mnist-pack"], timeout_s=600)
# Data, made here when missing (the GPU machine has no network): MedNIST-like and ImageNet-like trees come from
# `stoke dataset synthetic`; MNIST needs $STOKE_MNIST_DIR (a tree with train/ and test/, or a folder holding
# train.pack and test.pack made by `stoke pack`), else the job is skipped and says why.
#
# Environment: STOKE_BIN (default build-gpu/bin/stoke, else build/bin/stoke), PYTHON (python3 with torch),
# DEVICE (cuda when nvidia-smi answers, else cpu), STOKE_SBS_EPOCHS (override every job's epochs),
# STOKE_SBS_MED_COUNT / STOKE_SBS_INL_COUNT (MedNIST-like images, default 58954; ImageNet-like, default 12800),
# STOKE_SBS_DATA (where data lives, default data/), STOKE_SBS_BUDGET (seconds in all, default 540).
# Writes OUTDIR/<job>.json (bench/pytorch/side_by_side.py's result per job) and
# OUTDIR/<date>-<gpu>-<commit>.json (all jobs, with the machine) — copy the latter to bench/results/.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
OUTDIR=${1:?usage: bench/side_by_side.sh OUTDIR [mnist] [mednist] [resnet50]}
shift
JOBS=("$@")
[ ${#JOBS[@]} -eq 0 ] && JOBS=(mnist mednist resnet50)
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd -P)
T0=$(date +%s)
BUDGET=${STOKE_SBS_BUDGET:-540}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }

STOKE_BIN=${STOKE_BIN:-}
if [ -z "$STOKE_BIN" ]; then
  for b in build-gpu/bin/stoke build/bin/stoke build-main/bin/stoke; do [ -x "$b" ] && { STOKE_BIN=$b; break; }; done
fi
[ -x "${STOKE_BIN:-}" ] || { echo "no stoke binary (set STOKE_BIN)"; exit 2; }
PYTHON=${PYTHON:-python3}
"$PYTHON" -c "import torch, torchvision" 2> /dev/null || { echo "$PYTHON has no torch + torchvision"; exit 2; }
if [ -z "${DEVICE:-}" ]; then
  DEVICE=cpu
  nvidia-smi > /dev/null 2>&1 && DEVICE=cuda
fi
if [ "$DEVICE" = cuda ]; then
  source "$ROOT/scripts/gpu-libs.sh"
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1)
else
  GPU="cpu"
fi
COMMIT=$(git rev-parse --short HEAD 2> /dev/null || head -c 12 build-gpu/stoke-commit.txt 2> /dev/null || echo unknown)
DATA=${STOKE_SBS_DATA:-$ROOT/data}
EPOCHS=()
[ -n "${STOKE_SBS_EPOCHS:-}" ] && EPOCHS=(--epochs "$STOKE_SBS_EPOCHS")
echo "side-by-side: ${JOBS[*]} on $DEVICE ($GPU), stoke $STOKE_BIN at $COMMIT, budget ${BUDGET}s"

for job in "${JOBS[@]}"; do
  case $job in
    mnist)
      M=${STOKE_MNIST_DIR:-$DATA/mnist}
      if [ -d "$M/train" ] && [ -d "$M/test" ]; then TR=$M/train VA=$M/test
      elif [ -f "$M/train.pack" ] && [ -f "$M/test.pack" ]; then TR=$M/train.pack VA=$M/test.pack
      else echo "skip mnist: no MNIST at $M (train/ and test/, or train.pack and test.pack; no network here)"; continue; fi ;;
    mednist)
      timeout 300 "$STOKE_BIN" dataset synthetic --count "${STOKE_SBS_MED_COUNT:-58954}" --out "$DATA/mednist" > /dev/null ||
        { echo "skip mednist: data"; continue; }
      TR=$DATA/mednist/train VA=$DATA/mednist/val ;;
    resnet50)
      timeout 300 "$STOKE_BIN" dataset synthetic --kind imagenet-like --count "${STOKE_SBS_INL_COUNT:-12800}" \
        --out "$DATA/imagenet-like" > /dev/null || { echo "skip resnet50: data"; continue; }
      TR=$DATA/imagenet-like/train VA=$DATA/imagenet-like/val ;;
    *) echo "unknown job $job (mnist, mednist, resnet50)"; exit 2 ;;
  esac
  budget=$(( $(left) - 15 ))
  if [ "$budget" -lt 30 ]; then echo "skip $job: the time budget is spent"; continue; fi
  echo "=== $job (at most ${budget}s)"
  timeout -k 10 "$budget" "$PYTHON" bench/pytorch/side_by_side.py --stoke "$STOKE_BIN" --job "$job" --data "$TR" --val "$VA" \
    --device "$DEVICE" --python "$PYTHON" --commit "$COMMIT" --work "$OUTDIR/work-$job" --out "$OUTDIR/$job.json" \
    "${EPOCHS[@]}" || echo "$job: did not finish (exit $?)"
done

OUTDIR="$OUTDIR" GPU="$GPU" COMMIT="$COMMIT" DEVICE="$DEVICE" "$PYTHON" - <<'PY'
import datetime, glob, json, os, re
out, gpu = os.environ["OUTDIR"], os.environ["GPU"]
jobs = {}
for p in sorted(glob.glob(os.path.join(out, "*.json"))):
    name = os.path.basename(p)[:-5]
    if name in ("mnist", "mednist", "resnet50"):
        r = json.load(open(p))
        jobs[name] = {"summary": r["summary"], "ratios": r["ratios"], "epochs": r["epochs"],
                      "stoke_command": r.get("stoke_command"), "machine": r["machine"]}
date = datetime.date.today().isoformat()
slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower() or "cpu"
result = {"what": "stoke vs PyTorch (tuned and naive) per job, bench/side_by_side.sh", "date": date, "device": gpu,
          "backend": os.environ["DEVICE"], "commit": os.environ["COMMIT"],
          "targets": {"mnist": "stoke >= 20x tuned PyTorch", "mednist": ">= 5x", "resnet50": ">= 1.3x"}, "jobs": jobs}
path = os.path.join(out, f"{date}-{slug}-{os.environ['COMMIT']}.json")
json.dump(result, open(path, "w"), indent=2)
print(f"wrote {path}")
for j, r in jobs.items():
    t = r["ratios"]["pytorch_tuned_over_stoke"]
    print(f"  {j:9s} stoke {r['summary']['stoke']['wall_seconds']:.1f} s, {100 * r['summary']['stoke']['final_test_acc']:.2f}%;"
          f" tuned PyTorch {t['wall_seconds']:.2f}x the wall time, acc {t['test_acc_points_stoke_minus_pytorch']:+.2f} points")
PY
