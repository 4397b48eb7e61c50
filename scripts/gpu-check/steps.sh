# shellcheck shell=bash
# The steps of scripts/gpu-check.sh, in order of value, and the functions they run (exported: `step` runs each
# under `timeout`, which runs commands, so a function goes through `bash -c`). Each line of run_steps is
#   step NAME CALL PLANNED_S MAX_S host|device COMMAND...
# Call 1 (the core) must finish within 6 minutes with the machine's start: the dry run sums its planned seconds.

preflight() {  # the carried binaries start here, and say exactly what is missing when they do not
  local fail=0 b out
  echo "host: $(uname -srm), $(nproc) cores, glibc $(ldd --version 2>&1 | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
  echo "binaries: $B"
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  for b in $BINARIES; do
    if [ ! -x "$B/$b" ]; then echo "MISSING binary: $B/$b"; fail=1; continue; fi
    check_libs "$B/$b" "$B" || fail=1
    out=$(ldd "$B/$b" 2>&1)
    echo "$out" | grep -E "cudnn|cublas" | sed "s|^|  $b: |"
    if [ "$DRY" = 0 ] && echo "$out" | grep -q "not found"; then
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
  ctest_timeouts || fail=1
  return $fail
}
# Every carried test has a CTest timeout of at most 60 s (ctest's --timeout flag does not lower one a test has):
# a hung test is then killed alone, and the parity step's report is still written.
ctest_timeouts() {
  command -v ctest > /dev/null || { echo "  no ctest here: parity runs the gtest binary"; return 0; }
  ctest --test-dir "$CTEST_DIR" --show-only=json-v1 2> /dev/null | python3 -c '
import json, sys
tests = json.load(sys.stdin).get("tests", [])
limits = {t["name"]: next((p["value"] for p in t.get("properties", []) if p["name"] == "TIMEOUT"), None) for t in tests}
bad = sorted(n for n, v in limits.items() if v is None or float(v) > 60)
print("  %d carried tests, timeouts %s s" % (len(tests), sorted(set(limits.values()), key=str)))
if not tests or bad:
    sys.exit("  tests without a timeout of at most 60 s: %s" % (", ".join(bad[:10]) or "no tests found"))
print("  every carried test has a timeout of at most 60 s")'
}
make_data() {  # MNIST-shaped data for the CLI runs (64x64 gray, trained at --image-size 28), made by the carried stoke
  "$B/bin/stoke" dataset synthetic --kind mednist-like --count "${STOKE_GPU_DATA_COUNT:-3000}" --split --out "$DATA" \
    > "$LOGS/data.log" 2>&1 || { cat "$LOGS/data.log"; return 1; }
  ls "$DATA"
}
train() {  # train NAME PRECISION [extra args]: one CLI run on the MNIST-shaped data
  local name=$1 prec=$2 rc=0
  shift 2
  "$B/bin/stoke" train --device cuda --precision "$prec" --data "$DATA/train" --val "$DATA/val" --image-size 28 \
    --model small-cnn --epochs 1 --batch-size 64 --out "$RUNS/$name" --overwrite --quiet "$@" \
    > "$LOGS/$name.log" 2>&1 || rc=$?
  tail -5 "$LOGS/$name.log"
  return $rc
}
# --cache gpu --augment monai: the training set held on the device, every batch gathered by sample id and put
# through the fused augment kernel (rotation, zoom, flip; cuda::augment_transform_normalize) inside the step. The
# run must learn (the last logged loss below the first, validation far above the 1-in-6 chance), record its recipe,
# report the cache as held by the CUDA backend, and its trace must hold the augment op's range.
train_augment() {  # train_augment NAME PRECISION [extra args]
  local name=$1 rc=0
  train "$@" --cache gpu --augment monai --log-every 5 --trace "$RUNS/$1-trace.json" || rc=$?
  [ "$rc" = 0 ] || return $rc
  python3 - "$RUNS/$name" "$RUNS/$name-trace.json" << 'PY'
import json, sys
run, trace = sys.argv[1], sys.argv[2]
config, summary = json.load(open(run + "/config.json")), json.load(open(run + "/summary.json"))
rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
losses = [r["loss"] for r in rows if r.get("kind") == "train"]
t = json.load(open(trace))
spans = sum(e.get("name") == "augment and normalize" for e in (t["traceEvents"] if isinstance(t, dict) else t))
print("augment %s, recipe rotate %s zoom %s hflip %s; backend %s, cache %s; %d augment spans in the trace" % (
    config.get("augment"), config["augment_recipe"]["rotate_deg"], config["augment_recipe"]["zoom"],
    config["augment_recipe"]["hflip_p"], summary["backend"], summary.get("decoded_cache"), spans))
print("train loss %.4f -> %.4f over %d logged steps, validation accuracy %.4f (chance 0.167)" % (
    losses[0], losses[-1], len(losses), summary["final_val_acc"]))
assert config.get("augment") == "monai" and config["augment_recipe"]["rotate_deg"] == [-15.0, 15.0], "recipe"
assert summary["backend"] == "cuda" and summary.get("decoded_cache") == "held by the backend", "not --cache gpu"
assert spans > 0, "the trace has no 'augment and normalize' range: the fused op did not run"
assert len(losses) >= 2 and losses[-1] < losses[0], "the training loss did not fall"
assert summary["final_val_acc"] >= 0.5, "validation accuracy near chance"
PY
}
# --augment-on decoders on the CUDA backend: the decoder threads warp each sample into the slot (the geometry in
# their resize) and the captured step applies only the noise (the op with an identity geometry). It must learn and
# record where it augmented.
train_decoders() {  # train_decoders NAME PRECISION [extra args]
  local name=$1 rc=0
  train "$@" --cache none --augment monai --noise 0.02 --augment-on decoders --log-every 5 || rc=$?
  [ "$rc" = 0 ] || return $rc
  python3 - "$RUNS/$name" << 'PY'
import json, sys
run = sys.argv[1]
config, summary = json.load(open(run + "/config.json")), json.load(open(run + "/summary.json"))
losses = [json.loads(l)["loss"] for l in open(run + "/metrics.jsonl") if json.loads(l).get("kind") == "train"]
print("augment_on %s, noise %s; train loss %.4f -> %.4f, validation accuracy %.4f (chance 0.167)" % (
    config.get("augment_on"), config["augment_recipe"]["noise_std"], losses[0], losses[-1], summary["final_val_acc"]))
assert config.get("augment_on") == "decoders" and summary["backend"] == "cuda", "not the decoders on CUDA"
assert len(losses) >= 2 and losses[-1] < losses[0], "the training loss did not fall"
assert summary["final_val_acc"] >= 0.5, "validation accuracy near chance"
PY
}
# The NCCL path with one process: the launcher's variables (torchrun style, world 1) make a CUDA run go through
# the NCCL communicator and the bucketed gradient all-reduce, exactly as each rank of a job does. Not --quiet: the
# world line must name NCCL as the transport.
train_nccl() {  # train_nccl NAME PRECISION [extra args]
  local name=$1 prec=$2 rc=0
  shift 2
  env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29517 \
    "$B/bin/stoke" train --device cuda --precision "$prec" --data "$DATA/train" --val "$DATA/val" --image-size 28 \
    --model small-cnn --epochs 1 --batch-size 64 --out "$RUNS/$name" --overwrite "$@" \
    > "$LOGS/$name.log" 2>&1 || rc=$?
  tail -5 "$LOGS/$name.log"
  grep -m1 "^world:" "$LOGS/$name.log" || { echo "no world line"; rc=1; }
  grep -q "^world:.*transport NCCL" "$LOGS/$name.log" || { echo "the world line does not name NCCL"; rc=1; }
  return $rc
}
# The NCCL run against the single-process one (both --deterministic). In a world of 1 the all-reduce is a copy and
# 1/world is 1, so this proves the NCCL path is wired (communicator, buckets, the comm stream's ordering inside the
# captured graph) and changes no arithmetic; it cannot see a bucket sent before it was final (a one-rank all-reduce
# of an unfinished bucket still leaves it as it is). Tolerance: every logged loss within 1e-6 relative, the final
# weights within compare_weights.py's 1e-6.
latest_weights() { echo "$1/checkpoints/$(cat "$1/checkpoints/latest")/model.safetensors"; }
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
  python3 "$ROOT/tests/dist/compare_weights.py" "$(latest_weights "$1")" "$(latest_weights "$2")" 1e-6
}
# Evaluation of one run on the GPU and on the CPU: the image count and the accuracy must be equal, the loss and the
# ROC-AUC may differ in their last digits (the two backends sum in different orders): within 1e-3 relative.
eval_compare() {  # eval_compare RUN DATA: logs named after the run, so two comparisons keep both
  local tag
  tag=$(basename "$1")
  "$B/bin/stoke" eval --device cuda --run "$1" --data "$2" > "$LOGS/eval-cuda-$tag.txt" 2>&1 ||
    { cat "$LOGS/eval-cuda-$tag.txt"; return 1; }
  "$B/bin/stoke" eval --device cpu --run "$1" --data "$2" > "$LOGS/eval-cpu-$tag.txt" 2>&1 ||
    { cat "$LOGS/eval-cpu-$tag.txt"; return 1; }
  python3 "$ROOT/scripts/gpu-check/eval_compare.py" "$LOGS/eval-cuda-$tag.txt" "$LOGS/eval-cpu-$tag.txt"
}

