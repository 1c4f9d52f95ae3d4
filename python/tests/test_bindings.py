# Every binding of the rattn package against bin/rattn-op on the same inputs (both run ref/), the three RLA
# forms against each other, the gradients of the small ops against finite differences, the (B, H, T, D)
# route, and the ValueError each bad argument gives.
import os
import subprocess

import numpy as np
import pytest

import rattn


def rel(got, want):
    """Relative RMS error (tests/check.h), relative to rms(want) or 1e-30."""
    return float(np.sqrt(np.mean((got - want) ** 2)) / max(np.sqrt(np.mean(want ** 2)), 1e-30))


def qkv(rng, B=2, T=37, H=4, G=2, D=8, dtype=np.float64):
    q = rng.standard_normal((B, T, H, D)).astype(dtype)
    k = rng.standard_normal((B, T, G, D)).astype(dtype)
    v = rng.standard_normal((B, T, G, D)).astype(dtype)
    do = rng.standard_normal((B, T, H, D)).astype(dtype)
    return q, k, v, do


def run_op(rattn_op, tmp_path, op, arrays, *flags):
    """bin/rattn-op OP on arrays saved as .npy -> its outputs as a dict."""
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir(exist_ok=True)
    for name, a in arrays.items():
        np.save(src / f"{name}.npy", a)
    r = subprocess.run([rattn_op, op, "--in", str(src), "--out", str(dst), *flags], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {f[:-4]: np.load(dst / f) for f in os.listdir(dst)}


# (op, T, H, G, D, window, feature, h0): edges of the window (0, T-1, >= T, -1), GQA, every feature map
OP_CASES = [
    ("swa", 37, 4, 2, 8, 5, None, False),
    ("swa", 37, 4, 4, 8, 0, None, False),
    ("swa", 20, 6, 2, 8, -1, None, False),
    ("rla", 37, 4, 2, 8, 5, "sm2", False),
    ("rla", 37, 4, 1, 8, 0, "relu2", True),
    ("rla", 70, 2, 2, 8, 69, "identity", True),
    ("rla", 20, 4, 2, 8, -1, "sm2", True),
    ("rattn", 37, 4, 2, 8, 5, "sm2", False),
    ("rattn", 70, 6, 3, 8, 3, "relu2", False),
    ("rattn", 12, 4, 2, 8, 40, "identity", False),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op,T,H,G,D,w,feature,h0", OP_CASES)
def test_binding_matches_rattn_op(rattn_op, tmp_path, rng, op, T, H, G, D, w, feature, h0, dtype):
    q, k, v, do = qkv(rng, 2, T, H, G, D, dtype)
    arrays = {"q": q, "k": k, "v": v, "do": do}
    flags = ["--window", str(w)] + (["--feature", feature, "--chunk", "16"] if feature else [])
    if op == "swa":
        o, g = rattn.swa(q, k, v, w, do=do)
    elif op == "rla":
        if h0:
            arrays["h0"] = (0.5 * rng.standard_normal((2, G, rattn.feature_dim(feature, D), D))).astype(dtype)
        o, g = rattn.rla(q, k, v, w, feature=feature, h0=arrays.get("h0"), chunk=16, do=do)
        if not h0:
            del g["dh0"]  # rattn-op writes dh0 only for a given h0
    else:
        arrays["gamma_swa"] = (1 + 0.2 * rng.standard_normal((H, D))).astype(dtype)
        arrays["gamma_rla"] = (1 + 0.2 * rng.standard_normal((H, D))).astype(dtype)
        o, g = rattn.rattention(q, k, v, arrays["gamma_swa"], arrays["gamma_rla"], w, feature=feature, chunk=16,
                                do=do)
    want = run_op(rattn_op, tmp_path, op, arrays, *flags)
    got = dict(o=o, **g)
    assert sorted(got) == sorted(want)
    # rattn-op computes in double and writes the input dtype; the binding computes in the input dtype
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for name in want:
        assert got[name].dtype == dtype and got[name].shape == want[name].shape, name
        assert rel(got[name].astype(np.float64), want[name].astype(np.float64)) < tol, name


@pytest.mark.parametrize("w", [-1, 0, 3, 36, 50])
def test_rla_forms_agree(rng, w):
    q, k, v, do = qkv(rng, T=37)
    h0 = rng.standard_normal((2, 2, 16, 8))
    want, gw = rattn.rla(q, k, v, w, h0=h0, form="masked", do=do)
    for chunk in (1, 5, 64):
        o, g = rattn.rla(q, k, v, w, h0=h0, chunk=chunk, do=do)
        assert rel(o, want) < 1e-12
        for n in gw:
            assert rel(g[n], gw[n]) < 1e-11, n
    assert rel(rattn.rla(q, k, v, w, h0=h0, form="recurrent"), want) < 1e-12
    with pytest.raises(ValueError, match="recurrent"):
        rattn.rla(q, k, v, w, form="recurrent", do=do)


def test_rla_window_edges(rng):
    """The window convention of the README: at w >= T-1 RLA reads no key (o = 0 exactly), at w = -1 it reads
    every key j <= t, one more than at w = 0 (j <= t-1)."""
    q, k, v, _ = qkv(rng, T=9)
    assert np.all(rattn.rla(q, k, v, 8) == 0) and np.all(rattn.rla(q, k, v, 20) == 0)
    assert np.any(rattn.rla(q, k, v, 7)[:, 8] != 0)  # w = T-2: the last query reads key 0
    assert rel(rattn.rla(q, k, v, -1), rattn.rla(q, k, v, 0)) > 0.01


def directional(f, x, u, eps=1e-6):
    return (f(x + eps * u) - f(x - eps * u)) / (2 * eps)


@pytest.mark.parametrize("feature", rattn.FEATURES)
def test_phi_and_its_backward(rng, feature):
    x = rng.standard_normal((3, 5, 8))
    y, g = rattn.phi(x, feature, do=np.ones((3, 5, rattn.feature_dim(feature, 8))))
    assert y.shape == (3, 5, rattn.feature_dim(feature, 8))
    if feature == "sm2":
        assert np.allclose(y.sum(-1), 2.0)  # two softmaxes, each sums to 1
    dy = rng.standard_normal(y.shape)
    u = rng.standard_normal(x.shape)
    _, g = rattn.phi(x, feature, do=dy)
    fd = np.sum(directional(lambda z: rattn.phi(z, feature), x, u) * dy)
    assert abs(fd - np.sum(g["dx"] * u)) < 1e-6 * max(1, abs(fd))


def test_group_rmsnorm_and_its_backward(rng):
    x, gamma = rng.standard_normal((2, 7, 4, 8)), 1 + 0.2 * rng.standard_normal((4, 8))
    y = rattn.group_rmsnorm(x, np.ones((4, 8)), eps=0.0)
    assert np.allclose(np.sqrt(np.mean(y ** 2, axis=-1)), 1.0)  # each head normalised to RMS 1
    dy = rng.standard_normal(x.shape)
    _, g = rattn.group_rmsnorm(x, gamma, do=dy)
    u = rng.standard_normal(x.shape)
    fd = np.sum(directional(lambda z: rattn.group_rmsnorm(z, gamma), x, u) * dy)
    assert abs(fd - np.sum(g["dx"] * u)) < 1e-6 * abs(fd)
    ug = rng.standard_normal(gamma.shape)
    fdg = np.sum(directional(lambda z: rattn.group_rmsnorm(x, z), gamma, ug) * dy)
    assert abs(fdg - np.sum(g["dgamma"] * ug)) < 1e-6 * abs(fdg)  # dgamma summed over (B, T)


def test_rope(rng):
    x = rng.standard_normal((2, 9, 3, 8))
    y, g = rattn.rope(x, do=x)
    assert np.allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1))  # a rotation per pair
    assert np.allclose(y[:, 0], x[:, 0])  # position 0: angle 0
    assert np.allclose(rattn.rope(y, do=y)[1]["dx"], x)  # the backward is the inverse rotation
    # pos0 shifts the positions: rows 4.. of a sequence are the rope of those rows at pos0 = 4
    assert np.allclose(rattn.rope(x[:, 4:], pos0=4), y[:, 4:])
    dy = rng.standard_normal(x.shape)
    u = rng.standard_normal(x.shape)
    fd = np.sum(directional(lambda z: rattn.rope(z), x, u) * dy)
    assert abs(fd - np.sum(rattn.rope(x, do=dy)[1]["dx"] * u)) < 1e-6 * abs(fd)


