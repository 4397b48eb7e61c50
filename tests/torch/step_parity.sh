#!/usr/bin/env bash
# One-step learning parity of one zoo model with its PyTorch twin (bench/pytorch/step_parity.py): stoke trains it
# for one epoch of 2 steps (10 synthetic MedNIST-like images, batch 4, the last 2 dropped), writing a checkpoint after
# each step, with SGD (lr 0.005, momentum 0.9, Nesterov, weight decay 5e-4) and/or AdamW (lr 0.001, weight decay
# 0.05). From stoke's weights, running statistics and optimizer moments after step 1 (non-zero moments and running
# statistics; AdamW's bias corrections at step 2) the twin takes one step on step 2's batch; the loss, the gradient
# (what the step did to the moments), the update rule (PyTorch's optimizer fed stoke's gradient) and what the step
# did to every batch-norm running statistic are compared with stoke's step 2 (docs/MODELS.md states the tolerances).
# With CHECK_BREAKS=1 the same process then shows, on the SGD run, that a twin stepping on another batch, with another
# batch-norm momentum or another update rule is caught. One Python process compares both runs.
#
# usage: step_parity.sh STOKE_BIN SOURCE_DIR WORK_DIR PYTHON MODEL SIZE LOSS_RTOL GRAD_RTOL UPDATE_RTOL STAT_RTOL
#                       [CHECK_BREAKS] [OPTIMIZERS (default sgd,adamw)]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3 MODEL=$5 SIZE=$6 LOSS_RTOL=$7 GRAD_RTOL=$8 UPDATE_RTOL=$9 STAT_RTOL=${10}
CHECK_BREAKS=${11:-0} OPTIMIZERS=${12:-sgd,adamw}
# require_torch.sh's check, without its torch import (2.5 CPU s; step_parity.py imports torch once and exits 77
# itself when that fails).
PY=${STOKE_TORCH_PYTHON:-${4:-/usr/bin/python3}}
if ! "$PY" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("torch", "torchvision", "numpy", "PIL")))' > /dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch, torchvision, numpy and PIL (Debian: apt-get install python3-torch" \
       "python3-torchvision python3-numpy python3-pil, or set STOKE_TORCH_PYTHON)"
  exit 77
fi
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$STOKE" dataset synthetic --out syn --count 10 --no-split > /dev/null
runs=()
breaks=()
t0=$(date +%s%N)
for spec in sgd:0.005:0.0005 adamw:0.001:0.05; do
  IFS=: read -r opt lr wd <<< "$spec"
  [[ ",$OPTIMIZERS," == *",$opt,"* ]] || continue
  "$STOKE" train --data syn --model "$MODEL" --image-size "$SIZE" --batch-size 4 --epochs 1 --optimizer "$opt" \
    --lr "$lr" --weight-decay "$wd" --schedule constant --augment none --seed 7 --threads 2 --decoders 1 \
    --log-every 1 --bn-recalibrate 0 --checkpoint-every 1 --keep-checkpoints 2 --quiet --out "run-$opt"
  runs+=(--run "run-$opt")
  if [ "$CHECK_BREAKS" = 1 ] && [ "$opt" = sgd ]; then breaks=(--also-break order,bn,update); fi
done
t1=$(date +%s%N)
# One torch thread: on a machine busy with other tests two spent 45 CPU s where one spent 28 (ResNet-50). glibc keeps
# freed memory instead of returning it and faulting it in again (ResNet-50: 1.08 M page faults -> 0.77 M).
MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=268435456 \
"$PY" "$SRC/bench/pytorch/step_parity.py" --stoke "$STOKE" --steps 1 --threads 1 --loss-rtol "$LOSS_RTOL" \
  --grad-rtol "$GRAD_RTOL" --update-rtol "$UPDATE_RTOL" --stat-rtol "$STAT_RTOL" "${runs[@]}" "${breaks[@]}"
echo "  (stoke $(( (t1 - t0) / 1000000 )) ms, twin and comparison $(( ($(date +%s%N) - t1) / 1000000 )) ms)"
rm -rf run-*/checkpoints  # up to 600 MB for ResNet-50 with AdamW
echo "PASS"
