// model/generate.h: text generation with the constant-memory decode: prefill the prompt, then
// one token at a time. temperature 0 = greedy (argmax); otherwise sample from
// softmax(logits / temperature) with a seeded generator (the same seed gives the same text).
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/model.h"

namespace model {

// Finite weights whose logits overflow (a checkpoint edited by hand, say): there is nothing to sample from.
struct NonFiniteLogits : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// prompt (P >= 1 bytes) -> the n bytes generated after it. Throws NonFiniteLogits, naming the position,
// when a logit is NaN or inf.
template <class S>
std::vector<int> generate(const Model<S>& model, const ModelParams<S>& p, const std::vector<int>& prompt, int n,
                          double temperature, uint64_t seed) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt must hold at least one byte");
  DecodeState<S> st = model.decode_init();
  Mat<S> logits = model.prefill(p, st, prompt);
  Mat<S> last = logits.row(logits.rows() - 1);
  std::mt19937_64 rng(seed);
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    if (!last.allFinite())
      throw NonFiniteLogits("the logits after " + std::to_string(prompt.size() + size_t(i)) +
                            " tokens hold a non-finite value (the weights overflow float32)");
    int next = 0;
    if (temperature <= 0) {
      for (long c = 1; c < last.cols(); ++c)
        if (last(0, c) > last(0, next)) next = int(c);
    } else {
      // softmax(logits / temperature) in double, then the inverse-CDF draw of one uniform number
      const double m = double(last.maxCoeff());
      std::vector<double> prob(size_t(last.cols()));
      double z = 0;
      for (long c = 0; c < last.cols(); ++c) z += prob[size_t(c)] = std::exp((double(last(0, c)) - m) / temperature);
      double u = double(rng() >> 11) * 0x1.0p-53 * z;
      next = int(last.cols()) - 1;
      for (long c = 0; c < last.cols(); ++c) {
        u -= prob[size_t(c)];
        if (u < 0) {
          next = int(c);
          break;
        }
      }
    }
    out.push_back(next);
    if (i + 1 < n) last = model.decode_step(p, st, next);
  }
  return out;
}

// Bytes as one printable line: newline -> "\n", other control or non-ASCII bytes -> "\xHH".
inline std::string printable(const std::vector<int>& bytes) {
  std::string s;
  char buf[8];
  for (int b : bytes) {
    if (b == '\n') s += "\\n";
    else if (b >= 32 && b < 127 && b != '\\') s += char(b);
    else if (b == '\\') s += "\\\\";
    else {
      std::snprintf(buf, sizeof buf, "\\x%02X", b);
      s += buf;
    }
  }
  return s;
}

}  // namespace model
