// ref/loss.h: softmax cross-entropy over the vocabulary (V = 256 bytes in this project).
//
//   loss_n = logsumexp(logits[n]) - logits[n, target[n]]      for target[n] >= 0
//   loss   = mean of loss_n over the counted positions          (target -1 = ignored, e.g. padding)
//
// logsumexp subtracts the row maximum first, so logits of any size stay finite.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "ref/tensor.h"

namespace ref {

// logits: (N, V), targets: (N) in [0, V) or -1 -> mean loss over the counted positions (0 if none).
// dlogits (optional): (N, V), ASSIGNED d(mean loss)/d(logits); ignored rows are zero.
// The sum over positions is accumulated in double.
template <class Real>
Real cross_entropy(const Mat<Real>& logits, const std::vector<int>& targets, Mat<Real>* dlogits = nullptr) {
  const long N = logits.rows(), V = logits.cols();
  if (long(targets.size()) != N)
    throw std::invalid_argument("cross_entropy: " + std::to_string(targets.size()) +
                                " targets for " + std::to_string(N) + " rows of logits");
  long counted = 0;
  for (long n = 0; n < N; ++n) {
    const int tgt = targets[n];
    if (tgt < -1 || tgt >= V)
      throw std::out_of_range("cross_entropy: target " + std::to_string(tgt) + " at row " +
                              std::to_string(n) + " outside [-1, " + std::to_string(V) + ")");
    counted += (tgt >= 0);
  }
  if (dlogits) dlogits->setZero(N, V);
  if (counted == 0) return Real(0);

  double total = 0;
  for (long n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    const auto row = logits.row(n);
    const Real m = row.maxCoeff();
    const Real sum_exp = (row.array() - m).exp().sum();  // in [1, V]: no overflow
    // loss_n = logsumexp(row) - row[target] = (m - row[target]) + log(sum_exp); the two terms are
    // added in this order so that m itself (1e4, say) never rounds the small result.
    total += double((m - row(targets[n])) + std::log(sum_exp));
    if (dlogits) {
      // In the forward pass this was: loss = mean_n (logsumexp(logits[n]) - logits[n, target]),
      // so now  dlogits[n] = (softmax(logits[n]) - onehot(target[n])) / counted,
      // with softmax = exp(row - m) / sum_exp.
      auto drow = dlogits->row(n);
      drow = ((row.array() - m).exp() / (sum_exp * Real(counted))).matrix();
      drow(targets[n]) -= Real(1) / Real(counted);
    }
  }
  return Real(total / double(counted));
}

}  // namespace ref
