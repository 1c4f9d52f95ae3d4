"""rattn.testing: check your attention kernel against the reference over the cases people get wrong.

    import rattn.testing
    def test_my_rla():
        assert rattn.testing.check(my_rla, op="rla")

check() runs `fn` over a grid of cases (w = 0, w = T-1, w >= T, w = -1, T = 1, T not a multiple of the
chunk, a window across chunks, GQA ratios, every feature map, an initial state h0, a long T; float32 and
bfloat16 inputs), compares its output and, when it gives them, its gradients with the float64 reference of
ref/, and returns a Report: true when every case passed; otherwise its text names the case, the tensor, the
first wrong element and, where the error has a recognisable cause, a diagnosis (the window off by one, keys
within the window leaked into RLA, the shift applied to q instead of k, GQA heads not summed, the GQA head
mapping). Everything it compares with is computed by the reference ops of the rattn package.

How fn is called (NumPy arrays (B, T, heads, D), float32; docs/python.md has the details):
    op="swa":   fn(q, k, v, window)                                 -> o
    op="rla":   fn(q, k, v, window, feature=..., h0=...)            -> o
    op="rattn": fn(q, k, v, gamma_swa, gamma_rla, window, feature=...) -> o
feature= and h0= are passed only when fn takes them (otherwise only sm2 and no h0 are checked). If fn takes
do=, it is called with do= (the gradient of the loss with respect to o) and returns (o, grads), grads a dict
with dq, dk, dv (and dh0 with h0, dgamma_swa, dgamma_rla for rattn) or a tuple in that order: the signature
of rattn.swa / rattn.rla / rattn.rattention themselves. With framework="torch" the inputs are torch tensors
(float32 or bfloat16, on `device`) with requires_grad, and the gradients come from o.backward(do).

Tolerance (the idea of tests/check.h): the error of a tensor is rms(got - want) / max(rms(want), scale), scale
the RMS of its family (o: of v; gradients: of dq, dk, dv, dh0 together), so that exact zeros do not make the
error a ratio of two roundings. float32: it must be at most slack x the error of the reference's own float32
result plus a floor (1e-5 forward, 1e-4 backward); bfloat16 (inputs rounded to bfloat16): slack x 2^-8 x 2
forward, x 4 backward; float64: 1e-10 forward, 1e-9 backward.
"""
import inspect

import numpy as np

import rattn

OPS = ("swa", "rla", "rattn")
DTYPES = ("float32", "bfloat16", "float64")
_FLOOR = {"float32": (1e-5, 1e-4), "float64": (1e-10, 1e-9)}
_BF16_EPS = 2.0 ** -8


# ---- the grid ---------------------------------------------------------------------------------------------

class Case:
    """One point of the grid: shapes, window, feature map, h0, dtype, and a label saying what it tests."""

    def __init__(self, label, T, w, H=4, G=2, D=16, B=2, feature="sm2", h0=False, dtype="float32"):
        self.label, self.T, self.w, self.H, self.G, self.D, self.B = label, T, w, H, G, D, B
        self.feature, self.h0, self.dtype = feature, h0, dtype

    def __repr__(self):
        return (f"'{self.label}': B={self.B} T={self.T} H={self.H} G={self.G} D={self.D} w={self.w} "
                f"feature={self.feature} h0={'yes' if self.h0 else 'no'} dtype={self.dtype}")


