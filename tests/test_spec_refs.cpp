// tests/test_spec_refs.cpp: every reference to the specification resolves to a heading of docs/spec.md.
//
// The code cites the specification by section: the word spec, then §2.3 or a list such as
// §2.3, §3.1 and §4. This test walks the project's sources (ref/ cuda/ model/ io/ data/ tools/
// tests/ scripts/ fuzz/, the top-level *.cpp and Makefile, docs/*.md except spec.md itself; files
// ending .h .cpp .cu .py .sh .md) and checks that
//   - each cited number is the number of a heading `## §N ...` / `### §N.M ...` of docs/spec.md;
//   - no reference is written in a form the first check would miss: the word spec (any case, whole
//     word, possessive allowed) directly followed by a number, by the word section, or by a double
//     quote; a § with no number; or a range §a-§b (write the list instead);
//   - the headings have no duplicates and no holes (§2.7 needs §2.6 and §2).
// README.md is left out. Failures name file:line. Tests run from the repository root; the root is
// also found above the test binary.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {
namespace fs = std::filesystem;

const std::string kSection = "\xC2\xA7";  // "§" in UTF-8

bool word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool at(const std::string& s, size_t i, const std::string& what) { return s.compare(i, what.size(), what) == 0; }
bool at_nocase(const std::string& s, size_t i, const std::string& lower) {
  if (i + lower.size() > s.size()) return false;
  for (size_t k = 0; k < lower.size(); ++k)
    if (std::tolower(static_cast<unsigned char>(s[i + k])) != lower[k]) return false;
  return true;
}
size_t skip_blanks(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return i;
}
// A section number at i: digits, then any number of ".digits". Returns "" when there is none.
std::string number_at(const std::string& s, size_t& i) {
  const size_t b = i;
  while (i < s.size() && digit(s[i])) {
    while (i < s.size() && digit(s[i])) ++i;
    if (i + 1 < s.size() && s[i] == '.' && digit(s[i + 1])) ++i;
  }
  return s.substr(b, i - b);
}

// What one line says: the section numbers it cites and the problems in how it cites them.
struct LineRefs {
  std::vector<std::string> numbers;
  std::vector<std::string> problems;
};

LineRefs scan_line(const std::string& line) {
  LineRefs out;
  for (size_t i = 0; i + 4 <= line.size(); ++i) {
    if (!at_nocase(line, i, "sp" "ec")) continue;  // split: this file cites nothing
    if ((i > 0 && word_char(line[i - 1])) || (i + 4 < line.size() && word_char(line[i + 4]))) continue;
    size_t k = i + 4;
    if (at(line, k, "'s")) k += 2;  // possessive
    k = skip_blanks(line, k);
    if (at(line, k, kSection)) {
      // the list: §n, then (", " | "; " | " and ") §n, ...
      while (at(line, k, kSection)) {
        k += kSection.size();
        const std::string n = number_at(line, k);
        if (n.empty()) {
          out.problems.push_back("the word spec and a section sign with no number");
          break;
        }
        out.numbers.push_back(n);
        size_t p = k;
        if (at(line, p, "-") && at(line, p + 1, kSection)) {
          out.problems.push_back("a range of sections (" + n + "-...): write the list");
          p += 1;
        } else {
          p = skip_blanks(line, p);
          if (p < line.size() && (line[p] == ',' || line[p] == ';')) {
            p = skip_blanks(line, p + 1);
          } else if (at(line, p, "and ")) {
            p = skip_blanks(line, p + 4);
          }
        }
        if (!at(line, p, kSection)) break;
        k = p;
      }
    } else if (k < line.size() && digit(line[k])) {
      out.problems.push_back("the word spec followed by a bare number");
    } else if (at_nocase(line, k, "section")) {
      out.problems.push_back("the word spec followed by the word section");
    } else if (k < line.size() && line[k] == '"') {
      out.problems.push_back("the word spec followed by a quoted name");
    }
  }
  return out;
}

// The heading numbers of a Markdown text: lines "#...# §N title".
std::vector<std::string> heading_numbers(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) {
    if (line.empty() || line[0] != '#') continue;
    size_t k = 0;
    while (k < line.size() && line[k] == '#') ++k;
    k = skip_blanks(line, k);
    if (!at(line, k, kSection)) continue;
    k += kSection.size();
    const std::string n = number_at(line, k);
    if (!n.empty()) out.push_back(n);
  }
  return out;
}

std::vector<int> parts_of(const std::string& n) {
  std::vector<int> p;
  std::istringstream is(n);
  for (std::string part; std::getline(is, part, '.');) p.push_back(std::stoi(part));
  return p;
}
std::string join(const std::vector<int>& p) {
  std::string s;
  for (size_t i = 0; i < p.size(); ++i) s += (i ? "." : "") + std::to_string(p[i]);
  return s;
}

// Problems with a list of headings: duplicates, and numbers whose predecessor or parent is missing
// (top-level numbers count from 0, subsections from 1).
std::vector<std::string> heading_problems(const std::vector<std::string>& numbers) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const std::string& n : numbers)
    if (!seen.insert(n).second) out.push_back("heading " + kSection + n + " appears twice");
  for (const std::string& n : numbers) {
    std::vector<int> p = parts_of(n);
    if (p.size() > 1) {
      const std::string parent = join(std::vector<int>(p.begin(), p.end() - 1));
      if (!seen.count(parent)) out.push_back("heading " + kSection + n + " has no parent " + kSection + parent);
    }
    if (p.back() > (p.size() == 1 ? 0 : 1)) {
      --p.back();
      if (!seen.count(join(p)))
        out.push_back("heading " + kSection + n + " follows a hole: no " + kSection + join(p));
    }
  }
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The repository root: the working folder (tests run from the root) or the first folder above the
// test binary that holds docs/spec.md.
fs::path repo_root() {
  if (fs::exists("docs/spec.md")) return fs::current_path();
  std::error_code ec;
  const fs::path exe = fs::canonical("/proc/self/exe", ec);
  if (!ec)
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      if (fs::exists(p / "docs" / "spec.md")) return p;
  return {};
}

