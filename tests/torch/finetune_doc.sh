#!/usr/bin/env bash
# docs/FINE-TUNING.md followed as a user with a torchvision .pth would: its conversion snippet and command line
# (tests/torch/finetune_doc.py, which also writes a folder of photos of assorted sizes), then its first stoke command
# on that folder (resnet18 at 72 px for one epoch in place of resnet50 at 224 for five): the run must say what the doc
# says it says (the fresh 3-class classifier, ImageNet's normalisation), train, validate, and `stoke predict` must
# name a class for every validation photo.
#
# usage: finetune_doc.sh STOKE_BIN SOURCE_DIR WORK_DIR [PYTHON]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$PY" "$SRC/tests/torch/finetune_doc.py" "$SRC" "$WORK"
fail() {
  echo "FAIL: $*"
  exit 1
}
"$STOKE" train --data photos/train --val photos/val --model resnet18 --image-size 72 --init resnet18.safetensors \
  --lr 0.01 --epochs 1 --threads 2 --out ft > train.log 2>&1 || { cat train.log; fail "stoke train exited $?"; }
for line in "classifier fc: 1000 classes in resnet18.safetensors, 3 here: initialised afresh (seed 0)" \
            "normalize: imagenet's mean and std, the default with --init" "validation accuracy"; do
  grep -qF "$line" train.log || { cat train.log; fail "stoke train did not say: $line"; }
done
echo "stoke train: $(grep -F 'init:' train.log | head -1); $(grep -F 'validation accuracy' train.log | sed 's/^ *//')"
"$STOKE" predict --run ft photos/val/*/*.jpg > predict.log
n=$(grep -cE '\.jpg: (birds|cats|dogs) [0-9.]+%$' predict.log || true)
[ "$n" -eq 6 ] || { cat predict.log; fail "stoke predict named a class for $n of the 6 validation photos"; }
echo "stoke predict: a class for each of the 6 validation photos"
echo "PASS"
