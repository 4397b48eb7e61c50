#!/usr/bin/env bash
# Data-parallel training end to end, through mpirun: dist_test.sh CASE STOKE_BINARY
#   parity    2 processes reach the weights of 1 process at the same global batch (within float-summation
#             tolerance), and the same bytes again on a repeat, streaming, from the decoded cache and with an
#             augmentation recipe on the decoder threads; the run folder holds what a 1-process run's holds;
#             validation shared out over the ranks reports the whole set once, as 1 process does
#   kill      a rank killed (SIGKILL) or hung (SIGSTOP) mid-run: the survivor exits non-zero within 60 s, the
#             job's output names the lost rank, and the survivor names the newest checkpoint on disk (none is
#             written after the loss) and the command that continues from it
#   resume    a run interrupted on 2 processes resumes on 1, and one interrupted on 1 resumes on 2, reaching the
#             uninterrupted run's weights
#   mismatch  ranks started with different settings or different --init weights, or a global batch that does not
#             divide, are refused at start;
#             --batch-size auto agrees on one global batch
#   signal    Ctrl-C on mpirun (SIGINT: Open MPI sends SIGTERM to every rank odls_base_sigkill_timeout seconds
#             later, then SIGKILL after as many again; 15 here) and
#             SIGUSR1 to mpirun (forwarded as it is): every rank stops at the same step, rank 0 writes a checkpoint
#             in the middle of an epoch (no periodic one could be there), and a 1-process resume finishes the run
#   syncbn    a model with batch norm: 2 processes with --sync-bn reach the 1-process weights, without it they do not
#   mix       --mixup/--cutmix: 2 processes pair within their slices, so they differ from 1 process; a repeat does not
#   comm      a 2-process run's metrics lines and summary carry the all-reduce's share (> 0) and its bytes (the
#             parameters and the 4 step sums, 4 bytes each), the verdict names the all-reduce; a 1-process run's
#             carry none of it; diagnose measures the all-reduce under mpirun and says it does not apply alone
# Exit 77 (a visible skip in CTest) without mpirun or without MPI in the binary.
set -uo pipefail
case_name=$1
stoke=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
compare="python3 $here/compare_weights.py"
# Open MPI keeps some allocations to the end: LeakSanitizer (the asan build) would call them leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"

if ! command -v mpirun > /dev/null; then
  echo "SKIPPED: mpirun is not installed (scripts/setup.sh installs openmpi-bin)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
mpi() { mpirun --allow-run-as-root --oversubscribe --bind-to none "$@"; }
fail() {
  echo "FAILED: $*"
  exit 1
}

"$stoke" dataset synthetic --kind mednist-like --count 96 --out data --no-split > /dev/null || fail "no data set"
# 96 images, global batch 16: 6 steps per epoch. No batch norm: its statistics are per process (as in PyTorch
# DDP), so only a model without it reaches the same weights on any number of processes (or one with --sync-bn:
# case syncbn). --device cpu: these are the CPU backend over MPI, also on a machine with a GPU.
base=(--data data --model small-cnn-nobn --image-size 16 --threads 1 --decoders 1 --schedule constant --lr 0.05 --seed 3
      --augment flip --quiet --device cpu)
common=("${base[@]}" --batch-size 16)
if mpi -np 2 "$stoke" train "${common[@]}" --epochs 1 --out probe > probe.log 2>&1; then :; else
  if grep -q "built without MPI" probe.log; then
    echo "SKIPPED: this stoke was built without MPI"
    exit 77
  fi
  cat probe.log
  fail "a 2-process run failed"
fi
latest() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"; }
final() { echo "$(latest "$1")/model.safetensors"; }
# Float summation: the ranks sum their slices' gradients apart and then together, so results match to rounding.
tol=1e-5

