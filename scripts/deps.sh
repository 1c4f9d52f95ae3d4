#!/usr/bin/env bash
# Make sure the build dependencies are here: Eigen and doctest from Debian (and OpenMPI, optional: below).
# As root it installs what is missing with apt-get; otherwise it prints the exact command and fails.
set -euo pipefail
missing=()
# Optional, only for `make fuzz` (scripts/fuzz.sh): clang++ and libFuzzer. `make test` never needs clang.
if [ "${1:-}" = fuzz ]; then
  command -v clang++ >/dev/null || missing+=(clang)
  ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || missing+=(libclang-rt-14-dev)
fi
[ -f /usr/include/eigen3/Eigen/Dense ] || missing+=(libeigen3-dev)
[ -f /usr/include/doctest/doctest.h ] || missing+=(doctest-dev)
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
# OpenMPI, for `mpirun -np N bin/train_tiny` (docs/scaling.md): installed with the rest as root (CI); otherwise
# optional: make builds the one-process train_tiny without it (and says so), and the MPI tests say SKIPPED.
optional=()
command -v mpirun >/dev/null || optional+=(openmpi-bin)
{ pkg-config --exists ompi-c 2>/dev/null || command -v mpicxx >/dev/null; } || optional+=(libopenmpi-dev)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then missing+=("${optional[@]+"${optional[@]}"}"); fi
[ ${#missing[@]} -eq 0 ] && exit 0
exec "$(dirname "$0")/apt_install.sh" deps "${missing[@]}"
