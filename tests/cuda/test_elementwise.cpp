// tests/cuda/test_elementwise.cpp: cu::add (every version; in place, lengths not a multiple of 4,
// unaligned pointers) against the host sum, and cu::sum_ordered against a double sum on the host, and
// the same bits in every fiber and block order of the CPU layer; cu::tree_combine against
// model::combine_roots (the host's tree over ranks), bit for bit.
#include <cstring>
#include <random>

#include "cuda/elementwise.h"
#include "model/data_parallel.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

TEST_CASE("add against the host, in place and out of place") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(5);
  for (long n : {1L, 3L, 4L, 1027L, 4099L}) {
    const MatF a = rattn_test::randn<MatF>(1, n, rng), b = rattn_test::randn<MatF>(1, n, rng);
    const MatF want = a + b;  // one fp32 addition per element: exact agreement expected
    for (int version = 1; version <= cu::kAddVersions; ++version) {
      CAPTURE(n); CAPTURE(version);
      cu::DeviceBuffer<float> ba(n), bb(n), out(n);
      to_device(ba, a);
      to_device(bb, b);
      out.fill_nan();
      cu::add(ba.data(), bb.data(), out.data(), n, version);
      CHECK(from_device(out, 1, n) == want);
      cu::add(ba.data(), bb.data(), ba.data(), n, version);  // in place: a += b
      CHECK(from_device(ba, 1, n) == want);
      CHECK(out.guards_intact());
      CHECK(ba.guards_intact());
    }
  }
  // an odd offset: not 16-byte aligned, so v2 takes the one-thread-per-element path
  cu::DeviceBuffer<float> x(9), y(9);
  const MatF a = rattn_test::randn<MatF>(1, 9, rng);
  to_device(x, a);
  to_device(y, a);
  cu::add(x.data() + 1, y.data() + 1, x.data() + 1, 8, 2);
  const MatF got = from_device(x, 1, 9);
  CHECK(got(0, 0) == a(0, 0));
  for (int i = 1; i < 9; ++i) CHECK(got(0, i) == a(0, i) + a(0, i));
  CHECK_THROWS(cu::add(x.data(), y.data(), x.data(), 4, 3));
}

TEST_CASE("sum_ordered against a double sum, the same bits in every order") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(6);
  for (long n : {0L, 1L, 255L, 256L, 257L, 5000L}) {
    CAPTURE(n);
    const MatF x = rattn_test::randn<MatF>(1, std::max(n, 1L), rng);
    double want = 0;
    for (long i = 0; i < n; ++i) want += double(x(0, i));
    cu::DeviceBuffer<float> bx(size_t(x.size()));
    to_device(bx, x);
    cu::DeviceBuffer<double> sum(1);
    cu::sum_ordered(bx.data(), n, sum.data());
    const double got = sum.download()[0];
    // both add n doubles, in different orders: |error| <= n * 2^-52 * sum|x| (each about 1)
    CHECK(std::abs(got - want) <= double(n + 1) * 0x1.0p-52 * double(n + 1));
    std::vector<double> sums;
    for (const OrderRun& r : kOrderRuns) {
      ScopedEnv order("EMU_ORDER", r.order), host("EMU_HOST_THREADS", r.host_threads);
      cu::sum_ordered(bx.data(), n, sum.data());
      sums.push_back(sum.download()[0]);
    }
    for (double s : sums) CHECK(std::memcmp(&s, &sums[0], sizeof s) == 0);
    CHECK(sum.guards_intact());
  }
}

TEST_CASE("tree_combine: the bits of model::combine_roots, for any number of nodes, in every order") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(7);
  for (int k : {1, 2, 3, 4, 5, 6, 7, 8}) {
    for (long n : {1L, 1000L}) {
      CAPTURE(k); CAPTURE(n);
      const long stride = n + 3;  // the nodes need not be packed
      // values of mixed magnitudes, so that a different order of additions changes the bits
      MatF x = rattn_test::randn<MatF>(1, k * stride, rng);
      for (long i = 0; i < x.size(); ++i) x(0, i) *= float(1 << (i % 13));
      MatF host = x;
      std::vector<float*> roots;
      for (int j = 0; j < k; ++j) roots.push_back(host.data() + j * stride);
      model::combine_roots(roots, n);
      std::vector<MatF> got;
      for (const OrderRun& r : kOrderRuns) {
        ScopedEnv order("EMU_ORDER", r.order), threads("EMU_HOST_THREADS", r.host_threads);
        cu::DeviceBuffer<float> nodes(size_t(x.size()));
        to_device(nodes, x);
        cu::tree_combine(nodes.data(), k, stride, n);
        got.push_back(from_device(nodes, 1, x.size()));
        CHECK(nodes.guards_intact());
      }
      for (const MatF& g : got) CHECK(std::memcmp(g.data(), host.data(), sizeof(float) * size_t(n)) == 0);
      // a sum in index order differs from the tree for some element once k >= 4 (the order matters;
      // for k <= 3 the tree is the index order)
      if (k >= 4 && n == 1000) {
        long differs = 0;
        for (long e = 0; e < n; ++e) {
          float s = x(0, e);
          for (int j = 1; j < k; ++j) s += x(0, j * stride + e);
          differs += s != host(0, e);
        }
        CHECK(differs > 0);
      }
    }
  }
  cu::DeviceBuffer<float> b(4);
  CHECK_THROWS(cu::tree_combine(b.data(), 0, 4, 4));
  CHECK_THROWS(cu::tree_combine(b.data(), 2, 1, 2));
}
