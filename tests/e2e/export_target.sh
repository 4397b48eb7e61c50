#!/usr/bin/env bash
# `stoke export -o PATH` (and `stoke pack -o PATH`) write through a temporary file renamed over PATH, which would
# replace a symbolic link, a FIFO or a device by a plain file. Only a new path or a regular file may be written;
# anything else is refused in one line naming the path and what it is, exit 2, the target untouched.
#
# usage: export_target.sh STOKE_BIN WORK_DIR
set -uo pipefail
STOKE=$1 WORK=$2
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1
fail=0
say_fail() { echo "FAIL: $*"; fail=1; }

"$STOKE" dataset synthetic --count 48 --no-split --out syn > /dev/null || exit 1
"$STOKE" train --data syn --epochs 1 --batch-size 8 --image-size 16 --device cpu --threads 2 --decoders 1 --quiet \
  --out run > train.log 2>&1 || { cat train.log; exit 1; }

echo "keep me" > kept.txt
ln -s kept.txt link.safetensors
mkfifo fifo.safetensors
mkdir folder.safetensors

# refused COMMAND... : exit 2, one line naming the path (the last argument). Under `timeout`: a writer that opened
# a FIFO would wait for a reader for ever.
refused() {
  local target=${*: -1} out rc
  out=$(timeout 60 "$STOKE" "$@" 2>&1)
  rc=$?
  [ "$rc" -eq 2 ] || say_fail "stoke $*: exit $rc, want 2: $out"
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || say_fail "stoke $*: want one line: $out"
  grep -qF -- "$target" <<<"$out" || say_fail "stoke $*: the message does not name $target: $out"
  echo "refused as expected: $out"
}
# A device: /dev/null, except as root, who could replace it (and break the machine) should the guard ever fail: then
# a character device of our own, the same kind (mknod c 1 3 is /dev/null's).
device=/dev/null
if [ "$(id -u)" -eq 0 ]; then
  device=$WORK/null
  mknod "$device" c 1 3 || exit 1
fi
for target in link.safetensors fifo.safetensors folder.safetensors "$device"; do
  refused export --run run -o "$target"
done
refused pack syn -o link.safetensors

[ -L link.safetensors ] && [ "$(readlink link.safetensors)" = kept.txt ] || say_fail "link.safetensors was replaced"
[ "$(cat kept.txt)" = "keep me" ] || say_fail "the link's target was changed"
[ -p fifo.safetensors ] || say_fail "fifo.safetensors is no longer a FIFO"
[ -d folder.safetensors ] || say_fail "folder.safetensors is no longer a folder"
[ -c "$device" ] || say_fail "$device is no longer a character device"
ls ./*.tmp "$device.tmp" 2>/dev/null && say_fail "a temporary file was left"

# A new path, then over the regular file it made: both written.
"$STOKE" export --run run -o new.safetensors > /dev/null || say_fail "export to a new path failed"
[ -f new.safetensors ] && [ -s new.safetensors ] || say_fail "new.safetensors not written"
echo old > regular.safetensors
"$STOKE" export --run run -o regular.safetensors > /dev/null || say_fail "export over a regular file failed"
cmp -s new.safetensors regular.safetensors || say_fail "regular.safetensors does not hold the export"

[ "$fail" -eq 0 ] && echo PASS
exit "$fail"
