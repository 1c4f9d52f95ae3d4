// python/src/_rattn.cpp: the reference ops of ref/ as a Python extension module (rattn._rattn).
//
// This file only moves NumPy arrays in and out of ref/: every formula lives in ref/ (the same
// headers bin/rattn-op and the tests use), none is written here. The Python side (rattn/__init__.py)
// checks names, shapes and dtypes first and passes C-contiguous arrays of one dtype; each op is bound
// twice, `NAME_f32` (ref/ on float) and `NAME_f64` (ref/ on double), so the result is the reference
// computed in the dtype of the inputs.
//
// Layout (docs/python.md): q, o (B, T, H, D); k, v (B, T, G, D); h0 (B, G, Dp, D); gammas (H, D).
// In C order sequence b of a (B, T, n, D) array is the contiguous block of rows b*T .. b*T+T-1 of a
// (B*T, n*D) matrix, which is exactly ref/'s per-sequence layout (T, n*D) (ref/tensor.h). ref/ takes
// `const Mat<Real>&`, so each sequence is copied once into an Eigen matrix and each result once out:
// no transposes, no other copies. The batch is a loop over sequences, as in bin/rattn-op.
//
// Why pybind11 (not nanobind): it is header-only and builds with plain setuptools, so the package needs
// no CMake (the project builds with make); Debian ships it (python3-pybind11), so the build works without
// a package index; and its NumPy support needs no NumPy headers at build time.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "ref/attention.h"
#include "ref/decode.h"
#include "ref/feature_map.h"
#include "ref/norm.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "ref/rope.h"

namespace py = pybind11;
using ref::Mat;

namespace {

template <class Real>
using Array = py::array_t<Real, py::array::c_style>;

// Sequence b of a C-order array whose per-sequence block is (rows, cols).
template <class Real>
Mat<Real> slice(const Real* a, long b, long rows, long cols) {
  Mat<Real> m(rows, cols);
  std::memcpy(m.data(), a + b * rows * cols, sizeof(Real) * size_t(rows * cols));
  return m;
}
template <class Real>
void put(Real* a, long b, const Mat<Real>& m) {
  std::memcpy(a + b * m.size(), m.data(), sizeof(Real) * size_t(m.size()));
}
template <class Real>
Array<Real> empty(const std::vector<long>& shape) {
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  return Array<Real>(s);
}
std::vector<long> shape_of(const py::array& a) { return std::vector<long>(a.shape(), a.shape() + a.ndim()); }

// Dims of q (B, T, H, D) and k (B, T, G, D); the Python side has checked them already.
struct Dims {
  long B, T, H, G, D;
};
Dims dims(const py::array& q, const py::array& k) {
  if (q.ndim() != 4 || k.ndim() != 4) throw std::invalid_argument("q and k must be (B, T, heads, D)");
  return {long(q.shape(0)), long(q.shape(1)), long(q.shape(2)), long(k.shape(2)), long(q.shape(3))};
}

ref::FeatureMap feature(const std::string& name) { return ref::parse_feature_map(name); }

// ---- SWA: ref/attention.h ------------------------------------------------------------------------
// o = SWA(q, k, v; w, scale): (B, T, H, D)
template <class Real>
Array<Real> swa(Array<Real> q, Array<Real> k, Array<Real> v, int w, double scale) {
  const Dims d = dims(q, k);
  Array<Real> o = empty<Real>(shape_of(q));
  const Real *qp = q.data(), *kp = k.data(), *vp = v.data();
  Real* op = o.mutable_data();
  py::gil_scoped_release nogil;
  for (long b = 0; b < d.B; ++b)
    put(op, b, ref::swa_forward(slice(qp, b, d.T, d.H * d.D), slice(kp, b, d.T, d.G * d.D),
                                slice(vp, b, d.T, d.G * d.D), int(d.H), int(d.G), w, Real(scale)));
  return o;
}

// (dq, dk, dv) of swa for the output gradient dout.
template <class Real>
py::tuple swa_backward(Array<Real> q, Array<Real> k, Array<Real> v, Array<Real> dout, int w, double scale) {
  const Dims d = dims(q, k);
  Array<Real> dq = empty<Real>(shape_of(q)), dk = empty<Real>(shape_of(k)), dv = empty<Real>(shape_of(k));
  const Real *qp = q.data(), *kp = k.data(), *vp = v.data(), *dop = dout.data();
  Real *dqp = dq.mutable_data(), *dkp = dk.mutable_data(), *dvp = dv.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (long b = 0; b < d.B; ++b) {
      Mat<Real> gq, gk, gv;
      ref::swa_backward(slice(qp, b, d.T, d.H * d.D), slice(kp, b, d.T, d.G * d.D), slice(vp, b, d.T, d.G * d.D),
                        slice(dop, b, d.T, d.H * d.D), int(d.H), int(d.G), w, Real(scale), gq, gk, gv);
      put(dqp, b, gq), put(dkp, b, gk), put(dvp, b, gv);
    }
  }
  return py::make_tuple(dq, dk, dv);
}

