#!/usr/bin/env bash
# Soak benchmark (not a CI test): a long CPU training run on MNIST whose resident memory must stay flat
# across epochs. Prints each epoch's RSS (from metrics.jsonl) and the growth from epoch 2 to the last.
#   bench/soak.sh [EPOCHS=10] [extra stoke train flags]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${1:-10}
shift || true
bin=${STOKE_BIN:-build/bin/stoke}
[ -x "$bin" ] || { cmake --preset release >/dev/null && cmake --build --preset release --target stoke; }
"$bin" dataset mnist --out data/mnist >/dev/null
run=runs/soak
"$bin" train --data data/mnist/train --val data/mnist/test --epochs "$epochs" --out "$run" --overwrite --quiet "$@"
python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"kind": "epoch"' in l or '"kind":"epoch"' in l]
for r in rows:
    print(f"epoch {r['epoch']:3d}  rss {r['rss_mib']:8.1f} MiB  val acc {100*r.get('val_acc', float('nan')):.2f}%  {r['seconds']:.1f} s")
if len(rows) >= 3:
    growth = rows[-1]['rss_mib'] - rows[1]['rss_mib']
    print(f"RSS growth from epoch 2 to epoch {rows[-1]['epoch']}: {growth:+.1f} MiB")
PY
