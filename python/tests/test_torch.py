# rattn.testing.check on a PyTorch kernel: the gradients come from autograd. Skipped without PyTorch (the
# package itself never needs it).
import pytest

torch = pytest.importorskip("torch")

import rattn.testing  # noqa: E402


def torch_rla(q, k, v, window, feature="sm2", h0=None, shift=None):
    """RLA in PyTorch, masked form (docs/spec.md §2.3): o_t = phi(q_t) h0 + sum_{j <= t-w-1} phi(q_t).phi(k_j) v_j."""
    def phi(x):
        if feature == "identity":
            return x
        if feature == "relu2":
            return torch.cat([torch.relu(x), torch.relu(-x)], -1)
        return torch.cat([torch.softmax(x, -1), torch.softmax(-x, -1)], -1)
    B, T, H, D = q.shape
    r = H // k.shape[2]
    s = window + 1 if shift is None else shift
    Qf = phi(q.float())
    Kf = phi(k.float()).repeat_interleave(r, dim=2)
    V = v.float().repeat_interleave(r, dim=2)
    t = torch.arange(T, device=q.device)
    M = (t[None, :] <= t[:, None] - s).float()
    o = torch.einsum("bhtj,bjhd->bthd", torch.einsum("bthe,bjhe->bhtj", Qf, Kf) * M, V)
    if h0 is not None:
        o = o + torch.einsum("bthe,bhed->bthd", Qf, h0.float().repeat_interleave(r, dim=1))
    return o.to(q.dtype)


def test_torch_autograd_kernel_passes():
    report = rattn.testing.check(torch_rla, op="rla", framework="torch")
    assert report, report


def test_torch_kernel_with_a_leak_is_caught():
    def leaky(q, k, v, window, feature="sm2", h0=None):
        return torch_rla(q, k, v, window, feature, h0, shift=0)
    report = rattn.testing.check(leaky, op="rla", framework="torch", dtypes=("float32",))
    assert not report and "leaked into RLA" in report.diagnosis