def cases(op="rla", chunk=64, long_T=512, features=rattn.FEATURES, h0=True, dtypes=("float32", "bfloat16")):
    """The grid check() runs, as a list of Case (pass your own list to check(cases=...) to change it)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    C = int(chunk)
    grid = [
        Case("T = 1", 1, 0),
        Case("T = 1, w > 0", 1, 3),
        Case("w = 0 (the query alone in the window)", 16, 0),
        Case("small window", 16, 3),
        Case("w = T-1 (SWA is full causal attention, RLA reads nothing)", 16, 15),
        Case("w >= T", 16, 40),
        Case("T not a multiple of the chunk", C + 5, 7),
        Case("T = chunk - 1", max(C - 1, 2), 4),
        Case("w + 1 = chunk (the shift is a whole chunk)", 2 * C + 3, C - 1),
        Case("GQA H/G = 1 (one kv head per query head)", 33, 5, H=4, G=4),
        Case("GQA H/G = 4 (one kv head for all)", 33, 5, H=4, G=1),
        Case("GQA H/G = 3", 33, 5, H=6, G=2),
        Case("long T", long_T, 37),
    ]
    if op != "rattn":
        grid.insert(6, Case("w = -1 (no window: global SWA; RLA over all of [0, t])", 16, -1))
    if op != "swa":
        grid += [Case(f"feature map {f}", 33, 5, feature=f) for f in features if f != "sm2"]
    if op == "rla" and h0:
        grid += [Case("initial state h0", 33, 5, h0=True),
                 Case("initial state h0, T <= w+1 (o = phi(q) h0)", 4, 5, h0=True)]
    out = list(grid) if "float32" in dtypes else []
    for dt in dtypes:
        if dt not in DTYPES:
            raise ValueError(f"dtypes: {dt!r} is not one of {', '.join(DTYPES)}")
        if dt == "float32":
            continue
        picks = [c for c in grid if c.label in ("small window", "GQA H/G = 4 (one kv head for all)", "long T")]
        picks += [c for c in grid if c.h0][:1]
        for c in picks:
            out.append(Case(c.label, c.T, c.w, c.H, c.G, c.D, c.B, c.feature, c.h0, dt))
    return out


_default_cases = cases  # check() has an argument of that name


def _round_bf16(x):
    """float32 values rounded to the nearest bfloat16 (ties to even), kept as float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def _inputs(op, c, seed):
    """The case's inputs, float32 (bfloat16 values for a bfloat16 case), seeded."""
    rng = np.random.default_rng(seed)
    Dp = rattn.feature_dim(c.feature, c.D)
    x = {"q": rng.standard_normal((c.B, c.T, c.H, c.D)), "k": rng.standard_normal((c.B, c.T, c.G, c.D)),
         "v": rng.standard_normal((c.B, c.T, c.G, c.D)), "do": rng.standard_normal((c.B, c.T, c.H, c.D))}
    if op == "rattn":
        x["gamma_swa"] = 1 + 0.2 * rng.standard_normal((c.H, c.D))
        x["gamma_rla"] = 1 + 0.2 * rng.standard_normal((c.H, c.D))
    if c.h0:
        x["h0"] = 0.5 * rng.standard_normal((c.B, c.G, Dp, c.D))
    x = {n: a.astype(np.float32) for n, a in x.items()}
    if c.dtype == "bfloat16":
        x = {n: _round_bf16(a) for n, a in x.items()}
    if c.dtype == "float64":
        x = {n: a.astype(np.float64) for n, a in x.items()}
    return x


# ---- the reference, through the rattn ops ------------------------------------------------------------------

def _reference(op, x, w, feature, dtype=np.float64, do=None):
    """o and the gradients for the output gradient do (default x["do"]) from the rattn reference ops."""
    a = {n: v.astype(dtype) for n, v in x.items()}
    do = a["do"] if do is None else do.astype(dtype)
    if op == "swa":
        o, g = rattn.swa(a["q"], a["k"], a["v"], w, do=do)
    elif op == "rla":
        o, g = rattn.rla(a["q"], a["k"], a["v"], w, feature=feature, h0=a.get("h0"), do=do)
        if "h0" not in a:
            del g["dh0"]
    else:
        o, g = rattn.rattention(a["q"], a["k"], a["v"], a["gamma_swa"], a["gamma_rla"], w, feature=feature, do=do)
    return dict(o=o, **g)


# ---- calling the user's function ---------------------------------------------------------------------------

def _takes(fn, name):
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


_GRAD_ORDER = {"swa": ("dq", "dk", "dv"), "rla": ("dq", "dk", "dv", "dh0"),
               "rattn": ("dq", "dk", "dv", "dgamma_swa", "dgamma_rla")}


