// tools/pareto_eval.cpp: machine-readable evaluation of a train_tiny checkpoint for the window-size
// sweep (scripts/pareto.py). bin/infer prints tables for people; this prints one line of
// `key=value` fields per evaluation length, for a script.
//
//   bin/pareto_eval --ckpt runs/x.ckpt                     task of the checkpoint at 1x, 2x, 4x its T
//   bin/pareto_eval --ckpt runs/x.ckpt --lengths 1,2 --eval-seqs 64 --threads 2
//
// What is measured, by the checkpoint's task (the model has no learned positions: RoPE on the local
// layers' SWA branch only, NoPE global layers, so any length runs):
//   recall   a fresh validation set of the recall task at length m*T (same pairs, same gap mixture
//            rule relative to w; gaps reach m*T - 4*pairs). Accuracy over all queries, in the window
//            (d <= w) and out of it (d > w), by distance bucket relative to w
//            ([1,w], (w,2w], (2w,4w], >4w), and beyond the training length (d > T).
//   passkey  accuracy of the key letters by depth of the hidden copy: depth f in {0, .25, .5, .75, 1}
//            places it at round(f * max_hide) (f = 0: the start of the sequence, farthest from the
//            question; f = 1: right before it), --eval-seqs sequences per depth.
//   text     held-out loss (nats and bits/byte) on the validation split, windows of m*T bytes.
// Output, one line per length multiplier m (fields absent when they do not apply):
//   mult=2 T=256 task=recall seqs=64 loss=... acc=... n=... in_acc=... in_n=... out_acc=... out_n=...
//   b1_acc=... b1_n=... (d<=w) b2_... (w<d<=2w) b3_... (2w<d<=4w) b4_... (d>4w) beyondT_acc=... beyondT_n=...
//   passkey: depth0_acc=... depth25_acc=... depth50_acc=... depth75_acc=... depth100_acc=...
// Accuracies are fractions in [0, 1]; an empty bucket prints acc=nan with n=0.
// Exit status: 0 ok, 2 bad command line, 1 other errors (unreadable checkpoint, ...).
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data/tasks.h"
#include "model/backend_cpu.h"
#include "model/checkpoint.h"
#include "model/cli.h"
#include "model/eval.h"
#include "model/model.h"
#include "model/trainer.h"

