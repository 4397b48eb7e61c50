#!/usr/bin/env bash
# stoke train --init from torchvision state_dicts written by bench/pytorch/safetensors_write.py (tests/torch/
# import_check.py): ResNet-18 and DenseNet-121 with random weights, running statistics and affine parameters; stoke's
# class probabilities on 16 RGB images (and grey copies, for ResNet-18's summed conv1) against PyTorch's eval mode
# within 1e-4, then one SGD step of fine-tuning (momentum, Nesterov, weight decay) against PyTorch's: the loss, the
# updated weights and running statistics within 1e-4 and the update itself within its fp32 noise. Then, in the same
# process on the same stoke outputs, each check must fail on a broken twin: conv1 from one channel instead of the sum,
# running statistics dropped, SGD without Nesterov, BN momentum 0.2.
#
# usage: import_check.sh STOKE_BIN SOURCE_DIR WORK_DIR [PYTHON]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
"$PY" "$SRC/tests/torch/import_check.py" --stoke "$STOKE" --work "$WORK" \
  --also-break no-stem-sum,stats,update,bn-momentum
echo "PASS"