case "$case_name" in
parity)
  # 40 validation images: rounds of 16 (8 per rank), so in the last round rank 0 has 8 and rank 1 only padding.
  "$stoke" dataset synthetic --kind mednist-like --count 40 --seed 9 --out vdata --no-split > /dev/null || fail "no val set"
  # recipe: --augment monai with a shift, on the decoder threads: each rank's decoders warp their slice's samples,
  # drawn per sample id, so 2 processes see what 1 does.
  for variant in files decoded recipe; do
    cache=$variant
    args=("${common[@]}")
    if [ "$variant" = recipe ]; then
      cache=files
      args=("${common[@]/#flip/monai}" --translate 0.1 --augment-on decoders)
    fi
    "$stoke" train "${args[@]}" --val vdata --epochs 2 --cache $cache --out one-$variant || fail "1 process ($variant)"
    mpi -np 2 "$stoke" train "${args[@]}" --val vdata --epochs 2 --cache $cache --out two-$variant || fail "2 processes ($variant)"
    mpi -np 2 "$stoke" train "${args[@]}" --val vdata --epochs 2 --cache $cache --out again-$variant || fail "2 processes again ($variant)"
    echo "$variant: 1 process vs 2:"
    $compare "$(final one-$variant)" "$(final two-$variant)" $tol || fail "2 processes differ from 1 ($variant)"
    echo "$variant: 2 processes, twice:"
    $compare "$(final two-$variant)" "$(final again-$variant)" 0 || fail "2-process runs differ from each other ($variant)"
    [ "$(cd one-$variant && find . -type f | sort)" = "$(cd two-$variant && find . -type f | sort)" ] ||
      fail "the run folders hold different files: $(diff <(cd one-$variant && find . -type f | sort) <(cd two-$variant && find . -type f | sort))"
    python3 - one-$variant two-$variant <<'PY' || fail "the step losses differ"
import json, sys
rows = [[json.loads(l) for l in open(f"{d}/metrics.jsonl")] for d in sys.argv[1:]]
a, b = ([r["train_loss"] for r in x if r["kind"] == "epoch"] for x in rows)
assert len(a) == len(b) == 2 and all(abs(x - y) < 1e-4 for x, y in zip(a, b)), (a, b)
print("epoch losses", a, b)
# Validation is shared out (each rank its slice, gathered): the whole set counted once, the same matrix and loss.
va, vb = ([r["val_report"] for r in x if r["kind"] == "epoch"] for x in rows)
for x, y in zip(va, vb):
    assert x["count"] == y["count"] == 40, (x["count"], y["count"])
    assert x["confusion"] == y["confusion"], (x["confusion"], y["confusion"])
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * (1 + abs(x["loss"])), (x["loss"], y["loss"])
print("validation: 40 images on 1 and on 2 processes, losses", [x["loss"] for x in va], [y["loss"] for y in vb])
PY
    grep -q '"world": 2' two-$variant/summary.json || fail "summary.json does not say world 2"
  done
  ;;
