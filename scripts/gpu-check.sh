#!/usr/bin/env bash
# The whole GPU check in one command, for the lent GPU machine (see docs/GPU.md):
#
#   scripts/gpu-check.sh --prepare        here, on the build machine: build build-gpu (preset "gpu": Release, sm_90,
#                                         static cudart), record the commit, print what will travel (du -sh)
#   scripts/gpu-check.sh OUTDIR           there: GPU tests (ctest -L gpu), compute-sanitizer memcheck + racecheck,
#                                         kernel microbenchmarks, a short training through the CLI (with a
#                                         --profile-steps window), the PyTorch export check, --batch-size auto
#                                         and an nsys capture when the tools are there; writes
#                                         OUTDIR/summary.json and OUTDIR/gpu-check.log
#
# Uses the carried build-gpu (STOKE_GPU_BUILD overrides) or builds it in place when it is missing. Every step runs
# under `timeout` inside a total budget (STOKE_GPU_BUDGET seconds, default 530), so the script always ends, well
# inside the device tool's 10-minute limit. Exit status: 0 when every test passed and the sanitizers found nothing,
# 1 otherwise (the summary says which step).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
BUILD=${STOKE_GPU_BUILD:-build-gpu}

if [ "${1:-}" = "--prepare" ]; then
  set -e
  cmake --preset gpu
  cmake --build --preset gpu --target test_gpu test_cuda_host test_synthetic_digits bench_gpu stoke
  git rev-parse HEAD > "$BUILD/stoke-commit.txt" 2>/dev/null || true
  if git status --porcelain --untracked-files=no | grep -q .; then echo "dirty" >> "$BUILD/stoke-commit.txt"; fi
  echo "build-gpu ready: $(du -sh "$BUILD" | cut -f1) (the device tool carries at most 64 MiB with the tree)"
  exit 0
fi

OUTDIR=${1:?usage: scripts/gpu-check.sh OUTDIR   (or --prepare on the build machine)}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd -P)
LOG="$OUTDIR/gpu-check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
STEPS="$OUTDIR/steps.tsv"
: > "$STEPS"
T0=$(date +%s)
BUDGET=${STOKE_GPU_BUDGET:-530}

say() { printf '\n=== %s  [t+%ds]\n' "$*" "$(( $(date +%s) - T0 ))"; }
remaining() { echo $(( BUDGET - ($(date +%s) - T0) )); }
# step NAME MAX_SECONDS CMD...: runs CMD under a timeout no longer than what the budget has left; records
# name, exit status and seconds in steps.tsv. Status 124/137 = timed out, 125 = not run (no budget left).
step() {
  local name=$1 max=$2
  shift 2
  local left
  left=$(( $(remaining) - 20 ))
  if [ "$left" -lt 10 ]; then
    echo "skip $name: the time budget is spent"
    printf '%s\t125\t0\n' "$name" >> "$STEPS"
    return 125
  fi
  [ "$max" -gt "$left" ] && max=$left
  say "$name (at most ${max}s): $*"
  local t rc=0
  t=$(date +%s)
  timeout -k 10 "$max" "$@" || rc=$?
  printf '%s\t%d\t%d\n' "$name" "$rc" "$(( $(date +%s) - t ))" >> "$STEPS"
  echo "--- $name: exit $rc in $(( $(date +%s) - t ))s"
  return $rc
}

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | tee "$OUTDIR/nvidia-smi.txt" || true
echo "host: $(uname -srm), $(nproc) cores; tree: $ROOT"

# ---- the build: carried (CMake trees are not relocatable: make the path it was configured at point here) -------
if [ -f "$BUILD/CMakeCache.txt" ]; then
  SRC_AT_BUILD=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  if [ -n "$SRC_AT_BUILD" ] && [ "$SRC_AT_BUILD" != "$ROOT" ]; then
    if [ ! -e "$SRC_AT_BUILD" ]; then
      mkdir -p "$(dirname "$SRC_AT_BUILD")" && ln -s "$ROOT" "$SRC_AT_BUILD" &&
        echo "linked $SRC_AT_BUILD -> $ROOT (the carried build's configure path)"
    else
      echo "warning: the build was configured at $SRC_AT_BUILD, which exists here and is not this tree"
    fi
  fi
