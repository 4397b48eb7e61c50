#!/usr/bin/env bash
# The whole GPU check, in three modes (docs/GPU.md says when to use which):
#
#   scripts/gpu-check.sh --prepare        here, on the build machine: build only what the device runs (preset
#                                         "gpu": sm_90, static cudart) and copy it into ONE carried folder,
#                                         build-gpu/carry (binaries in the build tree's layout, their CTest files,
#                                         an MNIST-shaped data set); prints the size with the tree and FAILS above
#                                         40 MiB. STOKE_PREPARE_NO_BUILD=1 assembles from an existing build.
#   scripts/gpu-check.sh OUTDIR           there, in one device call: steps in order of value, each under `timeout`
#                                         inside STOKE_GPU_BUDGET seconds (default 530, under the tool's 10 min)
#   scripts/gpu-check.sh --dry-run OUTDIR here or in CI: every step that needs no device runs, the others are
#                                         recorded "skipped: no device"; the same summary.json shape
#
# Steps (device mode): preflight (the carried binaries start: glibc/GLIBCXX, cuDNN/cuBLASLt resolve), parity
# tests (ctest -L gpu, or the gtest binary when there is no ctest), the first training step with STOKE_CUDA_SYNC=1
# (faults inside cuDNN/cuBLASLt surface at the call that made them), one CLI training run per precision on the
# MNIST-shaped data with CUDA graphs and one without (STOKE_NO_GRAPHS=1; images/s of both), the asynchronous
# step's test with its output (host time per submit), evaluation on the device, the NCCL data-parallel path with
# one process (torchrun-style variables, world 1) against the single-process run (losses within 1e-6), compute-sanitizer memcheck (kernels + one executor step
# with STOKE_ARENA_DEBUG=1, so a write past any arena buffer is seen) and racecheck, kernel benchmarks, then the
# rest (export check, --batch-size auto, diagnose); after the CLI runs, the NCCL path with one process (world 1,
# torchrun-style variables) against the single-process run: losses within 1e-6 relative. Writes OUTDIR/summary.json (device, driver, CUDA runtime, commit, date, test names by outcome,
# every step's status and seconds, ok) and OUTDIR/gpu-check.log. Exit 0 only when ok.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
MAX_CARRY_MIB=40
BINARIES="tests/gpu/test_gpu tests/gpu/test_cuda_host bin/stoke bin/bench_gpu"

