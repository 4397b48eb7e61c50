#!/usr/bin/env bash
# Sets up, builds (warnings are errors) and runs the whole test suite: the README's test command.
# Two builds: the default one (CUDA backend when nvcc is found; GPU tests skip without a device) and a
# CPU-only one (STOKE_CUDA=OFF) under AddressSanitizer + UBSan, which must build and pass on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --workflow --preset test
# What the GPU machine gets: the gpu preset (no MPI, libstdc++ inside) assembled as the device call carries it
# (size limit, library allow-list), then the device check's dry run over exactly those binaries.
if command -v nvcc > /dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  scripts/gpu-check.sh --prepare
  tests/gpu/gpu_check_dry_run.sh "$PWD" build-gpu/carry
fi
# The CPU-only configuration (STOKE_CUDA=OFF), built with AddressSanitizer + UBSan and -Werror, over every test
# but the slow ones, the PyTorch cross-checks and the mpirun tests (those run in the preset above; under ASan they
# take minutes, and Open MPI's own allocations would read as leaks), and the four learning tests that train for
# hundreds of steps (7 of the asan run's 8 minutes; the ops they run are all covered by shorter tests under ASan).
cmake --workflow --preset asan
# The threaded protocols under ThreadSanitizer: the asynchronous step queue, the batch ring, and the ranks-as-threads
# tests of data parallel (the TCP rendezvous, --sync-bn's exchange, the validation gather): three test binaries.
cmake --workflow --preset tsan
# A bounded slice of every fuzzer (30 s each; the long run is documented in docs/RELIABILITY.md).
scripts/fuzz.sh "${STOKE_FUZZ_SECONDS:-30}"
