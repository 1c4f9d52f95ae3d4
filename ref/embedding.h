// ref/embedding.h: token embedding, a row lookup in E (V rows, one per byte value: V = 256).
#pragma once
#include <string>
#include <vector>

#include "ref/tensor.h"

namespace ref {

namespace detail {
inline void check_token(int tok, long V, long n) {
  if (tok < 0 || tok >= V)
    throw std::out_of_range("embedding: token " + std::to_string(tok) + " at position " +
                            std::to_string(n) + " outside [0, " + std::to_string(V) + ")");
}
}  // namespace detail

// tokens: (N) ids in [0, V), E: (V, C) -> x: (N, C);  x[n] = E[tokens[n]]
template <class Real>
Mat<Real> embedding_forward(const std::vector<int>& tokens, const Mat<Real>& E) {
  const long N = long(tokens.size());
  Mat<Real> x(N, E.cols());
  for (long n = 0; n < N; ++n) {
    detail::check_token(tokens[n], E.rows(), n);
    x.row(n) = E.row(tokens[n]);
  }
  return x;
}

// tokens: (N), dy: (N, C); dE: (V, C), accumulated (+=). The tokens are not differentiable.
// In the forward pass this was: x[n] = E[tokens[n]], so now
//   dE[tokens[n]] += dy[n]     (a token that appears twice collects both rows)
template <class Real>
void embedding_backward(const std::vector<int>& tokens, const Mat<Real>& dy, Mat<Real>& dE) {
  const long N = long(tokens.size());
  expect_shape("embedding dy", dy, N, dE.cols());
  for (long n = 0; n < N; ++n) {
    detail::check_token(tokens[n], dE.rows(), n);
    dE.row(tokens[n]) += dy.row(n);
  }
}

}  // namespace ref
