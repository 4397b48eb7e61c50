#!/usr/bin/env bash
# Names are bytes: a Latin-1 class folder, a Latin-1 file name, a file name holding the text "\x41", a class name
# with a newline, a Latin-1 --data and --out, a left-out and a corrupt file with Latin-1 names. train -> eval ->
# predict (text and --json) -> export -> report -> resume all exit 0; every JSON file and every line on the console
# is valid UTF-8; config.json, train_files.txt, left_out.txt, quarantine.txt, predict's lines and the export's
# metadata show the names escaped (base/display_name.h) and give the bytes back; resume accepts the same data and
# names a file added since in the same escaped form.
#
# usage: names.sh STOKE_BIN WORK_DIR
set -uo pipefail
STOKE=$1
WORK=$2
CHECK="python3 $(cd "$(dirname "$0")" && pwd)/names_check.py"
fail=0
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
ok() {  # DESCRIPTION COMMAND...: the command succeeds (output in DESCRIPTION's log, checked as UTF-8 below)
  "${@:2}" > "log.$1" 2>&1
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "FAIL: $1 (exit $rc): $(cat "log.$1")"
    fail=1
  fi
}
has() {  # FILE TEXT: FILE holds TEXT
  if ! grep -qF -- "$2" "$1"; then
    echo "FAIL: $1 lacks '$2': $(cat "$1")"
    fail=1
  fi
}
DATA=$'dat\xE9'
OUT=$'out\xE9'
CAFE=$'caf\xE9'
LINE=$'line\nbreak'
"$STOKE" dataset synthetic --out s --count 40 --no-split > /dev/null 2>&1 || exit 1
mkdir "$DATA" || exit 1
mv s/AbdomenCT "$DATA/$CAFE" && mv s/BreastMRI "$DATA/$LINE" && mv s/CXR "$DATA/plain" || exit 1
mv "$DATA/plain/$(ls "$DATA/plain" | sed -n 1p)" "$DATA/plain/"$'\xFF\xFE-1.jpeg'
mv "$DATA/plain/$(ls "$DATA/plain" | sed -n 1p)" "$DATA/plain/"$'x\\x41.jpeg'  # the text \x41, not the byte A
echo "not an image" > "$DATA/plain/"$'notes\xE9\t.txt'                          # left out: left_out.txt names it
echo "not a JPEG" > "$DATA/plain/"$'bad\xE9.jpeg'                               # quarantine.txt names it

ok train "$STOKE" train --data "$DATA" --val "$DATA" --epochs 1 --batch-size 8 --bn-recalibrate 0 --tensorboard \
  --out "$OUT"
has log.train 'run folder: out\xE9'
ok eval "$STOKE" eval --run "$OUT" --data "$DATA"
has log.eval $'\ncaf\\xE9 '
has log.eval $'\nline\\nbreak '
IMAGES=("$DATA/plain/"$'\xFF\xFE-1.jpeg' "$DATA/plain/"$'x\\x41.jpeg' "$DATA/$LINE/$(ls "$DATA/$LINE" | sed -n 1p)")
ok predict "$STOKE" predict --run "$OUT" "${IMAGES[@]}"
ok predict_json "$STOKE" predict --run "$OUT" --json "${IMAGES[@]}"
ok export "$STOKE" export --run "$OUT" -o w.safetensors
ok report "$STOKE" report --run "$OUT" --tensorboard
ok resume "$STOKE" train --resume "$OUT" --data "$DATA" --epochs 2 --quiet
ok resume_done "$STOKE" train --resume "$OUT" --epochs 2
has log.resume_done "is finished"

# A file added since: the resume names it escaped, and only it (train_files.txt read back to the bytes).
cp "${IMAGES[0]}" "$DATA/plain/"$'n\xE9w.jpeg'
"$STOKE" train --resume "$OUT" --epochs 3 > log.resume_added 2>&1
rc=$?
if [ "$rc" != 2 ] || ! grep -qF '1 new file (plain/n\xE9w.jpeg)' log.resume_added || grep -q missing log.resume_added; then
  echo "FAIL: resume after adding a file (exit $rc): $(cat log.resume_added)"
  fail=1
fi
rm "$DATA/plain/"$'n\xE9w.jpeg'

logs=()
for f in log.*; do logs+=(:: utf8 "$f"); done
$CHECK config "$OUT" "$DATA" "$CAFE" "$LINE" plain :: train_files "$OUT" "$DATA" :: left_out "$OUT" :: quarantine "$OUT" :: json "$OUT" \
  :: utf8 "$OUT/report.html" :: predict_text log.predict "${IMAGES[@]}" :: predict_json log.predict_json "${IMAGES[@]}" \
  :: export w.safetensors "$CAFE" "$LINE" plain "${logs[@]}" || fail=1
has "$OUT/report.html" 'out\xE9'

[ "$fail" = 0 ] && echo PASS
exit "$fail"