// ---- RLA: ref/rla.h --------------------------------------------------------------------------------
// The state h0 (B, G, Dp, D) of sequence b as ref's one (Dp, D) matrix per kv head.
template <class Real>
ref::RlaState<Real> state_of(const Real* h0, long b, long G, long Dp, long D) {
  ref::RlaState<Real> s;
  for (long g = 0; g < G; ++g) s.push_back(slice(h0, b * G + g, Dp, D));
  return s;
}

// o = RLA(q, k, v; w, phi) from h0 (or zero), in one of the three forms of ref/rla.h.
template <class Real>
Array<Real> rla(Array<Real> q, Array<Real> k, Array<Real> v, int w, const std::string& fm_name,
                const std::string& form, int chunk, std::optional<Array<Real>> h0) {
  const Dims d = dims(q, k);
  const ref::FeatureMap fm = feature(fm_name);
  const long Dp = ref::feature_dim(fm, int(d.D));
  if (form != "chunked" && form != "masked" && form != "recurrent")
    throw std::invalid_argument("form must be chunked, masked or recurrent, got '" + form + "'");
  Array<Real> o = empty<Real>(shape_of(q));
  const Real *qp = q.data(), *kp = k.data(), *vp = v.data(), *hp = h0 ? h0->data() : nullptr;
  Real* op = o.mutable_data();
  py::gil_scoped_release nogil;
  for (long b = 0; b < d.B; ++b) {
    const Mat<Real> qb = slice(qp, b, d.T, d.H * d.D), kb = slice(kp, b, d.T, d.G * d.D),
                    vb = slice(vp, b, d.T, d.G * d.D);
    ref::RlaState<Real> s;
    if (hp) s = state_of(hp, b, d.G, Dp, d.D);
    const ref::RlaState<Real>* sp = hp ? &s : nullptr;
    const int H = int(d.H), G = int(d.G);
    if (form == "chunked") put(op, b, ref::rla_forward_chunked(qb, kb, vb, H, G, w, fm, chunk, sp));
    else if (form == "masked") put(op, b, ref::rla_forward_masked(qb, kb, vb, H, G, w, fm, sp));
    else put(op, b, ref::rla_forward_recurrent(qb, kb, vb, H, G, w, fm, sp));
  }
  return o;
}