kill)
  for sig in KILL STOP; do
    rm -rf long
    start=$(date +%s)
    STOKE_DIST_TIMEOUT=5 mpi -np 2 "$stoke" train "${common[@]}" --epochs 100000 --checkpoint-every 5 --out long > $sig.log 2>&1 &
    job=$!
    for _ in $(seq 300); do [ -e long/checkpoints/latest ] && break; sleep 0.1; done
    [ -e long/checkpoints/latest ] || { kill $job; cat $sig.log; fail "no checkpoint after 30 s"; }
    victim=""
    # rank 1: the stoke process of this job (its command line) whose environment says so
    for p in $(pgrep -f -- "--out long"); do
      [ "$(cat /proc/$p/comm 2> /dev/null)" = stoke ] || continue
      tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && victim=$p
    done
    [ -n "$victim" ] || { kill $job; fail "rank 1's process not found under mpirun"; }
    kill -$sig "$victim"
    ( sleep 90; kill -9 $job ) > /dev/null 2>&1 &  # a guard, should the job never end (not holding the output)
    guard=$!
    wait $job
    rc=$?
    pkill -P $guard sleep 2> /dev/null
    kill $guard 2> /dev/null
    elapsed=$(($(date +%s) - start))
    echo "--- SIG$sig to rank 1: exit $rc after ${elapsed} s"
    cat $sig.log
    [ $rc -ne 0 ] || fail "the job exited 0 after rank 1 was lost"
    [ $elapsed -le 60 ] || fail "the job took ${elapsed} s to stop"
    # What the survivor says is true: no checkpoint follows the loss, and the one it names is the newest on disk
    # (or the one it was writing, when it says so), with the command that continues from it.
    newest=$(cat long/checkpoints/latest)
    if [ $sig = STOP ]; then
      # mpirun does not notice a hung rank: the survivor's own watchdog must.
      said=$(grep "rank 0/2: failed: lost rank 1" $sig.log) || fail "the survivor did not name the lost rank"
    else
      grep -q "rank 1" $sig.log || fail "nothing names the lost rank"
      said=$(grep "rank 0/2: stopped by a signal" $sig.log) || fail "the survivor said nothing"
      grep -q "If a rank was lost .*none can be written" <<< "$said" || fail "the survivor promised a checkpoint"
    fi
    named=$(grep -o "the last checkpoint is step-[0-9]*\(, or step-[0-9]* if its write\)\?" <<< "$said" |
      grep -o "step-[0-9]*")
    grep -qx "$newest" <<< "$named" || fail "the survivor named ${named:-no checkpoint}, the newest is $newest"
    grep -q "(in long/checkpoints); continue with stoke train --resume long" <<< "$said" ||
      fail "the survivor did not say how to continue"
  done
  ;;
resume)
  "$stoke" train "${common[@]}" --epochs 2 --out ref || fail "the reference run"
  # 2 -> 1: interrupted at step 4 (mid-epoch), continued alone.
  mpi -np 2 "$stoke" train "${common[@]}" --epochs 2 --interrupt-after-steps 4 --out a || fail "2 processes, interrupted"
  grep -q '"cursor": 4' "$(latest a)/state.json" || fail "the interrupted run's checkpoint is not at cursor 4"
  "$stoke" train --resume a --quiet --device cpu || fail "resumed on 1 process"
  echo "2 processes, resumed on 1, vs 1 throughout:"
  $compare "$(final ref)" "$(final a)" $tol || fail "2 -> 1 differs"
  # 1 -> 2: interrupted at step 8 (epoch 2), continued on two.
  "$stoke" train "${common[@]}" --epochs 2 --interrupt-after-steps 8 --out b || fail "1 process, interrupted"
  mpi -np 2 "$stoke" train --resume b --quiet --device cpu || fail "resumed on 2 processes"
  echo "1 process, resumed on 2, vs 1 throughout:"
  $compare "$(final ref)" "$(final b)" $tol || fail "1 -> 2 differs"
  ;;
mismatch)
  mpi -np 1 "$stoke" train "${common[@]}" --epochs 1 --out m : -np 1 "$stoke" train "${common[@]}" --epochs 1 --label-smoothing 0.1 --out m > m.log 2>&1
  rc=$?
  cat m.log
  [ $rc -eq 2 ] || fail "mismatched ranks: exit $rc, expected 2"
  grep -q "rank 1/2: error: this rank's settings differ from rank 0's: label_smoothing: rank 0 has 0.0, rank 1 has 0.1" m.log || fail "rank 1 did not name the setting"
  grep -q "rank 0/2: error: the settings of rank 1 differ" m.log || fail "rank 0 did not name rank 1"
  # --init: every rank reads the file itself, and the start's checksum of the weights compares what they read. Rank 1
  # gets a copy with one weight changed (a corrupt or other file): refused on both, naming both files.
  "$stoke" export --run probe -o p.safetensors > /dev/null || fail "no export"
  python3 - <<'PY' || fail "could not change a weight"
