# pytest setup for the rattn package's tests: the NumPy kernels of kernels.py are imported by name, and
# bin/rattn-op (the command-line tool over the same reference) is found for the cross-checks.
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def rattn_op():
    """Path of bin/rattn-op (RATTN_OP, or the folder RATTN_BIN, overrides). Missing: the test is skipped,
    unless RATTN_OP_REQUIRED=1 (make test-python sets it, having built the programs), when it fails."""
    path = os.environ.get("RATTN_OP", os.path.join(os.environ.get("RATTN_BIN", os.path.join(ROOT, "bin")), "rattn-op"))
    if not os.access(path, os.X_OK):
        msg = f"{path} not found: build it with `make bin/rattn-op`"
        if os.environ.get("RATTN_OP_REQUIRED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def program(name):
    """Path of bin/NAME, like rattn_op (RATTN_BIN overrides the folder)."""
    path = os.path.join(os.environ.get("RATTN_BIN", os.path.join(ROOT, "bin")), name)
    if not os.access(path, os.X_OK):
        msg = f"{path} not found: build it with `make bin/{name}`"
        if os.environ.get("RATTN_OP_REQUIRED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
