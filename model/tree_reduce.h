// model/tree_reduce.h: the fixed pairwise tree in which the per-sequence gradients and losses of a
// batch are summed, in one process (model/model.h) and across ranks (model/data_parallel.h).
//
// The tree over n leaves (the sequences b = 0 .. n-1 of the batch) is built level by level:
//   level 0      the leaves;
//   level k+1    node i (i a multiple of 2^(k+1)) = node i + node i+2^k, or node i alone (carried up
//                unchanged) when i+2^k >= n.
// Node i of level k is the sum of the leaves [i, min(i + 2^k, n)); the root is node 0 of the first level
// with one node. For n = 6:  ((0+1) + (2+3)) + (4+5).  For n = 5:  ((0+1) + (2+3)) + 4.
//
// Why a tree and not the plain loop b = 0, 1, ..., n-1: floating-point addition is not associative, so
// the bits of a sum depend on its order. The tree's shape depends on n alone, and every addition in it
// has a fixed left operand (the lower leaves) and right operand. Hence:
//   - the additions of one level are independent: threads may do them in any order and the bits are
//     the same for any thread count;
//   - a contiguous share of s leaves starting at a multiple of s, s a power of two, is exactly one node
//     of level log2(s). Ranks that hold the shares [r*s, (r+1)*s) of a batch of B = N*s sequences each
//     reduce their share to that node, and the N nodes are then reduced by the same rule (a tree over N
//     leaves, whose level j is level log2(s) + j of the whole tree): every addition is the one a single
//     process does, so the sum is the single-process sum bit for bit, for any such N.
// A plain loop over b (or a sum in the order in which ranks' messages arrive) has no such share.
#pragma once
#include <vector>

namespace model {

inline bool is_power_of_two(long n) { return n > 0 && (n & (n - 1)) == 0; }

// One addition of the tree: node dst = node dst + node src (dst < src: the left operand is the lower one).
struct TreeAdd {
  long dst, src;
};

// The additions of the tree over n leaves, level by level: levels[k] makes level k+1 from level k.
// The additions of one level touch disjoint nodes; the levels must run in order.
inline std::vector<std::vector<TreeAdd>> tree_levels(long n) {
  std::vector<std::vector<TreeAdd>> levels;
  for (long stride = 1; stride < n; stride *= 2) {
    std::vector<TreeAdd> level;
    for (long i = 0; i + stride < n; i += 2 * stride) level.push_back({i, i + stride});
    levels.push_back(std::move(level));
  }
  return levels;
}

// The tree sum of values (n >= 1), in the order above.
template <class T>
T tree_sum(std::vector<T> values) {
  for (const std::vector<TreeAdd>& level : tree_levels(long(values.size())))
    for (const TreeAdd& a : level) values[size_t(a.dst)] = values[size_t(a.dst)] + values[size_t(a.src)];
  return values.at(0);
}

}  // namespace model
