#!/usr/bin/env python3
"""Rebuild a trained model in NumPy from `infer --export` alone and compare its logits with `infer --logits`.

    python3 scripts/rebuild_numpy.py CHECKPOINT [--infer bin/infer] [--prompt TEXT]

Everything below is written from config.json (its "model", "layers" and "conventions") and the NAME.npy
files; nothing is taken from the C++ code. It is the template for a PyTorch port: the same lines with
torch instead of numpy. Without NumPy it prints that it is skipped and exits 0; exit status 1 when the
logits disagree (relative RMS error above 1e-5: the model runs in float32, the rebuild in float64).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:  # pragma: no cover - depends on the machine
    print("rebuild_numpy: SKIPPED (numpy is not installed)")
    sys.exit(0)


def load_export(d):
    cfg = json.load(open(f"{d}/config.json"))
    W = {p["name"]: np.load(f"{d}/{p['file']}").astype(np.float64) for p in cfg["parameters"]}
    return cfg, W


def rms(x, gamma, eps):  # over the last axis
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * gamma


def softmax(s, axis=-1):
    e = np.exp(s - s.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def rope(x, theta):  # x (T, n, D): interleaved pairs (2i, 2i+1) rotated by t * theta^(-2i/D)
    T, n, D = x.shape
    ang = np.arange(T)[:, None] * theta ** (-2.0 * np.arange(D // 2) / D)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return np.stack([x0 * c - x1 * s, x0 * s + x1 * c], -1).reshape(T, n, D)


def phi(x, fm):
    if fm == "sm2":
        return np.concatenate([softmax(x), softmax(-x)], -1)
    if fm == "relu2":
        return np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], -1)
    return x


def softmax_attention(q, k, v, w):  # q (T, H, D), k, v (T, G, D); keys [t-w, t], w < 0: [0, t]
    T, H, D = q.shape
    k, v = np.repeat(k, H // k.shape[1], 1), np.repeat(v, H // v.shape[1], 1)  # head h reads kv head h // (H/G)
    s = np.einsum("thd,jhd->htj", q, k) / np.sqrt(D)
    t, j = np.arange(T)[:, None], np.arange(T)[None, :]
    s = np.where((j <= t) & ((j >= t - w) if w >= 0 else True), s, -np.inf)
    return np.einsum("htj,jhd->thd", softmax(s), v)


def residual_linear_attention(q, k, v, w, fm):  # sum over j <= t-w-1 of (phi(q_t).phi(k_j)) v_j
    T, H, D = q.shape
    fq, fk = phi(q, fm), np.repeat(phi(k, fm), H // k.shape[1], 1)
    a = np.einsum("the,jhe->htj", fq, fk) * (np.arange(T)[None, :] <= np.arange(T)[:, None] - w - 1)
    return np.einsum("htj,jhd->thd", a, np.repeat(v, H // v.shape[1], 1))


def logits(cfg, W, tokens):
    m = cfg["model"]
    H, G, D, eps, T = m["n_heads"], m["n_kv_heads"], m["head_dim"], m["norm_eps"], len(tokens)
    x = W["embed"][tokens]
    for L in cfg["layers"]:
        p = f"block{L['index']}."
        a = rms(x, W[p + "norm1"], eps)
        q = (a @ W[p + "attn.Wq"]).reshape(T, H, D)
        k = (a @ W[p + "attn.Wk"]).reshape(T, G, D)
        v = (a @ W[p + "attn.Wv"]).reshape(T, G, D)
        # conventions "qk_norm": layers flagged "qk_norm" norm q, k over D after RoPE, before 1/sqrt(D)
        qkn = (lambda q_, k_: (rms(q_, W[p + "attn.q_norm"], eps), rms(k_, W[p + "attn.k_norm"], eps))) \
            if L.get("qk_norm") else (lambda q_, k_: (q_, k_))
        if L["type"] == "global":
            c = softmax_attention(*qkn(q, k), v, -1)
        else:
            c = 0
            if L["swa_branch"]:  # RLA below reads the raw q, k
                o_swa = softmax_attention(*qkn(rope(q, m["rope_theta"]), rope(k, m["rope_theta"])), v, L["swa_window"])
                c = c + rms(o_swa, W[p + "attn.gamma_swa"], m["branch_eps"])
            if L["rla_branch"]:
                o_rla = residual_linear_attention(q, k, v, L["rla_window"], L["feature_map"])
                c = c + rms(o_rla, W[p + "attn.gamma_rla"], m["branch_eps"])
        y = x + c.reshape(T, H * D) @ W[p + "attn.Wo"]
        b = rms(y, W[p + "norm2"], eps)
        g = b @ W[p + "mlp.W1"]
        x = y + ((g / (1 + np.exp(-g))) * (b @ W[p + "mlp.W3"])) @ W[p + "mlp.W2"]
    return rms(x, W["norm_f"], eps) @ W["W_out"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--infer", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bin", "infer"))
    ap.add_argument("--prompt", default="the quick brown fox jumps over the lazy dog")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([a.infer, "--export", f"{d}/export", a.checkpoint], check=True)
        subprocess.run([a.infer, "--logits", a.checkpoint, "--prompt", a.prompt, "--out", f"{d}/logits.npy"],
                       check=True)
        cfg, W = load_export(f"{d}/export")
        want = np.load(f"{d}/logits.npy")
    got = logits(cfg, W, np.frombuffer(a.prompt.encode(), np.uint8).astype(np.int64))
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    ok = err <= 1e-5
    print(f"rebuild_numpy: {cfg['model']['layer_string']} {cfg['model']['local_kind']}: logits {want.shape} "
          f"relative RMS error {err:.2e} ({'ok' if ok else 'FAIL'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