// (dq, dk, dv, dh0) of rla: the chunked or the masked backward. dh0 (B, G, Dp, D) is the gradient with
// respect to the initial state (with respect to a zero state when h0 is None).
template <class Real>
py::tuple rla_backward(Array<Real> q, Array<Real> k, Array<Real> v, Array<Real> dout, int w,
                       const std::string& fm_name, const std::string& form, int chunk,
                       std::optional<Array<Real>> h0) {
  const Dims d = dims(q, k);
  const ref::FeatureMap fm = feature(fm_name);
  const long Dp = ref::feature_dim(fm, int(d.D));
  if (form != "chunked" && form != "masked")
    throw std::invalid_argument("the backward exists for form chunked or masked, got '" + form + "'");
  Array<Real> dq = empty<Real>(shape_of(q)), dk = empty<Real>(shape_of(k)), dv = empty<Real>(shape_of(k));
  Array<Real> dh0 = empty<Real>({d.B, d.G, Dp, d.D});
  const Real *qp = q.data(), *kp = k.data(), *vp = v.data(), *dop = dout.data(), *hp = h0 ? h0->data() : nullptr;
  Real *dqp = dq.mutable_data(), *dkp = dk.mutable_data(), *dvp = dv.mutable_data(), *dhp = dh0.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (long b = 0; b < d.B; ++b) {
      const Mat<Real> qb = slice(qp, b, d.T, d.H * d.D), kb = slice(kp, b, d.T, d.G * d.D),
                      vb = slice(vp, b, d.T, d.G * d.D), dob = slice(dop, b, d.T, d.H * d.D);
      ref::RlaState<Real> s;
      if (hp) s = state_of(hp, b, d.G, Dp, d.D);
      const ref::RlaState<Real>* sp = hp ? &s : nullptr;
      const int H = int(d.H), G = int(d.G);
      ref::RlaGrads<Real> r = form == "chunked" ? ref::rla_backward_chunked(qb, kb, vb, dob, H, G, w, fm, chunk, sp)
                                                : ref::rla_backward_masked(qb, kb, vb, dob, H, G, w, fm, sp);
      put(dqp, b, r.dq), put(dkp, b, r.dk), put(dvp, b, r.dv);
      for (long g = 0; g < d.G; ++g) put(dhp, b * d.G + g, r.dh0[size_t(g)]);
    }
  }
  return py::make_tuple(dq, dk, dv, dh0);
}

// ---- the attention core of a local RATTENTION layer: ref/rattention.h -----------------------------
ref::AttnConfig core_config(const Dims& d, int w, const std::string& fm_name, int chunk, double theta, double eps) {
  ref::AttnConfig cfg;
  cfg.H = int(d.H), cfg.G = int(d.G), cfg.D = int(d.D), cfg.w = w, cfg.global = false;
  cfg.kind = ref::LocalKind::rattn, cfg.fm = feature(fm_name), cfg.chunk = chunk;
  cfg.rope_theta = theta, cfg.eps = eps;
  return cfg;
}

// o = GRMS_swa(SWA(RoPE(q), RoPE(k), v; w)) + GRMS_rla(RLA(q, k, v; w)); with dout also the gradients
// (dq, dk, dv, dgamma_swa, dgamma_rla), the gammas' summed over the batch (they are shared).
template <class Real>
py::object rattention(Array<Real> q, Array<Real> k, Array<Real> v, Array<Real> gamma_swa, Array<Real> gamma_rla,
                      int w, const std::string& fm_name, int chunk, double theta, double eps,
                      std::optional<Array<Real>> dout) {
  const Dims d = dims(q, k);
  const ref::AttnConfig cfg = core_config(d, w, fm_name, chunk, theta, eps);
  ref::validate(cfg);
  Array<Real> o = empty<Real>(shape_of(q));
  Array<Real> dq = empty<Real>(shape_of(q)), dk = empty<Real>(shape_of(k)), dv = empty<Real>(shape_of(k));
  Array<Real> dgs = empty<Real>({d.H, d.D}), dgr = empty<Real>({d.H, d.D});
  const Real *qp = q.data(), *kp = k.data(), *vp = v.data(), *dop = dout ? dout->data() : nullptr;
  const Mat<Real> gs = slice(gamma_swa.data(), 0, d.H, d.D), gr = slice(gamma_rla.data(), 0, d.H, d.D);
  Real *opp = o.mutable_data(), *dqp = dq.mutable_data(), *dkp = dk.mutable_data(), *dvp = dv.mutable_data();
  Mat<Real> sum_dgs = Mat<Real>::Zero(d.H, d.D), sum_dgr = Mat<Real>::Zero(d.H, d.D);
  {
    py::gil_scoped_release nogil;
    for (long b = 0; b < d.B; ++b) {
      const Mat<Real> qb = slice(qp, b, d.T, d.H * d.D), kb = slice(kp, b, d.T, d.G * d.D),
                      vb = slice(vp, b, d.T, d.G * d.D);
      ref::CoreCache<Real> cache;
      put(opp, b, ref::attn_core_forward(cfg, qb, kb, vb, gs, gr, &cache));
      if (dop) {
        ref::CoreGrads<Real> g = ref::attn_core_backward(cfg, qb, kb, vb, gs, gr, slice(dop, b, d.T, d.H * d.D), &cache);
        put(dqp, b, g.dq), put(dkp, b, g.dk), put(dvp, b, g.dv);
        sum_dgs += g.dgamma_swa;
        sum_dgr += g.dgamma_rla;
      }
    }
  }
  if (!dout) return o;
  put(dgs.mutable_data(), 0, sum_dgs), put(dgr.mutable_data(), 0, sum_dgr);
  return py::make_tuple(o, dq, dk, dv, dgs, dgr);
}

