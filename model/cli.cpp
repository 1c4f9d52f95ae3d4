// model/cli.cpp: the flag table (see cli.h).
#include "model/cli.h"

#include "io/files.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <new>
#include <sstream>

namespace model {

// The shortest %g form that reads back as exactly x ("1e-05", "0.4", "0.003"; never
// "1.0000000000000001e-05"). 17 significant digits round-trip every double, so the loop always ends.
std::string format_real(double x) {
  char buf[64];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  return buf;
}

namespace {
std::string fmt_bound(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}
// Integer bounds in full ("[0, 1048576]", not %g's "1.04858e+06"): they are exact in a double.
std::string fmt_int_bound(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}
}  // namespace

void FlagSet::add_int(const std::string& name, int* field, long lo, long hi, const std::string& help) {
  flags_.push_back({name, help, Flag::Kind::integer, field, double(lo), double(hi), {}, {}, false});
}
void FlagSet::add_long(const std::string& name, long* field, long lo, long hi, const std::string& help) {
  flags_.push_back({name, help, Flag::Kind::long_integer, field, double(lo), double(hi), {}, {}, false});
}
void FlagSet::add_real(const std::string& name, double* field, double lo, double hi,
                       const std::string& help) {
  flags_.push_back({name, help, Flag::Kind::real, field, lo, hi, {}, {}, false});
}
void FlagSet::add_string(const std::string& name, std::string* field, const std::string& help) {
  flags_.push_back({name, help, Flag::Kind::text, field, 0, 0, {}, {}, false});
}
void FlagSet::add_choice(const std::string& name, std::string* field,
                         const std::vector<std::string>& choices, const std::string& help) {
  flags_.push_back({name, help, Flag::Kind::choice, field, 0, 0, choices, {}, false});
}
void FlagSet::add_pattern(const std::string& name, std::string* field,
                          std::function<std::string(const std::string&)> check, const std::string& help) {
  flags_.push_back({name, help, Flag::Kind::pattern, field, 0, 0, {}, std::move(check), false});
}

FlagSet::Flag* FlagSet::find(const std::string& name) {
  for (Flag& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}
const FlagSet::Flag* FlagSet::find(const std::string& name) const {
  for (const Flag& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}
bool FlagSet::has(const std::string& name) const { return find(name) != nullptr; }

std::string FlagSet::allowed(const Flag& f) {
  switch (f.kind) {
    case Flag::Kind::integer:
    case Flag::Kind::long_integer:
      return "an integer in [" + fmt_int_bound(f.lo) + ", " + fmt_int_bound(f.hi) + "]";
    case Flag::Kind::real: return "a number in [" + fmt_bound(f.lo) + ", " + fmt_bound(f.hi) + "]";
    case Flag::Kind::text: return "a non-empty string";
    case Flag::Kind::choice: {
      std::string s = "one of ";
      for (size_t i = 0; i < f.choices.size(); ++i) s += (i ? "|" : "") + f.choices[i];
      return s;
    }
    case Flag::Kind::pattern: return f.check("");
  }
  return "";
}

void FlagSet::assign(Flag& f, const std::string& value) {
  const std::string bad = "--" + f.name + ": expected " + allowed(f) + ", got '" + value + "'";
  switch (f.kind) {
    case Flag::Kind::integer:
    case Flag::Kind::long_integer: {
      if (value.empty()) throw UsageError(bad);
      char* end = nullptr;
      errno = 0;
      long long x = std::strtoll(value.c_str(), &end, 10);
      if (errno != 0 || *end != '\0' || double(x) < f.lo || double(x) > f.hi) throw UsageError(bad);
      if (f.kind == Flag::Kind::integer) *static_cast<int*>(f.field) = int(x);
      else *static_cast<long*>(f.field) = long(x);
      break;
    }
    case Flag::Kind::real: {
      if (value.empty()) throw UsageError(bad);
      char* end = nullptr;
      errno = 0;
      double x = std::strtod(value.c_str(), &end);
      if (errno != 0 || *end != '\0' || !std::isfinite(x) || x < f.lo || x > f.hi) throw UsageError(bad);
      *static_cast<double*>(f.field) = x;
      break;
    }
    case Flag::Kind::text:
      if (value.empty()) throw UsageError(bad);
      *static_cast<std::string*>(f.field) = value;
      break;
    case Flag::Kind::choice: {
      bool ok = false;
      for (const std::string& c : f.choices) ok = ok || c == value;
      if (!ok) throw UsageError(bad);
      *static_cast<std::string*>(f.field) = value;
      break;
    }
    case Flag::Kind::pattern:
      if (!f.check(value).empty()) throw UsageError(bad);
      *static_cast<std::string*>(f.field) = value;
      break;
  }
  f.set = true;
}

void FlagSet::set(const std::string& name, const std::string& value) {
  Flag* f = find(name);
  if (!f) throw UsageError("unknown flag --" + name + " (see --help)");
  assign(*f, value);
}

std::string FlagSet::get(const std::string& name) const {
  const Flag* f = find(name);
  if (!f) throw UsageError("unknown flag --" + name);
  switch (f->kind) {
    case Flag::Kind::integer: return std::to_string(*static_cast<const int*>(f->field));
    case Flag::Kind::long_integer: return std::to_string(*static_cast<const long*>(f->field));
    case Flag::Kind::real: return format_real(*static_cast<const double*>(f->field));
    default: return *static_cast<const std::string*>(f->field);
  }
}

bool FlagSet::was_set(const std::string& name) const {
  const Flag* f = find(name);
  return f && f->set;
}

std::vector<std::string> FlagSet::set_names() const {
  std::vector<std::string> out;
  for (const Flag& f : flags_)
    if (f.set) out.push_back(f.name);
  return out;
}

std::vector<std::string> FlagSet::names() const {
  std::vector<std::string> out;
  for (const Flag& f : flags_) out.push_back(f.name);
  return out;
}

void FlagSet::parse(int argc, char** argv) {
  std::vector<std::string> given;  // a flag twice is refused, as in every program here: which one was meant?
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2)
      throw UsageError("unexpected argument '" + arg + "' (flags look like --name value; see --help)");
    std::string name = arg.substr(2), value;
    bool have_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      have_value = true;
    }
    Flag* f = find(name);
    if (!f) throw UsageError("unknown flag --" + name + " (see --help)");
    for (const std::string& g : given)
      if (g == name) throw UsageError("--" + name + ": given twice (give each flag once)");
    given.push_back(name);
    if (!have_value) {
      if (i + 1 >= argc) throw UsageError("--" + name + ": missing value (expected " + allowed(*f) + ")");
      value = argv[++i];
    }
    assign(*f, value);
  }
}

std::string FlagSet::usage() const {
  std::ostringstream os;
  os << "usage: " << program_ << " [--flag value]...\n";
  for (const Flag& f : flags_) {
    std::string left = "  --" + f.name;
    if (left.size() < 22) left.resize(22, ' ');
    os << left << " " << f.help << " (" << allowed(f) << "; default " << get(f.name) << ")\n";
  }
  return os.str();
}

int cli_main_guard(const char* program, const std::function<int()>& main_body) {
  try {
    return main_body();
  } catch (const UsageError& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return 2;
  } catch (const io::FileRefused& e) {  // a file named on the command line is refused: bad input too
    std::cerr << program << ": " << e.what() << "\n";
    return 2;
  } catch (const std::bad_alloc&) {  // what() is only "std::bad_alloc": say what ran out and what to change
    std::cerr << program << ": out of memory: the model, batch and sequence length asked for do not fit in "
                            "this machine's memory; lower --batch, --seq-len or the model size (--d-model, --layers)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace model