# ---- --prepare ----------------------------------------------------------------------------------------------------
if [ "${1:-}" = "--prepare" ]; then
  set -e
  BUILD=${STOKE_GPU_BUILD:-build-gpu}
  CARRY=build-gpu/carry
  if [ "${STOKE_PREPARE_NO_BUILD:-0}" != 1 ]; then
    cmake --preset gpu
    cmake --build --preset gpu --target test_gpu test_cuda_host bench_gpu stoke
  fi
  BUILD_ABS=$(cd "$BUILD" && pwd -P)
  rm -rf "$CARRY" && mkdir -p "$CARRY"
  for b in $BINARIES; do
    [ -x "$BUILD/$b" ] || { echo "prepare: $BUILD/$b is missing (build it first)" >&2; exit 1; }
    mkdir -p "$CARRY/$(dirname "$b")" && cp "$BUILD/$b" "$CARRY/$b"
  done
  # Google Benchmark may be a shared library next to bench_gpu ($ORIGIN rpath).
  for so in "$BUILD"/bin/*.so*; do [ -e "$so" ] && cp -P "$so" "$CARRY/bin/"; done
  # CTest files of the GPU tests, with the build path replaced by a marker the device run substitutes.
  for f in "$BUILD"/CTestTestfile.cmake "$BUILD"/tests/CTestTestfile.cmake "$BUILD"/tests/gpu/CTestTestfile.cmake \
           "$BUILD"/tests/gpu/*_include.cmake "$BUILD"/tests/gpu/*_tests.cmake; do
    [ -e "$f" ] || continue
    rel=${f#"$BUILD"/}
    mkdir -p "$CARRY/$(dirname "$rel")"
    sed -e "s|$BUILD_ABS|@STOKE_CARRY@|g" -e "s|$ROOT|@STOKE_SRC@|g" "$f" > "$CARRY/$rel"
  done
  # Only the GPU tests' folder is listed at the top (the other test folders did not travel).
  if [ -f "$CARRY/CTestTestfile.cmake" ]; then
    grep -v '^subdirs' "$CARRY/CTestTestfile.cmake" > "$CARRY/ct.tmp" && echo 'subdirs("tests/gpu")' >> "$CARRY/ct.tmp"
    mv "$CARRY/ct.tmp" "$CARRY/CTestTestfile.cmake"
  fi
  # MNIST-shaped data for the CLI runs (64x64 gray, trained at --image-size 28): made here, the device is offline.
  "$CARRY/bin/stoke" dataset synthetic --kind mednist-like --count "${STOKE_GPU_DATA_COUNT:-3000}" --split \
    --out "$CARRY/data" > /dev/null
  git rev-parse HEAD > "$CARRY/stoke-commit.txt" 2> /dev/null || echo unknown > "$CARRY/stoke-commit.txt"
  if git status --porcelain --untracked-files=no | grep -q .; then echo "dirty" >> "$CARRY/stoke-commit.txt"; fi
  carry_kib=$(du -sk "$CARRY" | cut -f1)
  tree_kib=$(( $(git ls-files -z | xargs -0 du -cb 2> /dev/null | tail -1 | cut -f1) / 1024 ))
  total_mib=$(( (carry_kib + tree_kib + 1023) / 1024 ))
  echo "carry: $CARRY $(( carry_kib / 1024 )) MiB + tree $(( tree_kib / 1024 )) MiB = $total_mib MiB (limit $MAX_CARRY_MIB MiB)"
  if [ "$total_mib" -gt "$MAX_CARRY_MIB" ]; then
    echo "prepare: FAILED, $total_mib MiB is over $MAX_CARRY_MIB MiB; largest files:" >&2
    du -ak "$CARRY" | sort -rn | head -8 >&2
    exit 1
  fi
  echo "ready: run(command=\"scripts/gpu-check.sh \$OUT\", carry=[\"$CARRY\"], timeout_s=600)"
  exit 0
fi

# ---- run / dry run ---------------------------------------------------------------------------------------------------
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUTDIR=${1:?usage: scripts/gpu-check.sh --prepare | OUTDIR | --dry-run OUTDIR}
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd -P)
LOG="$OUTDIR/gpu-check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
STEPS="$OUTDIR/steps.tsv"
: > "$STEPS"
T0=$(date +%s)
BUDGET=${STOKE_GPU_BUDGET:-530}
# The binaries: the carried folder, else a build tree (STOKE_GPU_BUILD; the dry run in CI uses its own build).
B=${STOKE_GPU_BUILD:-build-gpu/carry}
[ -d "$B" ] || B=build
B=$(cd "$B" 2> /dev/null && pwd -P || echo "$B")
DATA=$B/data
export B ROOT OUTDIR DATA BINARIES DRY

say() { printf '\n=== %s  [t+%ds]\n' "$*" "$(( $(date +%s) - T0 ))"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$STEPS"; }  # name, exit, seconds, status
# step NAME MAX_SECONDS NEEDS_DEVICE CMD...: runs CMD under a timeout within what the budget has left, and records
# it. A device step in the dry run, or any step once the budget is spent, is recorded and not run.
step() {
  local name=$1 max=$2 dev=$3 left t rc=0 status
  shift 3
  if [ "$DRY" = 1 ] && [ "$dev" = device ]; then
    record "$name" -1 0 "skipped: no device"
    echo "--- $name: skipped: no device"
    return 0
  fi
  left=$(( BUDGET - ($(date +%s) - T0) - 20 ))
  if [ "$left" -lt 10 ]; then
    record "$name" -1 0 "not run: time budget spent"
    echo "--- $name: NOT RUN, the time budget is spent"
    return 125
  fi
  [ "$max" -gt "$left" ] && max=$left
  say "$name (at most ${max}s): $*"
  t=$(date +%s)
  timeout -k 10 "$max" "$@" || rc=$?
  case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
  record "$name" "$rc" "$(( $(date +%s) - t ))" "$status"
  echo "--- $name: $status (exit $rc) in $(( $(date +%s) - t ))s"
  [ "$status" = ok ] || echo "!!! $name FAILED: see above" >&2
  return $rc
}

# ---- preflight: the carried binaries start here, and say exactly what is missing when they do not -------------------
# (Functions run by `step` go through `bash -c`, since `timeout` runs commands: they are exported below.)
preflight() {
  local fail=0 b out
  echo "host: $(uname -srm), $(nproc) cores, glibc $(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
  echo "binaries: $B"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  for b in $BINARIES; do
    if [ ! -x "$B/$b" ]; then echo "MISSING binary: $B/$b"; fail=1; continue; fi
    out=$(ldd "$B/$b" 2>&1)
    echo "$out" | grep -E "cudnn|cublas" | sed "s|^|  $b: |"
    if echo "$out" | grep -q "not found"; then
      echo "$out" | grep "not found" | sed "s|^|  MISSING for $b: |"; fail=1
    fi
    # Starting it is the real check: the loader names a missing GLIBC_x / GLIBCXX_x version or library exactly.
    out=$(timeout 20 "$B/$b" --help 2>&1 < /dev/null | head -5)
    if echo "$out" | grep -qE "version .GLIB|error while loading|cannot open shared object"; then
      echo "  $b DOES NOT START: $out"; fail=1
    else
      echo "  $b starts"
    fi
  done
  return $fail
}
train() {  # train NAME PRECISION [extra args]: one CLI run on the MNIST-shaped data
  local name=$1 prec=$2 rc=0
  shift 2
  "$B/bin/stoke" train --device cuda --precision "$prec" --data "$DATA/train" --val "$DATA/val" --image-size 28 \
    --model small-cnn --epochs 1 --batch-size 64 --out "$OUTDIR/runs/$name" --overwrite --quiet "$@" \
    > "$OUTDIR/$name.log" 2>&1 || rc=$?
  tail -5 "$OUTDIR/$name.log"
  [ -f "$OUTDIR/runs/$name/summary.json" ] && cp "$OUTDIR/runs/$name/summary.json" "$OUTDIR/$name-summary.json"
  return $rc
}
# The NCCL path with one process: the launcher's variables (torchrun style, world 1) make a CUDA run go through
# the NCCL communicator and the bucketed gradient all-reduce, exactly as each rank of a job does. Not --quiet: the
# world line must name NCCL as the transport.
train_nccl() {  # train_nccl NAME PRECISION [extra args]
  local name=$1 prec=$2 rc=0
  shift 2
  env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
    "$B/bin/stoke" train --device cuda --precision "$prec" --data "$DATA/train" --val "$DATA/val" --image-size 28 \
    --model small-cnn --epochs 1 --batch-size 64 --out "$OUTDIR/runs/$name" --overwrite "$@" \
    > "$OUTDIR/$name.log" 2>&1 || rc=$?
  tail -5 "$OUTDIR/$name.log"
  [ -f "$OUTDIR/runs/$name/summary.json" ] && cp "$OUTDIR/runs/$name/summary.json" "$OUTDIR/$name-summary.json"
  grep -m1 "^world:" "$OUTDIR/$name.log" || { echo "no world line"; rc=1; }
  grep -q "^world:.*transport NCCL" "$OUTDIR/$name.log" || { echo "the world line does not name NCCL"; rc=1; }
  return $rc
}
# The NCCL run against the single-process one (both --deterministic): a one-rank all-reduce is a copy and 1/world
# is 1, so the update is the same arithmetic; only the reported loss is (loss x n) / n, within an ulp of it, and
# the --sync-bn statistics (mean as (n x mean) / n, variance by the pairwise formula) within a double's ulp.
# Tolerance: every logged loss within 1e-6 relative, the final weights within compare_weights.py's 1e-6.
nccl_parity() {  # nccl_parity REF_RUN NCCL_RUN
  python3 - "$1" "$2" << 'PY' || return 1
import json, sys
def losses(d):
    rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
    return [r["loss"] for r in rows if r.get("kind") == "train"] + \
           [r[k] for r in rows if r.get("kind") == "epoch" for k in ("train_loss", "val_loss") if k in r]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
print("single process:", a)
print("NCCL, world 1: ", b)
assert a and len(a) == len(b), "different numbers of logged losses"
worst = max(abs(x - y) / max(abs(x), 1e-30) for x, y in zip(a, b))
print("largest relative difference %.3g (tolerance 1e-6)" % worst)
assert worst <= 1e-6
PY
  local ck
  ck() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")/model.safetensors"; }
  python3 "$ROOT/tests/dist/compare_weights.py" "$(ck "$1")" "$(ck "$2")" 1e-6
}
export -f preflight train train_nccl nccl_parity

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUTDIR/nvidia-smi.txt" 2>&1 || true
cat "$OUTDIR/nvidia-smi.txt"
COMMIT=$(head -1 "$B/stoke-commit.txt" 2> /dev/null || git rev-parse HEAD 2> /dev/null || echo unknown)
echo "commit: $COMMIT"
if [ -e "$B/CTestTestfile.cmake" ] && grep -rlq "@STOKE_CARRY@" "$B" --include='*.cmake' 2> /dev/null; then
  find "$B" -name '*.cmake' -exec sed -i -e "s|@STOKE_CARRY@|$B|g" -e "s|@STOKE_SRC@|$ROOT|g" {} +
  echo "CTest files pointed at $B"
fi
# cuDNN / cuBLASLt for every later step (the dry run uses the build machine's own, found by the binaries' paths).
if [ "$DRY" = 0 ]; then
  # shellcheck source=scripts/gpu-libs.sh
  source "$ROOT/scripts/gpu-libs.sh" || echo "!!! gpu-libs.sh failed: libraries may be missing" >&2
fi
step preflight 60 host bash -c preflight
"$B/tests/gpu/test_cuda_host" --gtest_filter='CudaRuntime.*' 2>&1 | grep -E "^device|^no device" > "$OUTDIR/device.txt" || true

# 1. host-side unit tests of the backend, then the parity tests (the most valuable minutes).
step host-tests 60 host "$B/tests/gpu/test_cuda_host" --gtest_output="json:$OUTDIR/test_cuda_host.json" --gtest_brief=1
if command -v ctest > /dev/null && [ -f "$B/CTestTestfile.cmake" ]; then
  step parity 240 device ctest --test-dir "$B" -L gpu -j 8 --timeout 200 --output-on-failure \
    --output-junit "$OUTDIR/ctest-gpu.xml"
else
  step parity 240 device "$B/tests/gpu/test_gpu" --gtest_output="json:$OUTDIR/test_gpu.json"
fi

# 2. the CLI on the device: the first step with every launch checked synchronously (a fault inside cuDNN or
# cuBLASLt then surfaces at the call that caused it), then one run per precision.
if [ -d "$DATA/train" ] || [ "$DRY" = 1 ]; then
  step train-first-step-sync 60 device env STOKE_CUDA_SYNC=1 bash -c 'train "$@"' _ train-sync bf16 --limit-train 64 \
    --limit-val 64
  for p in bf16 fp16 fp32; do step "train-$p" 60 device bash -c 'train "$@"' _ "train-$p" "$p"; done
  # The same runs with every step launched eagerly instead of replayed as a captured CUDA graph: the summary
  # sets images/s side by side (training.<precision> vs training.<precision>-nographs). STOKE_NO_GRAPHS is the
  # backend's switch until the CLI has --no-graphs.
  for p in bf16 fp16 fp32; do
    step "train-$p-nographs" 60 device env STOKE_NO_GRAPHS=1 bash -c 'train "$@"' _ "train-$p-nographs" "$p"
  done
  # --cache gpu: the training set uploaded once and every batch gathered on the device by sample id (no pixels
  # cross PCIe per step); images/s as training.bf16-cachegpu next to training.bf16, and that summary's
  # decoded_cache says "held by the backend" (or "host memory" when it fell back to --cache decoded).
  step train-bf16-cachegpu 60 device bash -c 'train "$@"' _ train-bf16-cachegpu bf16 --cache gpu
  # The asynchronous step against the synchronous executor again, this time with its output kept: the host time
  # per submit with and without graphs is printed there (the parity step's ctest shows output only on failure).
  step async-step 60 device "$B/tests/gpu/test_gpu" --gtest_filter='GpuAsyncStep.*' --gtest_brief=0
  # Evaluation through the backend: the bf16 run's model evaluated on the GPU (fp32) and on the CPU must agree.
  step eval-cuda 60 device bash -c '"$1" eval --device cuda --run "$2" --data "$3" > "$4/eval-cuda.txt" &&
    "$1" eval --device cpu --run "$2" --data "$3" > "$4/eval-cpu.txt" &&
    diff <(grep -m1 accuracy "$4/eval-cuda.txt") <(grep -m1 accuracy "$4/eval-cpu.txt")' _ \
    "$B/bin/stoke" "$OUTDIR/runs/train-bf16" "$DATA/val" "$OUTDIR"
  # Data parallel through NCCL on this one GPU (world 1), against the single-process run of the same settings.
  step train-det-fp16 60 device bash -c 'train "$@"' _ train-det-fp16 fp16 --deterministic
  # --sync-bn too: its statistics sums go through NCCL (doubles, on the comm stream) inside the captured forward and
  # backward; in a world of 1 they are the process's own, so the parity below still holds.
  step train-nccl-fp16 60 device bash -c 'train_nccl "$@"' _ train-nccl-fp16 fp16 --deterministic --sync-bn
  step nccl-parity 30 device bash -c 'nccl_parity "$@"' _ "$OUTDIR/runs/train-det-fp16" "$OUTDIR/runs/train-nccl-fp16"
else
  record train -1 0 "failed: no data set at $DATA (run --prepare)"
fi

# 3. compute-sanitizer: memcheck over the kernels and one executor step, every arena buffer its own allocation.
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null || echo "")
if [ -n "$SAN" ] || [ "$DRY" = 1 ]; then
  step memcheck 150 device env STOKE_ARENA_DEBUG=1 "${SAN:-compute-sanitizer}" --tool memcheck --error-exitcode 3 \
    --print-limit 30 "$B/tests/gpu/test_gpu" --gtest_filter='GpuOps/*:GpuExecutor/bf16.EveryOp*:GpuGather.*' --gtest_brief=1
  step racecheck 90 device "${SAN:-compute-sanitizer}" --tool racecheck --error-exitcode 3 --print-limit 30 \
    "$B/tests/gpu/test_gpu" --gtest_filter='GpuOps/bf16.*' --gtest_brief=1
else
  record memcheck -1 0 "failed: compute-sanitizer not found"
fi

# 4. kernel benchmarks.
step bench 90 device "$B/bin/bench_gpu" --benchmark_min_time=0.1 --benchmark_out="$OUTDIR/bench_gpu.json" \
  --benchmark_out_format=json

# 5. the rest, while time is left.
if timeout 30 python3 -c "import torch, torchvision" 2> /dev/null && [ -d "$OUTDIR/runs/train-bf16" ]; then
  step export-check 90 device python3 bench/pytorch/check_export.py --stoke "$B/bin/stoke" --run "$OUTDIR/runs/train-bf16" \
    --data "$DATA/val" --per-class 4
else
  record export-check -1 0 "skipped: no torch+torchvision here, or no bf16 run"
fi
step batch-auto 90 device "$B/bin/stoke" train --device cuda --data "$DATA/train" --epochs 1 --batch-size auto \
  --model resnet18 --limit-train 2048 --out "$OUTDIR/runs/auto" --overwrite --quiet
step diagnose 60 device "$B/bin/stoke" diagnose --device cuda --data "$DATA/train" --batch-size 128 --seconds 3

# ---- summary.json ---------------------------------------------------------------------------------------------------
say "summary"
COMMIT="$COMMIT" OUTDIR="$OUTDIR" DRY="$DRY" ELAPSED=$(( $(date +%s) - T0 )) python3 - <<'PY'
import json, os, datetime, xml.etree.ElementTree as ET
out = os.environ["OUTDIR"]
def read(p):
    try:
        return open(os.path.join(out, p)).read().strip()
    except OSError:
        return ""
smi = [f.strip() for f in (read("nvidia-smi.txt").splitlines() or [""])[0].split(",")]
has_smi = len(smi) >= 2 and "failed" not in smi[0].lower() and "not found" not in smi[0].lower()
steps = []
for line in read("steps.tsv").splitlines():
    name, rc, secs, status = line.split("\t")
    steps.append({"name": name, "status": status, "seconds": int(secs), "exit": int(rc)})
tests = {"passed": [], "failed": [], "skipped": []}
def gtest_json(path):
    try:
        doc = json.load(open(path))
    except (OSError, ValueError):
        return
    for suite in doc.get("testsuites", []):
        for t in suite.get("testsuite", []):
            name = suite["name"] + "." + t["name"]
            kind = "failed" if t.get("failures") else "skipped" if t.get("result") == "SKIPPED" else "passed"
            tests[kind].append(name)
gtest_json(os.path.join(out, "test_cuda_host.json"))
gtest_json(os.path.join(out, "test_gpu.json"))
if os.path.exists(os.path.join(out, "ctest-gpu.xml")):
    for tc in ET.parse(os.path.join(out, "ctest-gpu.xml")).getroot().iter("testcase"):
        st = tc.get("status", "")
        kind = "failed" if tc.find("failure") is not None or st == "fail" else \
               "skipped" if tc.find("skipped") is not None or st in ("notrun", "disabled") else "passed"
        tests[kind].append(tc.get("name"))
dev = read("device.txt")  # "device: <name>, sm_90, ..., driver 13.0, runtime 13.0" (DeviceInfo::describe)
runtime = dev.rsplit("runtime ", 1)[1].split()[0] if "runtime " in dev else "unknown"
if not has_smi and "driver " in dev:
    smi, has_smi = [dev.split(",")[0].replace("device: ", ""), dev.rsplit("driver ", 1)[1].split(",")[0]], True
training = {}
for p in ("bf16", "fp16", "fp32", "bf16-nographs", "fp16-nographs", "fp32-nographs", "bf16-cachegpu", "det-fp16", "nccl-fp16"):
    try:
        s = json.load(open(os.path.join(out, "train-%s-summary.json" % p)))
        training[p] = {k: s[k] for k in s if isinstance(s[k], (int, float, str)) and len(str(s[k])) < 80}
    except (OSError, ValueError):
        training[p] = None
dry = os.environ["DRY"] == "1"
summary = {
    "mode": "dry-run" if dry else "device",
    "device": smi[0] if has_smi else "none",
    "driver": smi[1] if has_smi else "none",
    "cuda_runtime": runtime,
    "device_line": dev,
    "commit": os.environ["COMMIT"],
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "tests": {"passed": len(tests["passed"]), "failed": len(tests["failed"]), "skipped": len(tests["skipped"]),
              "passed_names": tests["passed"], "failed_names": tests["failed"], "skipped_names": tests["skipped"]},
    "steps": steps,
    "training": training,
    "seconds": int(os.environ["ELAPSED"]),
}
# ok: every step that ran passed, nothing failed, and (on a device) the parity tests passed something.
ran_ok = all(s["status"] in ("ok",) or s["status"].startswith("skipped") for s in steps)
summary["ok"] = bool(ran_ok and not tests["failed"] and (dry or len(tests["passed"]) > 0))
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(json.dumps({k: summary[k] for k in ("mode", "device", "driver", "cuda_runtime", "commit", "ok")}))
for s in steps:
    print("  %-24s %-32s %4ds" % (s["name"], s["status"], s["seconds"]))
if tests["failed"]:
    print("FAILED tests:", ", ".join(tests["failed"]))
PY
echo "gpu-check done in $(( $(date +%s) - T0 ))s: $OUTDIR/summary.json, $LOG"
python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUTDIR/summary.json'))['ok'] else 1)"