fi
if [ ! -x "$BUILD/tests/gpu/test_gpu" ] || [ ! -x "$BUILD/bin/bench_gpu" ]; then
  echo "no usable $BUILD: building in place (needs the build machine's packages; see docs/GPU.md)"
  step build 420 bash -c "cmake --preset gpu && cmake --build --preset gpu -j $(nproc) --target test_gpu test_cuda_host test_synthetic_digits bench_gpu stoke" || true
fi

# ---- cuDNN / cuBLAS: the libraries the binaries load -------------------------------------------------------------
say "libraries"
source "$ROOT/scripts/gpu-libs.sh"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldd "$BUILD/tests/gpu/test_gpu" 2>&1 | grep -E "cudnn|cublas|not found" || true
COMMIT=$(git rev-parse HEAD 2>/dev/null || head -1 "$BUILD/stoke-commit.txt" 2>/dev/null || echo unknown)
export STOKE_COMMIT=$COMMIT
echo "commit: $COMMIT"

# ---- 1. GPU tests ---------------------------------------------------------------------------------------------
"$BUILD/tests/gpu/test_cuda_host" --gtest_filter='CudaRuntime.*' 2>&1 | grep -E "^device|^no device" | tee "$OUTDIR/device.txt" || true
if command -v ctest > /dev/null; then
  step tests 300 ctest --test-dir "$BUILD" -L gpu -j 4 --timeout 240 --output-on-failure \
    --output-junit "$OUTDIR/ctest-gpu.xml" || true
else
  echo "no ctest here: running the GPU test binary directly"
  step tests 300 "$BUILD/tests/gpu/test_gpu" --gtest_output="json:$OUTDIR/test_gpu.json" || true
fi

# ---- 2. compute-sanitizer on the kernels and one whole executor step (bounded) ---------------------------------
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
  step memcheck 150 "$SAN" --tool memcheck --error-exitcode 3 --print-limit 30 \
    "$BUILD/tests/gpu/test_gpu" --gtest_filter='GpuOps/*:GpuExecutor/bf16.EveryOp*' --gtest_brief=1 || true
  step racecheck 100 "$SAN" --tool racecheck --error-exitcode 3 --print-limit 30 \
    "$BUILD/tests/gpu/test_gpu" --gtest_filter='GpuOps/bf16.*:GpuOps/fp32.SoftmaxCrossEntropy' --gtest_brief=1 || true
else
  echo "compute-sanitizer not found: skipped"
fi

# ---- 3. kernel microbenchmarks ---------------------------------------------------------------------------------
step bench 120 "$BUILD/bin/bench_gpu" --benchmark_min_time=0.1 --benchmark_out="$OUTDIR/bench_gpu.json" \
  --benchmark_out_format=json || true