# Fine-tuning on the device, from a run's export: --freeze backbone for an epoch (the export keeps every backbone
# tensor, running statistics included, bit for bit and moves the classifier), then --freeze-bn with the backbone
# training (the eval-mode batch-norm backward: the statistics kept bit for bit, every weight moved).
finetune() {  # finetune FROM_RUN
  local init=$RUNS/finetune-init.safetensors
  "$B/bin/stoke" export --run "$1" -o "$init" > "$LOGS/finetune-export.log" 2>&1 || { cat "$LOGS/finetune-export.log"; return 1; }
  train finetune-frozen bf16 --init "$init" --freeze backbone || return 1
  train finetune-freeze-bn bf16 --init "$init" --freeze-bn --lr-backbone-mult 0.5 || return 1
  for r in frozen freeze-bn; do
    "$B/bin/stoke" export --run "$RUNS/finetune-$r" -o "$RUNS/finetune-$r.safetensors" > /dev/null 2>&1 || return 1
  done
  python3 - "$init" "$RUNS/finetune-frozen.safetensors" "$RUNS/finetune-freeze-bn.safetensors" << 'PY'
import json, math, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in json.loads(b[8:8 + n]).items()
            if k != "__metadata__" and not k.endswith("num_batches_tracked")}
init, frozen, fbn = (tensors(p) for p in sys.argv[1:4])
stats = [k for k in init if k.endswith(("running_mean", "running_var"))]
bad = [k for k in init if not k.startswith("classifier.") and frozen[k] != init[k]]
bad += ["%s did not move" % k for k in init if k.startswith("classifier.") and frozen[k] == init[k]]
bad += ["--freeze-bn: %s moved" % k for k in stats if fbn[k] != init[k]]
bad += ["--freeze-bn: %s did not move" % k for k in init if k not in stats and fbn[k] == init[k]]
for r in ("frozen", "freeze-bn"):
    s = json.load(open(sys.argv[1].replace("init.safetensors", r) + "/summary.json"))
    print("finetune-%s: %d steps, train loss %s, val acc %s" % (r, s["steps"], s.get("final_train_loss"), s.get("final_val_acc")))
    if not (s["steps"] > 0 and math.isfinite(s.get("final_train_loss") or float("nan"))):
        bad.append("finetune-%s did not train" % r)