// ---- RoPE, phi, group RMSNorm ----------------------------------------------------------------------
// x: (B, T, n, D), row t of each sequence at position pos0 + t. sign +1: rope_forward, -1: rope_backward.
template <class Real>
Array<Real> rope(Array<Real> x, double theta, int pos0, int sign) {
  const long B = x.shape(0), T = x.shape(1), n = x.shape(2), D = x.shape(3);
  Array<Real> y = empty<Real>(shape_of(x));
  const Real* xp = x.data();
  Real* yp = y.mutable_data();
  py::gil_scoped_release nogil;
  for (long b = 0; b < B; ++b) {
    const Mat<Real> xb = slice(xp, b, T, n * D);
    put(yp, b, sign > 0 ? ref::rope_forward(xb, int(n), theta, pos0) : ref::rope_backward(xb, int(n), theta, pos0));
  }
  return y;
}

// phi of every D-vector: x (N, D) -> (N, Dp). With dphi (N, Dp): the backward, dx (N, D).
template <class Real>
Array<Real> phi(Array<Real> x, const std::string& fm_name, std::optional<Array<Real>> dphi) {
  const ref::FeatureMap fm = feature(fm_name);
  const long N = x.shape(0), D = x.shape(1), Dp = ref::feature_dim(fm, int(D));
  const Mat<Real> xm = slice(x.data(), 0, N, D);
  if (!dphi) {
    Array<Real> y = empty<Real>({N, Dp});
    put(y.mutable_data(), 0, ref::phi_forward(fm, xm));
    return y;
  }
  Array<Real> dx = empty<Real>({N, D});
  put(dx.mutable_data(), 0, ref::phi_backward(fm, xm, slice(dphi->data(), 0, N, Dp)));
  return dx;
}

// x: (N, H, D), gamma (H, D) -> y (N, H, D); with dy also (dx, dgamma), dgamma summed over N.
template <class Real>
py::object group_rmsnorm(Array<Real> x, Array<Real> gamma, double eps, std::optional<Array<Real>> dy) {
  const long N = x.shape(0), H = x.shape(1), D = x.shape(2);
  const Mat<Real> xm = slice(x.data(), 0, N, H * D), gm = slice(gamma.data(), 0, H, D);
  Array<Real> y = empty<Real>(shape_of(x));
  put(y.mutable_data(), 0, ref::group_rmsnorm_forward(xm, gm, Real(eps)));
  if (!dy) return y;
  Mat<Real> dgamma = Mat<Real>::Zero(H, D);
  Array<Real> dx = empty<Real>(shape_of(x)), dg = empty<Real>({H, D});
  put(dx.mutable_data(), 0, ref::group_rmsnorm_backward(xm, gm, Real(eps), slice(dy->data(), 0, N, H * D), dgamma));
  put(dg.mutable_data(), 0, dgamma);
  return py::make_tuple(y, dx, dg);
}

