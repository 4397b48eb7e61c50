# shellcheck shell=bash
# Shared by scripts/gpu-check.sh and scripts/gpu-check/prepare.sh: what a carried binary may need on the GPU machine.
# That machine (Ubuntu, CUDA 13 wheels, no Open MPI) has the C/C++ runtime, cuDNN 9 and cuBLAS 13 and nothing of
# Debian's: every other library must be inside the binary (static) or carried beside it (found through $ORIGIN).
# NCCL is loaded with dlopen by the data-parallel path only, so it is never a link-time need.
ALLOWED_LIBS='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libdl\.so\.2|librt\.so\.1|libpthread\.so\.0|libcudnn[a-z_]*\.so\.9|libcublas(Lt)?\.so\.13)$'

# check_libs BINARY CARRY_DIR: every library ldd lists (transitively) is on the allow-list or lies inside CARRY_DIR;
# prints the highest GLIBC and GLIBCXX symbol versions the binary asks of the machine. Non-zero on any stranger.
check_libs() {
  local bin=$1 carry=$2 fail=0 name path glibc glibcxx
  while read -r name path; do
    name=${name##*/}
    [[ $name =~ $ALLOWED_LIBS ]] && continue
    [[ -n $carry && $path == "$carry"/* ]] && continue
    echo "  NOT ALLOWED: ${bin##*/} needs $name ($path)"
    fail=1
  done < <(ldd "$bin" 2>&1 | awk '$2 == "=>" { print $1, $3; next } NF { print $1, $1 }')
  glibc=$(objdump -T "$bin" 2> /dev/null | grep -oE 'GLIBC_[0-9.]+' | sort -uV | tail -1)
  glibcxx=$(objdump -T "$bin" 2> /dev/null | grep -oE 'GLIBCXX_[0-9.]+' | sort -uV | tail -1)
  echo "  ${bin#"$carry"/}: libraries allowed=$([ $fail = 0 ] && echo yes || echo NO), needs ${glibc:-no GLIBC symbol}, ${glibcxx:-no GLIBCXX symbol}"
  return $fail
}