print("%d tensors; backbone kept by --freeze backbone, statistics by --freeze-bn: %s" % (len(init), "; ".join(bad) or "yes"))
sys.exit(1 if bad else 0)
PY
}

# Every kernel's bandwidth (bench/bench_gpu.cu), then the fused augment op's rows: GB/s and of_copy, its bandwidth
# over a device-to-device copy of the same bytes in the same run (target 0.8; a miss is printed, not failed: speed
# is read from the JSON, never a test verdict).
bench_gpu_run() {
  "$B/bin/bench_gpu" --benchmark_min_time=0.1 --benchmark_out="$LOGS/bench_gpu.json" --benchmark_out_format=json ||
    return 1
  python3 - "$LOGS/bench_gpu.json" << 'PY'
import json, sys
rows = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b["name"].startswith("BM_Augment")]
for b in rows:
    print("%-62s %8.1f GB/s  of_copy %.3f  %s" % (b["name"], b.get("GB/s", 0), b.get("of_copy", 0), b.get("label", "")))
PY
}
run_steps() {
  local T=$B/tests/gpu SBIN=$B/bin/stoke
  # Both calls: the binaries start (libraries, glibc), and the data the CLI runs train on.
  step preflight both 5 30 host bash -c preflight
  "$T/test_cuda_host" --gtest_filter='CudaRuntime.*' 2>&1 | grep -E "^device|^no device" > "$LOGS/device.txt" || true
  step data both 10 60 host bash -c make_data
  # ---- call 1: the core ----
  # cuDNN's answer for every convolution shape, precision and --deterministic the tests and the CLI use, first:
  # a refused plan explains a whole class of later failures in one line.
  step conv-probe 1 5 30 device "$T/test_gpu" --gtest_filter='GpuConvProbe.*' --gtest_brief=0
  step host-tests 1 10 40 host "$T/test_cuda_host" --gtest_output="json:$LOGS/test_cuda_host.json" --gtest_brief=1
  # The parity tests. Each test has its own CTest timeout (tests/gpu/CMakeLists.txt): a hung test is killed alone.
  step parity 1 90 150 device ctest --test-dir "$CTEST_DIR" -L gpu -j 8 --output-on-failure --output-junit "$LOGS/ctest-gpu.xml"
  # The first step with every launch checked synchronously: a fault inside cuDNN or cuBLASLt surfaces at its call.
  step train-first-step-sync 1 15 45 device env STOKE_CUDA_SYNC=1 bash -c 'train "$@"' _ train-sync bf16 \
    --limit-train 64 --limit-val 64
  step train-bf16 1 12 40 device bash -c 'train "$@"' _ train-bf16 bf16 --trace "$RUNS/train-bf16-trace.json"
  for p in fp16 fp32; do step "train-$p" 1 12 40 device bash -c 'train "$@"' _ "train-$p" "$p"; done
  # The same runs launched eagerly instead of replayed as a captured CUDA graph: images/s side by side.
  for p in bf16 fp16 fp32; do
    step "train-$p-nographs" 1 12 40 device env STOKE_NO_GRAPHS=1 bash -c 'train "$@"' _ "train-$p-nographs" "$p"
  done
  # --cache gpu: the training set uploaded once, every batch gathered on the device by sample id; with batch mixing
  # (mixup and cutmix in turn), so the captured graph also mixes the gathered batch and its labels.
  step train-bf16-cachegpu 1 12 40 device bash -c 'train "$@"' _ train-bf16-cachegpu bf16 --cache gpu --mixup 0.2 \
    --cutmix 1
  # ... and with --augment monai: the fused augment kernel inside the step, learning (train_augment).
  step train-bf16-augment 1 12 40 device bash -c 'train_augment "$@"' _ train-bf16-augment bf16
  step eval-cuda 1 10 40 device bash -c 'eval_compare "$@"' _ "$RUNS/train-bf16" "$DATA/val"
  # The asynchronous step against the synchronous executor, with its output (host time per submit).
  step async-step 1 10 40 device "$T/test_gpu" --gtest_filter='GpuAsyncStep.*' --gtest_brief=0
  # ---- call 2: the rest ----
  # Data parallel through NCCL on this one GPU (world 1), against the single-process run of the same settings;
  # --sync-bn too, so its statistics sums go through NCCL inside the captured forward and backward.
  step train-det-fp16 2 15 45 device bash -c 'train "$@"' _ train-det-fp16 fp16 --deterministic
  step train-nccl-fp16 2 15 45 device bash -c 'train_nccl "$@"' _ train-nccl-fp16 fp16 --deterministic --sync-bn
  step nccl-parity 2 5 30 device bash -c 'nccl_parity "$@"' _ "$RUNS/train-det-fp16" "$RUNS/train-nccl-fp16"
  step finetune 2 20 60 device bash -c 'finetune "$@"' _ "$RUNS/train-det-fp16"
  # --ema in the captured step, its decay warmed up per step from the device's update count (--ema-warmup), and
  # --tta flip in validation (the batch uploaded once, mirrored on the device); --bn-recalibrate's skipped steps with
  # the EMA swapped into place; eval of its weight EMA on CUDA and on the CPU agree.
  step train-bf16-ema 2 12 40 device bash -c 'train "$@"' _ train-bf16-ema bf16 --ema 0.99 --ema-warmup --tta flip \
    --bn-recalibrate 4
  step eval-ema 2 10 40 device bash -c 'eval_compare "$@"' _ "$RUNS/train-bf16-ema" "$DATA/val"
  step train-bf16-augment-decoders 2 12 40 device bash -c 'train_decoders "$@"' _ train-bf16-augment-decoders bf16
  # compute-sanitizer: memcheck over the kernels and one executor step, every arena buffer its own allocation.
  local san
  san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null || echo compute-sanitizer)
  step memcheck 2 120 180 device env STOKE_ARENA_DEBUG=1 "$san" --tool memcheck --error-exitcode 3 --print-limit 30 \
    "$T/test_gpu" --gtest_filter='GpuOps/*:GpuAugment/*:GpuMix/*:GpuExecutor/bf16.EveryOp*:GpuGather.*' --gtest_brief=1
  step racecheck 2 60 90 device "$san" --tool racecheck --error-exitcode 3 --print-limit 30 \
    "$T/test_gpu" --gtest_filter='GpuOps/bf16.*:GpuAugment/bf16.*' --gtest_brief=1
  step bench 2 60 90 device bash -c bench_gpu_run
  step export-check 2 40 90 device python3 "$ROOT/bench/pytorch/check_export.py" --stoke "$SBIN" \
    --run "$RUNS/train-det-fp16" --data "$DATA/val" --per-class 4
  step batch-auto 2 40 90 device "$SBIN" train --device cuda --data "$DATA/train" --epochs 1 --batch-size auto \
    --model resnet18 --limit-train 2048 --out "$RUNS/auto" --overwrite --quiet
  step diagnose 2 20 60 device "$SBIN" diagnose --device cuda --data "$DATA/train" --batch-size 128 --seconds 3
}
