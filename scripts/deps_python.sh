#!/usr/bin/env bash
# Make sure the Python package (python/, docs/python.md) can be built and tested: the Debian packages for
# NumPy, pytest, pybind11 and setuptools, used by Debian's own /usr/bin/python3 (make test-python builds in a
# venv made from it with --system-site-packages, so no package index is needed).
# As root it installs what is missing with apt-get; otherwise it prints the exact command and fails.
# `scripts/deps_python.sh --check` only answers (exit 0: everything is here, 1: something is missing).
set -euo pipefail
PY=${RATTN_PYTHON:-/usr/bin/python3}  # make passes its PY_BASE
missing=()
if [ ! -x "$PY" ]; then
  missing+=(python3)
else
  "$PY" -c 'import numpy' 2>/dev/null || missing+=(python3-numpy)
  "$PY" -c 'import pytest' 2>/dev/null || missing+=(python3-pytest)
  "$PY" -c 'import pybind11' 2>/dev/null || missing+=(python3-pybind11)
  "$PY" -c 'import setuptools' 2>/dev/null || missing+=(python3-setuptools)
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  # Python.h for the extension module
  [ -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || missing+=(python3-dev)
fi
command -v g++ >/dev/null || missing+=(g++)
[ -f /usr/include/eigen3/Eigen/Dense ] || missing+=(libeigen3-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
[ "${1:-}" = --check ] && exit 1
exec "$(dirname "$0")/apt_install.sh" deps_python "${missing[@]}"
