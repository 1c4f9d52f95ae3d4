# Builds the extension rattn._rattn from python/src/_rattn.cpp against the repository's ref/ headers.
# Build from a clone of the repository: `pip install ./python` (docs/python.md). The headers are read
# where they are, one folder up, so the package always binds the ref/ of the clone it is built from.
import os
import sys

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension
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

# The bindings, and for rattn.load the checkpoint reader and the model's command-line table (model/, io/),
# compiled from the clone's own sources. Two compiler jobs at most (RATTN_BUILD_JOBS), as the Makefile asks.
sources = ["src/_rattn.cpp", "src/_rattn_model.cpp"] + [
    os.path.relpath(os.path.join(root, f), here)
    for f in ("model/checkpoint.cpp", "model/config.cpp", "model/cli.cpp", "io/files.cpp")]
ext = Pybind11Extension(
    "rattn._rattn",
    sources,
    include_dirs=[root],
    # No fast-math: the checks assume IEEE arithmetic. No -fopenmp: with it Eigen splits every matrix product
    # over threads, which made the small products of the tests several times slower on a busy machine (the
    # one OpenMP loop of model/model.h, over a training batch, is not used by the package).
    extra_compile_args=["-isystem", eigen, "-O2", "-g0", "-Wno-unknown-pragmas"],
    cxx_std=20,
)
ParallelCompile("RATTN_BUILD_JOBS", default=2).install()
setup(ext_modules=[ext])
