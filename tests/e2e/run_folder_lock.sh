#!/usr/bin/env bash
# A run writes its folder alone. While one `stoke train` runs, a second `train`, a `--resume` and a `report` in the
# same folder are refused in one line naming the holder's pid, and change nothing there (config.json and metrics.jsonl
# stay the first run's); eval and export, which only read, still work. Once the holder is killed with SIGKILL the
# kernel has dropped its lock, and the folder can be used again at once.
#
# usage: run_folder_lock.sh STOKE_BIN WORK_DIR
set -uo pipefail
STOKE=$1
WORK=$2
fail=0
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
expect_refused() {  # DESCRIPTION COMMAND...: exit 2 and one line naming the folder's holder
  local out rc
  out=$("${@:2}" 2>&1)
  rc=$?
  if [ "$rc" != 2 ] || ! grep -q "in use by another stoke process (pid $HOLDER, stoke train)" <<< "$out"; then
    echo "FAIL: $1 (exit $rc): $out"
    fail=1
  fi
}
"$STOKE" dataset synthetic --out d --count 80 > /dev/null || exit 1
"$STOKE" train --data d/train --val d/val --epochs 10000 --batch-size 8 --lr 0.02 --schedule constant \
  --checkpoint-every 2 --bn-recalibrate 0 --quiet --out run > holder.log 2>&1 &
HOLDER=$!
for _ in $(seq 600); do  # until the holder has its first checkpoint (up to a minute)
  [ -f run/checkpoints/latest ] && break
  kill -0 "$HOLDER" 2> /dev/null || break
  sleep 0.1
done
if [ ! -f run/checkpoints/latest ]; then
  echo "FAIL: the holder wrote no checkpoint"
  cat holder.log
  kill -9 "$HOLDER" 2> /dev/null
  exit 1
fi
cp run/config.json config.before
expect_refused "a second train in the folder" "$STOKE" train --data d/train --epochs 1 --lr 0.05 --quiet --out run
expect_refused "the same with --overwrite" "$STOKE" train --data d/train --epochs 1 --lr 0.05 --quiet --out run --overwrite
expect_refused "--resume of the running run" "$STOKE" train --resume run --quiet
expect_refused "report of the running run" "$STOKE" report --run run
if ! cmp -s config.before run/config.json; then echo "FAIL: a refused command changed config.json"; fail=1; fi
if ! python3 -c 'import json, sys; sys.exit(abs(json.load(open("run/config.json"))["lr"] - 0.02) > 1e-6)'; then
  echo "FAIL: config.json is not the holder's"
  fail=1
fi
if ! "$STOKE" export --run run --checkpoint latest -o run.safetensors > /dev/null 2>&1; then
  echo "FAIL: export reads a running run's checkpoint"
  fail=1
fi
if ! kill -0 "$HOLDER" 2> /dev/null; then echo "FAIL: the holder stopped"; cat holder.log; fail=1; fi
kill -9 "$HOLDER"
wait "$HOLDER" 2> /dev/null
# SIGKILL gave no chance to clean up: the lock went with the process.
if ! "$STOKE" train --data d/train --epochs 1 --batch-size 8 --quiet --out run --overwrite > again.log 2>&1; then
  echo "FAIL: the folder stayed locked after its holder was killed"
  cat again.log
  fail=1
fi
[ "$fail" = 0 ] && echo PASS
exit "$fail"
