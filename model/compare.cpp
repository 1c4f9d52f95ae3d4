// model/compare.cpp: see compare.h.
#include "model/compare.h"

#include <cstdio>
#include <filesystem>
#include <memory>
#include <ostream>

namespace model {

namespace {

std::string kind_name(const std::string& kind) {
  if (kind == "rattn") return "RATTENTION";
  if (kind == "swa") return "SWA";
  return kind;  // linear
}

std::string percent(long correct, long total) {
  if (total == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %%", 100.0 * double(correct) / double(total));
  return buf;
}

}  // namespace

std::string sibling_checkpoint(const std::string& path, const std::string& kind) {
  const std::filesystem::path p(path);
  std::filesystem::path out = p.parent_path() / (p.stem().string() + "-" + kind + p.extension().string());
  return out.string();
}

std::string comparison_table(const Config& c, const std::string& kind_a, const EvalResult& a,
                             const std::string& kind_b, const EvalResult& b, double chance) {
  char line[256];
  std::string out;
  std::snprintf(line, sizeof line,
                "recall on %ld queries of the held-out test set, by key-to-query distance d (chance %.1f %%):\n",
                a.scored, 100 * chance);
  out += line;
  std::snprintf(line, sizeof line, "  %-44s %12s %12s %9s\n", "keys", kind_name(kind_a).c_str(),
                kind_name(kind_b).c_str(), "queries");
  out += line;
  auto row = [&](const std::string& label, long ca, long ta, long cb, long tb) {
    std::snprintf(line, sizeof line, "  %-44s %12s %12s %9ld\n", label.c_str(), percent(ca, ta).c_str(),
                  percent(cb, tb).c_str(), ta);
    out += line;
  };
  for (size_t i = 0; i < a.buckets.size(); ++i)
    if (a.buckets[i].total > 0)
      row(a.buckets[i].label, a.buckets[i].correct, a.buckets[i].total, b.buckets[i].correct, b.buckets[i].total);
  row("all", a.correct, a.scored, b.correct, b.scored);
  const long reach = a.reach(Reach::beyond).lo - 1;
  if (local_layers(c.model) == c.model.n_layers && a.w >= 0)
    out += "The stack is local-only (" + std::to_string(c.model.n_layers) + " layers of window " +
           std::to_string(a.w) + "): no chain of windows reaches a key at d > " + std::to_string(reach) +
           ",\nso only a model that keeps a summary of the past can recall it. With a global layer in the stack, "
           "both\nmodels recall every key of this task at T = 128 (measured in docs/experiments.md).\n";
  return out;
}

int train_compare(const Config& c, const RunConfig& run, std::ostream& out, std::ostream& err) {
  if (!run.resume.empty()) throw UsageError("--compare: cannot be combined with --resume (resume each run alone)");
  if (run.compare == c.model.local_kind)
    throw UsageError("--compare: expected a local kind other than --local (" + c.model.local_kind + "), got " +
                     run.compare);
  Config cb = c;
  cb.model.local_kind = run.compare;
  if (cb.model.local_kind != "rattn") {  // --rla-gain-init, --rla-hold: the RLA branch of rattn layers only
    cb.train.rla_gain_init = 1.0;
    cb.train.rla_hold = 0;
  }
  RunConfig ra = run, rb = run;
  ra.final_table = rb.final_table = false;
  if (!run.ckpt.empty()) rb.ckpt = sibling_checkpoint(run.ckpt, run.compare);

  out << "== model 1 of 2: " << kind_name(c.model.local_kind) << "\n";
  const TrainOutcome a = train(c, ra, out);
  if (a.status != 0) {
    err << "train_tiny: " << a.stop_message << "\n";
    return a.status;
  }
  out << "\n== model 2 of 2: " << kind_name(cb.model.local_kind) << ": the same except --local " << run.compare
      << "\n";
  const TrainOutcome b = train(cb, rb, out);
  if (b.status != 0) {
    err << "train_tiny: " << b.stop_message << "\n";
    return b.status;
  }
  out << "\n";
  const std::unique_ptr<data::Task> task = make_task(c);
  if (task->synthetic())
    out << comparison_table(c, c.model.local_kind, a.final_eval, cb.model.local_kind, b.final_eval, task->chance());
  else
  {
    char line[160];
    std::snprintf(line, sizeof line, "held-out loss: %s %.4f, %s %.4f nats/byte\n", kind_name(c.model.local_kind).c_str(),
                  a.final_eval.loss(), kind_name(cb.model.local_kind).c_str(), b.final_eval.loss());
    out << line;
  }
  out.flush();
  return 0;
}

}  // namespace model
