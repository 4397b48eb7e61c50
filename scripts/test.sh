#!/usr/bin/env bash
# Sets up, builds (warnings are errors) and runs the whole test suite: the README's test command.
# Two builds: the default one (CUDA backend when nvcc is found; GPU tests skip without a device) and a
# CPU-only one (STOKE_CUDA=OFF), which must build and pass on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --workflow --preset test
cmake --workflow --preset cpu
# A bounded slice of every fuzzer (about a minute each; the long run is documented in docs/RELIABILITY.md).
scripts/fuzz.sh "${STOKE_FUZZ_SECONDS:-60}"
