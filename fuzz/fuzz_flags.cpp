// fuzz/fuzz_flags.cpp: libFuzzer target for the command line of bin/train_tiny (model/cli.h, model/config.h).
//
// Input: the arguments, separated by NUL bytes (at most 64), parsed by the same flag table train_tiny
// binds (model, train and run flags). The contract under test:
//   - FlagSet::parse and validate either accept or throw model::UsageError, never anything else;
//   - a flag given twice ("--x 1 --x 2", "--x=1 --x 2") is refused, naming it;
//   - an accepted config round-trips exactly through the checkpoint's config block
//     (config_to_text -> config_from_text -> config_to_text), whatever bytes its string values hold,
//     and the config read back passes validate() too: the checkpoint and the command line share one
//     table and one set of ranges.
//   build and run: scripts/fuzz.sh flags (make fuzz), FUZZ_SECONDS per target
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "model/config.h"

namespace fuzz_flags {
int one_input(const uint8_t* data, size_t size) {
  std::vector<std::string> args = {"train_tiny"};
  std::string cur;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
      if (args.size() > 64) return 0;
    } else {
      cur += char(data[i]);
    }
  }
  args.push_back(cur);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());

  // The names in flag position, read by the grammar of model/cli.h: "--name=value" is one token,
  // "--name value" two; "--help" and "-h" stand alone. A name seen twice must be refused.
  std::set<std::string> seen;
  bool twice = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") continue;
    if (a.rfind("--", 0) != 0 || a.size() == 2) break;  // refused as it stands
    const size_t eq = a.find('=');
    twice = twice || !seen.insert(a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2)).second;
    if (eq == std::string::npos) ++i;  // its value
  }

  model::Config c;
  model::RunConfig run;
  model::FlagSet fs("train_tiny");
  model::bind_train_tiny_flags(fs, c, run);
  try {
    fs.parse(int(argv.size()), argv.data());
    model::validate(c);
  } catch (const model::UsageError&) {
    return 0;  // refused: fine, whatever the reason
  }
  if (twice) RATTN_FUZZ_FAIL();  // accepted a flag given twice: which value was meant?
  std::string text, again;
  try {
    text = model::config_to_text(c);
    const model::Config back = model::config_from_text(text);
    again = model::config_to_text(back);
    model::validate(back);
  } catch (const model::UsageError&) {
    RATTN_FUZZ_FAIL();  // what the command line accepted, the checkpoint must read back
  }
  if (text != again) RATTN_FUZZ_FAIL();
  return 0;
}
}  // namespace fuzz_flags

#ifndef RATTN_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_flags::one_input(data, size); }
#endif
