// tests/test_pareto.cpp: scripts/pareto.py (the window-size sweep) end to end on its tiny
// "test" grid (3 runs of 3 steps at T = 32, seconds): it must write runs.csv with one row per run
// and metrics in every row, table.md with a line per arm, and, when gnuplot is installed, the PNG
// plots; the full-attention arm must have a window covering every evaluation length and train on
// the same data as the windowed arms; every evaluation must be on the held-out test split; the
// decode-path evaluation must put queries in every reach bucket at every length, and the windowed
// arms' decode memory must not grow with the length while full attention's does; a bad arm must be
// refused with exit status 2 and nothing trained; --merge must put runs.csv files of other seeds in one
// table and refuse a run given twice or rows of another configuration; a recall grid validated along
// training (--eval-interval) must keep the RLA branch size of each validation and plot it, and an arm
// with the branch held at zero (lg-rattn-hold) must pass its flags and show no branch; pareto_eval
// --rla-off must switch the RLA branches off and nothing else, and refuse a checkpoint without them;
// `make pareto` must run the harder recall regime in both stacks.
// It runs the programs next to this test binary (bin/train_tiny, bin/pareto_eval).
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "tests/check.h"

namespace fs = std::filesystem;

namespace {

// bin/tests/test_pareto -> bin; the repository is the first folder above it with scripts/pareto.py.
fs::path program_dir() { return fs::canonical("/proc/self/exe").parent_path().parent_path(); }
fs::path repo_root() {
  for (fs::path p = program_dir(); !p.empty() && p != p.root_path(); p = p.parent_path())
    if (fs::exists(p / "scripts" / "pareto.py")) return p;
  return {};
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream is(s);
  for (std::string line; std::getline(is, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // Python's csv module ends rows with \r\n
    out.push_back(line);
  }
  return out;
}

std::vector<std::string> split_csv(const std::string& line) {  // runs.csv has no quoted fields
  std::vector<std::string> out;
  std::istringstream is(line);
  for (std::string cell; std::getline(is, cell, ',');) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.push_back("");  // getline drops an empty last cell
  return out;
}

// The index of column `name` in runs.csv's header, -1 when it has none.
long column_of(const std::vector<std::string>& head, const std::string& name) {
  for (size_t i = 0; i < head.size(); ++i)
    if (head[i] == name) return long(i);
  return -1;
}

// Run a shell command; its exit status (128 + signal when killed).
int shell(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  if (rc == -1) return -1;
  if (WIFEXITED(rc)) return WEXITSTATUS(rc);
  return 128 + WTERMSIG(rc);
}

struct Tmp {
  fs::path path;
  Tmp() {
    std::string t = (fs::temp_directory_path() / "rattn_pareto_XXXXXX").string();
    REQUIRE(::mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~Tmp() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

}  // namespace

TEST_CASE("pareto.py test grid: runs.csv, table.md and the plots are produced") {
  if (shell("command -v python3 >/dev/null 2>&1") != 0) RATTN_SKIP("python3 not found");
  const fs::path root = repo_root();
  REQUIRE_MESSAGE(!root.empty(), "scripts/pareto.py not found above " << program_dir());
  REQUIRE_MESSAGE(fs::exists(program_dir() / "pareto_eval"), "build bin/pareto_eval first (make)");
  Tmp tmp;
  const fs::path out = tmp.path / "out", runs = tmp.path / "runs";
  // the test grid with the programs of folder bin and the run files in folder runs_dir
  auto sweep = [&](const fs::path& bin, const fs::path& runs_dir) {
    return shell("cd " + q(root) + " && OMP_WAIT_POLICY=passive python3 scripts/pareto.py --grid test" +
                 " --threads 1 --no-install --bin " + q(bin) + " --runs " + q(runs_dir) + " --out " + q(out) + " > " +
                 q(tmp.path / "log.txt") + " 2>&1");
  };
  const int rc = sweep(program_dir(), runs);
  INFO("pareto.py output:\n" << slurp(tmp.path / "log.txt"));
  REQUIRE(rc == 0);

  // runs.csv: a header and one row per (arm, window, seed) of the test grid, metrics filled in.
  const std::vector<std::string> rows = lines_of(slurp(out / "runs.csv"));
  REQUIRE(rows.size() == 4);
  const std::vector<std::string> head = split_csv(rows[0]);
  auto col = [&](const std::string& name) { return column_of(head, name); };
  for (const char* name : {"arm", "window", "model_window", "seed", "acc_1x", "near_acc_1x", "relay_acc_1x",
                           "beyond_acc_1x", "acc_2x", "beyondT_acc_2x", "train_s", "dec_acc_1x", "dec_mem_bytes_4x"})
    CHECK_MESSAGE(col(name) >= 0, "runs.csv lacks column " << name);
  REQUIRE(col("arm") >= 0);
  REQUIRE(col("acc_1x") >= 0);
  REQUIRE(col("model_window") >= 0);
  std::vector<std::string> arms;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string> cells = split_csv(rows[r]);
    REQUIRE(cells.size() == head.size());
    arms.push_back(cells[size_t(col("arm"))]);
    const std::string acc = cells[size_t(col("acc_1x"))];
    CHECK_MESSAGE(!acc.empty(), "row " << r << " has no accuracy");
    const double a = acc.empty() ? -1 : std::atof(acc.c_str());
    CHECK(a >= 0.0);
    CHECK(a <= 1.0);
    CHECK(cells[size_t(col("window"))] == "8");
    // full: SWA over the longest evaluation length (2T = 64), i.e. no window; the others: w itself.
    CHECK(cells[size_t(col("model_window"))] == (cells[size_t(col("arm"))] == "full" ? "64" : "8"));
  }
  CHECK(arms == std::vector<std::string>{"full", "lo-swa", "lo-rattn"});

  // The decode path (test grid: T = 32, w = 8, 2 layers, lengths 1x and 4x): every reach bucket holds
  // queries at both lengths, and at 4x some keys lie beyond T; the windowed arms hold the same memory
  // at 4x as at 1x (a ring of w+1 and a state), full attention (every key and value) about 4 times it.
  auto cell = [&](size_t r, const std::string& name) {
    const std::vector<std::string> cells = split_csv(rows[r]);
    return col(name) >= 0 ? cells[size_t(col(name))] : std::string();
  };
  for (size_t r = 1; r < rows.size(); ++r) {
    CAPTURE(cell(r, "arm"));
    for (const char* m : {"1x", "4x"})
      for (const char* b : {"near", "relay", "beyond"})
        CHECK_MESSAGE(std::atol(cell(r, std::string("dec_") + b + "_n_" + m).c_str()) > 0, b << " at " << m);
    CHECK(std::atol(cell(r, "dec_beyondT_n_4x").c_str()) > 0);
    const double mem1 = std::atof(cell(r, "dec_mem_bytes_1x").c_str());
    const double mem4 = std::atof(cell(r, "dec_mem_bytes_4x").c_str());
    REQUIRE(mem1 > 0);
    if (cell(r, "arm") == "full") {
      CHECK(mem4 / mem1 > 3.5);
      CHECK(mem4 / mem1 < 4.5);
    } else {
      CHECK(mem4 == mem1);
    }
  }
  // Every evaluation is on the held-out test split.
  for (const char* arm : {"full", "lo-swa", "lo-rattn"})
    for (const char* ext : {".eval", ".decode"}) {
      const std::string text = slurp(runs / ("recall-" + std::string(arm) + "-w8-s1" + ext));
      CHECK_MESSAGE(text.find("split=test") != std::string::npos, arm << ext << ": " << text);
      CHECK(text.find("split=validation") == std::string::npos);
    }

  // Every arm trained on the same data: the recall gap mix of the data window w = 8 (train_tiny's
  // "data:" line), the full arm included, although its model window is 64; and, as in the quick
  // grid, no key in (w, 2w], the band the 2-layer SWA stack reaches in two hops.
  std::vector<std::string> data_lines;
  for (const char* arm : {"full", "lo-swa", "lo-rattn"}) {
    std::string line;
    for (const std::string& l : lines_of(slurp(runs / ("recall-" + std::string(arm) + "-w8-s1.log"))))
      if (l.rfind("data: recall", 0) == 0) line = l;
    CHECK_MESSAGE(line.find("within w = 8, the others beyond d = 16") != std::string::npos, arm << ": " << line);
    data_lines.push_back(line);
  }
  CHECK(data_lines[0] == data_lines[1]);
  CHECK(data_lines[0] == data_lines[2]);

  // table.md: one line per arm in the recall table.
  const std::string table = slurp(out / "table.md");
  for (const char* arm : {"| full | 8 |", "| lo-swa | 8 |", "| lo-rattn | 8 |"})
    CHECK_MESSAGE(table.find(arm) != std::string::npos, "table.md lacks the line of " << arm << ":\n" << table);

  // The branch sizes (model/branch_share.h) from the run's log: one per layer for the rattn arm (2
  // local layers), none for the arms without an RLA branch; and their section of table.md.
  for (size_t r = 1; r < rows.size(); ++r) {
    CAPTURE(cell(r, "arm"));
    const std::string br = cell(r, "branch_rla_swa");
    if (cell(r, "arm") == "lo-rattn") {
      REQUIRE(br.find('/') != std::string::npos);
      CHECK(br.find('/', br.find('/') + 1) == std::string::npos);
      CHECK(std::atof(br.c_str()) > 0.0);
      CHECK(std::atof(br.substr(br.find('/') + 1).c_str()) > 0.0);
    } else {
      CHECK(br.empty());
    }
  }
  CHECK(table.find("How much the RATTENTION layers use their RLA branch") != std::string::npos);
  CHECK(table.find("| recall | lo-rattn | 8 | 1 |") != std::string::npos);

  // The plots: PNG files (magic bytes), when gnuplot is there to draw them.
  if (shell("command -v gnuplot >/dev/null 2>&1") == 0) {
    for (const char* png : {"recall_acc_vs_window.png", "recall_beyond_reach_vs_window.png", "recall_vs_length.png",
                            "recall_by_distance.png", "recall_decode_vs_length.png"}) {
      const std::string bytes = slurp(out / png);
      CHECK_MESSAGE(bytes.rfind("\x89PNG", 0) == 0, png << " missing or not a PNG (" << bytes.size() << " bytes)");
    }
  } else {
    MESSAGE("gnuplot not installed: the PNG plots were not checked");
  }

  // A second call finds every run cached: nothing retrained, the same CSV; also when the programs
  // are run from another folder and the run files were moved to another one (--bin and --runs say
  // where things are, not what a run is).
  const std::string csv1 = slurp(out / "runs.csv");
  const fs::path other_bin = tmp.path / "other-bin";
  fs::create_directories(other_bin);
  for (const char* prog : {"train_tiny", "pareto_eval"})
    fs::create_symlink(fs::absolute(program_dir() / prog), other_bin / prog);
  const fs::path moved_runs = tmp.path / "moved-runs";
  fs::rename(runs, moved_runs);
  REQUIRE(sweep(other_bin, moved_runs) == 0);
  INFO("second pareto.py output:\n" << slurp(tmp.path / "log.txt"));
  CHECK(slurp(tmp.path / "log.txt").find("training (") == std::string::npos);
  CHECK(slurp(tmp.path / "log.txt").find("(3 cached)") != std::string::npos);
  CHECK(slurp(out / "runs.csv") == csv1);

  // --merge: the rows of runs.csv files of other seeds in one table, nothing trained. A copy of the
  // rows as seed 2 with acc_1x set to 1 (100 %, which 3 steps do not reach): the merged table counts 2
  // seeds per arm and shows the range;
  // the same run twice, or rows with another step count, are refused with status 2.
  auto rows_as = [&](const std::string& field, const std::string& value) {
    std::string text = rows[0] + "\n";
    for (size_t r = 1; r < rows.size(); ++r) {
      std::vector<std::string> cells = split_csv(rows[r]);
      cells[size_t(col(field))] = value;
      if (field == "seed") cells[size_t(col("acc_1x"))] = "1";
      for (size_t i = 0; i < cells.size(); ++i) text += (i ? "," : "") + cells[i];
      text += "\n";
    }
    return text;
  };
  const fs::path seed2 = tmp.path / "seed2.csv", steps9 = tmp.path / "steps9.csv", merged = tmp.path / "merged";
  std::ofstream(seed2) << rows_as("seed", "2");
  std::ofstream(steps9) << rows_as("steps", "9");
  auto merge = [&](const std::string& files) {
    return shell("cd " + q(root) + " && python3 scripts/pareto.py --grid test --no-plots --merge " + files +
                 " --bin /nonexistent --out " + q(merged) + " > " + q(tmp.path / "merge.txt") + " 2>&1");
  };
  REQUIRE(merge((out / "runs.csv").string() + "," + seed2.string()) == 0);
  INFO("pareto.py --merge output:\n" << slurp(tmp.path / "merge.txt"));
  CHECK(lines_of(slurp(merged / "runs.csv")).size() == 7);
  const std::string mtable = slurp(merged / "table.md");
  for (const char* arm : {"| full | 8 | 2 |", "| lo-swa | 8 | 2 |", "| lo-rattn | 8 | 2 |"})
    CHECK_MESSAGE(mtable.find(arm) != std::string::npos, "merged table.md lacks " << arm << ":\n" << mtable);
  CHECK(mtable.find("..100.0) |") != std::string::npos);
  CHECK(merge((out / "runs.csv").string() + "," + (out / "runs.csv").string()) == 2);
  CHECK(slurp(tmp.path / "merge.txt").find("seed 1 is in") != std::string::npos);
  CHECK(merge((out / "runs.csv").string() + "," + steps9.string()) == 2);
  CHECK(slurp(tmp.path / "merge.txt").find("steps = 9") != std::string::npos);
}

TEST_CASE("pareto.py --data-window: every window of the ladder trains on the data of one window") {
  if (shell("command -v python3 >/dev/null 2>&1") != 0) RATTN_SKIP("python3 not found");
  const fs::path root = repo_root();
  REQUIRE(!root.empty());
  Tmp tmp;
  const int rc = shell("cd " + q(root) + " && OMP_WAIT_POLICY=passive python3 scripts/pareto.py --grid test" +
                       " --arms lo-swa --windows 4,8 --data-window 12 --far-beyond-reach 0 --no-plots --threads 1" +
                       " --bin " + q(program_dir()) + " --runs " + q(tmp.path / "runs") + " --out " +
                       q(tmp.path / "out") + " > " + q(tmp.path / "log.txt") + " 2>&1");
  INFO("pareto.py output:\n" << slurp(tmp.path / "log.txt"));
  REQUIRE(rc == 0);
  for (const char* w : {"4", "8"}) {
    const std::string cmd = slurp(tmp.path / "runs" / ("recall-lo-swa-w" + std::string(w) + "-s1.cmd"));
    CHECK_MESSAGE(cmd.find("--window " + std::string(w) + " --data-window 12 ") != std::string::npos, cmd);
    std::string line;
    for (const std::string& l : lines_of(slurp(tmp.path / "runs" / ("recall-lo-swa-w" + std::string(w) + "-s1.log"))))
      if (l.rfind("data: recall", 0) == 0) line = l;
    CHECK_MESSAGE(line.find("within w = 12") != std::string::npos, line);
  }
  CHECK(slurp(tmp.path / "out" / "table.md").find("recall data of window 12") != std::string::npos);
}

TEST_CASE("pareto.py refuses an unknown arm with exit status 2, before training anything") {
  if (shell("command -v python3 >/dev/null 2>&1") != 0) RATTN_SKIP("python3 not found");
  const fs::path root = repo_root();
  REQUIRE(!root.empty());
  Tmp tmp;
  const int rc = shell("cd " + q(root) + " && python3 scripts/pareto.py --grid test --arms full,lg-nope --bin " +
                       q(program_dir()) + " --runs " + q(tmp.path / "runs") + " --out " + q(tmp.path / "out") +
                       " > " + q(tmp.path / "log.txt") + " 2>&1");
  CHECK(rc == 2);
  CHECK(slurp(tmp.path / "log.txt").find("lg-nope") != std::string::npos);
  CHECK(!fs::exists(tmp.path / "runs"));
}

TEST_CASE("pareto.py text grid: every window of the ladder, full attention once, the RLA branch along training") {
  if (shell("command -v python3 >/dev/null 2>&1") != 0) RATTN_SKIP("python3 not found");
  const fs::path root = repo_root();
  REQUIRE(!root.empty());
  Tmp tmp;
  const fs::path text = tmp.path / "text.txt", out = tmp.path / "out", runs = tmp.path / "runs";
  {
    std::ofstream f(text);
    for (int i = 0; i < 400; ++i) f << "line " << i << ": the quick brown fox jumps over the lazy dog.\n";
  }
  auto sweep = [&](const std::string& extra) {
    return shell("cd " + q(root) + " && OMP_WAIT_POLICY=passive python3 scripts/pareto.py --grid text" +
                 " --seq-len 32 --windows 4,8 --seeds 1 --steps 4 --warmup 1 --eval-interval 2 --batch 2 --layers 2" +
                 " --lg-pattern LG --lengths 1,2 --threads 1 --jobs 1 --no-plots --bin " + q(program_dir()) + " --runs " +
                 q(runs) + " --out " + q(out) + extra + " > " + q(tmp.path / "log.txt") + " 2>&1");
  };
  // The text grid trains language models only: without --text it is refused, nothing trained.
  CHECK(sweep("") == 2);
  CHECK(slurp(tmp.path / "log.txt").find("--text FILE") != std::string::npos);
  CHECK(!fs::exists(runs));

  const int rc = sweep(" --text " + q(text));
  INFO("pareto.py output:\n" << slurp(tmp.path / "log.txt"));
  REQUIRE(rc == 0);
  // full attention does not depend on w: one run per seed; the windowed arms at both windows
  const std::vector<std::string> rows = lines_of(slurp(out / "runs.csv"));
  REQUIRE(rows.size() == 6);
  const std::vector<std::string> head = split_csv(rows[0]);
  auto col = [&](const std::string& name) {
    const long c = column_of(head, name);
    REQUIRE_MESSAGE(c >= 0, "runs.csv lacks column " << name);
    return size_t(c);
  };
  std::vector<std::string> names;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string> cells = split_csv(rows[r]);
    REQUIRE(cells.size() == head.size());
    const std::string arm = cells[col("arm")];
    names.push_back(cells[col("task")] + "-" + arm + "-w" + cells[col("window")]);
    CHECK(std::atof(cells[col("bpb_1x")].c_str()) > 0.0);
    // the branch's size at each validation (steps 2 and 4), one value per local layer (LG: one)
    const std::string g = cells[col("branch_growth")];
    if (arm == "lg-rattn") {
      CHECK_MESSAGE(g.rfind("2:", 0) == 0, g);
      CHECK_MESSAGE(g.find(";4:") != std::string::npos, g);
      CHECK(g.find('/') == std::string::npos);
      CHECK(std::atof(g.substr(2).c_str()) > 0.0);
    } else {
      CHECK_MESSAGE(g.empty(), arm << ": " << g);
    }
  }
  CHECK(names == std::vector<std::string>{"text-full-w4", "text-lg-swa-w4", "text-lg-rattn-w4", "text-lg-swa-w8",
                                          "text-lg-rattn-w8"});
  const std::string table = slurp(out / "table.md");
  CHECK_MESSAGE(table.find("# Byte-level language models") != std::string::npos, table);
  CHECK(table.find("| full | - | 1 | 4 |") != std::string::npos);
  CHECK(table.find("| lg-rattn | 8 | 1 | 4 |") != std::string::npos);
  CHECK(table.find("## The RLA branch along training") != std::string::npos);
  CHECK(table.find("| step 2 | step 4 |") != std::string::npos);
  CHECK(table.find("| text | lg-rattn | 4 | 1 |") != std::string::npos);
}

TEST_CASE("pareto.py recall grid with --eval-interval: the RLA branch along training, its table and its plot") {
  if (shell("command -v python3 >/dev/null 2>&1") != 0) RATTN_SKIP("python3 not found");
  const fs::path root = repo_root();
  REQUIRE(!root.empty());
  Tmp tmp;
  const fs::path out = tmp.path / "out";
  const int rc = shell("cd " + q(root) + " && OMP_WAIT_POLICY=passive python3 scripts/pareto.py --grid test" +
                       " --arms lg-swa,lg-rattn,lg-rattn-hold --steps 4 --eval-interval 2 --decode-lengths ''" +
                       " --threads 1 --bin " +
                       q(program_dir()) + " --runs " + q(tmp.path / "runs") + " --out " + q(out) + " > " +
                       q(tmp.path / "log.txt") + " 2>&1");
  INFO("pareto.py output:\n" << slurp(tmp.path / "log.txt"));
  REQUIRE(rc == 0);
  const std::vector<std::string> rows = lines_of(slurp(out / "runs.csv"));
  REQUIRE(rows.size() == 4);
  const std::vector<std::string> head = split_csv(rows[0]);
  const long arm = column_of(head, "arm"), growth = column_of(head, "branch_growth");
  REQUIRE(arm >= 0);
  REQUIRE(growth >= 0);
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::vector<std::string> cells = split_csv(rows[r]);
    REQUIRE(cells.size() == head.size());
    const std::string& g = cells[size_t(growth)];
    if (cells[size_t(arm)] == "lg-rattn") {
      CHECK_MESSAGE(g.rfind("2:", 0) == 0, g);
      CHECK_MESSAGE(g.find(";4:") != std::string::npos, g);
      CHECK_MESSAGE(g.find(":0.000;") == std::string::npos, g);
    } else if (cells[size_t(arm)] == "lg-rattn-hold") {  // gamma_rla held at 0 through these 4 steps: no branch
      CHECK_MESSAGE(g == "2:0.000;4:0.000", g);
    } else {
      CHECK_MESSAGE(g.empty(), cells[size_t(arm)] << ": " << g);
    }
  }
  // the growth table: a column per validation, a row for the rattn arm (the final-size table has one too)
  const std::string table = slurp(out / "table.md");
  const size_t section = table.find("## The RLA branch along training");
  REQUIRE_MESSAGE(section != std::string::npos, table);
  CHECK(table.find("| step 2 | step 4 |", section) != std::string::npos);
  CHECK(table.find("| recall | lg-rattn | 8 | 1 |", section) != std::string::npos);
  CHECK(table.find("| recall | lg-swa |", section) == std::string::npos);
  // the variant arm passes its flags to train_tiny
  const std::string hold_cmd = slurp(tmp.path / "runs" / "recall-lg-rattn-hold-w8-s1.cmd");
  CHECK_MESSAGE(hold_cmd.find(" --local rattn ") != std::string::npos, hold_cmd);
  CHECK_MESSAGE(hold_cmd.find(" --rla-gain-init 0 --rla-hold 2000 ") != std::string::npos, hold_cmd);
  if (shell("command -v gnuplot >/dev/null 2>&1") == 0) {
    const std::string bytes = slurp(out / "branch_growth.png");
    CHECK_MESSAGE(bytes.rfind("\x89PNG", 0) == 0, "branch_growth.png missing or not a PNG (" << bytes.size() << ")");
  } else {
    MESSAGE("gnuplot not installed: the branch plot was not checked");
  }
}

TEST_CASE("pareto_eval --rla-off: the RLA branches off, nothing else changed; RATTENTION checkpoints only") {
  Tmp tmp;
  const fs::path bin = program_dir();
  // Three tiny local-global checkpoints of 4 steps: RATTENTION with gamma_rla as trained (from 1),
  // RATTENTION whose gamma_rla is held at 0 through every step (--rla-hold 4: its branch adds nothing),
  // and SWA.
  auto train = [&](const std::string& name, const std::string& local, const std::string& extra) {
    return shell(q(bin / "train_tiny") + " --layers 2 --pattern LG --local " + local +
                 " --window 8 --d-model 32 --seq-len 32 --batch 4 --steps 4 --warmup 1 --seed 3 --task recall"
                 " --pairs 2 --threads 1 --log-every 100 --ckpt " + q(tmp.path / (name + ".ckpt")) + extra + " > " +
                 q(tmp.path / (name + ".train.txt")) + " 2>&1");
  };
  REQUIRE(train("rattn", "rattn", "") == 0);
  REQUIRE(train("held", "rattn", " --rla-gain-init 0 --rla-hold 4") == 0);
  REQUIRE(train("swa", "swa", "") == 0);
  // The fields of pareto_eval's lines but the rla_off flag, and its exit status.
  auto eval = [&](const std::string& name, const std::string& mode, int off, std::string* out) {
    const fs::path txt = tmp.path / (name + "." + mode + std::to_string(off) + ".txt");
    const int rc = shell(q(bin / "pareto_eval") + " --ckpt " + q(tmp.path / (name + ".ckpt")) + " --mode " + mode +
                         " --lengths 1,2 --eval-seqs 8 --threads 1 --rla-off " + std::to_string(off) + " > " + q(txt) +
                         " 2>&1");
    *out = slurp(txt);
    const std::string flag = " rla_off=1";
    for (size_t at; (at = out->find(flag)) != std::string::npos;) out->erase(at, flag.size());
    return rc;
  };
  for (const char* mode : {"forward", "decode"}) {
    INFO("mode " << mode);
    std::string on, off;
    REQUIRE(eval("held", mode, 0, &on) == 0);
    REQUIRE(eval("held", mode, 1, &off) == 0);
    CHECK(on.find("loss=") != std::string::npos);
    CHECK(lines_of(on).size() == 2);
    CHECK(off == on);  // gamma_rla was 0 already: the switch touches nothing else
    REQUIRE(eval("rattn", mode, 0, &on) == 0);
    REQUIRE(eval("rattn", mode, 1, &off) == 0);
    CHECK(lines_of(off).size() == 2);
    CHECK(off != on);  // a branch at its trained scale changes the logits, so the losses
  }
  std::string msg;
  CHECK(eval("swa", "forward", 1, &msg) == 2);
  CHECK(msg.find("--rla-off: RATTENTION checkpoints only") != std::string::npos);
}

// --mode probe scores the decode set with the forward (the same function), so its accuracy fields must
// equal the decode's, and adds the global layer's weight on each answer; a local-only stack is refused.
TEST_CASE("pareto_eval --mode probe: the decode set through the forward, with the global layer's weights") {
  Tmp tmp;
  const fs::path bin = program_dir();
  auto train = [&](const std::string& name, const std::string& pattern) {
    return shell(q(bin / "train_tiny") + " --layers 2 --pattern " + pattern +
                 " --local rattn --window 8 --d-model 32 --seq-len 32 --batch 4 --steps 4 --warmup 1 --seed 3"
                 " --task recall --pairs 2 --threads 1 --log-every 100 --ckpt " + q(tmp.path / (name + ".ckpt")) +
                 " > " + q(tmp.path / (name + ".train.txt")) + " 2>&1");
  };
  REQUIRE(train("lg", "LG") == 0);
  REQUIRE(train("lo", "L") == 0);
  auto eval = [&](const std::string& name, const std::string& mode, std::string* out) {
    const fs::path txt = tmp.path / (name + "." + mode + ".txt");
    const int rc = shell(q(bin / "pareto_eval") + " --ckpt " + q(tmp.path / (name + ".ckpt")) + " --mode " + mode +
                         " --lengths 1,4 --eval-seqs 8 --threads 1 > " + q(txt) + " 2>&1");
    *out = slurp(txt);
    return rc;
  };
  // the value of field `key=` in line
  auto field = [](const std::string& line, const std::string& key) {
    const size_t at = line.find(" " + key + "=");
    if (at == std::string::npos) return std::string();
    const size_t from = at + key.size() + 2;
    return line.substr(from, line.find(' ', from) - from);
  };
  std::string probe, decode;
  REQUIRE(eval("lg", "probe", &probe) == 0);
  REQUIRE(eval("lg", "decode", &decode) == 0);
  const std::vector<std::string> pl = lines_of(probe), dl = lines_of(decode);
  REQUIRE(pl.size() == 2);
  REQUIRE(dl.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CAPTURE(pl[i]);
    // the same set: the same counts in every bucket; the same accuracy up to a query whose top two
    // logits the forward and the decode round differently
    for (const char* key : {"T", "seqs", "n", "near_n", "relay_n", "beyond_n", "beyondT_n"})
      CHECK(field(pl[i], key) == field(dl[i], key));
    const double n = std::stod(field(pl[i], "n"));
    CHECK(std::abs(std::stod(field(pl[i], "acc")) - std::stod(field(dl[i], "acc"))) <= 1.0 / n + 1e-9);
    CHECK(field(pl[i], "mode") == "probe");
    CHECK(field(pl[i], "probe_layer") == "1");
    CHECK(field(pl[i], "probe_n") == field(pl[i], "n"));  // every scored query of the set is probed
    const double mass = std::stod(field(pl[i], "probe_mass"));
    CHECK(mass > 0.0);
    CHECK(mass < 1.0);
    CHECK(!field(pl[i], "probe_logodds_med").empty());
    CHECK(field(pl[i], "mem_bytes").empty());
  }
  std::string msg;
  CHECK(eval("lo", "probe", &msg) == 2);
  CHECK(msg.find("--mode probe: stacks with a global layer only") != std::string::npos);
}

// `make pareto` is the sweep the README points to: it must run the harder recall regime (random filler,
// distractor keys, the pairs anywhere, 3 seeds) in both stacks, local-only with 8 pairs and local-global
// with 16, with linear attention as an arm of each. --dry-run prints each run's train_tiny command
// without training, so this checks the commands the sweep would run.
TEST_CASE("make pareto runs the harder recall regime in both stacks, 3 seeds each") {
  if (shell("command -v python3 >/dev/null 2>&1") != 0) RATTN_SKIP("python3 not found");
  if (shell("command -v make >/dev/null 2>&1") != 0) RATTN_SKIP("make not found");
  const fs::path root = repo_root();
  REQUIRE(!root.empty());
  Tmp tmp;
  // -n: print the recipe, run nothing (the variables of an enclosing make are not passed down).
  REQUIRE(shell("cd " + q(root) + " && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n pareto > " +
                q(tmp.path / "make.txt") + " 2>&1") == 0);
  const std::string recipe = slurp(tmp.path / "make.txt");
  CHECK(recipe.find("scripts/pareto.py --grid hard ") != std::string::npos);
  CHECK(recipe.find("scripts/pareto.py --grid lg-hard ") != std::string::npos);
  CHECK(recipe.find("--grid full") == std::string::npos);
  CHECK(recipe.find("--grid quick") == std::string::npos);

  struct Grid {
    const char* name;
    const char* pairs;
    std::vector<std::string> arms;
  };
  for (const Grid& g : {Grid{"hard", "8", {"full", "lo-swa", "lo-rattn", "lo-linear"}},
                        Grid{"lg-hard", "16", {"full", "lg-swa", "lg-rattn", "lg-linear"}}}) {
    const std::string grid = g.name;
    CAPTURE(grid);
    const fs::path log = tmp.path / (std::string(g.name) + ".txt");
    REQUIRE(shell("cd " + q(root) + " && python3 scripts/pareto.py --grid " + g.name + " --dry-run --bin " +
                  q(program_dir()) + " --runs " + q(tmp.path / g.name) + " > " + q(log) + " 2>&1") == 0);
    int runs = 0;
    for (const std::string& line : lines_of(slurp(log))) {
      if (line.rfind("to run", 0) != 0) continue;
      ++runs;
      CAPTURE(line);
      CHECK(line.find("--filler random") != std::string::npos);
      CHECK(line.find("--distractors 8") != std::string::npos);
      CHECK(line.find("--pairs-at anywhere") != std::string::npos);
      CHECK(line.find(std::string("--pairs ") + g.pairs + " ") != std::string::npos);
    }
    CHECK(runs >= 3 * static_cast<int>(g.arms.size()));
    const std::string all = slurp(log);
    for (const std::string& arm : g.arms)
      for (int seed = 1; seed <= 3; ++seed) {
        const std::string run = "recall-" + arm + "-w16-s" + std::to_string(seed) + ".ckpt";
        CHECK_MESSAGE(all.find(run) != std::string::npos, grid << ": no run " << run);
      }
    CHECK(!fs::exists(tmp.path / g.name / "recall-full-w16-s1.ckpt"));  // a dry run trains nothing
  }
}
