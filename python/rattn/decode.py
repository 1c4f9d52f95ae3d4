"""Constant-memory decode of one local layer's attention core, one token at a time (docs/spec.md §3.1, §3.4).

The cache of a local RATTENTION layer is a ring of w+1 slots of raw (un-RoPE'd) k, v and one state
S = sum_j phi(k_j)^T v_j per kv head (G matrices (Dp, D)). At step t the slot t mod (w+1) still holds token
t-w-1, which leaves the window now: it is folded into S, then overwritten with k_t, v_t; SWA reads the ring
(RoPE at each stored position), RLA reads phi(q_t) S, and c_t = GRMS_swa(o_swa) + GRMS_rla(o_rla).
This is ref/decode.h's attention_layer_decode_step, the step bin/infer runs, called here on given q, k, v.

    dec = rattn.decode.Decoder(H=4, G=2, D=16, window=3, gamma_swa=gs, gamma_rla=gr)
    for t in range(T):
        c_t = dec.step(q[:, t], k[:, t], v[:, t])   # (B, H, D): row t of rattn.rattention(q, k, v, gs, gr, 3)
        S = dec.state                                # (B, G, Dp, D): S_{t-w-1}, the keys j <= t-w-1

A serving kernel is checked token by token against step(), its cache against state / ring_k / ring_v.
"""
import numpy as np

from . import DEFAULT_ROPE_THETA, _arrays, _feature, _int, _rattn, _shape

KINDS = ("rattn", "swa", "linear")


class Decoder:
    """Decode caches of B sequences through one local layer's attention core (ref/decode.h).

    kind: rattn (SWA + RLA, window >= 0), swa (SWA only, window >= 0) or linear (RLA over all of [0, t]:
    window unused). gamma_swa, gamma_rla (H, D): the branch norms' scales (default ones); their dtype,
    or dtype, picks the precision of the reference (float32 or float64).
    """

    def __init__(self, H, G, D, window, gamma_swa=None, gamma_rla=None, kind="rattn", feature="sm2",
                 rope_theta=DEFAULT_ROPE_THETA, eps=1e-8, batch=1, dtype=np.float64):
        H, G, D = _int("H", H, 1), _int("G", G, 1), _int("D", D, 1)
        if H % G:
            raise ValueError(f"H = {H} is not a multiple of G = {G}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        window = _int("window", window, 0 if kind != "linear" else -1)
        if kind != "linear" and D % 2:
            raise ValueError(f"D = {D}: the SWA branch applies RoPE, which needs an even D")
        dtype = np.dtype(dtype)
        if gamma_swa is None:
            gamma_swa = np.ones((H, D), dtype if gamma_rla is None else gamma_rla.dtype)
        if gamma_rla is None:
            gamma_rla = np.ones((H, D), gamma_swa.dtype)
        self._sfx, a = _arrays(gamma_swa=gamma_swa, gamma_rla=gamma_rla)
        _shape("gamma_swa", a["gamma_swa"], (H, D), "(H, D)")
        _shape("gamma_rla", a["gamma_rla"], (H, D), "(H, D)")
        self.H, self.G, self.D, self.window, self.kind = H, G, D, window, kind
        self.feature, self.batch = _feature(feature), _int("batch", batch, 1)
        self.dtype = a["gamma_swa"].dtype
        cls = getattr(_rattn, "Decoder" + self._sfx)
        self._dec = cls(self.batch, H, G, D, window if kind != "linear" else -1, kind, self.feature,
                        float(rope_theta), float(eps), a["gamma_swa"], a["gamma_rla"])

    def step(self, q, k, v):
        """One token for every sequence: q (B, H, D), k, v (B, G, D) (or (H, D), (G, D) when batch = 1)
        -> c (B, H, D) (or (H, D)), the core's output at position t; then t advances."""
        single = isinstance(q, np.ndarray) and q.ndim == 2 and self.batch == 1
        if single:
            q, k, v = (x[None] if isinstance(x, np.ndarray) else x for x in (q, k, v))
        sfx, a = _arrays(q=q, k=k, v=v)
        if sfx != self._sfx:
            raise ValueError(f"q is {a['q'].dtype} but this decoder computes in {self.dtype}")
        B, H, G, D = self.batch, self.H, self.G, self.D
        _shape("q", a["q"], (B, H, D), "(B, H, D): one token per sequence")
        _shape("k", a["k"], (B, G, D), "(B, G, D)")
        _shape("v", a["v"], (B, G, D), "(B, G, D)")
        c = self._dec.step(a["q"], a["k"], a["v"])
        return c[0] if single else c

    @property
    def t(self):
        """Tokens decoded so far: the position of the next token."""
        return self._dec.t

    @property
    def state(self):
        """The RLA state S of every sequence, (B, G, Dp, D): after token t it holds the keys j <= t-w-1
        (rattn; linear: j <= t). A copy. (B, 0, 0, 0) for kind swa."""
        return self._dec.state

    @property
    def ring_k(self):
        """The ring's raw keys, (B, w+1, G, D), slot i holding the position ring_pos[i]. A copy."""
        return self._dec.ring_k

    @property
    def ring_v(self):
        """The ring's values, (B, w+1, G, D). A copy."""
        return self._dec.ring_v

    @property
    def ring_pos(self):
        """The position each ring slot holds (-1: empty), the same for every sequence."""
        return list(self._dec.ring_pos)

    @property
    def bytes(self):
        """Bytes the cache of one sequence holds (ring and state; constant in t for rattn, swa, linear)."""
        return self._dec.bytes


def run(q, k, v, window, gamma_swa=None, gamma_rla=None, kind="rattn", feature="sm2",
        rope_theta=DEFAULT_ROPE_THETA, eps=1e-8):
    """Decodes whole sequences token by token: q (B, T, H, D), k, v (B, T, G, D) -> c (B, T, H, D).
    For kind rattn this equals rattn.rattention(q, k, v, gamma_swa, gamma_rla, window) up to rounding."""
    sfx, a = _arrays(q=q, k=k, v=v)
    B, T, H, D = a["q"].shape if a["q"].ndim == 4 else (None,) * 4
    if B is None or a["k"].ndim != 4:
        raise ValueError("q must be (B, T, H, D) and k, v (B, T, G, D)")
    G = a["k"].shape[2]
    dec = Decoder(H, G, D, window, gamma_swa, gamma_rla, kind, feature, rope_theta, eps, batch=B,
                  dtype=a["q"].dtype)
    return np.stack([dec.step(a["q"][:, t], a["k"][:, t], a["v"][:, t]) for t in range(T)], axis=1)
