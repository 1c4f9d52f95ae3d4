# rattn.load: a checkpoint written by bin/train_tiny, its logits against bin/infer --logits, its decode
# against its forward, its parameters against bin/infer --export.
import json
import os
import subprocess

import numpy as np
import pytest

import rattn
from conftest import program

# A small local-global model (rattn and a global layer, GQA, relu2), trained for two steps: enough for
# parameters that are not the initialisation.
FLAGS = ["--d-model", "32", "--heads", "4", "--kv-heads", "2", "--head-dim", "8", "--layers", "2",
         "--pattern", "LG", "--window", "5", "--feature-map", "relu2", "--seq-len", "32", "--batch", "2",
         "--steps", "2", "--warmup", "0", "--eval-interval", "0"]
PROMPT = "the window is w = 5, T is longer"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.ckpt"
    r = subprocess.run([program("train_tiny"), *FLAGS, "--ckpt", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return path


def rel(got, want):
    return float(np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want ** 2)))


def test_forward_matches_bin_infer_logits(checkpoint, tmp_path):
    m = rattn.load(checkpoint)
    assert m.layers == "LG" and m.step == 2 and m.config["window"] == "5"
    out = tmp_path / "logits.npy"
    r = subprocess.run([program("infer"), "--logits", str(checkpoint), "--prompt", PROMPT, "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = np.load(out)
    got = m.forward(PROMPT)
    assert got.shape == want.shape == (len(PROMPT), 256) and got.dtype == np.float32
    # the same float32 code; the extension is built without -march=native, so FMA may round differently
    assert rel(got, want) < 1e-5
    assert np.array_equal(m.forward(np.frombuffer(PROMPT.encode(), np.uint8).astype(np.int64)), got)


def test_decode_reproduces_the_forward(checkpoint):
    m = rattn.load(checkpoint)
    assert rel(m.decode(PROMPT), m.forward(PROMPT)) < 1e-5


def test_params_are_the_exported_ones(checkpoint, tmp_path):
    r = subprocess.run([program("infer"), "--export", str(tmp_path / "x"), str(checkpoint)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    params = rattn.load(checkpoint).params
    files = json.loads((tmp_path / "x" / "config.json").read_text())
    exported = {f[:-4] for f in os.listdir(tmp_path / "x") if f.endswith(".npy")}
    assert set(params) == exported, files
    for name, p in params.items():
        want = np.load(tmp_path / "x" / f"{name}.npy")
        assert np.array_equal(p.reshape(want.shape), want), name  # norm scales are exported as (C,)


def test_bad_checkpoints_and_tokens(checkpoint, tmp_path):
    with pytest.raises(ValueError, match="missing.ckpt"):
        rattn.load(tmp_path / "missing.ckpt")
    bad = tmp_path / "bad.ckpt"
    data = bytearray(checkpoint.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="bad.ckpt"):
        rattn.load(bad)
    m = rattn.load(checkpoint)
    with pytest.raises(ValueError, match=r"tokens\[1\] = 256 is outside \[0, 256\)"):
        m.forward([1, 256])
    with pytest.raises(ValueError, match="tokens must be"):
        m.forward(np.zeros((2, 2), np.int64))


def test_qk_norm_checkpoint_loads_and_matches_bin_infer(tmp_path):
    # docs/spec.md §2.9: a model trained with --qk-norm 1 has q_norm, k_norm (1, D) on both layers
    path = tmp_path / "qk.ckpt"
    r = subprocess.run([program("train_tiny"), *FLAGS, "--qk-norm", "1", "--ckpt", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    m = rattn.load(path)
    assert m.config["qk-norm"] == "1"
    assert sorted(n for n in m.params if n.endswith("_norm") and ".attn." in n) == [
        "block0.attn.k_norm", "block0.attn.q_norm", "block1.attn.k_norm", "block1.attn.q_norm"]
    assert m.params["block0.attn.q_norm"].shape == (1, 8)
    out = tmp_path / "logits.npy"
    r = subprocess.run([program("infer"), "--logits", str(path), "--prompt", PROMPT, "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert rel(m.forward(PROMPT), np.load(out)) < 1e-5
    assert rel(m.decode(PROMPT), m.forward(PROMPT)) < 1e-5