// ---- decode: ref/decode.h ----------------------------------------------------------------------------
// One local layer's attention core decoded token by token with ref::attention_layer_decode_step, for a
// batch of B independent sequences (one ref::AttnDecodeCache each).
//
// The decode step of ref/decode.h starts from the layer input x_t and its projections. To decode the
// core from given (q_t, k_t, v_t), the step is fed x_t = [q_t, k_t, v_t] with W_Q, W_K, W_V the 0/1
// matrices that select those columns and W_O the identity: a product with a 0/1 matrix adds exact
// zeros to one term, so q, k, v reach the step bit for bit, and y_t = c_t.
template <class Real>
class Decoder {
 public:
  Decoder(int B, int H, int G, int D, int w, const std::string& kind, const std::string& fm_name, double theta,
          double eps, Array<Real> gamma_swa, Array<Real> gamma_rla)
      : B_(B) {
    cfg_.H = H, cfg_.G = G, cfg_.D = D, cfg_.w = w, cfg_.global = false;
    cfg_.kind = ref::parse_local_kind(kind), cfg_.fm = feature(fm_name), cfg_.rope_theta = theta, cfg_.eps = eps;
    cfg_.chunk = 1;  // unused by the decode step
    ref::validate(cfg_);
    const long qc = long(H) * D, kc = long(G) * D, C = qc + 2 * kc;
    p_.Wq = Mat<Real>::Zero(C, qc), p_.Wk = Mat<Real>::Zero(C, kc), p_.Wv = Mat<Real>::Zero(C, kc);
    for (long i = 0; i < qc; ++i) p_.Wq(i, i) = 1;
    for (long i = 0; i < kc; ++i) p_.Wk(qc + i, i) = 1, p_.Wv(qc + kc + i, i) = 1;
    p_.Wo = Mat<Real>::Identity(qc, qc);
    p_.gamma_swa = slice(gamma_swa.data(), 0, H, D);
    p_.gamma_rla = slice(gamma_rla.data(), 0, H, D);
    for (int b = 0; b < B; ++b) caches_.push_back(ref::attn_decode_init<Real>(cfg_));
  }

  // q_t (B, H, D), k_t, v_t (B, G, D) -> c_t (B, H, D); every cache advances by one token.
  Array<Real> step(Array<Real> q, Array<Real> k, Array<Real> v) {
    const long qc = long(cfg_.H) * cfg_.D, kc = long(cfg_.G) * cfg_.D;
    Array<Real> c = empty<Real>({B_, cfg_.H, cfg_.D});
    const Real *qp = q.data(), *kp = k.data(), *vp = v.data();
    Real* cp = c.mutable_data();
    py::gil_scoped_release nogil;
    for (long b = 0; b < B_; ++b) {
      Mat<Real> x(1, qc + 2 * kc);
      x << slice(qp, b, 1, qc), slice(kp, b, 1, kc), slice(vp, b, 1, kc);
      put(cp, b, ref::attention_layer_decode_step(cfg_, p_, caches_[size_t(b)], x));
    }
    return c;
  }

  long t() const { return caches_.empty() ? 0 : caches_[0].t; }
  size_t bytes() const { return caches_.empty() ? 0 : caches_[0].bytes(); }

