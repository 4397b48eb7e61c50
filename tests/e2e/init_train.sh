#!/usr/bin/env bash
# stoke train --init as users call it: a run's exported weights (PyTorch's layout) start a second run, which trains
# from them (at a learning rate too small to move a weight, its export equals the file it started from), normalises
# as ImageNet did unless told otherwise, and records both in config.json; a stoke run folder brings its own
# normalisation; weights of another model are refused naming the tensors; --normalize values are checked and kept.
#
# usage: init_train.sh STOKE_BIN WORK_DIR
set -uo pipefail
STOKE=$1
WORK=$2
fail=0
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
check() {  # DESCRIPTION COMMAND...: the command must succeed
  if ! "${@:2}"; then
    echo "FAIL: $1"
    fail=1
  fi
}
train() { "$STOKE" train --data d/train --epochs 1 --image-size 28 --bn-recalibrate 0 --seed 3 "$@"; }
# The float tensors of a safetensors file other than the running statistics, pure Python: NAME MAX|ABS|DIFF lines.
compare() {
  python3 - "$1" "$2" <<'EOF'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v["dtype"] != "F32" or k.endswith(("running_mean", "running_var")):
            continue
        s, e = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((e - s) // 4), b[8 + n + s:8 + n + e])
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
assert a.keys() == b.keys() and len(a) > 0, (sorted(a), sorted(b))
worst = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
print("largest difference %.3g over %d tensors" % (worst, len(a)))
sys.exit(0 if worst <= 1e-6 else 1)
EOF
}

"$STOKE" dataset synthetic --out d --count 40 > /dev/null || exit 1
train --out a --quiet > a.log 2>&1 || { cat a.log; exit 1; }
"$STOKE" export --run a -o a.safetensors > /dev/null || exit 1

# The exported file starts run b; at lr 1e-30 the weights b ends with are the file's.
train --out b --init a.safetensors --lr 1e-30 > b.log 2>&1 || { cat b.log; exit 1; }
check "b says what it loaded" grep -q "^init: 17 tensors from a.safetensors" b.log
check "b says it normalises as ImageNet did" grep -q "^normalize: imagenet's mean and std" b.log
check "b's config.json records --init" grep -q '"init": "a.safetensors"' b/config.json
check "b's config.json records imagenet" grep -q '"normalize": "imagenet"' b/config.json
check "1-channel data: the mean of ImageNet's three means" \
  python3 -c 'import json,sys; c=json.load(open("b/config.json")); sys.exit(abs(c["normalize_mean"][0]-0.449)>1e-6 or abs(c["normalize_std"][0]-0.226)>1e-6)'
"$STOKE" export --run b -o b.safetensors > /dev/null || exit 1
check "b's weights are a's (exported, imported, exported)" compare a.safetensors b.safetensors

# A run folder as --init: its newest checkpoint, and its own normalisation.
train --out c --init a --quiet > c.log 2>&1 || { cat c.log; exit 1; }
check "c normalises as run a did" python3 -c '
import json, sys
a, c = json.load(open("a/config.json")), json.load(open("c/config.json"))
sys.exit(a["normalize_mean"] != c["normalize_mean"] or a["normalize_std"] != c["normalize_std"])'

# Another model's weights: refused, one line per tensor, at most eight.
train --out e --model resnet18 --init a.safetensors > e.log 2>&1
rc=$?
check "resnet18 from small-cnn weights exits 2 (got $rc)" test "$rc" = 2
check "the refusal names the model" grep -q "a.safetensors does not fit resnet18" e.log
check "the refusal lists at most eight" grep -qE "^  \.\.\. and [0-9]+ more" e.log

# --normalize: explicit values are kept; nonsense and --init-partial alone are usage errors.
train --out f --normalize 0.5,0.25 --quiet > f.log 2>&1 || { cat f.log; exit 1; }
check "--normalize 0.5,0.25 is recorded" python3 -c '
import json, sys
c = json.load(open("f/config.json"))
sys.exit(c["normalize_mean"] != [0.5] or c["normalize_std"] != [0.25] or c["normalize"] != "0.5,0.25")'
train --out g --normalize 0.5 > g.log 2>&1
check "--normalize 0.5 is refused" test $? = 2
check "--normalize 0.5 is explained" grep -q "expected data, imagenet, none, or MEAN,STD" g.log
train --out h --init-partial > h.log 2>&1
check "--init-partial alone is refused" grep -q "init-partial needs --init" h.log

[ $fail = 0 ] && echo "init_train: all checks passed"
exit $fail
