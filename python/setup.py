# Builds the extension rattn._rattn from python/src/_rattn.cpp against the repository's ref/ headers.
# Build from a clone of the repository: `pip install ./python` (docs/python.md). The headers are read
# where they are, one folder up, so the package always binds the ref/ of the clone it is built from.
import os
import sys

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
if not os.path.isfile(os.path.join(root, "ref", "rla.h")):
    sys.exit(f"rattn: ref/ not found in {root}: build the package from a clone of the repository "
             "(pip install ./python at its root)")

# Eigen: RATTN_EIGEN_INCLUDE, else the Debian/Ubuntu location (libeigen3-dev, scripts/deps.sh).
eigen = os.environ.get("RATTN_EIGEN_INCLUDE", "/usr/include/eigen3")
if not os.path.isfile(os.path.join(eigen, "Eigen", "Dense")):
    sys.exit(f"rattn: Eigen not found in {eigen}: install libeigen3-dev (scripts/deps.sh) "
             "or set RATTN_EIGEN_INCLUDE to the folder that holds Eigen/")

ext = Pybind11Extension(
    "rattn._rattn",
    ["src/_rattn.cpp"],
    include_dirs=[root],
    extra_compile_args=["-isystem", eigen, "-O2", "-g0"],  # no fast-math: the checks assume IEEE arithmetic
    cxx_std=20,
)
setup(ext_modules=[ext])
