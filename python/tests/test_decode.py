# rattn.decode: the constant-memory decode step of ref/decode.h, token by token, against the full-sequence
# forward, and its cache (ring of w+1 slots, state S) against its definition (docs/spec.md §3.1).
import numpy as np
import pytest

import rattn
from rattn import decode


def rel(got, want):
    return float(np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want ** 2)))


def inputs(rng, B=2, T=29, H=4, G=2, D=8):
    return (rng.standard_normal((B, T, H, D)), rng.standard_normal((B, T, G, D)),
            rng.standard_normal((B, T, G, D)), 1 + 0.2 * rng.standard_normal((H, D)),
            1 + 0.2 * rng.standard_normal((H, D)))


@pytest.mark.parametrize("w,G,feature", [(0, 2, "sm2"), (3, 2, "sm2"), (3, 1, "relu2"), (5, 4, "identity"),
                                         (28, 2, "sm2"), (40, 2, "sm2")])
def test_decode_reproduces_the_forward(rng, w, G, feature):
    q, k, v, gs, gr = inputs(rng, G=G)
    want = rattn.rattention(q, k, v, gs, gr, w, feature=feature)
    got = decode.run(q, k, v, w, gs, gr, feature=feature)
    assert rel(got, want) < 1e-12
    got32 = decode.run(*(a.astype(np.float32) for a in (q, k, v)), w, gs.astype(np.float32),
                       gr.astype(np.float32), feature=feature)
    assert got32.dtype == np.float32 and rel(got32.astype(np.float64), want) < 1e-5


def test_swa_and_linear_kinds(rng):
    q, k, v, gs, gr = inputs(rng)
    # kind swa: the rattention core without its RLA branch, i.e. with gamma_rla = 0
    want = rattn.rattention(q, k, v, gs, np.zeros_like(gr), 3)
    assert rel(decode.run(q, k, v, 3, gs, gr, kind="swa"), want) < 1e-12
    # kind linear: GRMS_rla(RLA over all of [0, t])
    want = rattn.group_rmsnorm(rattn.rla(q, k, v, -1), gr)
    assert rel(decode.run(q, k, v, 0, gs, gr, kind="linear"), want) < 1e-12


def test_cache_is_the_ring_and_the_state(rng):
    w, T = 3, 11
    q, k, v, gs, gr = inputs(rng, B=1, T=T)
    dec = decode.Decoder(4, 2, 8, w, gs, gr)
    sizes = set()
    for t in range(T):
        dec.step(q[0, t], k[0, t], v[0, t])
        assert dec.t == t + 1
        # the ring holds the window [max(0, t-w), t], raw keys and values in slot j mod (w+1)
        assert sorted(p for p in dec.ring_pos if p >= 0) == list(range(max(0, t - w), t + 1))
        for slot, p in enumerate(dec.ring_pos):
            if p >= 0:
                assert np.array_equal(dec.ring_k[0, slot], k[0, p]) and np.array_equal(dec.ring_v[0, slot], v[0, p])
        # S = sum_{j <= t-w-1} phi(k_j)^T v_j, one (Dp, D) matrix per kv head
        n = max(0, t - w)
        want = np.einsum("jge,jgd->ged", rattn.phi(k[0, :n]), v[0, :n])
        assert dec.state.shape == (1, 2, 16, 8)
        assert np.allclose(dec.state[0], want, rtol=1e-12, atol=1e-12)
        sizes.add(dec.bytes)
    assert len(sizes) == 1  # constant memory


def test_decoder_arguments(rng):
    with pytest.raises(ValueError, match="not a multiple of G"):
        decode.Decoder(4, 3, 8, 2)
    with pytest.raises(ValueError, match="window must be >= 0"):
        decode.Decoder(4, 2, 8, -1)
    with pytest.raises(ValueError, match="kind must be"):
        decode.Decoder(4, 2, 8, 2, kind="global")
    dec = decode.Decoder(4, 2, 8, 2, batch=2)
    with pytest.raises(ValueError, match=r"q has shape \(1, 4, 8\)"):
        dec.step(np.zeros((1, 4, 8)), np.zeros((2, 2, 8)), np.zeros((2, 2, 8)))
    with pytest.raises(ValueError, match="float32 but this decoder computes in float64"):
        dec.step(*(np.zeros(s, np.float32) for s in ((2, 4, 8), (2, 2, 8), (2, 2, 8))))
