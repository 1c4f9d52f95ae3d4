// model/global_probe.h: where a global layer looks when it answers a recall query.
//
// In a local-global stack that has learned recall, the local layer writes into each value's position
// which key came just before it; the global layer's query at the query key then has to find that
// position among every position before it. Its attention weight there, for query position t and a key
// at t - d (its value at t - d + 1, data/tasks.cpp), on head h, is
//   p_h = exp(z_h[target]) / sum_{s <= t} exp(z_h[s]),   z_h[s] = q_h[t] . k_h[s] / sqrt(D)
// (docs/spec.md §2.4: NoPE, causal; after qk-norm where the layer has it). probe_global takes, for
// every scored query, the head that puts the most weight on the value's position and records there
//   mass      p_h[target]
//   top       whether the target has the head's largest logit
//   log-odds  z[target] - log sum_{s != target} exp(z[s])       (mass = sigmoid(log-odds))
//   margin    z[target] - log( (1/n) sum_{s != target} exp(z[s]) ),  n = t others
//             = log-odds + log(n)
// The margin is how far the target's logit stands above a typical other position, the typical one
// weighed as the softmax weighs it (a log-mean-exp): where the other positions are alike along the
// sequence it does not depend on how many there are, and the log-odds is the margin less log(n).
// A global layer whose margin stays put as the sequence grows loses its answers at longer lengths
// through the log(n) term alone: each doubling costs log 2 of log-odds, whatever the distance to
// the key. (A global layer with NoPE under local layers that see only a window reads, at each
// position, inputs that do not depend on the length.)
//
// It reads q and k from the forward's activations (ref::LayerCache), so it needs a backend that keeps
// them on the host (the CPU one); with another it records no queries.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "data/tasks.h"
#include "model/model.h"

namespace model {

struct GlobalProbe {
  int layer = -1;                        // index in the stack of the global layer probed
  long queries = 0, top = 0;
  double mass_sum = 0;
  std::vector<double> log_odds, margin;  // one per query, in sequence order
  double mass() const { return queries ? mass_sum / double(queries) : 0.0; }
  double top_fraction() const { return queries ? double(top) / double(queries) : 0.0; }
};

// The median of v (the mean of the two middle values for an even count; 0 for none).
inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  const size_t n = v.size(), m = n / 2;
  std::nth_element(v.begin(), v.begin() + long(m), v.end());
  if (n % 2 == 1) return v[m];
  const double hi = v[m];
  return 0.5 * (hi + *std::max_element(v.begin(), v.begin() + long(m)));
}

// Probe the first global layer of the stack over the sequences of a recall batch (positions with
// target >= 0 and dist >= 1). Returns layer -1 when the stack has no global layer.
template <class S>
GlobalProbe probe_global(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch) {
  GlobalProbe out;
  const ModelConfig& cfg = model.config();
  for (int l = 0; l < cfg.n_layers && out.layer < 0; ++l)
    if (model.layer_attn(l).global) out.layer = l;
  if (out.layer < 0) return out;
  const ref::AttnConfig& a = model.layer_attn(out.layer);
  const double scale = 1.0 / std::sqrt(double(a.D));
  const int per_group = a.H / a.G;
  for (int b = 0; b < batch.B; ++b) {
    SeqActivations<S> acts;
    model.forward(p, batch.seq_tokens(b), &acts);
    const ref::LayerCache<S>& lc = acts.attn[size_t(out.layer)];
    const bool qkn = ref::has_qk_norm(a);
    const Mat<S>& q = qkn ? lc.core.q_hat : lc.q;  // the softmax's inputs (spec §2.9 with qk-norm)
    const Mat<S>& k = qkn ? lc.core.k_hat : lc.k;
    if (q.size() == 0 || k.size() == 0) return {};  // a backend that keeps nothing
    for (long t = 0; t < batch.T; ++t) {
      const long i = long(b) * batch.T + t;
      const int d = batch.dist[size_t(i)];
      if (batch.targets[size_t(i)] < 0 || d < 1 || d > t + 1) continue;
      const long target = t - d + 1;  // the value's position
      double best_mass = -1, best_log_odds = 0;
      bool best_top = false;
      std::vector<double> z(size_t(t) + 1);
      for (int h = 0; h < a.H; ++h) {
        const int g = h / per_group;
        double zmax = -std::numeric_limits<double>::infinity(), zmax_other = zmax;
        for (long s = 0; s <= t; ++s) {
          double dot = 0;
          for (int e = 0; e < a.D; ++e) dot += double(q(t, long(h) * a.D + e)) * double(k(s, long(g) * a.D + e));
          z[size_t(s)] = dot * scale;
          zmax = std::max(zmax, z[size_t(s)]);
          if (s != target) zmax_other = std::max(zmax_other, z[size_t(s)]);
        }
        // log sum_{s != target} exp(z[s]), shifted by the largest of them; t = 0 leaves no other
        double lse_other = -std::numeric_limits<double>::infinity();
        if (t > 0) {
          double acc = 0;
          for (long s = 0; s <= t; ++s)
            if (s != target) acc += std::exp(z[size_t(s)] - zmax_other);
          lse_other = zmax_other + std::log(acc);
        }
        const double zt = z[size_t(target)];
        const double log_odds = zt - lse_other;
        const double mass = 1.0 / (1.0 + std::exp(-log_odds));
        if (mass > best_mass) {
          best_mass = mass;
          best_log_odds = log_odds;
          best_top = zt >= zmax;
        }
      }
      ++out.queries;
      out.mass_sum += best_mass;
      out.top += best_top ? 1 : 0;
      out.log_odds.push_back(best_log_odds);
      out.margin.push_back(t > 0 ? best_log_odds + std::log(double(t)) : 0.0);
    }
  }
  return out;
}

}  // namespace model