import json, struct
b = bytearray(open("p.safetensors", "rb").read())
n = struct.unpack("<Q", b[:8])[0]
head = json.loads(b[8:8 + n])
s, _ = head[min(k for k in head if k.endswith(".weight"))]["data_offsets"]
(v,) = struct.unpack_from("<f", b, 8 + n + s)
struct.pack_into("<f", b, 8 + n + s, v + 0.5)
open("q.safetensors", "wb").write(b)
PY
  mpi -np 1 "$stoke" train "${common[@]}" --epochs 1 --init p.safetensors --out i : -np 1 "$stoke" train "${common[@]}" --epochs 1 --init q.safetensors --out i > i.log 2>&1
  rc=$?
  cat i.log
  [ $rc -eq 2 ] || fail "ranks with different --init files: exit $rc, expected 2"
  grep -q "rank 1/2: error: this rank's settings differ from rank 0's: --init: q.safetensors here holds other weights than rank 0's p.safetensors" i.log || fail "rank 1 did not name the --init files"
  grep -q "rank 0/2: error: the settings of rank 1 differ" i.log || fail "rank 0 did not name rank 1"
  [ ! -e i/checkpoints ] || fail "a refused start wrote checkpoints"
  mpi -np 2 "$stoke" train "${base[@]}" --epochs 1 --batch-size 15 --out n > n.log 2>&1
  rc=$?
  cat n.log
  [ $rc -eq 2 ] || fail "a global batch of 15 on 2 processes: exit $rc, expected 2"
  grep -q "must divide evenly over the 2 processes" n.log || fail "no clear message for the batch"
  # --batch-size auto agrees too: each process fits its slice, the smallest decides, the global batch is world
  # times it (here the 16-steps-per-epoch cap: 96 images / 16 / 2 = 3 per process).
  mpi -np 2 "$stoke" train "${base[@]}" --epochs 1 --batch-size auto --out auto > auto.log 2>&1 || { cat auto.log; fail "--batch-size auto on 2 processes"; }
  python3 - auto <<'PY' || fail "--batch-size auto on 2 processes chose wrongly"
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
print(c["batch_size"], "|", c["batch_size_auto"])
assert c["batch_size"] == 6, c["batch_size"]
assert "3 per process x 2 processes = 6 global" in c["batch_size_auto"], c["batch_size_auto"]
PY
  # auto on one rank and a number on the other: refused on both before any other collective, naming them.
  mpi -np 1 "$stoke" train "${base[@]}" --epochs 1 --batch-size auto --out ma : -np 1 "$stoke" train "${base[@]}" --epochs 1 --batch-size 16 --out ma > ma.log 2>&1
  rc=$?
  cat ma.log
  [ $rc -eq 2 ] || fail "auto on one rank and 16 on the other: exit $rc, expected 2"
  [ "$(grep -c "batch-size auto on rank(s) 0 but a number on rank(s) 1" ma.log)" = 2 ] || fail "not both ranks named the mix"
  ;;
