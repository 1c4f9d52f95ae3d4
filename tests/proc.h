// tests/proc.h: run one of the project's programs from a test and capture what it said.
//
//   rattn_test::Run r = rattn_test::run_program("train_tiny", {"--steps", "0"});
//   r.status (exit status, or 128 + signal), r.out, r.err (stdout, stderr)
//   rattn_test::ScopedEnv env("EMU_ORDER", "reverse");   an environment variable for one scope (a program
//                                                         started in it inherits it)
// Programs are found next to the test binary: a test in BIN/tests/ runs BIN/<program>, so the
// sanitizer build (bin/asan/tests/...) runs the sanitizer build of the programs (bin/asan/...).
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace rattn_test {

// Set an environment variable for one scope; the old value (or its absence) comes back at the end.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_, old_.c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

struct Run {
  int status = -1;  // exit status; 128 + N when killed by signal N
  std::string out, err;
};

// The folder that holds the programs: the parent of the folder that holds this test binary.
inline std::filesystem::path program_dir() {
  return std::filesystem::canonical("/proc/self/exe").parent_path().parent_path();
}
inline std::string program_path(const std::string& name) { return (program_dir() / name).string(); }

// A fresh empty folder under the system temp folder, removed by the destructor.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    std::string templ = (std::filesystem::temp_directory_path() / ("rattn_" + tag + "_XXXXXX")).string();
    if (!::mkdtemp(templ.data())) std::abort();
    path = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string slurp_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Start a command (argv_s[0]: the executable's path) with stdout and stderr going to files in dir; returns its
// pid (see wait_program).
// as_limit > 0: the child's address space is limited to that many bytes (RLIMIT_AS), so that a program that
// wrongly reads an endless file fails fast instead of filling the machine's memory; not applied in a
// sanitizer build, whose shadow memory needs far more address space.
inline pid_t start_command(std::vector<std::string> argv_s, const TempDir& dir, const std::string& tag = "run",
                           long as_limit = 0) {
  const std::string out = dir / (tag + ".out"), err = dir / (tag + ".err");
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fo = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int fe = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fo < 0 || fe < 0) ::_exit(126);
    ::dup2(fo, 1);
    ::dup2(fe, 2);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    if (as_limit > 0) {
      struct rlimit lim = {rlim_t(as_limit), rlim_t(as_limit)};
      ::setrlimit(RLIMIT_AS, &lim);
    }
#else
    (void)as_limit;
#endif
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// The same for one of the project's programs, found by name next to the tests (program_path).
inline pid_t start_program(const std::string& name, const std::vector<std::string>& args, const TempDir& dir,
                           const std::string& tag = "run", long as_limit = 0) {
  std::vector<std::string> argv_s = {program_path(name)};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  return start_command(argv_s, dir, tag, as_limit);
}

// Wait for it; after timeout_s seconds it is killed (SIGKILL) and the status says so (128 + 9).
inline Run wait_program(pid_t pid, const TempDir& dir, const std::string& tag = "run", double timeout_s = 120) {
  Run r;
  int ws = 0;
  for (long waited_ms = 0;; waited_ms += 5) {
    const pid_t got = ::waitpid(pid, &ws, WNOHANG);
    if (got == pid) break;
    if (got < 0 && errno != EINTR) std::abort();
    if (waited_ms > long(timeout_s * 1000)) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &ws, 0) < 0) {
      }
      break;
    }
    ::usleep(5000);
  }
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  r.out = slurp_file(dir / (tag + ".out"));
  r.err = slurp_file(dir / (tag + ".err"));
  return r;
}

inline Run run_program(const std::string& name, const std::vector<std::string>& args, double timeout_s = 120,
                       long as_limit = 0) {
  TempDir dir("proc");
  return wait_program(start_program(name, args, dir, "run", as_limit), dir, "run", timeout_s);
}

}  // namespace rattn_test