def test_bhtd_layout_by_transpose(rng):
    """(B, H, T, D) tensors: transpose in, transpose out, as docs/python.md says."""
    q, k, v, _ = qkv(rng)
    qh, kh, vh = (a.transpose(0, 2, 1, 3).copy() for a in (q, k, v))  # what a (B, H, T, D) user holds
    oh = rattn.swa(qh.transpose(0, 2, 1, 3), kh.transpose(0, 2, 1, 3), vh.transpose(0, 2, 1, 3), 3)
    assert np.array_equal(oh.transpose(0, 2, 1, 3), rattn.swa(q, k, v, 3).transpose(0, 2, 1, 3))


def test_float32_is_computed_in_float32(rng):
    q, k, v, _ = qkv(rng)
    o32 = rattn.rla(q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), 3)
    o64 = rattn.rla(q, k, v, 3)
    assert o32.dtype == np.float32
    assert 0 < rel(o32.astype(np.float64), o64) < 1e-5


@pytest.mark.parametrize("call,match", [
    (lambda q, k, v: rattn.swa(q.astype(np.int64), k, v, 3), "q has dtype int64"),
    (lambda q, k, v: rattn.swa(q.astype(np.float16), k, v, 3), "q has dtype float16"),
    (lambda q, k, v: rattn.swa(q, k.astype(np.float32), v, 3), "k is float32 but q is float64"),
    (lambda q, k, v: rattn.swa(q[0], k, v, 3), r"q has shape \(37, 4, 8\), expected rank 4"),
    (lambda q, k, v: rattn.swa(q, k[:, :5], v, 3), "k has shape"),
    (lambda q, k, v: rattn.swa(q, k, v[..., :4], 3), "v has shape"),
    (lambda q, k, v: rattn.swa(q[:, :, :3], k, v, 3), "not a multiple of G"),
    (lambda q, k, v: rattn.swa(q, k, v, -2), "window must be >= -1"),
    (lambda q, k, v: rattn.swa(q, k, v, 2.5), "window must be an integer"),
    (lambda q, k, v: rattn.swa(q, k, v, 3, do=q[:, :3]), "do has shape"),
    (lambda q, k, v: rattn.swa(q.tolist(), k, v, 3), "q must be a NumPy array"),
    (lambda q, k, v: rattn.swa(np.where(q > 2, np.nan, q), k, v, 3), "q holds a non-finite value"),
    (lambda q, k, v: rattn.rla(q, k, v, 3, feature="elu"), "feature must be one of"),
    (lambda q, k, v: rattn.rla(q, k, v, 3, form="fast"), "form must be"),
    (lambda q, k, v: rattn.rla(q, k, v, 3, chunk=0), "chunk must be >= 1"),
    (lambda q, k, v: rattn.rla(q, k, v, 3, h0=np.zeros((2, 2, 8, 8))), r"h0 has shape .* Dp = 16"),
    (lambda q, k, v: rattn.rattention(q, k, v, np.ones((4, 8)), np.ones((4, 8)), -1), "window must be >= 0"),
    (lambda q, k, v: rattn.rattention(q, k, v, np.ones((4, 7)), np.ones((4, 8)), 2), "gamma_swa has shape"),
    (lambda q, k, v: rattn.rattention(q[..., :7], k[..., :7], v[..., :7], np.ones((4, 7)), np.ones((4, 7)), 2),
     "even D"),
    (lambda q, k, v: rattn.rope(q[..., :7]), "even D"),
    (lambda q, k, v: rattn.group_rmsnorm(q, np.ones((3, 8))), "gamma has shape"),
])
def test_bad_arguments_are_value_errors_naming_them(rng, call, match):
    q, k, v, _ = qkv(rng)
    with pytest.raises(ValueError, match=match):
        call(q, k, v)