def _to_f64(x):
    if type(x).__module__.startswith("torch"):
        import torch
        return x.detach().to(torch.float64).cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _call(fn, op, c, x, framework, device, grads):
    """Runs fn on the case's inputs -> dict of float64 arrays: o and whatever gradients fn gave."""
    kw = {}
    if op != "swa" and _takes(fn, "feature"):
        kw["feature"] = c.feature
    names = ["q", "k", "v"] + (["gamma_swa", "gamma_rla"] if op == "rattn" else [])
    if c.h0:
        names.append("h0")
    if framework == "torch":
        import torch
        dt = torch.bfloat16 if c.dtype == "bfloat16" else torch.float64 if c.dtype == "float64" else torch.float32
        t = {n: torch.tensor(x[n], dtype=dt, device=device, requires_grad=grads) for n in names}
        if c.h0:
            kw["h0"] = t["h0"]
        args = [t[n] for n in names if n != "h0"]
        o = fn(*args, c.w, **kw)
        got = {"o": _to_f64(o)}
        if grads and getattr(o, "requires_grad", False):
            o.backward(torch.tensor(x["do"], dtype=o.dtype, device=o.device))
            for n in names:
                if t[n].grad is not None:
                    got["d" + n] = _to_f64(t[n].grad)
        return got
    if c.h0:
        kw["h0"] = x["h0"]
    args = [x[n] for n in names if n != "h0"]
    if grads:
        kw["do"] = x["do"]
    r = fn(*args, c.w, **kw)
    if not grads:
        return {"o": _to_f64(r)}
    if not isinstance(r, (tuple, list)) or len(r) != 2:
        raise TypeError("fn was called with do= and must return (o, grads), grads a dict or a tuple")
    o, g = r
    got = {"o": _to_f64(o)}
    if isinstance(g, dict):
        got.update({n: _to_f64(a) for n, a in g.items() if a is not None})
    else:
        got.update({n: _to_f64(a) for n, a in zip(_GRAD_ORDER[op], g) if a is not None})
    return got


# ---- comparing -----------------------------------------------------------------------------------------

def _rms(*arrays):
    n = sum(a.size for a in arrays)
    return float(np.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays) / max(n, 1)))


def _err(got, want, scale):
    """Relative RMS error, relative to max(rms(want), scale) (tests/check.h)."""
    yard = max(_rms(want), scale)
    e = _rms(got - want)
    return e / yard if yard > 0 else e


_AXES = {"o": "b, t, h, d", "dq": "b, t, h, d", "dk": "b, t, g, d", "dv": "b, t, g, d", "dh0": "b, g, i, d",
         "dgamma_swa": "h, d", "dgamma_rla": "h, d"}


def _scales(op, x, want):
    fam = [want[n] for n in ("dq", "dk", "dv", "dh0") if n in want]
    s = {"o": _rms(x["v"].astype(np.float64))}
    s.update({n: _rms(*fam) for n in ("dq", "dk", "dv", "dh0")})
    s.update({n: _rms(want[n]) for n in ("dgamma_swa", "dgamma_rla") if n in want})
    return s


class Failure:
    """One wrong tensor of one case: what check() reports."""

    def __init__(self, case, tensor, message, err=None, tol=None, diagnosis=None, examined=True, kind=None):
        self.case, self.tensor, self.message, self.err, self.tol, self.diagnosis = (
            case, tensor, message, err, tol, diagnosis)
        self.kind = kind  # the mistake diagnosed: window, leak, shift_q, gqa_mapping, gqa_not_summed (or None)
        self.examined = examined  # compared with the known mistakes (the first few failures are)

    def __str__(self):
        s = f"FAILED case {self.case!r}\n  {self.message}"
        if self.diagnosis:
            s += f"\n  diagnosis: {self.diagnosis}"
        return s


class Report:
    """The result of check(): true iff every case passed; str()/repr() is the report."""

    def __init__(self, op, n_cases, failures, notes, shown=3):
        self.op, self.n_cases, self.failures, self.notes, self.shown = op, n_cases, failures, notes, shown

    @property
    def passed(self):
        return not self.failures

    def __bool__(self):
        return self.passed

    @property
    def kind(self):
        """The most frequent kind of mistake diagnosed (window, leak, shift_q, gqa_mapping, gqa_not_summed),
        None when none was recognised or all passed."""
        kinds = [f.kind for f in self.failures if f.kind]
        return max(kinds, key=kinds.count) if kinds else None

    @property
    def diagnosis(self):
        """The diagnosis of the most frequent kind, as made for its case of widest window (the most telling:
        at w = 0 an off-by-one and a leak are the same mistake). None: none recognised, or all passed."""
        of_kind = [f for f in self.failures if f.kind and f.kind == self.kind]
        return max(of_kind, key=lambda f: f.case.w).diagnosis if of_kind else None

    @property
    def diagnoses(self):
        """Every diagnosis made, in case order (None for a failure with no recognisable cause)."""
        return [f.diagnosis for f in self.failures]

    def __str__(self):
        bad = len({id(f.case) for f in self.failures})
        head = (f"rattn.testing.check(op={self.op!r}): {self.n_cases - bad} of {self.n_cases} cases passed, "
                f"{bad} failed")
        lines = [head] + [f"  note: {n}" for n in self.notes]
        if self.kind:
            n = sum(f.kind == self.kind for f in self.failures)
            examined = sum(f.examined for f in self.failures)
            lines.append(f"  most frequent diagnosis ({n} of the {examined} wrong tensors examined): {self.diagnosis}")
        lines += [str(f) for f in self.failures[:self.shown]]
        if len(self.failures) > self.shown:
            lines.append(f"... and {len(self.failures) - self.shown} more wrong tensors (Report.failures)")
        return "\n".join(lines)

    __repr__ = __str__


