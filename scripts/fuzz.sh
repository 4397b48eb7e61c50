#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS (default 60) from the seed
# corpus in tests/fuzz/corpus/<target>. CI runs a one-minute slice of each; for a long run:
#   scripts/fuzz.sh 3600            # an hour per target
#   scripts/fuzz.sh 600 fuzz_jpeg   # one target
# Findings (crash-*, leak-*, timeout-*) are written to build-fuzz/findings/<target>/ and fail the script.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//'))

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target "${targets[@]}"

status=0
for t in "${targets[@]}"; do
  corpus=build-fuzz/corpus/$t findings=build-fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  [ -d tests/fuzz/corpus/${t#fuzz_} ] && cp -n tests/fuzz/corpus/${t#fuzz_}/* "$corpus"/ 2>/dev/null || true
  echo "== $t: ${seconds}s"
  if ! build-fuzz/fuzz/$t "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$findings/" -print_final_stats=1 -close_fd_mask=3 2>build-fuzz/$t.log; then
    echo "$t: FAILED (see build-fuzz/$t.log and $findings)"
    tail -30 build-fuzz/$t.log
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build-fuzz/$t.log | sed "s/^/  /" || true
done
exit $status
