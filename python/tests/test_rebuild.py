# scripts/rebuild_numpy.py: the NumPy model written from `bin/infer --export` alone (config.json and the
# NAME.npy files) reproduces `bin/infer --logits`, with and without qk-norm (docs/spec.md §2.9), for every
# local kind; and the export flags qk-norm on exactly the layers with softmax attention.
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, program

FLAGS = ["--d-model", "16", "--heads", "2", "--kv-heads", "1", "--head-dim", "8", "--layers", "3",
         "--pattern", "LLG", "--window", "3", "--seq-len", "32", "--batch", "2", "--steps", "3", "--warmup", "0",
         "--eval-interval", "0"]


@pytest.mark.parametrize("local", ["rattn", "swa", "linear"])
@pytest.mark.parametrize("qk_norm", [0, 1])
def test_rebuild_numpy_reproduces_the_logits(tmp_path, local, qk_norm):
    ckpt = tmp_path / "m.ckpt"
    r = subprocess.run([program("train_tiny"), *FLAGS, "--local", local, "--qk-norm", str(qk_norm), "--ckpt",
                        str(ckpt)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "rebuild_numpy.py"), str(ckpt), "--infer",
                        program("infer")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    err = float(re.search(r"relative RMS error (\S+) \(ok\)", r.stdout).group(1))
    assert err <= 1e-5

    r = subprocess.run([program("infer"), "--export", str(tmp_path / "x"), str(ckpt)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "x" / "config.json").read_text())
    softmax = [L["type"] == "global" or L["swa_branch"] for L in cfg["layers"]]
    assert [bool(L.get("qk_norm")) for L in cfg["layers"]] == [bool(qk_norm) and s for s in softmax]
    assert cfg["model"].get("qk_norm", False) == bool(qk_norm)
    assert ("qk_norm" in cfg["conventions"]) == bool(qk_norm)
    for L, s in zip(cfg["layers"], softmax):
        for name in ("q_norm", "k_norm"):
            shapes = [p["shape"] for p in cfg["parameters"] if p["name"] == f"block{L['index']}.attn.{name}"]
            assert shapes == ([[8]] if qk_norm and s else [])
