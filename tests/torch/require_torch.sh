# Sourced by the tests here after STOKE, SRC and WORK are set from "$1".."$3": picks the Python ($STOKE_TORCH_PYTHON,
# else "$4", else /usr/bin/python3) as PY and exits 77 (CTest SKIP_RETURN_CODE) when it lacks torch, torchvision,
# numpy or Pillow.
PY=${STOKE_TORCH_PYTHON:-${4:-/usr/bin/python3}}
if ! "$PY" -c 'import torch, torchvision, numpy, PIL' > /dev/null 2>&1; then
  echo "SKIP: $PY cannot import torch, torchvision, numpy and PIL (Debian: apt-get install python3-torch" \
       "python3-torchvision python3-numpy python3-pil, or set STOKE_TORCH_PYTHON)"
  exit 77
fi
