#!/usr/bin/env bash
# The GPU check, in three modes (docs/GPU.md says when to use which):
#
#   scripts/gpu-check.sh --prepare              here: build the gpu preset and assemble build-gpu/carry (prepare.sh)
#   scripts/gpu-check.sh [--call 1|2] OUTDIR    there, in one device call: call 1 is the core (at most 6 minutes with
#                                               the machine's start), call 2 the rest (sanitizers, NCCL, benchmarks)
#   scripts/gpu-check.sh --dry-run [--call N] OUTDIR
#                                               here or in CI: the host steps run, device steps are recorded
#                                               "skipped: no device"; every call unless --call is given
#
# OUTDIR ends with exactly three files, because the device tool returns at most 8, two folders down:
# summary.json, gpu-check.log and logs.tar.gz (every step's log, each run's summary/metrics/config/trace, the test
# reports; no checkpoints). Run folders, data and logs live in a scratch folder. Each step runs under `timeout`
# with its own maximum inside the call's budget (STOKE_GPU_BUDGET); a step the budget cannot reach is recorded
# "not reached", and the summary is written even when the call is stopped from outside (SIGTERM).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd -P)
if [ "${1:-}" = "--prepare" ]; then exec scripts/gpu-check/prepare.sh; fi
# shellcheck source=scripts/gpu-check/lib.sh
source scripts/gpu-check/lib.sh

DRY=0 CALL=""
while [ $# -gt 1 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --call) CALL=$2; shift ;;
    *) echo "usage: scripts/gpu-check.sh --prepare | [--dry-run] [--call 1|2] OUTDIR" >&2; exit 2 ;;
  esac
  shift
done
OUTDIR=${1:?usage: scripts/gpu-check.sh --prepare | [--dry-run] [--call 1|2] OUTDIR}
[ -z "$CALL" ] && { [ "$DRY" = 1 ] && CALL=all || CALL=1; }
case $CALL in 1 | 2 | all) ;; *) echo "--call takes 1, 2 or all" >&2; exit 2 ;; esac
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd -P)
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/stoke-gpu-check.XXXXXX")
LOGS=$SCRATCH/logs RUNS=$SCRATCH/runs DATA=$SCRATCH/data
mkdir -p "$LOGS" "$RUNS"
LOG="$OUTDIR/gpu-check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
STEPS="$LOGS/steps.tsv"
: > "$STEPS"
T0=$(date +%s)
START_S=${STOKE_GPU_START_S:-90}  # what a fresh machine's start adds before the first line runs (planned)
case $CALL in 1) BUDGET=${STOKE_GPU_BUDGET:-270} ;; *) BUDGET=${STOKE_GPU_BUDGET:-530} ;; esac
# The binaries: the carried folder, else a build tree (STOKE_GPU_BUILD).
B=${STOKE_GPU_BUILD:-build-gpu/carry}
[ -d "$B" ] || B=build
B=$(cd "$B" 2> /dev/null && pwd -P || echo "$B")
BINARIES="tests/gpu/test_gpu tests/gpu/test_cuda_host bin/stoke bin/bench_gpu"
export B ROOT OUTDIR SCRATCH LOGS RUNS DATA BINARIES DRY ALLOWED_LIBS

say() { printf '\n=== %s  [t+%ds]\n' "$*" "$(( $(date +%s) - T0 ))"; }
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" >> "$STEPS"; }  # name call plan exit s status
# step NAME CALL PLAN MAX host|device CMD...: the step of call CALL, planned to take PLAN seconds, runs CMD under
# a timeout of MAX (less when the budget has less left) and records it. Steps of another call are recorded as
# such; a device step in the dry run, or any step the budget cannot reach, is recorded and not run.
step() {
  local name=$1 call=$2 plan=$3 max=$4 dev=$5 left t rc=0 status
  shift 5
  if [ "$CALL" != all ] && [ "$call" != "$CALL" ] && [ "$call" != both ]; then
    record "$name" "$call" "$plan" -1 0 "in call $call"
    return 0
  fi
  if [ "$DRY" = 1 ] && [ "$dev" = device ]; then
    record "$name" "$call" "$plan" -1 0 "skipped: no device"
    echo "--- $name: skipped: no device (planned ${plan}s)"
    return 0
  fi
  left=$(( BUDGET - ($(date +%s) - T0) - 15 ))
  if [ "$left" -lt 10 ]; then
    record "$name" "$call" "$plan" -1 0 "not reached: time budget spent"
    echo "--- $name: NOT REACHED, the call's time budget is spent"
    return 125
  fi
  [ "$max" -gt "$left" ] && max=$left
  say "$name (planned ${plan}s, at most ${max}s): $*"
  t=$(date +%s)
  printf '%s\t%s\t%s\t%s\n' "$name" "$call" "$plan" "$t" > "$LOGS/running"
  timeout -k 5 "$max" "$@" || rc=$?
  rm -f "$LOGS/running"
  case $rc in 0) status=ok ;; 124 | 137) status=timeout ;; *) status=failed ;; esac
  record "$name" "$call" "$plan" "$rc" "$(( $(date +%s) - t ))" "$status"
  echo "--- $name: $status (exit $rc) in $(( $(date +%s) - t ))s"
  [ "$status" = ok ] || echo "!!! $name FAILED: see above" >&2
  return $rc
}

