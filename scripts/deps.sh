#!/usr/bin/env bash
# Make sure the build dependencies are here: Eigen and doctest from Debian.
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
[ ${#missing[@]} -eq 0 ] && exit 0
exec "$(dirname "$0")/apt_install.sh" deps "${missing[@]}"