def _element_report(name, got, want, yard, tol):
    """The first element (C order) whose error is far beyond the tolerance, and the worst one."""
    diff = np.abs(got - want)
    far = np.flatnonzero(diff.ravel() > 10 * tol * yard)
    worst = int(np.argmax(diff))
    def at(i):
        idx = ", ".join(str(int(j)) for j in np.unravel_index(i, got.shape))
        return f"{name}[{idx}] = {got.flat[i]:.6g}, want {want.flat[i]:.6g}"
    s = f"({_AXES.get(name, '')}) "
    if far.size:
        s += f"first wrong element {at(int(far[0]))}; "
    return s + f"worst {at(worst)}"


# ---- diagnosis: which plausible mistake does the wrong tensor match? -----------------------------------------

def _win(w):
    """The SWA window of query t as text: [t-w, t]."""
    return f"[t-{w}, t]" if w > 0 else "[t, t]"


def _candidates(op, c, x, tensor):
    """(kind, diagnosis, result dict) for the mistakes people make, each computed by the reference ops."""
    w, T, r = c.w, c.T, c.H // c.G
    f = c.feature
    out = []
    if op == "swa" and w >= 0:
        out.append(("window", f"the window is off by one: the result is the reference's at w = {w + 1}, keys {_win(w + 1)}; "
                    f"rattn's w = {w} reads the w+1 = {w + 1} keys {_win(w)}, the query's own included "
                    f"(FlashAttention window_size=(w, 0))", lambda: _reference(op, x, w + 1, f)))
        if w >= 1:
            out.append(("window", f"the window is off by one: the result is the reference's at w = {w - 1}, only {w} keys "
                        f"{_win(w - 1)}; rattn's w counts the keys LEFT of the query (w+1 in all): a window of W "
                        f"tokens including the query is w = W-1", lambda: _reference(op, x, w - 1, f)))
    if op == "rla":
        out.append(("window", f"the window is off by one: the result is the reference's at w = {w + 1}: your RLA leaves out "
                    f"key t-{w + 1}, which has left the SWA window {_win(w)} and belongs to RLA (j <= t-w-1)",
                    lambda: _reference(op, x, w + 1, f)))
        for w2 in range(w - 1, -2, -1):
            what = ("every key j <= t: the shift by w+1 is missing" if w2 == -1 else
                    f"j <= t-{w2 + 1}, key t-{w} included" if w2 == w - 1 else
                    f"j <= t-{w2 + 1}, keys t-{w} ... t-{w2 + 1} included")
            obo = " (off by one)" if w2 == w - 1 else ""
            out.append(("leak", f"keys within the window leaked into RLA{obo}: the result is the reference's at w = {w2}: "
                        f"your RLA reads {what}, but {_win(w)} is the SWA window; RLA reads exactly j <= t-{w + 1} "
                        f"(docs/spec.md §2.3)", (lambda w2=w2: _reference(op, x, w2, f))))
        if not c.h0 and w >= 0:
            def shifted_q():
                # o_t = L_{t-s} with L the unshifted linear attention (w = -1): the loss sum_t do_t . L_{t-s}
                # is the unshifted loss with do moved s rows earlier, so its gradients come from the same op.
                s = w + 1
                L = _reference(op, x, -1, f)
                do_up = np.zeros_like(x["do"])
                do_up[:, :max(T - s, 0)] = x["do"][:, s:]
                g = _reference(op, x, -1, f, do=do_up)
                o = np.zeros_like(L["o"])
                o[:, s:] = L["o"][:, :max(T - s, 0)]
                g["o"] = o
                return g
            out.append(("shift_q", f"the shift is applied to q instead of k: your o_t is phi(q_{{t-{w + 1}}}) S_{{t-{w + 1}}}, "
                        f"the unshifted linear attention of row t-{w + 1}; RLA shifts the keys: "
                        f"o_t = phi(q_t) S_{{t-w-1}} (docs/spec.md §3.2)", shifted_q))
    if op == "rattn":
        out.append(("window", f"the window is off by one: the result is the reference's at w = {w + 1}: SWA reads "
                    f"{_win(w + 1)} and RLA j <= t-{w + 2}, where rattn's w = {w} means SWA {_win(w)} (w+1 keys, the "
                    f"query's own included) and RLA j <= t-{w + 1}", lambda: _reference(op, x, w + 1, f)))
        if w >= 1:
            out.append(("window", f"the window is off by one: the result is the reference's at w = {w - 1}: SWA reads "
                        f"{_win(w - 1)} and RLA j <= t-{w}, where rattn's w = {w} means SWA {_win(w)} (w+1 keys, "
                        f"the query's own included) and RLA j <= t-{w + 1}", lambda: _reference(op, x, w - 1, f)))
    if r > 1 and c.G > 1:
        def modulo():
            # query head h reads kv head h % G: k, v (and h0) laid out so that kv head h % G sits at head h
            y = dict(x)
            for n in ("k", "v", "h0"):
                if n in x:
                    y[n] = np.concatenate([x[n]] * r, axis=2 if n != "h0" else 1)
            ref = _reference(op, y, w, f)
            return {"o": ref["o"], "dq": ref["dq"]}
        out.append(("gqa_mapping", "GQA head mapping: query head h reads kv head h % G; rattn (like FlashAttention) reads kv head "
                    "g = h // (H/G): consecutive query heads share a kv head (docs/spec.md §2.6)", modulo))
    if r > 1 and tensor in ("dk", "dv", "dh0"):
        def per_head():
            # every query head its own copy of its kv head: the per-query-head contributions, unsummed
            y = dict(x)
            for n in ("k", "v", "h0"):
                if n in x:
                    y[n] = np.repeat(x[n], r, axis=2 if n != "h0" else 1)
            return _reference(op, y, w, f)
        ax = 2 if tensor != "dh0" else 1
        def group(how):
            def make():
                p = per_head()[tensor]
                p = p.reshape(p.shape[:ax] + (c.G, r) + p.shape[ax + 1:])
                pick = {"first": p.take(0, axis=ax + 1), "last": p.take(r - 1, axis=ax + 1),
                        "mean": p.mean(axis=ax + 1)}[how]
                return {tensor: pick}
            return make
        for how, words in (("last", "the last query head of its group only"),
                           ("first", "the first query head of its group only"),
                           ("mean", "the mean over its group's query heads")):
            out.append(("gqa_not_summed", f"GQA heads not summed: {tensor} of kv head g is {words}; it must be the SUM of the "
                        f"contributions of the H/G = {r} query heads that read kv head g", group(how)))
    return out


