"""rattn: the reference RATTENTION ops of ref/ on NumPy arrays, and a checker for attention kernels.

RATTENTION (arXiv 2506.15545) = sliding-window attention (SWA) over the keys [t-w, t] plus a residual
linear attention (RLA) over exactly the keys j <= t-w-1 that have left the window (docs/spec.md §0, §2).

Every function here calls the C++ reference of ref/ (the extension rattn._rattn); none computes the math
in Python. Arrays are (B, T, heads, D), C order, like FlashAttention:

    q, o: (B, T, H, D)    k, v: (B, T, G, D), H a multiple of G (GQA: query head h reads kv head h // (H/G))

From (B, H, T, D) tensors pass ``q.transpose(0, 2, 1, 3)`` (NumPy makes a C-order copy) and transpose the
results back the same way. float32 and float64 are accepted, every array of one call in one dtype; the
reference then computes in that dtype (float64 is the oracle). With ``do=`` (the gradient of the loss with
respect to the output) a function returns ``(o, grads)``, grads a dict of every gradient.

The window w counts keys to the LEFT of the query (FlashAttention's ``window_size=(w, 0)``): SWA at t reads
[max(0, t-w), t], RLA reads j <= t-w-1; w = -1 is "no window" (global SWA; RLA over all of [0, t]).
Details and examples: docs/python.md.
"""
import numpy as np

from . import _rattn

__all__ = ["swa", "rla", "rattention", "rope", "phi", "group_rmsnorm", "feature_dim", "FEATURES",
           "DEFAULT_ROPE_THETA", "decode", "testing", "load", "Model"]

FEATURES = ("sm2", "relu2", "identity")
DEFAULT_ROPE_THETA = _rattn.default_rope_theta


# ---- argument checks: every bad argument is a ValueError that names it ----------------------------------

def _array(name, x):
    if x is None:
        raise ValueError(f"{name} is required")
    if not isinstance(x, np.ndarray):
        hint = " (a torch tensor: pass x.detach().cpu().numpy())" if type(x).__module__.startswith("torch") else ""
        raise ValueError(f"{name} must be a NumPy array of float32 or float64, got {type(x).__name__}{hint}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} has dtype {x.dtype}: rattn takes float32 or float64 "
                         f"(e.g. {name}.astype(np.float32))")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds a non-finite value (nan or inf): inputs must be finite")
    return np.ascontiguousarray(x)  # no copy when x is already C-contiguous


def _arrays(**named):
    """Checks every non-None array; all must share one dtype. -> (suffix of the binding, dict of arrays)."""
    out, first = {}, None
    for name, x in named.items():
        if x is None:
            out[name] = None
            continue
        a = _array(name, x)
        if first is None:
            first = (name, a.dtype)
        elif a.dtype != first[1]:
            raise ValueError(f"{name} is {a.dtype} but {first[0]} is {first[1]}: give every array the same dtype")
        out[name] = a
    return ("_f32" if first[1] == np.float32 else "_f64"), out


def _fn(name, sfx):
    return getattr(_rattn, name + sfx)


def _shape(name, a, want, what):
    if tuple(a.shape) != tuple(want):
        raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {tuple(want)} {what}")


def _qkv(a):
    """q (B, T, H, D); k, v (B, T, G, D); H % G == 0. -> B, T, H, G, D"""
    q, k, v = a["q"], a["k"], a["v"]
    if q.ndim != 4:
        raise ValueError(f"q has shape {q.shape}, expected rank 4 (B, T, H, D); from (B, H, T, D) pass "
                         "q.transpose(0, 2, 1, 3)")
    B, T, H, D = q.shape
    if min(q.shape) < 1:
        raise ValueError(f"q has shape {q.shape}: every dimension must be >= 1")
    if k.ndim != 4:
        raise ValueError(f"k has shape {k.shape}, expected rank 4 (B, T, G, D)")
    G = k.shape[2]
    _shape("k", k, (B, T, G, D), "(B, T, G, D) with B, T, D from q")
    if G < 1:
        raise ValueError(f"k has shape {k.shape}: G must be >= 1")
    _shape("v", v, k.shape, "(the shape of k)")
    if H % G != 0:
        raise ValueError(f"q has H = {H} heads, not a multiple of G = {G} kv heads of k")
    if a.get("do") is not None:
        _shape("do", a["do"], q.shape, "(the shape of q)")
    return B, T, H, G, D


def _int(name, x, lo):
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    if x < lo:
        raise ValueError(f"{name} must be >= {lo}, got {x}")
    return int(x)


