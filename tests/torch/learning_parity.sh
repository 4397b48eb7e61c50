#!/usr/bin/env bash
# Learning parity of one zoo model with its PyTorch twin: stoke trains it for 20 steps (2 epochs of 10 batches of 4
# on 42 synthetic MedNIST-like images, the last 2 dropped) with SGD (lr 0.005, momentum 0.9, Nesterov, weight decay 5e-4) and again
# with AdamW (lr 0.001, weight decay 0.05); bench/pytorch/learning_parity.py trains the twin from stoke's exported initial weights on the same
# batches in the same order and compares the loss at every step, and the final weights and batch-norm running
# statistics (docs/MODELS.md states the tolerances). With CHECK_BREAKS=1 it also shows that a twin trained on another
# batch order, with another batch-norm momentum or another update rule is caught (exit 1 each).
#
# usage: learning_parity.sh STOKE_BIN SOURCE_DIR WORK_DIR PYTHON MODEL SIZE LOSS_RTOL WEIGHT_RTOL [CHECK_BREAKS]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3 MODEL=$5 SIZE=$6 LOSS_RTOL=$7 WEIGHT_RTOL=$8 CHECK_BREAKS=${9:-0}
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$STOKE" dataset synthetic --out syn --count 42 --no-split > /dev/null
PARITY=("$PY" "$SRC/bench/pytorch/learning_parity.py" --stoke "$STOKE" --loss-rtol "$LOSS_RTOL"
        --weight-rtol "$WEIGHT_RTOL")
for spec in sgd:0.005:0.0005 adamw:0.001:0.05; do
  IFS=: read -r opt lr wd <<< "$spec"
  t0=$(date +%s%N)
  "$STOKE" train --data syn --model "$MODEL" --image-size "$SIZE" --batch-size 4 --epochs 2 --optimizer "$opt" \
    --lr "$lr" --weight-decay "$wd" --schedule constant --augment none --seed 7 --threads 2 --decoders 1 \
    --log-every 1 --bn-recalibrate 0 --quiet --out "run-$opt"
  t1=$(date +%s%N)
  "${PARITY[@]}" --run "run-$opt"
  echo "  (stoke $(( (t1 - t0) / 1000000 )) ms, twin and comparison $(( ($(date +%s%N) - t1) / 1000000 )) ms)"
done

if [ "$CHECK_BREAKS" = 1 ]; then
  for b in order bn update; do
    rc=0
    "${PARITY[@]}" --run run-sgd --break "$b" > "break-$b.log" 2>&1 || rc=$?
    if [ "$rc" -ne 1 ]; then
      cat "break-$b.log"
      echo "FAIL: learning_parity.py --break $b exited $rc, expected 1 (the comparison cannot see that difference)"
      exit 1
    fi
    echo "--break $b caught as expected: $(grep -m1 'FAIL' "break-$b.log" | cut -c1-150)"
  done
fi
echo "PASS"