# The summary and the tarball, also when the call is stopped from outside: what was done still comes back.
finish() {
  trap - EXIT TERM INT
  if [ -f "$LOGS/running" ]; then  # the step that was running when the call was stopped
    IFS=$'\t' read -r n c p t < "$LOGS/running"
    record "$n" "$c" "$p" -1 "$(( $(date +%s) - t ))" "stopped from outside"
  fi
  say "summary"
  python3 "$ROOT/scripts/gpu-check/summary.py" --out "$OUTDIR" --scratch "$SCRATCH" --dry "$DRY" --call "$CALL" \
    --start "$START_S" --elapsed "$(( $(date +%s) - T0 ))" || echo "!!! the summary could not be written" >&2
  tar -C "$SCRATCH" --exclude='checkpoints' --exclude='data' -czf "$OUTDIR/logs.tar.gz" logs runs 2> /dev/null
  echo "gpu-check (call $CALL) done in $(( $(date +%s) - T0 ))s: $OUTDIR/summary.json, gpu-check.log, logs.tar.gz"
  rm -rf "$SCRATCH"
}
trap 'finish; exit 143' TERM INT
trap 'finish' EXIT

# shellcheck source=scripts/gpu-check/steps.sh
source "$ROOT/scripts/gpu-check/steps.sh"
export -f preflight ctest_timeouts make_data train train_augment train_nccl bench_gpu_run latest_weights nccl_parity \
  eval_compare check_libs finetune

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOGS/nvidia-smi.txt" 2>&1 || true
cat "$LOGS/nvidia-smi.txt"
COMMIT=$(head -1 "$B/stoke-commit.txt" 2> /dev/null || git rev-parse HEAD 2> /dev/null || echo unknown)
echo "commit: $COMMIT  call: $CALL  budget: ${BUDGET}s"
echo "$COMMIT" > "$LOGS/commit.txt"
# The carried CTest files name the build tree by a marker: a copy in the scratch folder names it (the carry itself
# stays as --prepare made it, so a dry run here never bakes this machine's paths into what travels).
CTEST_DIR=$B
if [ -e "$B/CTestTestfile.cmake" ] && grep -rlq "@STOKE_CARRY@" "$B" --include='*.cmake' 2> /dev/null; then
  CTEST_DIR=$SCRATCH/ctest
  (cd "$B" && find . -name '*.cmake') | while read -r f; do
    mkdir -p "$CTEST_DIR/$(dirname "$f")"
    sed -e "s|@STOKE_CARRY@|$CTEST_DIR|g" -e "s|@STOKE_SRC@|$ROOT|g" "$B/$f" > "$CTEST_DIR/$f"
  done
  for b in $BINARIES; do mkdir -p "$CTEST_DIR/$(dirname "$b")" && ln -s "$B/$b" "$CTEST_DIR/$b"; done
  echo "CTest files pointed at $B (through $CTEST_DIR)"
fi
export CTEST_DIR
# cuDNN / cuBLASLt / NCCL for every later step (the dry run uses this machine's own).
if [ "$DRY" = 0 ]; then
  # shellcheck source=scripts/gpu-libs.sh
  source "$ROOT/scripts/gpu-libs.sh" || echo "!!! gpu-libs.sh failed: libraries may be missing" >&2
fi

run_steps
finish
python3 -c "import json, sys; sys.exit(0 if json.load(open('$OUTDIR/summary.json'))['ok'] else 1)"
