// model/branch_share.h: how much of a RATTENTION layer's output each of its two branches supplies.
//
// A rattn layer's core output is (docs/spec.md §2.5)
//   c[t,h] = GRMS_swa,h(o_swa[t,h]) + GRMS_rla,h(o_rla[t,h])
// Each branch is normalised per (token, head) row to unit RMS before its learned scale gamma, so the
// size of a branch's term does not depend on what the branch found: an RLA output of 1e-3 and one of
// 10 give terms of the same size. Both gammas start at 1, so at initialisation the two branches add
// terms of equal size on every row; only training (the gammas, and the direction of the normalised
// vectors against them) decides how much each one weighs. The merge cannot turn a branch down for one
// token and up for the next: whatever selects between them has to happen in W_O and the layers after.
//
// branch_ratio measures it on real activations: for each layer with both branches, over the scored
// positions (the queries of a synthetic task, every position of a text) of the sequences given,
//   ratio = sqrt( sum ||GRMS_rla(o_rla)[t,:]||^2 / sum ||GRMS_swa(o_swa)[t,:]||^2 )
// (1: equal size; below 1 the SWA branch dominates). Rows t <= w, where o_rla = 0 exactly and its term
// is 0 (spec §2.5), are left out: they say nothing about how the branch is used.
// It reads the branch outputs the forward keeps for the backward (ref::CoreCache), so it needs a
// backend that keeps them on the host (the CPU one); with another it returns no layers.
#pragma once
#include <cmath>
#include <vector>

#include "data/tasks.h"
#include "model/model.h"
#include "ref/norm.h"

namespace model {

struct BranchRatio {
  int layer;     // index in the stack
  double ratio;  // RMS of the RLA term over RMS of the SWA term (see above)
};

// The first n sequences of batch (all when n <= 0 or n > B). Deterministic: sums in sequence order.
template <class S>
std::vector<BranchRatio> branch_ratio(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch,
                                      int n = 0) {
  const ModelConfig& cfg = model.config();
  std::vector<int> layers;
  for (int l = 0; l < cfg.n_layers; ++l) {
    const ref::AttnConfig& a = model.layer_attn(l);
    if (ref::has_swa_branch(a) && ref::has_rla_branch(a)) layers.push_back(l);
  }
  const int B = (n <= 0 || n > batch.B) ? batch.B : n;
  std::vector<double> sum_rla(layers.size(), 0.0), sum_swa(layers.size(), 0.0);
  for (int b = 0; b < B && !layers.empty(); ++b) {
    SeqActivations<S> acts;
    model.forward(p, batch.seq_tokens(b), &acts);
    const std::vector<int> targets = batch.seq_targets(b);
    for (size_t i = 0; i < layers.size(); ++i) {
      const int l = layers[i];
      const ref::AttnConfig& a = model.layer_attn(l);
      const ref::CoreCache<S>& cc = acts.attn[size_t(l)].core;
      if (cc.o_swa.size() == 0 || cc.o_rla.size() == 0) return {};  // a backend that keeps nothing
      const ref::AttnParams<S>& ap = p.blocks[size_t(l)].attn;
      // the two terms of c (spec §2.5)
      const Mat<S> swa = ref::group_rmsnorm_forward(cc.o_swa, ap.gamma_swa, S(a.eps));
      const Mat<S> rla = ref::group_rmsnorm_forward(cc.o_rla, ap.gamma_rla, S(a.eps));
      for (long t = long(a.w) + 1; t < swa.rows(); ++t) {
        if (targets[size_t(t)] < 0) continue;
        sum_swa[i] += double(swa.row(t).squaredNorm());
        sum_rla[i] += double(rla.row(t).squaredNorm());
      }
    }
  }
  std::vector<BranchRatio> out;
  for (size_t i = 0; i < layers.size(); ++i)
    if (sum_swa[i] > 0) out.push_back({layers[i], std::sqrt(sum_rla[i] / sum_swa[i])});
  return out;
}

}  // namespace model