signal)
  "$stoke" dataset synthetic --kind mednist-like --count 1600 --out big --no-split > /dev/null || fail "no data set"
  sigkill=15
  for sig in INT USR1; do
    # The stop lands on whichever step the signal meets. On an epoch's last step (1 in 100) the checkpoint it leaves
    # is that epoch's own (cursor 0), which shows nothing of the stop's: then the signal is sent to a new run (3 tries).
    for try in 1 2 3; do
      rm -rf s$sig s$sig.log  # the log too: the wait below must not read the last try's
      # mpirun itself in the background (not through mpi(), whose subshell would take the signal). Ctrl-C: Open MPI
      # 4.1 sends SIGCONT, waits odls_base_sigkill_timeout seconds, sends SIGTERM, waits as long again (less what
      # is left when the ranks exit) and sends SIGKILL; 1 by default is too short on a loaded machine for the step
      # and the checkpoint. The job takes about twice that: the guard below waits longer (with 30 the job ended
      # a second or two before its 60 s guard killed mpirun, and the ranks' last lines with it).
      # A constant, moderate learning rate: the resume below ends the run at the next epoch, and a one-cycle schedule
      # stretched over 1000 epochs would jump from its warm-up to its peak there (and this model has no batch norm).
      mpirun --allow-run-as-root --oversubscribe --bind-to none --mca odls_base_sigkill_timeout $sigkill -np 2 "$stoke" train --data big --model small-cnn-nobn --image-size 16 --threads 1 --decoders 1 --seed 3 \
        --batch-size 16 --epochs 1000 --schedule constant --lr 0.02 --out s$sig > s$sig.log 2>&1 &
      job=$!
      for _ in $(seq 300); do grep -q "^epoch 1/" s$sig.log 2> /dev/null && break; sleep 0.1; done
      sleep 0.3
      kill -$sig $job
      ( sleep $((2 * sigkill + 30)); kill -9 $job ) > /dev/null 2>&1 &
      guard=$!
      wait $job
      rc=$?
      kill $guard 2> /dev/null
      echo "--- SIG$sig to mpirun: exit $rc"
      tail -5 s$sig.log
      # SIGUSR1 reaches the ranks as it is and they exit 0; after SIGINT Open MPI reports the job as signalled.
      [ $sig = INT ] || [ $rc -eq 0 ] || fail "SIGUSR1: mpirun exited $rc"
      grep -q "rank 0/2: stopped by a signal" s$sig.log || fail "rank 0 said nothing of the signal"
      grep -q "interrupted at step" s$sig.log || fail "SIG$sig: the job did not stop at a step with a checkpoint"
      state="$(latest s$sig)/state.json"
      stopped=$(grep -o "interrupted at step [0-9]*" s$sig.log | head -1 | grep -o "[0-9]*$")
      python3 - "$state" "$stopped" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("checkpoint at step", s["step"], "cursor", s["cursor"], "; the job said it stopped at step", sys.argv[2])
if s["cursor"] == 0 and str(s["step"]) == sys.argv[2]:
    sys.exit(3)  # the stop fell on the epoch's last step
assert s["cursor"] > 0, s["cursor"]  # mid-epoch: only the agreed stop writes a checkpoint there
assert str(s["step"]) == sys.argv[2], (s["step"], sys.argv[2])  # and it is the step the job stopped at
PY
      verdict=$?
      if [ $verdict = 3 ] && [ $try -lt 3 ]; then
        echo "SIG$sig: the stop fell on an epoch's last step; again"
        continue
      fi
      [ $verdict = 0 ] || fail "SIG$sig: the checkpoint is not the interrupted step's"
      break
    done
    epoch=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['epoch'] + 1)" "$state")
    "$stoke" train --resume s$sig --epochs "$epoch" --quiet --device cpu || fail "SIG$sig: the checkpoint did not resume"
  done
  ;;
syncbn)
  # A model with batch norm: with --sync-bn every process normalises with the global batch's statistics, so 2
  # processes reach the weights (and running statistics) of 1 process; without it each uses its own half's, and
  # they do not. --cache decoded: the MNIST-like step is the same either way, and faster.
  bn=("${base[@]}" --batch-size 16 --epochs 1 --cache decoded)
  bn=("${bn[@]/small-cnn-nobn/small-cnn}")
  "$stoke" train "${bn[@]}" --out one || fail "1 process"
  mpi -np 2 "$stoke" train "${bn[@]}" --sync-bn --out sync > sync.log 2>&1 || { cat sync.log; fail "2 processes, --sync-bn"; }
  mpi -np 2 "$stoke" train "${bn[@]}" --out apart || fail "2 processes without --sync-bn"
  echo "--sync-bn, 2 processes vs 1:"
  $compare "$(final one)" "$(final sync)" $tol || fail "--sync-bn on 2 processes differs from 1 process"
  echo "without --sync-bn, 2 processes vs 1 (must differ):"
  if $compare "$(final one)" "$(final apart)" $tol; then fail "per-process statistics gave the 1-process weights: the comparison proves nothing"; fi
  grep -q '"sync_bn": true' sync/config.json || fail "config.json does not record --sync-bn"
  # The batch-norm sums are communication too: counted with the step's (doubles, 4C + 2 a layer and step).
  python3 - sync apart <<'PY' || fail "the --sync-bn run does not count its batch-norm sums"
