#!/usr/bin/env bash
# stoke train --init from a torchvision state_dict written by bench/pytorch/safetensors_write.py: stoke's export after
# one step at lr 1e-30 must equal the PyTorch twin's state (weights, running statistics), and `stoke predict` its
# probabilities (tests/torch/import_check.py). Then the check must be able to fail: a twin that takes conv1's first
# channel instead of the sum over channels is caught (exit 1).
#
# usage: import_check.sh STOKE_BIN SOURCE_DIR WORK_DIR [PYTHON]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$STOKE" dataset synthetic --out syn --count 60 > /dev/null
CHECK=("$PY" "$SRC/tests/torch/import_check.py" --stoke "$STOKE" --data syn/train --val syn/val)
mkdir ok broken
"${CHECK[@]}" --work ok
rc=0
"${CHECK[@]}" --work broken --break no-stem-sum > broken.log 2>&1 || rc=$?
if [ "$rc" -ne 1 ]; then
  cat broken.log
  echo "FAIL: import_check.py --break no-stem-sum exited $rc, expected 1"
  exit 1
fi
echo "--break no-stem-sum caught as expected: $(grep -m1 FAIL broken.log | cut -c1-160)"
echo "PASS"