# ---- 4. a short training through the CLI, when the trainer takes --device cuda --------------------------------
TRAIN_STATUS="not run"
STOKE_BIN="$BUILD/bin/stoke"
if [ -x "$STOKE_BIN" ]; then
  DATA=$(mktemp -d /tmp/stoke-gpu-data.XXXX)
  if [ -n "${STOKE_MNIST_DIR:-}" ] && [ -d "$STOKE_MNIST_DIR/train" ] && [ -d "$STOKE_MNIST_DIR/test" ]; then
    TRAIN_DIR=$STOKE_MNIST_DIR/train VAL_DIR=$STOKE_MNIST_DIR/test
  else
    # No network there: the CLI's own offline data set (64x64 gray, 6 classes).
    step synth-data 60 "$STOKE_BIN" dataset synthetic --out "$DATA/syn" --count 6000 --split || true
    TRAIN_DIR=$DATA/syn/train VAL_DIR=$DATA/syn/val
  fi
  if [ -d "$TRAIN_DIR" ]; then
    rc=0
    # --profile-steps exercises cudaProfilerStart/Stop (harmless without a profiler attached).
    step train 90 "$STOKE_BIN" train --device cuda --data "$TRAIN_DIR" --val "$VAL_DIR" --epochs 1 --batch-size 128 \
      --profile-steps 10:12 --out "$DATA/run" --overwrite > "$OUTDIR/train.log" 2>&1 || rc=$?
    cat "$OUTDIR/train.log"
    if [ "$rc" -eq 0 ]; then
      TRAIN_STATUS="ok"
    elif grep -qiE "not in yet|CPU backend only" "$OUTDIR/train.log"; then
      TRAIN_STATUS="skipped: the trainer has no CUDA path yet"
    else
      TRAIN_STATUS="failed (exit $rc)"
    fi
    cp "$DATA/run/summary.json" "$OUTDIR/train-summary.json" 2>/dev/null || true
  fi
  echo "training: $TRAIN_STATUS"

  # ---- 5. the GPU-trained weights in PyTorch: strict load_state_dict, probabilities against stoke predict -------
  if [ "$TRAIN_STATUS" = ok ] && timeout 60 python3 -c "import torch, torchvision" 2> /dev/null; then
    step export-check 90 python3 bench/pytorch/check_export.py --stoke "$STOKE_BIN" --run "$DATA/run" \
      --data "$VAL_DIR" --per-class 4 > "$OUTDIR/export-check.log" 2>&1 || true
    cat "$OUTDIR/export-check.log"
  else
    echo "export check: not run (training did not pass, or this Python has no torch + torchvision)"
  fi

  # ---- 6. --batch-size auto on the device: what it plans, and that the arena it plans fits ----------------------
  if [ "$TRAIN_STATUS" = ok ]; then
    step batch-auto 90 "$STOKE_BIN" train --device cuda --data "$TRAIN_DIR" --epochs 1 --batch-size auto --model resnet18 \
      --limit-train 4096 --out "$DATA/run-auto" --overwrite > "$OUTDIR/batch-auto.log" 2>&1 || true
    grep -E "batch size auto|summary|error" "$OUTDIR/batch-auto.log" || tail -5 "$OUTDIR/batch-auto.log"
  fi

  # ---- 6b. stoke diagnose on the device: decode capacity, H2D (pinned and pageable), compute, full pipeline --------
  if [ "$TRAIN_STATUS" = ok ]; then
    step diagnose 60 "$STOKE_BIN" diagnose --device cuda --data "$TRAIN_DIR" --batch-size 128 --seconds 3 \
      > "$OUTDIR/diagnose.log" 2>&1 || true
    cat "$OUTDIR/diagnose.log"
  fi

  # ---- 7. an Nsight Systems capture of a --profile-steps window, when nsys is installed ---------------------------
  NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2> /dev/null | head -1 || true)
  if [ "$TRAIN_STATUS" = ok ] && [ -n "$NSYS" ]; then
    step nsys 120 "$NSYS" profile -t cuda,nvtx,cudnn,cublas --capture-range=cudaProfilerApi --capture-range-end=stop \
      -o "$OUTDIR/stoke-window" --force-overwrite true "$STOKE_BIN" train --device cuda --data "$TRAIN_DIR" --epochs 1 \
      --batch-size 128 --profile-steps 20:24 --quiet --out "$DATA/run-nsys" --overwrite > "$OUTDIR/nsys.log" 2>&1 || true
    if [ -f "$OUTDIR/stoke-window.nsys-rep" ]; then
      timeout 60 "$NSYS" stats --report nvtx_sum,cuda_gpu_kern_sum --format csv -o "$OUTDIR/stoke-window" \
        "$OUTDIR/stoke-window.nsys-rep" >> "$OUTDIR/nsys.log" 2>&1 || true
      rm -f "$OUTDIR/stoke-window.nsys-rep" "$OUTDIR/stoke-window.sqlite"  # large; the CSV summaries stay
    fi
    tail -20 "$OUTDIR/nsys.log"
  else
    echo "nsys: not run (training did not pass, or no nsys on this machine)"
  fi
  rm -rf "$DATA"
fi

# ---- summary.json ----------------------------------------------------------------------------------------------
say "summary"
TRAIN_STATUS="$TRAIN_STATUS" COMMIT="$COMMIT" OUTDIR="$OUTDIR" ELAPSED=$(( $(date +%s) - T0 )) python3 - <<'PY'
import json, os, datetime, xml.etree.ElementTree as ET
out = os.environ["OUTDIR"]
def read(p, default=""):
    try:
        return open(os.path.join(out, p)).read().strip()
    except OSError:
        return default
