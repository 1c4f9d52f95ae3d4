// fuzz/fuzz_check.h: how a fuzz target reports a broken promise.
//
// Under libFuzzer (scripts/fuzz.sh) a failed check aborts, so libFuzzer saves the input as a crash.
// When tests/test_fuzz_corpus.cpp replays the corpus (RATTN_FUZZ_NO_ENTRY defined) it throws
// instead, so doctest reports the file and the line rather than the test binary dying.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#ifdef RATTN_FUZZ_NO_ENTRY
#define RATTN_FUZZ_FAIL() \
  throw std::logic_error(std::string("fuzz check failed at ") + __FILE__ + ":" + std::to_string(__LINE__))
#else
#define RATTN_FUZZ_FAIL()                                                        \
  do {                                                                           \
    std::fprintf(stderr, "fuzz check failed at %s:%d\n", __FILE__, __LINE__);  \
    std::abort();                                                                \
  } while (0)
#endif
