# Sourced by scripts/gpu-check.sh and bench/side_by_side.sh on the GPU machine: finds libcudnn.so.9,
# libcublasLt.so.13 and libnccl.so.2 (only the data-parallel path loads it) in CUDA's lib64, the system, or Python's
# nvidia/* wheels that torch brings, and puts their folders on LD_LIBRARY_PATH, saying where each was found.
find_lib_dir() {  # the first directory holding $1, among the usual places and Python's nvidia wheels
  local name=$1 d
  local candidates=(/usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib
                    /usr/lib/x86_64-linux-gnu /usr/local/lib)
  if command -v python3 > /dev/null; then
    while IFS= read -r d; do candidates+=("$d"); done < <(timeout 20 python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("site-packages")])
for r in sorted(roots):
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")) + glob.glob(os.path.join(r, "nvidia", "cu*", "lib*"))):
        print(d)
PY
    )
  fi
  for d in "${candidates[@]}"; do
    [ -e "$d/$name" ] && { echo "$d"; return 0; }
  done
  timeout 30 find / -xdev -name "$name" -not -path '/proc/*' 2>/dev/null | head -1 | xargs -r dirname
}
LIBDIRS=""
for lib in libcudnn.so.9 libcublasLt.so.13; do
  d=$(find_lib_dir "$lib")
  if [ -n "$d" ]; then
    echo "$lib: $d"
    case ":$LIBDIRS:" in *":$d:"*) ;; *) LIBDIRS="${LIBDIRS:+$LIBDIRS:}$d" ;; esac
  else
    echo "$lib: NOT FOUND (the GPU tests will not start)"
  fi
done
# NCCL is loaded with dlopen only by the data-parallel path (the NCCL steps): missing, only those steps fail.
d=$(find_lib_dir libnccl.so.2)
if [ -n "$d" ]; then
  echo "libnccl.so.2: $d"
  case ":$LIBDIRS:" in *":$d:"*) ;; *) LIBDIRS="${LIBDIRS:+$LIBDIRS:}$d" ;; esac
else
  echo "libnccl.so.2: NOT FOUND (the NCCL steps will fail; everything else runs)"
fi
export LD_LIBRARY_PATH="${LIBDIRS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
