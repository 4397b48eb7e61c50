#!/usr/bin/env bash
# Every float flag of every subcommand refuses NaN and infinity at parse time: exit 2 (a usage error), one line that
# names the flag. The flags are read from each subcommand's --help (a NUMBER type other than INT, or MIN:MAX or V), so
# a new one is covered too; the train flags known today must all be among them, so a change to the help cannot empty
# the list unseen. Every spelling of NaN and infinity goes to the first flag (one parser reads them all); every other
# flag gets NaN and an overflow to infinity, which is what shows it has the check (each refusal is a process start).
#
# usage: float_flags.sh STOKE_BIN
set -uo pipefail
STOKE=$1
fail=0

float_flags() {  # SUBCOMMAND... -> one flag per line: FLOAT, DEG, P, ... (any NUMBER but INT), MIN:MAX, V
  "$STOKE" "$@" --help | grep -E '^\s+--\S+ ([A-Z]+:NUMBER|MIN:MAX|V)\b' | grep -vE '^\s+\S+ INT' | awk '{print $1}' |
    tr ',' '\n' | grep -E '^--' | head -n 100
}

train_flags=$(float_flags train)
for want in --lr --momentum --weight-decay --warmup-epochs --label-smoothing --clip-grad-norm --watchdog --rotate \
            --zoom --fill --mixup --ema; do
  if ! grep -qx -- "$want" <<<"$train_flags"; then
    echo "FAIL: train --help lists no FLOAT flag $want (found: $(echo $train_flags))"
    fail=1
  fi
done

checked=0
for sub in "train" "diagnose --data x" "bench-input --data x" "plan" "eval --run x --data x" "predict --run x y.jpg" \
           "export --run x -o y" "report --run x" "pack x -o y" "dataset synthetic --out x" "dataset mnist"; do
  read -r -a words <<<"$sub"
  name=${words[0]}
  [ "$name" = dataset ] && name="dataset ${words[1]}"
  read -r -a name_words <<<"$name"
  for flag in $(float_flags "${name_words[@]}"); do
    values="nan 1e999"
    [ "$checked" -eq 0 ] && values="nan NaN inf -inf infinity 1e999 -1e999"
    for value in $values; do
      out=$("$STOKE" "${words[@]}" "$flag=$value" 2>&1)
      rc=$?
      lines=$(printf '%s\n' "$out" | wc -l)
      if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -q -- "$flag" <<<"$out" || ! grep -q finite <<<"$out"; then
        echo "FAIL: stoke $sub $flag=$value: exit $rc (want 2), $lines line(s) (want 1) naming $flag and 'finite':"
        echo "$out"
        fail=1
      fi
      checked=$((checked + 1))
    done
  done
done
echo "$checked refusals checked"
[ "$checked" -ge 50 ] || { echo "FAIL: fewer float flags than train alone has"; fail=1; }
[ "$fail" -eq 0 ] && echo PASS
exit "$fail"
