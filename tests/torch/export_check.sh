#!/usr/bin/env bash
# End-to-end: stoke trains ResNet-18 and DenseNet-121 for a few steps on a tiny synthetic MedNIST-like set, exports
# them, and bench/pytorch/check_export.py loads each export into the PyTorch module (torchvision / MONAI names,
# load_state_dict strict) and compares its probabilities with `stoke predict`. Then it proves the check can fail:
# a renamed tensor and conv weights left in stoke's KRSC order must both be caught (exit 1).
#
# usage: export_check.sh STOKE_BIN SOURCE_DIR WORK_DIR [PYTHON]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON (default /usr/bin/python3; $STOKE_TORCH_PYTHON overrides) lacks
# torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
"$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)'

rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
CHECK=("$PY" "$SRC/bench/pytorch/check_export.py" --stoke "$STOKE")

"$STOKE" dataset synthetic --out syn --count 300 > /dev/null
# 64x64 JPEGs: ResNet-18 at 32 px (libjpeg's 1/2 DCT scaling does the resize), DenseNet-121 at 40 px (full decode,
# then stoke's bilinear resize), so both preprocessing paths are compared too. 30 steps of 8 let BN's running
# statistics settle enough that the probabilities are not all 0 or 1.
for spec in resnet18:32 densenet121:40; do
  model=${spec%:*} size=${spec#*:}
  t0=$(date +%s)
  "$STOKE" train --data syn/train --val syn/val --model "$model" --image-size "$size" --epochs 1 --batch-size 8 \
    --threads 2 --decoders 1 --quiet --out "run-$model"
  echo "trained $model at ${size}px in $(( $(date +%s) - t0 ))s"
  "$STOKE" export --run "run-$model" -o "$model.safetensors"
  "${CHECK[@]}" --run "run-$model" --export "$model.safetensors" --data syn/val --per-class 2 --min-informative 1
done

# The check must be able to fail.
for b in rename no-transpose; do
  rc=0
  "${CHECK[@]}" --run run-densenet121 --export densenet121.safetensors --data syn/val --per-class 1 --break "$b" \
    > "break-$b.log" 2>&1 || rc=$?
  if [ "$rc" -ne 1 ]; then
    cat "break-$b.log"
    echo "FAIL: check_export.py --break $b exited $rc, expected 1 (the check cannot see that damage)"
    exit 1
  fi
  echo "--break $b caught as expected: $(grep -m1 'FAIL' "break-$b.log" | cut -c1-160)"
done
echo "PASS"
