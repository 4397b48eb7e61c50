#!/usr/bin/env bash
# Every zoo model starts where its PyTorch reference starts: for each model, a one-step stoke run on a few colour
# images at 72 px (3 channels, above 64 px: torchvision's own ResNet stem), `stoke export --checkpoint initial`, and
# bench/pytorch/check_init.py compares every tensor's spread with the reference module PyTorch initialises itself
# (torchvision's ResNets and DenseNet-121, the small CNNs' twin), within 5 sampling errors.
#
# usage: init_distribution.sh STOKE_BIN SOURCE_DIR WORK_DIR [PYTHON]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON lacks torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$STOKE" dataset synthetic --kind imagenet-like --count 4 --classes 2 --no-split --out inl > /dev/null
exports=()
for model in small-cnn small-cnn-wide small-cnn-nobn resnet18 resnet34 resnet50 densenet121; do
  t0=$(date +%s%N)
  "$STOKE" train --data inl --model "$model" --image-size 72 --epochs 1 --batch-size 4 --threads 2 --decoders 1 \
    --quiet --out "run-$model"
  "$STOKE" export --run "run-$model" --checkpoint initial -o "$model.safetensors" > /dev/null
  echo "  ($model: stoke $(( ($(date +%s%N) - t0) / 1000000 )) ms)"
  exports+=("$model.safetensors")
done
# One Python start (torch's import is seconds) compares all of them.
"$PY" "$SRC/bench/pytorch/check_init.py" --export "${exports[@]}"
echo "PASS"
