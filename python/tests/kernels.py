"""Test fixtures: attention kernels written in NumPy, as a kernel author would write them, one correct and
several with a deliberate bug each, for rattn.testing.check to pass or to catch. They are written from the
formulas of docs/spec.md, independently of ref/ (the masked form for RLA, the window loop for SWA).

Layout (B, T, heads, D); GQA: query head h reads kv head g = h // (H/G).
"""
import numpy as np


def phi(x, feature):
    """docs/spec.md §2.4: sm2 = [softmax(x), softmax(-x)], relu2 = [relu(x), relu(-x)], identity = x."""
    if feature == "identity":
        return x
    if feature == "relu2":
        return np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], axis=-1)
    a = np.exp(x - x.max(axis=-1, keepdims=True))
    b = np.exp(x.min(axis=-1, keepdims=True) - x)
    return np.concatenate([a / a.sum(-1, keepdims=True), b / b.sum(-1, keepdims=True)], axis=-1)


def phi_backward(y, dy, feature):
    """dx from y = phi(x) and dy (docs/spec.md §4.4)."""
    if feature == "identity":
        return dy
    D = y.shape[-1] // 2
    y1, y2, g1, g2 = y[..., :D], y[..., D:], dy[..., :D], dy[..., D:]
    if feature == "relu2":
        return g1 * (y1 > 0) - g2 * (y2 > 0)
    return (y1 * (g1 - (g1 * y1).sum(-1, keepdims=True))
            - y2 * (g2 - (g2 * y2).sum(-1, keepdims=True)))


def rla(q, k, v, window, feature="sm2", h0=None, do=None, bug=None):
    """RLA, masked form: o_t = phi(q_t) h0 + sum_{j <= t-w-1} (phi(q_t) . phi(k_j)) v_j  (docs/spec.md §2.3, §4.2).

    bug: None (correct) | "off_by_one" (reads j <= t-w) | "leak" (reads every j <= t: no shift) |
    "shift_q" (shifts the queries instead of the keys) | "gqa_not_summed" (dk, dv, dh0 of a kv head are the
    last query head's only) | "gqa_modulo" (query head h reads kv head h % G).
    """
    B, T, H, D = q.shape
    G = k.shape[2]
    r = H // G
    g_of_h = np.arange(H) % G if bug == "gqa_modulo" else np.arange(H) // r
    s = window + 1
    if bug == "off_by_one":
        s -= 1
    if bug in ("leak", "shift_q"):
        s = 0
    t = np.arange(T)
    M = (t[None, :] <= t[:, None] - s).astype(q.dtype)  # M[t, j] = [j <= t - s]
    Qf, Kf = phi(q, feature), phi(k, feature)[:, :, g_of_h]  # (B, T, H, Dp)
    V = v[:, :, g_of_h]
    A = np.einsum("bthe,bjhe->bhtj", Qf, Kf) * M
    o = np.einsum("bhtj,bjhd->bthd", A, V)
    if h0 is not None:
        o += np.einsum("bthe,bhed->bthd", Qf, h0[:, g_of_h])
    if bug == "shift_q":  # o_t = L_{t-w-1}: the queries moved instead of the keys
        sh = window + 1
        o = np.concatenate([np.zeros_like(o[:, :sh]), o[:, :T - sh]], axis=1)[:, :T]
    if do is None:
        return o
    if bug == "shift_q":
        sh = window + 1
        do = np.concatenate([do[:, sh:], np.zeros_like(do[:, :min(sh, T)])], axis=1)[:, :T]
    # In the forward pass this was: A = (Q~ K~^T) * M; o = A V + Q~ h0, so now:
    dA = np.einsum("bthd,bjhd->bhtj", do, V) * M
    dQf = np.einsum("bhtj,bjhe->bthe", dA, Kf)
    if h0 is not None:
        dQf += np.einsum("bthd,bhed->bthe", do, h0[:, g_of_h])
    dKf_h = np.einsum("bhtj,bthe->bjhe", dA, Qf)   # per query head
    dV_h = np.einsum("bhtj,bthd->bjhd", A, do)
    dh0_h = np.einsum("bthe,bthd->bhed", Qf, do)

    def to_kv(x, axis):  # sum the query heads of each group into their kv head
        out = np.zeros(x.shape[:axis] + (G,) + x.shape[axis + 1:], x.dtype)
        for h in range(H):
            idx = [slice(None)] * x.ndim
            idx[axis] = g_of_h[h]
            src = x.take(h, axis=axis)
            if bug == "gqa_not_summed":
                out[tuple(idx)] = src      # the bug: each head overwrites, the last one wins
            else:
                out[tuple(idx)] += src
        return out

    dq = phi_backward(Qf, dQf, feature)
    dk = phi_backward(phi(k, feature), to_kv(dKf_h, 2), feature)
    grads = {"dq": dq, "dk": dk, "dv": to_kv(dV_h, 2)}
    if h0 is not None:
        grads["dh0"] = to_kv(dh0_h, 1)
    return o, grads


def swa(q, k, v, window, do=None, bug=None):
    """Sliding-window softmax attention over [max(0, t-w), t], scale 1/sqrt(D) (docs/spec.md §2.2, §4.1).

    bug: None | "off_by_one" (reads [t-w+1, t], a window of w keys including the query) |
    "gqa_not_summed" (dk, dv of a kv head are the last query head's only).
    """
    B, T, H, D = q.shape
    G = k.shape[2]
    g_of_h = np.arange(H) // (H // G)
    t = np.arange(T)
    lo = t - window if window >= 0 else np.full(T, -T)
    if bug == "off_by_one" and window >= 0:
        lo = lo + 1
    mask = (t[None, :] <= t[:, None]) & (t[None, :] >= lo[:, None])  # (t, j)
    K, V = k[:, :, g_of_h], v[:, :, g_of_h]
    s = np.einsum("bthd,bjhd->bhtj", q, K) / np.sqrt(D)
    s = np.where(mask, s, -np.inf)
    with np.errstate(invalid="ignore"):  # the off-by-one kernel's empty window at w = 0 gives nan, as it would
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
    o = np.einsum("bhtj,bjhd->bthd", p, V)
    if do is None:
        return o
    # In the forward pass this was: s = q K^T / sqrt(D); p = softmax(s); o = p V, so now:
    dp = np.einsum("bthd,bjhd->bhtj", do, V)
    ds = p * (dp - (p * dp).sum(-1, keepdims=True)) / np.sqrt(D)
    dq = np.einsum("bhtj,bjhd->bthd", ds, K)
    dK_h = np.einsum("bhtj,bthd->bjhd", ds, q)
    dV_h = np.einsum("bhtj,bthd->bjhd", p, do)
    dk, dv = np.zeros_like(k), np.zeros_like(v)
    for h in range(H):
        if bug == "gqa_not_summed":
            dk[:, :, g_of_h[h]], dv[:, :, g_of_h[h]] = dK_h[:, :, h], dV_h[:, :, h]
        else:
            dk[:, :, g_of_h[h]] += dK_h[:, :, h]
            dv[:, :, g_of_h[h]] += dV_h[:, :, h]
    return o, {"dq": dq, "dk": dk, "dv": dv}