def _feature(feature):
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {', '.join(FEATURES)}, got {feature!r}")
    return feature


def feature_dim(feature, D):
    """Width Dp of phi(x) for head dim D: 2D for sm2 and relu2, D for identity (docs/spec.md §2.4)."""
    return _rattn.feature_dim(_feature(feature), _int("D", D, 1))


# ---- the ops ---------------------------------------------------------------------------------------------

def swa(q, k, v, window, scale=None, do=None):
    """Sliding-window causal softmax attention (docs/spec.md §2.2; ref/attention.h swa_forward).

    o[t, h] = sum_{j in [max(0, t-w), t]} softmax_j(scale q[t, h] . k[j, g]) v[j, g],  g = h // (H/G)
    q (B, T, H, D), k, v (B, T, G, D); window w >= -1 (-1: global causal); scale default 1/sqrt(D).
    No RoPE. -> o (B, T, H, D); with do: (o, {"dq", "dk", "dv"}).
    """
    sfx, a = _arrays(q=q, k=k, v=v, do=do)
    D = _qkv(a)[4]
    w = _int("window", window, -1)
    scale = 1.0 / np.sqrt(D) if scale is None else float(scale)
    o = _fn("swa", sfx)(a["q"], a["k"], a["v"], w, scale)
    if do is None:
        return o
    dq, dk, dv = _fn("swa_backward", sfx)(a["q"], a["k"], a["v"], a["do"], w, scale)
    return o, {"dq": dq, "dk": dk, "dv": dv}


def rla(q, k, v, window, feature="sm2", h0=None, form="chunked", chunk=64, do=None):
    """Residual linear attention over the keys that have left the window (docs/spec.md §2.3, §3; ref/rla.h).

    S_t = S_{t-1} + phi(k_t)^T v_t (S_{-1} = h0 or 0),  o_t = phi(q_t) S_{t-w-1}: the keys j <= t-w-1.
    q (B, T, H, D), k, v (B, T, G, D), h0 (B, G, Dp, D) one state per kv head, Dp = feature_dim(feature, D).
    window w >= -1 (-1: all of [0, t], no shift). feature: sm2 | relu2 | identity (applied to the raw q, k).
    form: chunked (chunk size chunk, what training uses) | masked (the quadratic definition) | recurrent
    (token by token; forward only). The result does not depend on the form or the chunk.
    -> o (B, T, H, D); with do: (o, {"dq", "dk", "dv", "dh0"}), dh0 the gradient of the initial state
    (of a zero state when h0 is None).
    """
    sfx, a = _arrays(q=q, k=k, v=v, h0=h0, do=do)
    B, T, H, G, D = _qkv(a)
    w = _int("window", window, -1)
    feature = _feature(feature)
    if form not in ("chunked", "masked", "recurrent"):
        raise ValueError(f"form must be chunked, masked or recurrent, got {form!r}")
    chunk = _int("chunk", chunk, 1)
    if a["h0"] is not None:
        Dp = feature_dim(feature, D)
        _shape("h0", a["h0"], (B, G, Dp, D), f"(B, G, Dp, D) with Dp = {Dp} for feature {feature}")
    o = _fn("rla", sfx)(a["q"], a["k"], a["v"], w, feature, form, chunk, a["h0"])
    if do is None:
        return o
    if form == "recurrent":
        raise ValueError("form='recurrent' has no backward in ref/rla.h: use form='chunked' or 'masked' with do=")
    dq, dk, dv, dh0 = _fn("rla_backward", sfx)(a["q"], a["k"], a["v"], a["do"], w, feature, form, chunk, a["h0"])
    return o, {"dq": dq, "dk": dk, "dv": dv, "dh0": dh0}