def _diagnose(op, c, x, tensor, got, want, scale, tol):
    e_want = _err(got, want, scale)
    best = None
    for kind, text, make in _candidates(op, c, x, tensor):
        try:
            cand = make().get(tensor)
        except ValueError:
            continue
        if cand is None or cand.shape != got.shape:
            continue
        if _err(cand, want, scale) <= 2 * tol:  # the mistake changes nothing in this case
            continue
        e = _err(got, cand, scale)
        if e <= max(2 * tol, 0.05 * e_want) and (best is None or e < best[0]):
            best = (e, kind, text)
    return best[1:] if best else (None, None)


# ---- check ---------------------------------------------------------------------------------------------

def check(fn, op="rla", *, framework="numpy", device=None, grads=None, cases=None, chunk=64, long_T=512,
          features=rattn.FEATURES, h0=True, dtypes=("float32", "bfloat16"), slack=2.0, seed=0, shown=3,
          raise_on_failure=False):
    """Runs fn over the grid of cases (see the module's help), compares with the reference, returns a Report.

    op: swa | rla | rattn. framework: numpy | torch (fn then takes and returns torch tensors; torch is imported
    only then). device: the torch device (default cpu). grads: compare gradients (default: when fn takes do=,
    or with torch always). cases: a list of Case to run instead of cases(op, chunk, long_T, features, h0,
    dtypes). slack: the factor on the float32 reference's own error (and on the bfloat16 tolerance).
    raise_on_failure: raise AssertionError with the report instead of returning a false Report.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    if framework not in ("numpy", "torch"):
        raise ValueError(f"framework must be numpy or torch, got {framework!r}")
    if not callable(fn):
        raise ValueError("fn must be callable")
    notes = []
    if grads is None:
        grads = framework == "torch" or _takes(fn, "do")
    if not grads:
        notes.append("gradients not compared (fn takes no do=; with framework='torch' autograd gives them)")
    if op != "swa" and not _takes(fn, "feature"):
        features = ("sm2",)
        notes.append("fn takes no feature=: only sm2 checked")
    if op == "rla" and not _takes(fn, "h0"):
        h0 = False
        notes.append("fn takes no h0=: no initial state checked")
    grid = cases if cases is not None else _default_cases(op, chunk, long_T, features, h0, dtypes)
    device = device or "cpu"
    failures = []
    for i, c in enumerate(grid):
        x = _inputs(op, c, seed * 1000003 + i)
        want = _reference(op, x, c.w, c.feature)
        if c.dtype == "float32":
            ref32 = _reference(op, x, c.w, c.feature, dtype=np.float32)
        try:
            got = _call(fn, op, c, x, framework, device, grads)
        except Exception as e:  # the case itself is the finding: report it and go on
            failures.append(Failure(c, "o", f"fn raised {type(e).__name__}: {e}"))
            continue
        scales = _scales(op, x, want)
        for name in ["o"] + ([n for n in _GRAD_ORDER[op] if n in want] if grads else []):
            if name not in got:
                if name != "o" and framework == "torch":
                    continue  # an input the torch fn did not differentiate
                failures.append(Failure(c, name, f"{name}: fn did not return it"))
                break
            g, wt = got[name], want[name]
            if g.shape != wt.shape:
                hint = ""
                if g.ndim == 4 and g.shape == (wt.shape[0], wt.shape[2], wt.shape[1], wt.shape[3]):
                    hint = " (it looks like (B, heads, T, D): return .transpose(0, 2, 1, 3))"
                failures.append(Failure(c, name, f"{name} has shape {g.shape}, expected {wt.shape}{hint}"))
                break
            if not np.all(np.isfinite(g)):
                i_bad = int(np.flatnonzero(~np.isfinite(g.ravel()))[0])
                idx = ", ".join(str(int(j)) for j in np.unravel_index(i_bad, g.shape))
                diag = kind = None
                if c.w == 0 and op != "rla":
                    kind, diag = "window", ("the window is off by one: at w = 0 rattn's window holds one key, the "
                                            "query's own ([t, t]); a result that is not finite there is a softmax "
                                            "over an empty window")
                failures.append(Failure(c, name, f"{name}[{idx}] is {g.flat[i_bad]} (not finite)", diagnosis=diag,
                                        kind=kind))
                break
            bwd = name != "o"
            if c.dtype == "float32":
                tol = slack * _err(ref32[name].astype(np.float64), wt, scales[name]) + _FLOOR["float32"][bwd]
            elif c.dtype == "bfloat16":
                tol = slack * _BF16_EPS * (4 if bwd else 2)
            else:
                tol = _FLOOR["float64"][bwd]
            e = _err(g, wt, scales[name])
            if e <= tol:
                continue
            yard = max(_rms(wt), scales[name])
            msg = (f"{name}: relative RMS error {e:.3g} > tolerance {tol:.3g}; "
                   + _element_report(name, g, wt, yard, tol))
            examine = len(failures) < 4 * shown  # each diagnosis runs the reference a few more times
            kind, diag = _diagnose(op, c, x, name, g, wt, scales[name], tol) if examine else (None, None)
            failures.append(Failure(c, name, msg, e, tol, diag, examine, kind))
            break  # the first wrong tensor of a case is the one to look at
    report = Report(op, len(grid), failures, notes, shown)
    if raise_on_failure and failures:
        raise AssertionError(str(report))
    return report