namespace {

// The buckets of one evaluation: relative to w (as model/eval.h) plus "d > T_train".
model::EvalResult empty_result(int w, long T_train) {
  model::EvalResult r;
  const long big = std::numeric_limits<long>::max();
  r.buckets.push_back({"b1", 1, std::max(w, 0)});
  r.buckets.push_back({"b2", long(w) + 1, 2L * w});
  r.buckets.push_back({"b3", 2L * w + 1, 4L * w});
  r.buckets.push_back({"b4", 4L * w + 1, big});
  r.buckets.push_back({"beyondT", T_train + 1, big});
  return r;
}

// Score every sequence of batch with the full forward: (B*T) tokens -> r. Sequences in parallel,
// merged in sequence order (deterministic for any thread count).
model::EvalResult score_batch(const model::Model<float>& net, const model::ModelParams<float>& p,
                              const data::Batch& batch, int w, long T_train) {
  std::vector<model::EvalResult> per(size_t(batch.B), empty_result(w, T_train));
  std::exception_ptr error = nullptr;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < batch.B; ++b) {
    try {
      const std::vector<int> tokens = batch.seq_tokens(b), targets = batch.seq_targets(b);
      const model::Mat<float> logits = net.forward(p, tokens);  // (T, V)
      const double loss = double(net.backend().cross_entropy(logits, targets, nullptr));
      model::score_sequence(logits, targets.data(), batch.dist.data() + long(b) * batch.T, w, loss, per[size_t(b)]);
    } catch (...) {
#pragma omp critical
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  model::EvalResult r = empty_result(w, T_train);
  for (const model::EvalResult& e : per) model::merge_into(r, e);
  return r;
}

std::string frac(long correct, long total) {
  if (total == 0) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", double(correct) / double(total));
  return buf;
}

std::vector<int> parse_lengths(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const long m = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || m < 1 || m > 64)
      throw model::UsageError("--lengths: expected comma-separated multipliers in [1, 64], e.g. 1,2,4, got '" + s + "'");
    out.push_back(int(m));
  }
  if (out.empty()) throw model::UsageError("--lengths: expected e.g. 1,2,4, got '" + s + "'");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  return model::cli_main_guard("pareto_eval", [&]() -> int {
    std::string ckpt, lengths = "1,2,4";
    int eval_seqs = 64, threads = 0;
    model::FlagSet fs("pareto_eval");
    fs.add_string("ckpt", &ckpt, "checkpoint written by train_tiny (required)");
    fs.add_string("lengths", &lengths, "evaluation lengths as multiples of the training T");
    fs.add_int("eval-seqs", &eval_seqs, 1, 1 << 20, "sequences per length (passkey: per depth)");
    fs.add_int("threads", &threads, 0, 1024, "OpenMP threads; 0 = OpenMP default");
    fs.parse(argc, argv);
    if (fs.help_requested()) {
      std::cout << fs.usage();
      return 0;
    }
    if (ckpt.empty()) throw model::UsageError("--ckpt: required (a checkpoint written by train_tiny)");
    const std::vector<int> mults = parse_lengths(lengths);
    if (threads > 0) omp_set_num_threads(threads);

    const model::TrainState<float> st = model::load_checkpoint<float>(ckpt);
    const model::Config& c0 = st.config;
    auto backend = model::make_backend<float>("cpu");
    const model::Model<float> net(c0.model, *backend);
    const int w = model::data_window(c0);  // the window the data and the distance buckets refer to
    const long T0 = c0.train.seq_len;

    for (int m : mults) {
      model::Config c = c0;
      c.train.seq_len = int(m * T0);
      // m = 1: the very validation set train_tiny scored; other lengths: their own fixed seed.
      const uint64_t seed = model::eval_seed(c0) ^ (uint64_t(m - 1) * 0x9E3779B97F4A7C15ULL);
      std::printf("mult=%d T=%ld task=%s step=%ld", m, long(c.train.seq_len), c.train.task.c_str(), st.step);
      if (c.train.task == "passkey") {
        const data::PasskeyTask task(c.train.seq_len, c.train.passkey_len);
        std::mt19937_64 rng(seed);
        model::EvalResult all = empty_result(w, T0);
        for (int pct : {0, 25, 50, 75, 100}) {
          const int hide = int(std::lround(double(pct) / 100.0 * task.max_hide()));
          data::Batch batch;
          batch.resize(eval_seqs, c.train.seq_len);
          for (int b = 0; b < eval_seqs; ++b)
            task.make(rng, hide, batch.tokens.data() + long(b) * batch.T, batch.targets.data() + long(b) * batch.T,
                      batch.dist.data() + long(b) * batch.T);
          const model::EvalResult r = score_batch(net, st.params, batch, w, T0);
          std::printf(" depth%d_acc=%s depth%d_d=%d", pct, frac(r.correct, r.scored).c_str(), pct,
                      task.seq_len() - c.train.passkey_len - 1 - hide);
          model::merge_into(all, r);
        }
        std::printf(" seqs=%d loss=%.6f acc=%s n=%ld", 5 * eval_seqs, all.loss(), frac(all.correct, all.scored).c_str(),
                    all.scored);
      } else {
        const std::unique_ptr<data::Task> task = model::make_task(c);
        data::Batch batch;
        task->eval_set(eval_seqs, seed, batch);
        const model::EvalResult r = score_batch(net, st.params, batch, w, T0);
        std::printf(" seqs=%d loss=%.6f acc=%s n=%ld", batch.B, r.loss(), frac(r.correct, r.scored).c_str(), r.scored);
        if (task->synthetic()) {
          std::printf(" in_acc=%s in_n=%ld out_acc=%s out_n=%ld", frac(r.in_correct, r.in_total).c_str(), r.in_total,
                      frac(r.out_correct, r.out_total).c_str(), r.out_total);
          for (const model::DistanceBucket& b : r.buckets)
            std::printf(" %s_acc=%s %s_n=%ld", b.label.c_str(), frac(b.correct, b.total).c_str(), b.label.c_str(),
                        b.total);
        } else {
          std::printf(" bpb=%.6f", r.loss() / std::log(2.0));
        }
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    return 0;
  });
}
