#!/usr/bin/env bash
# scripts/gpu-check.sh --prepare: builds what the GPU machine runs (preset gpu: sm_90, no MPI, libstdc++ and libgcc
# inside, static cudart) and assembles ONE carried folder, build-gpu/carry: the binaries (stripped, in the build
# tree's layout), the CTest files of the GPU tests (build path replaced by a marker the device run substitutes) and
# the commit. No data travels: the device makes it with the carried stoke. Fails when a carried binary needs a
# library outside the allow-list (lib.sh) or when carry + tree exceed MAX_CARRY_MIB.
# STOKE_PREPARE_NO_BUILD=1 assembles from an existing build.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd -P)
# shellcheck source=scripts/gpu-check/lib.sh
source scripts/gpu-check/lib.sh
MAX_CARRY_MIB=${STOKE_MAX_CARRY_MIB:-40}  # the tool's limit is 64 MiB with the tree: room for a rerun's fixes
BINARIES="tests/gpu/test_gpu tests/gpu/test_cuda_host bin/stoke bin/bench_gpu"
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
  mkdir -p "$CARRY/$(dirname "$b")"
  # Host symbols only: the device code's line table (-lineinfo, for compute-sanitizer) lives in the fatbinary.
  strip --strip-unneeded -o "$CARRY/$b" "$BUILD/$b"
done
# Debian has Google Benchmark only as a shared library: it travels beside bench_gpu ($ORIGIN rpath).
for so in "$BUILD"/bin/*.so*; do [ -e "$so" ] && cp -L "$so" "$CARRY/bin/"; done
# CTest files of the carried test binaries only, with the build path replaced by a marker the device run
# substitutes; the folders above list only tests/gpu, and tests/gpu only what travels.
mkdir -p "$CARRY/tests/gpu"
echo 'subdirs("tests")' > "$CARRY/CTestTestfile.cmake"
echo 'subdirs("gpu")' > "$CARRY/tests/CTestTestfile.cmake"
: > "$CARRY/tests/gpu/CTestTestfile.cmake"
for t in test_gpu test_cuda_host; do
  for f in "$BUILD/tests/gpu/$t"\[*\]_include.cmake "$BUILD/tests/gpu/$t"\[*\]_tests.cmake; do
    [ -e "$f" ] || { echo "prepare: no CTest file for $t in $BUILD/tests/gpu (was it built?)" >&2; exit 1; }
    sed -e "s|$BUILD_ABS|@STOKE_CARRY@|g" -e "s|$ROOT|@STOKE_SRC@|g" "$f" > "$CARRY/tests/gpu/${f##*/}"
    case $f in *_include.cmake) echo "include(\"@STOKE_CARRY@/tests/gpu/${f##*/}\")" >> "$CARRY/tests/gpu/CTestTestfile.cmake" ;; esac
  done
done
git rev-parse HEAD > "$CARRY/stoke-commit.txt" 2> /dev/null || echo unknown > "$CARRY/stoke-commit.txt"
if git status --porcelain --untracked-files=no 2> /dev/null | grep -q .; then echo "dirty" >> "$CARRY/stoke-commit.txt"; fi

echo "libraries (allow-list: the C/C++ runtime, cuDNN 9, cuBLAS 13; NCCL is loaded with dlopen):"
CARRY_ABS=$(cd "$CARRY" && pwd -P)
fail=0
for b in $BINARIES "${CARRY#./}"/bin/*.so*; do
  f=${b#"$CARRY"/}
  [ -e "$CARRY_ABS/$f" ] || continue
  check_libs "$CARRY_ABS/$f" "$CARRY_ABS" || fail=1
done
[ $fail = 0 ] || { echo "prepare: FAILED, a carried binary needs a library the GPU machine does not have" >&2; exit 1; }

carry_kib=$(du -sk "$CARRY" | cut -f1)
tree_kib=$(( $(git ls-files -z -co --exclude-standard | xargs -0 du -cb 2> /dev/null | awk 'END { print $1 }') / 1024 ))
total_mib=$(( (carry_kib + tree_kib + 1023) / 1024 ))
echo "carry: $CARRY $(( carry_kib / 1024 )) MiB + tree $(( tree_kib / 1024 )) MiB = $total_mib MiB (limit $MAX_CARRY_MIB MiB)"
if [ "$total_mib" -gt "$MAX_CARRY_MIB" ]; then
  echo "prepare: FAILED, $total_mib MiB is over $MAX_CARRY_MIB MiB; largest files:" >&2
  du -ak "$CARRY" | sort -rn | head -8 >&2
  exit 1
fi
echo "ready: first call  run(command=\"scripts/gpu-check.sh --call 1 \$OUT\", carry=[\"$CARRY\"], timeout_s=330)"
echo "       second call run(command=\"scripts/gpu-check.sh --call 2 \$OUT\", carry=[\"$CARRY\"], timeout_s=560)"