  // S of every sequence: (B, G, Dp, D) (empty (B, 0, 0, 0) for a swa layer, which has no state).
  Array<Real> state() const {
    const long Dp = ref::feature_dim(cfg_.fm, cfg_.D);
    const bool has = ref::has_rla_branch(cfg_);
    Array<Real> s = empty<Real>({B_, has ? long(cfg_.G) : 0, has ? Dp : 0, has ? long(cfg_.D) : 0});
    if (has)
      for (long b = 0; b < B_; ++b)
        for (long g = 0; g < cfg_.G; ++g) put(s.mutable_data(), b * cfg_.G + g, caches_[size_t(b)].state[size_t(g)]);
    return s;
  }
  // The ring of raw keys or values: (B, w+1, G, D), slot i = row i (empty for a linear layer).
  Array<Real> ring(bool values) const {
    const long slots = ref::has_swa_branch(cfg_) ? cfg_.w + 1 : 0;
    Array<Real> r = empty<Real>({B_, slots, long(cfg_.G), long(cfg_.D)});
    for (long b = 0; b < B_ && slots > 0; ++b)
      put(r.mutable_data(), b, values ? caches_[size_t(b)].ring_v : caches_[size_t(b)].ring_k);
    return r;
  }
  // The position each ring slot holds, -1 = empty (the same for every sequence of the batch).
  std::vector<long> ring_pos() const { return caches_.empty() ? std::vector<long>() : caches_[0].ring_pos; }

 private:
  long B_;
  ref::AttnConfig cfg_;
  ref::AttnParams<Real> p_;
  std::vector<ref::AttnDecodeCache<Real>> caches_;
};

template <class Real>
void bind_all(py::module_& m, const std::string& sfx) {
  using py::arg;
  m.def(("swa" + sfx).c_str(), &swa<Real>, arg("q"), arg("k"), arg("v"), arg("w"), arg("scale"));
  m.def(("swa_backward" + sfx).c_str(), &swa_backward<Real>, arg("q"), arg("k"), arg("v"), arg("do"), arg("w"),
        arg("scale"));
  m.def(("rla" + sfx).c_str(), &rla<Real>, arg("q"), arg("k"), arg("v"), arg("w"), arg("feature"), arg("form"),
        arg("chunk"), arg("h0").none(true));
  m.def(("rla_backward" + sfx).c_str(), &rla_backward<Real>, arg("q"), arg("k"), arg("v"), arg("do"), arg("w"),
        arg("feature"), arg("form"), arg("chunk"), arg("h0").none(true));
  m.def(("rattention" + sfx).c_str(), &rattention<Real>, arg("q"), arg("k"), arg("v"), arg("gamma_swa"),
        arg("gamma_rla"), arg("w"), arg("feature"), arg("chunk"), arg("rope_theta"), arg("eps"),
        arg("do").none(true));
  m.def(("rope" + sfx).c_str(), &rope<Real>, arg("x"), arg("theta"), arg("pos0"), arg("sign"));
  m.def(("phi" + sfx).c_str(), &phi<Real>, arg("x"), arg("feature"), arg("dphi").none(true));
  m.def(("group_rmsnorm" + sfx).c_str(), &group_rmsnorm<Real>, arg("x"), arg("gamma"), arg("eps"),
        arg("dy").none(true));
  py::class_<Decoder<Real>>(m, ("Decoder" + sfx).c_str())
      .def(py::init<int, int, int, int, int, const std::string&, const std::string&, double, double, Array<Real>,
                    Array<Real>>())
      .def("step", &Decoder<Real>::step)
      .def_property_readonly("t", &Decoder<Real>::t)
      .def_property_readonly("bytes", &Decoder<Real>::bytes)
      .def_property_readonly("state", &Decoder<Real>::state)
      .def_property_readonly("ring_k", [](const Decoder<Real>& d) { return d.ring(false); })
      .def_property_readonly("ring_v", [](const Decoder<Real>& d) { return d.ring(true); })
      .def_property_readonly("ring_pos", &Decoder<Real>::ring_pos);
}

}  // namespace

void bind_model(py::module_& m);  // python/src/_rattn_model.cpp: a trained model, for rattn.load

PYBIND11_MODULE(_rattn, m) {
  m.doc() = "rattn's reference ops (ref/) on NumPy arrays; use the wrappers in the rattn package";
  bind_all<float>(m, "_f32");
  bind_all<double>(m, "_f64");
  m.def("feature_dim", [](const std::string& fm, int D) { return ref::feature_dim(feature(fm), D); });
  m.attr("default_rope_theta") = ref::kDefaultRopeTheta;
  bind_model(m);
}
