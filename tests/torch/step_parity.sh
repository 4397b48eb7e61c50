#!/usr/bin/env bash
# One-step learning parity of one zoo model with its PyTorch twin (bench/pytorch/step_parity.py): stoke trains it
# for one epoch of 3 steps (14 synthetic MedNIST-like images, batch 4, the last 2 dropped), writing a checkpoint after
# every step, with SGD (lr 0.005, momentum 0.9, Nesterov, weight decay 5e-4) and again with AdamW (lr 0.001, weight
# decay 0.05). From stoke's weights, running statistics and optimizer moments after steps 0, 1 and 2 the twin takes
# one step on the same batch; the loss, the gradient (what the step did to the moments), the update rule (PyTorch's
# optimizer fed stoke's gradient) and what the step did to every batch-norm running statistic are compared with
# stoke's next step (docs/MODELS.md states the tolerances). With CHECK_BREAKS=1 the same process then shows, on the
# SGD run, that a twin stepping on another batch, with another batch-norm momentum or another update rule is caught.
#
# usage: step_parity.sh STOKE_BIN SOURCE_DIR WORK_DIR PYTHON MODEL SIZE LOSS_RTOL GRAD_RTOL UPDATE_RTOL STAT_RTOL
#                       [CHECK_BREAKS] [OPTIMIZERS (default sgd,adamw)]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3 MODEL=$5 SIZE=$6 LOSS_RTOL=$7 GRAD_RTOL=$8 UPDATE_RTOL=$9 STAT_RTOL=${10}
CHECK_BREAKS=${11:-0} OPTIMIZERS=${12:-sgd,adamw}
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$STOKE" dataset synthetic --out syn --count 14 --no-split > /dev/null
PARITY=("$PY" "$SRC/bench/pytorch/step_parity.py" --stoke "$STOKE" --steps 0,1,2 --loss-rtol "$LOSS_RTOL"
        --grad-rtol "$GRAD_RTOL" --update-rtol "$UPDATE_RTOL" --stat-rtol "$STAT_RTOL")
for spec in sgd:0.005:0.0005 adamw:0.001:0.05; do
  IFS=: read -r opt lr wd <<< "$spec"
  [[ ",$OPTIMIZERS," == *",$opt,"* ]] || continue
  breaks=()
  [ "$CHECK_BREAKS" = 1 ] && [ "$opt" = sgd ] && breaks=(--also-break order,bn,update)
  t0=$(date +%s%N)
  "$STOKE" train --data syn --model "$MODEL" --image-size "$SIZE" --batch-size 4 --epochs 1 --optimizer "$opt" \
    --lr "$lr" --weight-decay "$wd" --schedule constant --augment none --seed 7 --threads 2 --decoders 1 \
    --log-every 1 --bn-recalibrate 0 --checkpoint-every 1 --keep-checkpoints 8 --quiet --out "run-$opt"
  t1=$(date +%s%N)
  "${PARITY[@]}" --run "run-$opt" "${breaks[@]}"
  echo "  (stoke $(( (t1 - t0) / 1000000 )) ms, twin and comparison $(( ($(date +%s%N) - t1) / 1000000 )) ms)"
  rm -rf "run-$opt/checkpoints"  # up to 1 GB for ResNet-50
done
echo "PASS"
