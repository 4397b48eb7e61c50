#!/usr/bin/env bash
# Nothing restarts from scratch while an intact checkpoint exists. `checkpoints/latest` emptied, or naming a folder
# that is gone, or the newest checkpoint damaged (one flipped bit, one changed digit in its state.json): eval and
# --resume use the newest checkpoint that verifies and say which and why in one line; with none intact, --resume
# refuses naming what is damaged instead of starting again.
#
# usage: checkpoint_fallback.sh STOKE_BIN WORK_DIR
set -uo pipefail
STOKE=$1
WORK=$2
fail=0
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
expect() {  # DESCRIPTION PATTERN COMMAND...: the command succeeds and its output holds PATTERN
  local out
  if ! out=$("${@:3}" 2>&1) || ! grep -q -- "$2" <<< "$out"; then
    echo "FAIL: $1: $out"
    fail=1
  fi
}
"$STOKE" dataset synthetic --out d --count 80 > /dev/null || exit 1
"$STOKE" train --data d/train --val d/val --epochs 2 --batch-size 8 --checkpoint-every 3 --keep-checkpoints 10 \
  --bn-recalibrate 0 --quiet --out run || exit 1
ck=run/checkpoints
newest=$(cat $ck/latest)
older=$(ls $ck | grep '^step-' | sort | tail -2 | head -1)
: > $ck/latest
expect "eval with an empty latest" "checkpoints/latest is empty: using $newest" \
  "$STOKE" eval --run run --data d/val --checkpoint latest
echo "step-99999999" > $ck/latest
expect "eval with latest naming a missing folder" "names step-99999999, which is missing: using $newest" \
  "$STOKE" eval --run run --data d/val --checkpoint latest
echo "$newest" > $ck/latest
sed -i "0,/\"step\": \([0-9]*\)/s//\"step\": 1\1/" $ck/$newest/state.json  # one more digit in the step
expect "eval with a changed state.json" "$newest is damaged (state.json differs from the manifest's record): using $older" \
  "$STOKE" eval --run run --data d/val --checkpoint latest
expect "resume with the newest checkpoint damaged" "resuming: run/checkpoints/$older" \
  "$STOKE" train --resume run --epochs 3
for s in $(ls $ck | grep '^step-'); do printf 'x' | dd of=$ck/$s/model.safetensors bs=1 seek=100 conv=notrunc 2> /dev/null; done
out=$("$STOKE" train --resume run --epochs 4 2>&1)
rc=$?
if [ "$rc" != 2 ] || ! grep -q "nothing intact to continue from" <<< "$out"; then
  echo "FAIL: resume with every checkpoint damaged (exit $rc): $out"
  fail=1
fi
[ "$fail" = 0 ] && echo PASS
exit "$fail"
