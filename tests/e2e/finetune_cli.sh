#!/usr/bin/env bash
# Fine-tuning as users drive it, end to end through the CLI:
# - --epochs 0 with --init: no step; the imported weights (here under a DataParallel state_dict's "module." names)
#   are evaluated on --val and written as a run that eval, predict, export and report read; its export equals the
#   --init file bit for bit (names mapped), and eval's numbers are the ones train printed. Without --init it is refused.
# - --freeze backbone: the export's backbone (weights and running statistics) is the --init file's bit for bit while
#   the classifier moved; --freeze-bn: the running statistics are the file's bit for bit while the weights moved.
# - the one line saying what trains, and config.json recording it.
#
# usage: finetune_cli.sh STOKE_BIN WORK_DIR
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
train() { "$STOKE" train --data d/train --image-size 28 --seed 3 --schedule constant "$@"; }
# same|moved FILE_A FILE_B PATTERN: the F32 tensors whose name (without a "module." prefix) matches PATTERN are all
# bit-identical in both files (same), or each differs (moved); num_batches_tracked (a step count) is not compared.
tensors() {
  python3 - "$@" <<'EOF'
import json, re, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    out = {}
    for k, v in json.loads(b[8:8 + n]).items():
        if k == "__metadata__" or k.endswith("num_batches_tracked"):
            continue
        s, e = v["data_offsets"]
        out[k[len("module."):] if k.startswith("module.") else k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out
mode, a, b, pattern = sys.argv[1], tensors(sys.argv[2]), tensors(sys.argv[3]), re.compile(sys.argv[4])
assert a.keys() == b.keys(), (sorted(a), sorted(b))
names = [k for k in sorted(a) if pattern.search(k)]
assert names, "no tensor matches " + sys.argv[4]
bad = [k for k in names if (a[k] == b[k]) != (mode == "same")]
print("%s: %d tensors %s, %s" % (sys.argv[4], len(names), mode, ("not: " + ", ".join(bad)) if bad else "all"))
sys.exit(1 if bad else 0)
EOF
}
json_is() {  # FILE PYTHON-EXPRESSION over c (the parsed file)
  python3 -c "import json, sys; c = json.load(open('$1')); sys.exit(0 if ($2) else 1)"
}

"$STOKE" dataset synthetic --out d --count 40 > /dev/null || exit 1
train --out a --epochs 1 > a.log 2>&1 || { cat a.log; exit 1; }
"$STOKE" export --run a -o a.safetensors > /dev/null || exit 1
# The same weights as a DataParallel/DDP state_dict saves them: every name behind "module.".
python3 - <<'EOF' || exit 1
import json, struct
b = open("a.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
head = {(k if k == "__metadata__" else "module." + k): v for k, v in json.loads(b[8:8 + n]).items()}
h = json.dumps(head).encode()
h += b" " * (-len(h) % 8)
open("m.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + b[8 + n:])
EOF

# ---- --epochs 0: evaluate the imported weights, write a run ----
train --out r --init m.safetensors --epochs 0 --val d/val > r.log 2>&1
rc=$?
check "--epochs 0 --init exits 0 (got $rc)" test "$rc" = 0
check "r says it takes no step" grep -q "^model: small-cnn.*--epochs 0: evaluated as imported, no training step" r.log
check "r's summary: no step" json_is r/summary.json 'c["steps"] == 0 and c["epochs"] == 0 and "final_train_loss" not in c'
check "r's config.json records --epochs 0 and --init" json_is r/config.json 'c["epochs"] == 0 and c["init"] == "m.safetensors"'
"$STOKE" export --run r -o r.safetensors > /dev/null
check "export of an --epochs 0 run works" test -s r.safetensors
check "r's weights and statistics are m's bit for bit (names mapped)" tensors same m.safetensors r.safetensors .
"$STOKE" eval --run r --data d/val > e.log 2>&1
check "eval of r works" test $? = 0
printed=$(sed -n 's/^evaluation only (--epochs 0): //p' r.log)
evaluated=$(grep "images evaluated" e.log)
check "train printed an accuracy" test -n "$printed"
check "eval's numbers are train's ('$evaluated' vs '$printed')" test "$evaluated" = "$printed"
check "summary.json's accuracy is the printed one" python3 -c "
import json, re, sys
s = json.load(open('r/summary.json'))
printed = float(re.search(r'accuracy ([0-9.]+)%', '$printed').group(1))
sys.exit(abs(100 * s['final_val_acc'] - printed) > 0.005)"
"$STOKE" predict --run r d/val/*/* > p.log 2>&1
check "predict on r: one line per image" test "$(grep -c '%' p.log)" = "$(ls d/val/*/* | wc -l)"
rm -f r/report.html
"$STOKE" report --run r > /dev/null 2>&1
check "report of r writes report.html" test -s r/report.html
# The evaluated run goes on training from the imported weights when resumed with more epochs.
"$STOKE" train --resume r --epochs 1 --quiet > rr.log 2>&1
check "--resume of an --epochs 0 run trains (exit $?)" json_is r/summary.json 'c["steps"] == 1 and c["epochs"] == 1'
train --out z --epochs 0 > z.log 2>&1
rc=$?
check "--epochs 0 without --init exits 2 (got $rc)" test "$rc" = 2
check "--epochs 0 without --init: one line naming --init" \
  test "$(cat z.log)" = "stoke: error: --epochs 0 evaluates imported weights without training: it needs --init FILE|RUN"
check "the refused run wrote nothing" test ! -e z

# ---- --freeze backbone: the backbone as loaded, the classifier moved (bn recalibration left at its default) ----
train --out f --init a.safetensors --epochs 1 --freeze backbone > f.log 2>&1 || { cat f.log; exit 1; }
"$STOKE" export --run f -o f.safetensors > /dev/null || exit 1
check "--freeze backbone: backbone weights and statistics bit-identical" tensors same a.safetensors f.safetensors '^features\.'
check "--freeze backbone: the classifier moved" tensors moved a.safetensors f.safetensors '^classifier\.'
head=$(python3 -c '
import json, struct
b = open("a.safetensors", "rb").read(); h = json.loads(b[8:8 + struct.unpack("<Q", b[:8])[0]])
size = lambda k: __import__("math").prod(h[k]["shape"])
print("{:,} of {:,}".format(size("classifier.weight") + size("classifier.bias"),
      sum(size(k) for k in h if k != "__metadata__" and not k.endswith(("running_mean", "running_var", "num_batches_tracked")))))')
check "f says what trains ($head)" grep -qx "fine-tuning: backbone frozen (only classifier trains: $head parameters), BN statistics frozen (3 of 3 batch norms in eval mode)" f.log
"$STOKE" export --run f --checkpoint initial -o i.safetensors > i.log 2>&1
rc=$?
check "export --checkpoint initial of an --init run exits 2 (got $rc)" test "$rc" = 2
check "... saying it started from the file" grep -q "started from --init a.safetensors: its initial weights are that file's" i.log
check "... and writes nothing" test ! -e i.safetensors
check "f's config.json records --freeze backbone" json_is f/config.json 'c["freeze"] == "backbone" and not c["freeze_bn"]'

# ---- --freeze-bn: running statistics as loaded, every weight trains (the backbone at 0.1 x the lr) ----
train --out g --init a.safetensors --epochs 1 --freeze-bn --lr-backbone-mult 0.1 > g.log 2>&1 || { cat g.log; exit 1; }
"$STOKE" export --run g -o g.safetensors > /dev/null || exit 1
check "--freeze-bn: running statistics bit-identical" tensors same a.safetensors g.safetensors 'running_(mean|var)$'
check "--freeze-bn: the weights moved (gamma and beta too)" tensors moved a.safetensors g.safetensors '(weight|bias)$'
check "g says what trains" grep -qx \
  "fine-tuning: BN statistics frozen (3 of 3 batch norms in eval mode; gamma and beta train), backbone lr x0.1" g.log
check "g's config.json records them" json_is g/config.json 'c["freeze"] == "none" and c["freeze_bn"] and abs(c["lr_backbone_mult"] - 0.1) < 1e-7'
check "an ordinary run says nothing about fine-tuning" bash -c '! grep -q "^fine-tuning" a.log'

[ $fail = 0 ] && echo "finetune_cli: all checks passed"
exit $fail
