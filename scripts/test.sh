#!/usr/bin/env bash
# Sets up, builds (warnings are errors) and runs the whole test suite: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --workflow --preset test
