// Tests for bin/rattn-show (tools/rattn-show.cpp), the pictures of docs/workshop.md: the masks, the chunked
// decomposition and the decode cache it prints must say what the definitions say (spec §2.8, §3.1, §3.2),
// and a bad flag exits with status 2 and one line naming it.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "tests/proc.h"

using rattn_test::run_program;

namespace {

// The whitespace-separated cells after the first ':' of the first line that starts with prefix (after
// leading blanks); empty when there is no such line.
std::vector<std::string> cells(const std::string& out, const std::string& prefix) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const size_t b = line.find_first_not_of(' ');
    if (b == std::string::npos || line.compare(b, prefix.size(), prefix) != 0) continue;
    std::istringstream row(line.substr(line.find(':', b) + 1));
    std::vector<std::string> v;
    for (std::string c; row >> c;) v.push_back(c);
    return v;
  }
  return {};
}

std::vector<std::string> repeat(std::vector<std::pair<std::string, int>> runs) {
  std::vector<std::string> v;
  for (auto& [s, n] : runs) v.insert(v.end(), size_t(n), s);
  return v;
}

}  // namespace

TEST_CASE("rattn-show mask: row t = 11 of T = 12, w = 3 reads R for j = 0..7 and S for j = 8..11") {
  rattn_test::Run r = run_program("rattn-show", {"--what", "mask", "--T", "12", "--w", "3"});
  REQUIRE(r.status == 0);
  CHECK(cells(r.out, "t = 11:") == repeat({{"R", 8}, {"S", 4}}));
  CHECK(cells(r.out, "t =  3:") == repeat({{"S", 4}, {".", 8}}));  // t <= w: SWA only, RLA empty
  CHECK(cells(r.out, "t =  4:") == repeat({{"R", 1}, {"S", 4}, {".", 7}}));
  CHECK(r.out.find("S + R = [0, t] in every row: yes") != std::string::npos);
  // w = 0: SWA keeps the token itself, RLA everything before it.
  rattn_test::Run g = run_program("rattn-show", {"--what", "mask", "--T", "5", "--w", "0"});
  REQUIRE(g.status == 0);
  CHECK(cells(g.out, "t =  4:") == repeat({{"R", 4}, {"S", 1}}));
  // w = -1: no window; the picture is the linear kind's RLA mask, every key j <= t.
  rattn_test::Run l = run_program("rattn-show", {"--what", "mask", "--T", "4", "--w", "-1"});
  REQUIRE(l.status == 0);
  CHECK(cells(l.out, "t =  2:") == repeat({{"R", 3}, {".", 1}}));
}

TEST_CASE("rattn-show chunks: the state, the masked intra-chunk block and the empty blocks for C = 4") {
  rattn_test::Run r = run_program("rattn-show", {"--what", "chunks", "--T", "12", "--w", "3", "--C", "4"});
  REQUIRE(r.status == 0);
  // chunk 2 = queries 8..11: keys 0..3 through S_[2], keys 4..7 in the intra block (shift s = 4)
  CHECK(cells(r.out, "t = 11:") == repeat({{"S", 4}, {"I", 4}, {"w", 4}}));
  CHECK(cells(r.out, "t =  8:") == repeat({{"S", 4}, {"I", 1}, {"x", 3}, {"w", 1}, {".", 3}}));
  CHECK(cells(r.out, "t =  4:") == repeat({{"I", 1}, {"x", 3}, {"w", 1}, {".", 7}}));
  CHECK(cells(r.out, "chunk  2:") == std::vector<std::string>{"S", "I", "."});
  CHECK(cells(r.out, "chunk  0:") == std::vector<std::string>{".", ".", "."});
  CHECK(r.out.find("chunk 1, queries  4.. 7: state S_[1]: no key;") != std::string::npos);
  CHECK(r.out.find("chunk 2, queries  8..11: state S_[2]: keys  0.. 3; intra block: keys  4.. 7") != std::string::npos);
  CHECK(r.out.find("are exactly rla_mask's: yes") != std::string::npos);
}

TEST_CASE("rattn-show decode: the ring holds the window, the state the tokens that left it") {
  rattn_test::Run r = run_program("rattn-show", {"--what", "decode", "--w", "3", "--tokens", "8"});
  REQUIRE(r.status == 0);
  // After token 7: positions 0..3 folded into S, 4..7 in the 4 ring slots (slot = position mod 4).
  std::istringstream in(r.out);  // the rows of this picture start with the token, not "t = ... :"
  std::string line, row7, row0;
  while (std::getline(in, line)) {
    if (line.rfind("      7  ", 0) == 0) row7 = line;
    if (line.rfind("      0  ", 0) == 0) row0 = line;
  }
  REQUIRE(!row7.empty());
  REQUIRE(!row0.empty());
  CHECK(row7.find("  S  S  S  S  r  r  r  r   [ 4  5  6  7]") != std::string::npos);
  CHECK(row7.find("{0 1 2 3}") != std::string::npos);
  CHECK(row0.find("  r  .  .  .  .  .  .  .   [ 0  -  -  -]") != std::string::npos);
  CHECK(row0.substr(row0.rfind(' ')) == row7.substr(row7.rfind(' ')));  // cache bytes: the same at t = 0 and 7
  CHECK(r.out.find("S exactly j <= t-w-1: yes") != std::string::npos);
}

TEST_CASE("rattn-show refuses a bad flag with status 2 and one line naming it") {
  const std::vector<std::vector<std::string>> bad = {
      {"--T", "0"}, {"--w", "-2"}, {"--C", "x"}, {"--what", "everything"}, {"--bogus", "1"}, {"--T", "5", "--T", "6"}};
  for (const std::vector<std::string>& args : bad) {
    CAPTURE(args[0]);
    rattn_test::Run r = run_program("rattn-show", args);
    CHECK(r.status == 2);
    CHECK(r.out.empty());
    CHECK(r.err.find(args[0]) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  }
}
