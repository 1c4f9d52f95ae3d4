// model/cli.h: command-line flags shared by bin/train_tiny and bin/infer.
//
// A FlagSet is a table of flags, each bound to one field of a config struct. The same table
// parses argv, prints --help, writes the config as "name=value" lines (the checkpoint's config
// block) and reads those lines back, so a flag, its checkpoint key and its help text cannot drift
// apart.
//
// Every value is validated on the way in. A bad command line throws UsageError with one line that
// names the flag and the allowed values, e.g.
//   --d-model: expected an integer in [8, 1024], got '6x'
// and the programs print it on stderr and exit with status 2 (see cli_main_guard below).
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace model {

// A bad command line (or a bad config line in a checkpoint): the message names the flag.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class FlagSet {
 public:
  explicit FlagSet(std::string program) : program_(std::move(program)) {}

  // Bind a flag "--name" to a field. Ranges are inclusive. help is one line.
  void add_int(const std::string& name, int* field, long lo, long hi, const std::string& help);
  void add_long(const std::string& name, long* field, long lo, long hi, const std::string& help);
  void add_real(const std::string& name, double* field, double lo, double hi, const std::string& help);
  void add_string(const std::string& name, std::string* field, const std::string& help);
  void add_choice(const std::string& name, std::string* field, const std::vector<std::string>& choices,
                  const std::string& help);
  // A check of the whole string beyond its type (e.g. the layer pattern); returns "" when fine,
  // otherwise the allowed form, printed after "--name: expected ".
  void add_pattern(const std::string& name, std::string* field,
                   std::function<std::string(const std::string&)> check, const std::string& help);

  // Parse argv[1..]: every argument is "--name value" or "--name=value"; "--help" sets help().
  // Throws UsageError on an unknown flag, a flag given twice, a missing value, a non-number or a value
  // out of range.
  void parse(int argc, char** argv);
  bool help_requested() const { return help_; }
  bool was_set(const std::string& name) const;  // given on the command line (or by set())
  std::vector<std::string> set_names() const;   // the flags given, in table order

  // Set one flag from text, validated exactly like the command line (throws UsageError).
  void set(const std::string& name, const std::string& value);
  std::string get(const std::string& name) const;  // the current value as text (round-trips)
  bool has(const std::string& name) const;
  std::vector<std::string> names() const;

  std::string usage() const;  // "usage: program [flags]" and one line per flag with its range

 private:
  struct Flag {
    std::string name, help;
    enum class Kind { integer, long_integer, real, text, choice, pattern } kind;
    void* field;
    double lo = 0, hi = 0;
    std::vector<std::string> choices;
    std::function<std::string(const std::string&)> check;
    bool set = false;
  };
  Flag* find(const std::string& name);
  const Flag* find(const std::string& name) const;
  void assign(Flag& f, const std::string& value);
  static std::string allowed(const Flag& f);

  std::string program_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

// The shortest decimal form of x that reads back as exactly x ("1e-05", "0.4"): how a person would
// type it, and still exact in the checkpoint's config block.
std::string format_real(double x);

// Run main_body; a UsageError or an io::FileRefused (a refused input or output file) is printed as
// "program: message" on stderr and gives exit status 2; running out of memory (std::bad_alloc) a line
// that says so and what to lower, status 1; any other exception "program: error: message", status 1.
int cli_main_guard(const char* program, const std::function<int()>& main_body);

}  // namespace model