import json, sys
s, a = (json.load(open(d + "/summary.json")) for d in sys.argv[1:])
grads = (s["params"] + 4) * 4
bn = 8 * sum(4 * c + 2 for c in (16, 32, 64))  # small-cnn's three batch norms
print("allreduce_bytes with --sync-bn", s["allreduce_bytes"], "without", a["allreduce_bytes"])
assert a["allreduce_bytes"] == grads and s["allreduce_bytes"] == grads + bn, (s["allreduce_bytes"], grads, bn)
PY
  ;;
mix)
  # --mixup: every rank draws the global batch's lam (keyed by seed, epoch, batch index) but pairs the samples of its
  # own slice, as timm under DDP: 2 processes are not 1 process (docs/AUGMENTATION.md), yet a repeat is the same bytes.
  mix=("${common[@]}" --epochs 1 --mixup 1 --cutmix 1)
  "$stoke" train "${mix[@]}" --out one || fail "1 process"
  mpi -np 2 "$stoke" train "${mix[@]}" --out two || fail "2 processes"
  mpi -np 2 "$stoke" train "${mix[@]}" --out again || fail "2 processes again"
  echo "--mixup, 2 processes twice:"
  $compare "$(final two)" "$(final again)" 0 || fail "2-process mixing runs differ from each other"
  echo "--mixup, 2 processes vs 1 (must differ: the pairs are within each process's slice):"
  if $compare "$(final one)" "$(final two)" $tol; then fail "2 processes mixed as 1 process: the pairs are not per slice"; fi
  grep -q '"mixup": 1' two/config.json || fail "config.json does not record --mixup"
  ;;
comm)
  # --cache decoded: no input wait, so the verdict is about the step (compute or communication) on any machine load
  "$stoke" train "${common[@]}" --epochs 2 --cache decoded --out one || fail "1 process"
  mpi -np 2 "$stoke" train "${common[@]}" --epochs 2 --cache decoded --out two || fail "2 processes"
  python3 - one two <<'PY' || fail "the communication share is not as expected"
import json, sys
one, two = sys.argv[1:]
rows = lambda d: [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
s1, s2 = (json.load(open(f"{d}/summary.json")) for d in (one, two))
fields = ("comm_s", "comm_share", "allreduce_bytes")
for r in rows(one) + [s1]:
    assert not any(f in r for f in fields), ("a 1-process run reports an all-reduce", r)
want = (s2["params"] + 4) * 4  # gradients and the step sums (loss x n, correct, n, stop), float32
lines = [r for r in rows(two) if r["kind"] in ("train", "epoch")] + [s2]
assert len(lines) >= 5, lines
for r in lines:
    assert r.get("allreduce_bytes") == want, (r.get("allreduce_bytes"), want, r)
    assert 0 < r["comm_share"] <= 1 and r["comm_s"] > 0, r
assert "all-reduce" in s2["verdict"], s2["verdict"]
print("2 processes: allreduce_bytes", want, "comm_share", [round(r["comm_share"], 3) for r in lines])
print("verdict:", s2["verdict"])
PY
  diag=(diagnose --data data --model small-cnn-nobn --image-size 16 --batch-size 8 --threads 1 --decoders 1 --seconds 0.2 --device cpu)
  mpi -np 2 "$stoke" "${diag[@]}" > d2.log 2>&1 || { cat d2.log; fail "diagnose on 2 processes"; }
  cat d2.log
  [ "$(grep -c '^stage' d2.log)" = 1 ] || fail "diagnose: not rank 0 alone printed the table"
  grep -Eq '^\(e\) all-reduce of .* over 2 processes \(MPI.*\): [0-9.]+ ms, [0-9]+% of a step' d2.log ||
    fail "diagnose on 2 processes does not show the all-reduce"
  "$stoke" "${diag[@]}" > d1.log 2>&1 || { cat d1.log; fail "diagnose on 1 process"; }
  grep -q '^(e) all-reduce .*n/a (one process' d1.log || { cat d1.log; fail "diagnose alone does not say the all-reduce does not apply"; }
  ;;
*)
  fail "unknown case $case_name"
  ;;
esac
echo "PASSED: $case_name"
