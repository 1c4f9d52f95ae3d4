# rattn.testing.check: a correct NumPy kernel passes; each deliberate bug in a planted NumPy kernel
# (tests/kernels.py) is caught, with the diagnosis that names it.
import numpy as np
import pytest

import kernels
import rattn
import rattn.testing


def rla_kernel(bug=None):
    def fn(q, k, v, window, feature="sm2", h0=None, do=None):
        return kernels.rla(q, k, v, window, feature, h0, do, bug=bug)
    return fn


def swa_kernel(bug=None):
    def fn(q, k, v, window, do=None):
        return kernels.swa(q, k, v, window, do, bug=bug)
    return fn


def test_correct_numpy_kernels_pass():
    assert rattn.testing.check(rla_kernel(), op="rla")
    assert rattn.testing.check(swa_kernel(), op="swa")


@pytest.mark.parametrize("op", rattn.testing.OPS)
def test_the_reference_passes_its_own_check(op):
    fn = {"swa": rattn.swa, "rla": rattn.rla, "rattn": rattn.rattention}[op]
    report = rattn.testing.check(fn, op=op, dtypes=("float32", "bfloat16", "float64"))
    assert report, report
    assert "0 failed" in str(report)


@pytest.mark.parametrize("op,bug,kind,diagnosis", [
    ("rla", "off_by_one", "leak", "keys within the window leaked into RLA (off by one)"),
    ("rla", "leak", "leak", "the shift by w+1 is missing"),
    ("rla", "shift_q", "shift_q", "the shift is applied to q instead of k"),
    ("rla", "gqa_not_summed", "gqa_not_summed",
     "GQA heads not summed: dk of kv head g is the last query head of its group only"),
    ("rla", "gqa_modulo", "gqa_mapping", "GQA head mapping: query head h reads kv head h % G"),
    ("swa", "off_by_one", "window", "the window is off by one"),
    ("swa", "gqa_not_summed", "gqa_not_summed", "GQA heads not summed"),
])
def test_each_planted_bug_is_caught_and_named(op, bug, kind, diagnosis):
    fn = rla_kernel(bug) if op == "rla" else swa_kernel(bug)
    report = rattn.testing.check(fn, op=op)
    assert not report
    text = str(report)
    # the report names the case, the tensor and an element with both values
    assert "FAILED case" in text and "want" in text and "relative RMS error" in text
    assert report.kind == kind, text
    assert diagnosis in report.diagnosis, text
    # no failure examined is put down to another mistake
    assert {f.kind for f in report.failures if f.kind} == {kind}, text


def test_off_by_one_in_swa_names_the_convention():
    report = rattn.testing.check(swa_kernel("off_by_one"), op="swa")
    assert "a window of W tokens including the query is w = W-1" in report.diagnosis


def test_off_by_one_in_rattention():
    def fn(q, k, v, gamma_swa, gamma_rla, window, feature="sm2", do=None):
        return rattn.rattention(q, k, v, gamma_swa, gamma_rla, window + 1, feature=feature, do=do)
    report = rattn.testing.check(fn, op="rattn")
    assert not report and "the window is off by one" in report.diagnosis


def test_tolerance_scales_with_the_dtype():
    """An output rounded to bfloat16 passes the bfloat16 cases and fails the float32 ones."""
    def bf16_output(q, k, v, window, feature="sm2", h0=None):
        return rattn.testing._round_bf16(rattn.rla(q, k, v, window, feature=feature, h0=h0))
    assert rattn.testing.check(bf16_output, op="rla", dtypes=("bfloat16",))
    report = rattn.testing.check(bf16_output, op="rla", dtypes=("float32",))
    assert not report and report.diagnosis is None  # an error, but no known mistake


def test_a_small_error_fails_in_float32():
    def noisy(q, k, v, window):
        o = rattn.swa(q, k, v, window)
        return o * (1 + 1e-4)
    assert not rattn.testing.check(noisy, op="swa", dtypes=("float32",))


def test_wrong_layout_and_exceptions_are_reported():
    def bhtd(q, k, v, window):
        return rattn.swa(q, k, v, window).transpose(0, 2, 1, 3)
    report = rattn.testing.check(bhtd, op="swa", dtypes=("float32",))
    assert not report and "transpose(0, 2, 1, 3)" in str(report)

    def no_gqa(q, k, v, window):
        if q.shape[2] != k.shape[2]:
            raise NotImplementedError("GQA")
        return rattn.swa(q, k, v, window)
    report = rattn.testing.check(no_gqa, op="swa", dtypes=("float32",))
    assert not report and "fn raised NotImplementedError: GQA" in str(report)


def test_raise_on_failure_and_arguments():
    with pytest.raises(AssertionError, match="GQA heads not summed"):
        rattn.testing.check(swa_kernel("gqa_not_summed"), op="swa", raise_on_failure=True)
    with pytest.raises(ValueError, match="op must be"):
        rattn.testing.check(rattn.swa, op="flash")
    with pytest.raises(ValueError, match="dtypes"):
        rattn.testing.check(rattn.swa, op="swa", dtypes=("float8",))


def test_grid_covers_the_edges():
    grid = rattn.testing.cases("rla", chunk=64, long_T=512)
    has = lambda pred: any(pred(c) for c in grid)
    assert has(lambda c: c.w == 0) and has(lambda c: c.w == c.T - 1) and has(lambda c: c.w >= c.T)
    assert has(lambda c: c.w == -1) and has(lambda c: c.T == 1) and has(lambda c: c.T % 64 != 0 and c.T > 64)
    assert has(lambda c: c.H == c.G) and has(lambda c: c.G == 1) and has(lambda c: c.H // c.G == 3)
    assert {c.feature for c in grid} == set(rattn.FEATURES) and has(lambda c: c.h0) and has(lambda c: c.T >= 512)
    assert {c.dtype for c in grid} == {"float32", "bfloat16"}
