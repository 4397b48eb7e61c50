#!/usr/bin/env bash
# Every float flag of every subcommand refuses NaN and infinity at parse time: exit 2 (a usage error), one line that
# names the flag. The flags are read from each subcommand's --help (type FLOAT), so a new one is covered too; the
# train flags known today must all be among them, so a change to the help cannot empty the list unseen.
#
# usage: float_flags.sh STOKE_BIN
set -uo pipefail
STOKE=$1
fail=0

float_flags() {  # SUBCOMMAND... -> one flag per line
  "$STOKE" "$@" --help | grep -E '^\s+\S+ FLOAT' | awk '{print $1}' | tr ',' '\n' | grep -E '^--' | head -n 100
}

train_flags=$(float_flags train)
for want in --lr --momentum --weight-decay --warmup-epochs --label-smoothing --clip-grad-norm --watchdog; do
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
    for value in nan NaN inf -inf infinity 1e999; do
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
[ "$checked" -ge 42 ] || { echo "FAIL: fewer float flags than train alone has"; fail=1; }
[ "$fail" -eq 0 ] && echo PASS
exit "$fail"
