#!/usr/bin/env bash
# Does augmentation raise test accuracy? 2,000 MedNIST-like training images drawn upright (centred, scale 1,
# unrotated: `stoke dataset synthetic --pose upright`) against 600 test images drawn varied (position +-8 px,
# scale 0.8-1.2, rotation +-17 degrees), small-cnn at 28 px on the CPU, the same epochs in both arms:
#   none    --augment none
#   augment --augment monai --translate 0.125   (rotate 15 and zoom 0.9:1.1 each with p 0.5, hflip 0.5, shift 1/8)
# for several training seeds (initialisation, order and the augmentation's draws), the data fixed. Writes one JSON
# (date, commit, machine, every run's per-epoch test accuracy, mean margin and its spread); tests/e2e/
# augment_learning.sh asserts the margin from one seed at a threshold well inside what this measures.
#
#   bench/augment_learning.sh OUT.json [STOKE_BIN] [EPOCHS] [SEEDS...]   (defaults: build-cpu/bin/stoke, 3, 1..6)
#
# The data and the runs are defined once, here; tests/e2e/augment_learning.sh sources this file for them.
declare -A AUGMENT_LEARNING_FLAGS=([none]="--augment none" [augment]="--augment monai --translate 0.125")

# augment_learning_data BIN DIR: DIR/train (2,000 upright) and DIR/test (600 varied).
augment_learning_data() {
  "$1" dataset synthetic --kind mednist-like --count 2000 --no-split --pose upright --seed 1 --out "$2/train" \
    > /dev/null &&
    "$1" dataset synthetic --kind mednist-like --count 600 --no-split --pose varied --seed 2 --out "$2/test" > /dev/null
}

# augment_learning_args DIR OUT SEED EPOCHS ARM: stoke's arguments for one run on DIR's data, in TRAIN_ARGS.
augment_learning_args() {
  # shellcheck disable=SC2206  # the arm's flags, split into words
  TRAIN_ARGS=(train --device cpu --data "$1/train" --val "$1/test" --image-size 28 --model small-cnn --epochs "$4"
    --batch-size 64 --cache decoded --seed "$3" --out "$2" --quiet ${AUGMENT_LEARNING_FLAGS[$5]})
}

[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0  # sourced: the definitions only

set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: bench/augment_learning.sh OUT.json [STOKE_BIN] [EPOCHS] [SEEDS...]}
BIN=${2:-build-cpu/bin/stoke}
EPOCHS=${3:-3}
shift $(($# < 3 ? $# : 3))
SEEDS=("$@")
[ ${#SEEDS[@]} -eq 0 ] && SEEDS=(1 2 3 4 5 6)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/stoke-augment-learning.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
augment_learning_data "$BIN" "$WORK"
for seed in "${SEEDS[@]}"; do
  for arm in none augment; do
    augment_learning_args "$WORK" "$WORK/runs/$arm-$seed" "$seed" "$EPOCHS" "$arm"
    /usr/bin/time -f "%e" -o "$WORK/$arm-$seed.time" "$BIN" "${TRAIN_ARGS[@]}" > /dev/null
    echo "seed $seed $arm: $(grep -h '"kind":"epoch"' "$WORK/runs/$arm-$seed/metrics.jsonl" | tail -1 |
      python3 -c 'import json,sys; print("test accuracy %.4f" % json.load(sys.stdin)["val_acc"])') in $(cat "$WORK/$arm-$seed.time") s"
  done
done
python3 - "$OUT" "$WORK" "$EPOCHS" "$(git rev-parse --short HEAD)" "${AUGMENT_LEARNING_FLAGS[none]}" \
  "${AUGMENT_LEARNING_FLAGS[augment]}" "${SEEDS[@]}" << 'PY'
import datetime, json, os, platform, statistics, sys
out, work, epochs, commit, none_args, aug_args, seeds = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], \
    sys.argv[5], sys.argv[6], [int(s) for s in sys.argv[7:]]
def run(arm, seed):
    rows = [json.loads(l) for l in open(f"{work}/runs/{arm}-{seed}/metrics.jsonl")]
    ep = [r for r in rows if r.get("kind") == "epoch"]
    return {"test_acc_per_epoch": [round(r["val_acc"], 4) for r in ep], "final_train_acc": round(ep[-1]["train_acc"], 4),
            "seconds": float(open(f"{work}/{arm}-{seed}.time").read().split()[-1])}
runs = {arm: {str(s): run(arm, s) for s in seeds} for arm in ("none", "augment")}
final = {arm: [runs[arm][str(s)]["test_acc_per_epoch"][-1] for s in seeds] for arm in runs}
margins = [a - n for a, n in zip(final["augment"], final["none"])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
res = {
    "what": "test accuracy with and without augmentation: 2,000 upright MedNIST-like training images, 600 varied test "
            "images, small-cnn at 28 px, CPU backend, the same epochs; several training seeds, the data fixed",
    "date": datetime.date.today().isoformat(), "commit": commit,
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
                "load_1min": round(os.getloadavg()[0], 2)},
    "data": {"train": "stoke dataset synthetic --kind mednist-like --count 2000 --no-split --pose upright --seed 1",
             "test": "stoke dataset synthetic --kind mednist-like --count 600 --no-split --pose varied --seed 2"},
    "train": f"stoke train --device cpu --image-size 28 --model small-cnn --epochs {epochs} --batch-size 64 "
             "--cache decoded --seed SEED", "arms": {"none": none_args, "augment": aug_args},
    "epochs": epochs, "seeds": seeds, "runs": runs,
    "final_test_acc": final,
    "mean_test_acc": {arm: round(statistics.mean(v), 4) for arm, v in final.items()},
    "margins": [round(m, 4) for m in margins],
    "mean_margin": round(statistics.mean(margins), 4),
    "margin_min": round(min(margins), 4), "margin_max": round(max(margins), 4),
    "margin_stdev": round(statistics.stdev(margins), 4) if len(margins) > 1 else 0.0,
}
json.dump(res, open(out, "w"), indent=2)
print("mean test accuracy: none %.4f, augment %.4f; margin %.4f mean, %.4f..%.4f, stdev %.4f over %d seeds" % (
    res["mean_test_acc"]["none"], res["mean_test_acc"]["augment"], res["mean_margin"], res["margin_min"],
    res["margin_max"], res["margin_stdev"], len(seeds)))
PY