def rattention(q, k, v, gamma_swa, gamma_rla, window, feature="sm2", chunk=64, rope_theta=DEFAULT_ROPE_THETA,
               eps=1e-8, do=None):
    """The attention core of a local RATTENTION layer (docs/spec.md §2.2, §2.3, §2.4, §2.5;
    ref/rattention.h attn_core_forward).

    o = GRMS_swa(SWA(RoPE(q), RoPE(k), v; w, 1/sqrt(D))) + GRMS_rla(RLA(q, k, v; w, phi))
    q (B, T, H, D), k, v (B, T, G, D) before RoPE; gamma_swa, gamma_rla (H, D); window w >= 0; D even.
    -> o (B, T, H, D); with do: (o, {"dq", "dk", "dv", "dgamma_swa", "dgamma_rla"}), the gammas' gradients
    summed over the batch.
    """
    sfx, a = _arrays(q=q, k=k, v=v, gamma_swa=gamma_swa, gamma_rla=gamma_rla, do=do)
    B, T, H, G, D = _qkv(a)
    w = _int("window", window, 0)
    if D % 2:
        raise ValueError(f"q has head dim D = {D}: rattention applies RoPE, which needs an even D")
    _shape("gamma_swa", a["gamma_swa"], (H, D), "(H, D)")
    _shape("gamma_rla", a["gamma_rla"], (H, D), "(H, D)")
    chunk = _int("chunk", chunk, 1)
    r = _fn("rattention", sfx)(a["q"], a["k"], a["v"], a["gamma_swa"], a["gamma_rla"], w, _feature(feature), chunk,
                               float(rope_theta), float(eps), a["do"])
    if do is None:
        return r
    o, dq, dk, dv, dgs, dgr = r
    return o, {"dq": dq, "dk": dk, "dv": dv, "dgamma_swa": dgs, "dgamma_rla": dgr}


def rope(x, theta=DEFAULT_ROPE_THETA, pos0=0, do=None):
    """Interleaved RoPE (docs/spec.md §1.3, §4.6; ref/rope.h): pair (2i, 2i+1) of each head rotated by
    pos * theta^(-2i/D), row t of each sequence at position pos0 + t.
    x (B, T, n, D), D even -> y (B, T, n, D); with do: (y, {"dx"}).
    """
    sfx, a = _arrays(x=x, do=do)
    x = a["x"]
    if x.ndim != 4 or min(x.shape) < 1:
        raise ValueError(f"x has shape {x.shape}, expected (B, T, n, D) with every dimension >= 1")
    if x.shape[3] % 2:
        raise ValueError(f"x has head dim D = {x.shape[3]}: RoPE needs an even D")
    if a["do"] is not None:
        _shape("do", a["do"], x.shape, "(the shape of x)")
    pos0 = _int("pos0", pos0, 0)
    y = _fn("rope", sfx)(x, float(theta), pos0, +1)
    if do is None:
        return y
    return y, {"dx": _fn("rope", sfx)(a["do"], float(theta), pos0, -1)}


def phi(x, feature="sm2", do=None):
    """The RLA feature map on every D-vector of x (docs/spec.md §2.4; ref/feature_map.h):
    sm2 [softmax(x), softmax(-x)], relu2 [relu(x), relu(-x)], identity x.
    x (..., D) -> (..., Dp); with do (..., Dp): (y, {"dx"}).
    """
    sfx, a = _arrays(x=x, do=do)
    x, feature = a["x"], _feature(feature)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"x has shape {x.shape}, expected (..., D) with D >= 1")
    D = x.shape[-1]
    Dp = feature_dim(feature, D)
    rows = x.reshape(-1, D)
    y = _fn("phi", sfx)(rows, feature, None).reshape(x.shape[:-1] + (Dp,))
    if do is None:
        return y
    _shape("do", a["do"], x.shape[:-1] + (Dp,), f"(..., Dp) with Dp = {Dp}")
    dx = _fn("phi", sfx)(rows, feature, a["do"].reshape(-1, Dp)).reshape(x.shape)
    return y, {"dx": dx}


def group_rmsnorm(x, gamma, eps=1e-8, do=None):
    """Group RMSNorm, one norm per head (docs/spec.md §2.5, §4.5; ref/norm.h):
    y[..., h, :] = x[..., h, :] / sqrt(mean(x[..., h, :]^2) + eps) * gamma[h].
    x (..., H, D), gamma (H, D) -> y; with do: (y, {"dx", "dgamma"}), dgamma summed over every leading index.
    """
    sfx, a = _arrays(x=x, gamma=gamma, do=do)
    x, gamma = a["x"], a["gamma"]
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"x has shape {x.shape}, expected (..., H, D), not empty")
    H, D = x.shape[-2:]
    _shape("gamma", gamma, (H, D), "(H, D) with H, D the last two dims of x")
    if a["do"] is not None:
        _shape("do", a["do"], x.shape, "(the shape of x)")
    rows = x.reshape(-1, H, D)
    r = _fn("group_rmsnorm", sfx)(rows, gamma, float(eps), None if do is None else a["do"].reshape(-1, H, D))
    if do is None:
        return r.reshape(x.shape)
    y, dx, dgamma = r
    return y.reshape(x.shape), {"dx": dx.reshape(x.shape), "dgamma": dgamma}


from . import decode, testing  # noqa: E402  (they use the functions above)
from .model import Model, load  # noqa: E402
