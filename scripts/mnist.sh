#!/usr/bin/env bash
# The main job, from a fresh clone: set up, build, fetch the real MNIST digits, train the small CNN
# (on the GPU when there is one, else the CPU backend) and print the test accuracy.
# Extra arguments go to `stoke train` (e.g. --epochs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target stoke
build/bin/stoke dataset mnist --out data/mnist
build/bin/stoke train --data data/mnist/train --val data/mnist/test --model small-cnn --out runs/mnist --overwrite "$@"
