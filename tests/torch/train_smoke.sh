#!/usr/bin/env bash
# Smoke test for bench/pytorch/train.py (the PyTorch side-by-side): --job mnist for 20 steps, each config, on a tiny
# synthetic tree resized to 28x28; checks the result JSON has the fields docs/PERFORMANCE.md relies on.
#
# usage: train_smoke.sh STOKE_BIN SOURCE_DIR WORK_DIR [PYTHON]
# Exit 77 (CTest SKIP_RETURN_CODE) when PYTHON (default /usr/bin/python3; $STOKE_TORCH_PYTHON overrides) lacks
# torch, torchvision, numpy or Pillow.
set -euo pipefail
STOKE=$1 SRC=$2 WORK=$3
source "$(dirname "${BASH_SOURCE[0]}")/require_torch.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
"$STOKE" dataset synthetic --out syn --count 300 > /dev/null
for config in tuned naive; do
  "$PY" "$SRC/bench/pytorch/train.py" --job mnist --config "$config" --device cpu --data syn/train --val syn/val \
    --image-size 28 --batch-size 16 --max-steps 20 --out "$config.json"
  "$PY" - "$config.json" "$config" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
need = ["job", "config", "device", "torch_version", "wall_seconds", "train_img_per_s", "gpu_busy_pct", "gpu_busy_method",
        "final_test_acc", "epochs", "batch_size", "steps", "num_workers", "amp", "history"]
missing = [k for k in need if k not in r]
assert not missing, f"result JSON lacks {missing}"
assert r["job"] == "mnist" and r["config"] == sys.argv[2], r
assert r["steps"] == 20, f"--max-steps 20 ran {r['steps']} steps"
assert r["input"] == [28, 28, 1] and r["classes"] == 6, (r["input"], r["classes"])
assert r["train_img_per_s"] > 0 and r["wall_seconds"] > 0
assert 0.0 <= r["final_test_acc"] <= 1.0 and r["test_images"] > 0
assert all(math.isfinite(h["train_loss"]) for h in r["history"])
print(f"{sys.argv[2]}: ok ({r['steps']} steps, {r['train_img_per_s']:.0f} img/s, test acc {r['final_test_acc']:.3f}, "
      f"{r['num_workers']} workers)")
PY
done
echo "PASS"