smi = read("nvidia-smi.txt").splitlines()
fields = [f.strip() for f in smi[0].split(",")] if smi else []
steps = {}
for line in read("steps.tsv").splitlines():
    name, rc, secs = line.split("\t")
    steps[name] = {"exit": int(rc), "seconds": int(secs),
                   "status": {0: "ok", 124: "timeout", 137: "timeout", 125: "not run"}.get(int(rc), "failed")}
tests = {"passed": 0, "failed": 0, "skipped": 0, "failed_names": []}
if os.path.exists(os.path.join(out, "ctest-gpu.xml")):
    for tc in ET.parse(os.path.join(out, "ctest-gpu.xml")).getroot().iter("testcase"):
        if tc.find("failure") is not None or tc.get("status") == "fail":
            tests["failed"] += 1
            tests["failed_names"].append(tc.get("name"))
        elif tc.find("skipped") is not None or tc.get("status") in ("notrun", "disabled"):
            tests["skipped"] += 1
        else:
            tests["passed"] += 1
elif os.path.exists(os.path.join(out, "test_gpu.json")):
    for suite in json.load(open(os.path.join(out, "test_gpu.json"))).get("testsuites", []):
        for t in suite.get("testsuite", []):
            if t.get("failures"):
                tests["failed"] += 1
                tests["failed_names"].append(suite["name"] + "." + t["name"])
            elif t.get("result") == "SKIPPED":
                tests["skipped"] += 1
            else:
                tests["passed"] += 1
bench = {"context": {}, "results": []}
if os.path.exists(os.path.join(out, "bench_gpu.json")):
    b = json.load(open(os.path.join(out, "bench_gpu.json")))
    bench["context"] = {k: v for k, v in b.get("context", {}).items()
                        if k in ("gpu", "sm", "driver", "cuda_runtime", "l2_mib", "d2d_gbps", "date", "host_name")}
    for r in b.get("benchmarks", []):
        bench["results"].append({"name": r.get("name"), "time_us": r.get("real_time"), "MB": r.get("MB"),
                                 "GB_per_s": r.get("GB/s"), "of_d2d": r.get("of_d2d")})
ctx = bench["context"]
summary = {
    "device": fields[0] if fields else ctx.get("gpu", "unknown"),
    "driver": fields[1] if len(fields) > 1 else ctx.get("driver", "unknown"),
    "cuda_runtime": ctx.get("cuda_runtime", "unknown"),
    "device_line": read("device.txt"),
    "commit": os.environ["COMMIT"],
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "tests": tests,
    "sanitizer": {k: steps.get(k, {"status": "not run"}) for k in ("memcheck", "racecheck")},
    "benchmarks": bench,
    "training": {"status": os.environ["TRAIN_STATUS"]},
    "export_check": steps.get("export-check", {"status": "not run"}),
    "batch_size_auto": next((l.strip() for l in read("batch-auto.log").splitlines() if "batch size auto" in l), "not run"),
    "nsys": steps.get("nsys", {"status": "not run"}),
    "diagnose": [l for l in read("diagnose.log").splitlines() if l.startswith(("(", "verdict", "recommendation"))],
    "steps": steps,
    "seconds": int(os.environ["ELAPSED"]),
}
try:
    summary["training"]["summary"] = json.load(open(os.path.join(out, "train-summary.json")))
except (OSError, ValueError):
    pass
ok = (tests["failed"] == 0 and tests["passed"] > 0
      and all(steps.get(k, {"exit": 0})["exit"] in (0, 125) for k in ("memcheck", "racecheck")))
summary["ok"] = ok
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(json.dumps({k: summary[k] for k in ("device", "driver", "cuda_runtime", "commit", "tests", "sanitizer", "training", "ok")}, indent=2))
for r in bench["results"]:
    print("  %-40s %10.1f us  %8.1f GB/s  %5.2f of D2D" % (r["name"], r["time_us"] or 0, r["GB_per_s"] or 0, r["of_d2d"] or 0))
PY
echo "gpu-check done in $(( $(date +%s) - T0 ))s: $OUTDIR/summary.json, $LOG"
python3 -c "import json,sys; sys.exit(0 if json.load(open('$OUTDIR/summary.json'))['ok'] else 1)"