// The files to scan, relative to root, sorted.
std::vector<fs::path> source_files(const fs::path& root) {
  const std::set<std::string> exts = {".h", ".cpp", ".cu", ".py", ".sh", ".md"};
  std::vector<fs::path> out;
  for (const char* dir : {"ref", "cuda", "model", "io", "data", "tools", "tests", "scripts", "fuzz"}) {
    std::error_code ec;
    if (!fs::is_directory(root / dir, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(root / dir, ec); it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (ec) break;
      if (it->is_regular_file() && exts.count(it->path().extension().string()))
        out.push_back(fs::relative(it->path(), root));
    }
  }
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && (e.path().extension() == ".cpp" || name == "Makefile")) out.push_back(name);
  }
  std::error_code ec;
  if (fs::is_directory(root / "docs", ec))
    for (const auto& e : fs::directory_iterator(root / "docs"))
      if (e.is_regular_file() && e.path().extension() == ".md" && e.path().filename() != "spec.md" &&
          e.path().filename() != "README.md")
        out.push_back(fs::relative(e.path(), root));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("spec references: the parser finds lists and flags the forms it cannot check") {
  // The samples are assembled from pieces so that this file holds no reference of its own.
  const std::string w = std::string("sp") + "ec";
  LineRefs r = scan_line("// o_t = phi(q_t) S  (" + w + " " + kSection + "2.3, " + kSection + "3.1)");
  CHECK(r.problems.empty());
  REQUIRE(r.numbers.size() == 2);
  CHECK(r.numbers[0] == "2.3");
  CHECK(r.numbers[1] == "3.1");
  r = scan_line(w + " " + kSection + "1.3 and " + kSection + "0: local layers only");
  REQUIRE(r.numbers.size() == 2);
  CHECK(r.numbers[1] == "0");
  r = scan_line("(" + w + " " + kSection + "2.4: the bound).");
  CHECK(r.numbers == std::vector<std::string>{"2.4"});
  CHECK(scan_line("S" + w.substr(1) + " " + kSection + "4.10.").numbers == std::vector<std::string>{"4.10"});

  CHECK(scan_line("(" + w + " 2.3)").problems.size() == 1);
  CHECK(scan_line("S" + w.substr(1) + " section 1.3").problems.size() == 1);
  CHECK(scan_line("the " + w + "'s \"Project decisions\" table").problems.size() == 1);
  CHECK(scan_line(w + " \"Project decisions\"").problems.size() == 1);
  CHECK(scan_line(w + " " + kSection + "3.1-" + kSection + "3.3").problems.size() == 1);
  CHECK(scan_line(w + " " + kSection + "N.N").problems.size() == 1);
  CHECK(scan_line(std::string("SP") + "EC 4").problems.size() == 1);
  // Not references: other words, file names, prose.
  CHECK(scan_line("unspecified 2.3, specific 4, " + w + "ial 2").problems.empty());
  CHECK(scan_line("docs/" + w + ".md and the " + w + " itself").problems.empty());
  CHECK(scan_line("unspecified 2.3, specific 4").numbers.empty());

  const std::vector<std::string> h =
      heading_numbers("# T\n## " + kSection + "0 D\n## " + kSection + "2 L\n### " + kSection + "2.1 P\n#### x\n");
  CHECK(h == std::vector<std::string>{"0", "2", "2.1"});
  CHECK(heading_problems(h).size() == 1);  // §2 without §1
  CHECK(heading_problems({"0", "1", "1.1", "1.2"}).empty());
  CHECK(heading_problems({"0", "1", "1.2"}).size() == 1);
  CHECK(heading_problems({"0", "1.1"}).size() == 1);
  CHECK(heading_problems({"0", "0"}).size() == 1);
}

TEST_CASE("spec references: every one names a heading of docs/spec.md") {
  const fs::path root = repo_root();
  REQUIRE_MESSAGE(!root.empty(), "docs/spec.md not found (run the tests from the repository root)");
  const std::vector<std::string> numbers = heading_numbers(slurp(root / "docs" / "spec.md"));
  REQUIRE_MESSAGE(numbers.size() >= 20, "docs/spec.md: only " << numbers.size() << " numbered headings");
  for (const std::string& p : heading_problems(numbers)) FAIL_CHECK("docs/spec.md: " << p);
  const std::set<std::string> headings(numbers.begin(), numbers.end());

  long refs = 0, bad = 0;
  const std::vector<fs::path> files = source_files(root);
  REQUIRE(!files.empty());
  for (const fs::path& f : files) {
    std::istringstream is(slurp(root / f));
    long lineno = 0;
    for (std::string line; std::getline(is, line);) {
      ++lineno;
      const LineRefs r = scan_line(line);
      for (const std::string& p : r.problems) {
        ++bad;
        FAIL_CHECK(f.string() << ":" << lineno << ": " << p << ": " << line);
      }
      for (const std::string& n : r.numbers) {
        ++refs;
        if (!headings.count(n)) {
          ++bad;
          FAIL_CHECK(f.string() << ":" << lineno << ": no heading " << kSection << n
                                << " in docs/spec.md: " << line);
        }
      }
    }
  }
  MESSAGE(files.size() << " files, " << refs << " references, " << bad << " problems");
  CHECK(refs >= 50);  // the scan reached the code (about 80 references)
}
