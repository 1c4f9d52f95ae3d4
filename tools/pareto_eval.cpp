// tools/pareto_eval.cpp: machine-readable evaluation of a train_tiny checkpoint for the window-size
// sweep (scripts/pareto.py). bin/infer prints tables for people; this prints one line of
// `key=value` fields per evaluation length, for a script.
//
//   bin/pareto_eval --ckpt runs/x.ckpt                     task of the checkpoint at 1x, 2x, 4x its T
//   bin/pareto_eval --ckpt runs/x.ckpt --lengths 1,2 --eval-seqs 64 --threads 2
//   bin/pareto_eval --ckpt runs/x.ckpt --mode decode --lengths 1,4,16   recall through the decode path
//   bin/pareto_eval --ckpt runs/x.ckpt --rla-off 1          the same model with its RLA branches off
//
// Every number comes from the held-out test set (--split test, the default: a generator seed of its
// own, never used to choose settings); --split validation scores the validation set instead.
//
// What is measured, by the checkpoint's task (the model has no learned positions: RoPE on the local
// layers' SWA branch only, NoPE global layers, so any length runs):
//   recall   a fresh set of the recall task at length m*T (same pairs, regime and gap mixture rule
//            relative to w; gaps reach m*T - 4*pairs). Accuracy over all queries and by reach bucket
//            (model/eval.h): within one layer's reach (d <= w+1), within the relay reach of L local
//            layers (w+1 < d <= L*w; L = --reach-layers, default the model's local layers), beyond it
//            (d > L*w); and beyond the training length (d > T, a subset of the last).
//   passkey  accuracy of the key letters by depth of the hidden copy: depth f in {0, .25, .5, .75, 1}
//            places it at round(f * max_hide) (f = 0: the start of the sequence, farthest from the
//            question; f = 1: right before it), --eval-seqs sequences per depth.
//   text     held-out loss (nats and bits/byte) on the validation split, windows of m*T bytes.
// --mode decode (recall only): the constant-memory decode (ref/decode.h), token by token, over recall
//   sequences whose queries end the sequence (filler before the pairs), with the key-to-query
//   distances placed in turn in each reach bucket and, at m > 1, beyond T, so every bucket holds
//   queries at every length and every query sits at the far end of the length. mem_bytes: what the
//   decode caches hold after the last token (a window's ring and state, or every key and value).
// --mode probe (recall, stacks with a global layer): the decode set above, scored with the full forward
//   (the same function as the decode), and the first global layer's attention on each query's answer
//   (model/global_probe.h): probe_mass (mean weight on the value's position, the best head),
//   probe_top (fraction of queries whose value position has that head's largest logit),
//   probe_logodds_med and probe_margin_med (medians, nats).
// --rla-off 1 (RATTENTION checkpoints only) scores the model with the RLA branch of every local layer
// switched off (gamma_rla = 0, docs/spec.md §2.5: the layer's output is then its SWA term alone), the
// rest of the weights as trained: what the branch contributes to each bucket.
// A model trained with no window (window >= T - 1: the full-attention arm) keeps having none: its
// window becomes m*T - 1 at length m*T.
// Output, one line per length multiplier m (fields absent when they do not apply):
//   mult=2 T=256 task=recall mode=forward split=test seqs=64 loss=... acc=... n=...
//   near_acc=... near_n=... relay_... beyond_... beyondT_acc=... beyondT_n=... [mem_bytes=...]
//   passkey: depth0_acc=... depth25_acc=... depth50_acc=... depth75_acc=... depth100_acc=...
// Accuracies are fractions in [0, 1]; an empty bucket prints acc=nan with n=0.
// Exit status: 0 ok, 2 bad command line, 1 other errors (unreadable checkpoint, ...).
#include <omp.h>

#include <algorithm>
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
#include "model/global_probe.h"
#include "model/model.h"
#include "model/trainer.h"

namespace {

// The buckets of one evaluation: the reach buckets of L local layers of window w, plus "d > T_train".
model::EvalResult empty_result(int w, int L, long T_train) {
  model::EvalResult r = model::empty_eval(w, L);
  r.buckets.push_back({"beyondT", "beyond the training length", T_train + 1, std::numeric_limits<long>::max()});
  return r;
}

// Score every sequence of batch with the full forward or the constant-memory decode: (B*T) tokens -> r.
// Sequences in parallel, merged in sequence order (deterministic for any thread count). mem_bytes:
// the bytes the decode caches hold after the last token (the largest over the sequences; 0: forward).
model::EvalResult score_batch(const model::Model<float>& net, const model::ModelParams<float>& p,
                              const data::Batch& batch, const model::EvalResult& empty, bool decode,
                              size_t* mem_bytes = nullptr) {
  std::vector<model::EvalResult> per(size_t(batch.B), empty);
  std::vector<size_t> mem(size_t(batch.B), 0);
  std::exception_ptr error = nullptr;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < batch.B; ++b) {
    try {
      const std::vector<int> tokens = batch.seq_tokens(b), targets = batch.seq_targets(b);
      model::Mat<float> logits;  // (T, V)
      if (decode) {
        model::DecodeState<float> st = net.decode_init();
        logits = net.prefill(p, st, tokens);
        mem[size_t(b)] = st.bytes();
      } else {
        logits = net.forward(p, tokens);
      }
      const double loss = double(net.backend().cross_entropy(logits, targets, nullptr));
      model::score_sequence(logits, targets.data(), batch.dist.data() + long(b) * batch.T, loss, per[size_t(b)]);
    } catch (...) {
#pragma omp critical
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  model::EvalResult r = empty;
  for (const model::EvalResult& e : per) model::merge_into(r, e);
  if (mem_bytes) *mem_bytes = *std::max_element(mem.begin(), mem.end());
  return r;
}

// The recall set of the decode extrapolation: n sequences of length T, queries ending each one.
// Sequence b aims its distances at band b mod (number of bands): the reach buckets that are not empty
// and, when T > T_train, beyond T_train (the beyond bucket then split at T_train). Within a band a
// centre distance c = 2 * pairs + gap is drawn uniformly; the queries' distances spread over
// c - 2 * pairs + 2 .. c + 2 * pairs - 2 around it and are bucketed by what they are.
void placed_recall_set(const data::RecallTask& task, const model::EvalResult& reach, long T_train, int n,
                       uint64_t seed, data::Batch& out) {
  const int T = task.seq_len(), P = task.pairs(), max_gap = T - 4 * P;
  std::vector<std::pair<long, long>> bands;  // ranges of c
  for (int i = 0; i < 3; ++i) {
    const model::DistanceBucket& b = reach.buckets[size_t(i)];
    long lo = b.lo, hi = std::min<long>(b.hi, 2L * P + max_gap);
    if (i == 2 && T > T_train) hi = std::min(hi, T_train);
    if (lo <= hi) bands.push_back({lo, hi});
  }
  if (T > T_train && T_train + 1 <= 2L * P + max_gap) bands.push_back({T_train + 1, 2L * P + max_gap});
  std::mt19937_64 rng(seed);
  out.resize(n, T);
  for (int b = 0; b < n; ++b) {
    const auto [lo, hi] = bands[size_t(b) % bands.size()];
    const long c = lo + long(data::rand_below(rng, size_t(hi - lo + 1)));
    const int gap = int(std::clamp<long>(c - 2L * P, 0, max_gap));
    task.make(rng, T - 4 * P - gap, gap, out.tokens.data() + long(b) * T, out.targets.data() + long(b) * T,
              out.dist.data() + long(b) * T);
  }
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
    std::string ckpt, lengths = "", split_name = "test", mode = "forward";
    int eval_seqs = 64, threads = 0, reach_layers = 0, rla_off = 0;
    model::FlagSet fs("pareto_eval");
    fs.add_string("ckpt", &ckpt, "checkpoint written by train_tiny (required)");
    fs.add_string("lengths", &lengths,
                  "evaluation lengths as multiples of the training T (default 1,2,4; with --mode decode 1,4,16)");
    fs.add_int("eval-seqs", &eval_seqs, 1, 1 << 20, "sequences per length (passkey: per depth)");
    fs.add_choice("split", &split_name, {"test", "validation"},
                  "the held-out test set (the reported numbers) or the validation set (choices)");
    fs.add_int("reach-layers", &reach_layers, 0, 1 << 10,
               "L of the reach buckets (relay reach L * w); 0 = the model's local layers");
    fs.add_choice("mode", &mode, {"forward", "decode", "probe"},
                  "the full forward, or (recall) the constant-memory decode with the queries ending each length, "
                  "or (recall, with a global layer) the global layer's attention on the answers of that set");
    fs.add_int("threads", &threads, 0, 1024, "OpenMP threads; 0 = OpenMP default");
    fs.add_int("rla-off", &rla_off, 0, 1, "1: score with every RATTENTION layer's RLA branch off (gamma_rla = 0)");
    fs.parse(argc, argv);
    if (fs.help_requested()) {
      std::cout << fs.usage();
      return 0;
    }
    if (ckpt.empty()) throw model::UsageError("--ckpt: required (a checkpoint written by train_tiny)");
    const bool decode = mode == "decode", probe = mode == "probe";
    const std::vector<int> mults =
        parse_lengths(lengths.empty() ? (decode || probe ? "1,4,16" : "1,2,4") : lengths);
    if (threads > 0) omp_set_num_threads(threads);
    const model::Split split = split_name == "test" ? model::Split::test : model::Split::validation;

    model::TrainState<float> st = model::load_checkpoint<float>(ckpt);
    const model::Config& c0 = st.config;
    if (rla_off) {
      if (c0.model.local_kind != "rattn")
        throw model::UsageError("--rla-off: RATTENTION checkpoints only (this one's local layers are " +
                                c0.model.local_kind + ")");
      model::set_rla_gain(c0.model, st.params, 0.0);
    }
    if ((decode || probe) && c0.train.task != "recall")
      throw model::UsageError("--mode " + mode + ": recall checkpoints only (this one is " + c0.train.task + ")");
    if (probe && model::local_layers(c0.model) == c0.model.n_layers)
      throw model::UsageError("--mode probe: stacks with a global layer only (this one is local-only)");
    auto backend = model::make_backend<float>("cpu");
    const int w = model::data_window(c0);  // the window the data and the distance buckets refer to
    const int L = reach_layers > 0 ? reach_layers : model::local_layers(c0.model);
    const long T0 = c0.train.seq_len;
    const model::EvalResult empty = empty_result(w, L, T0);

    for (int m : mults) {
      model::Config c = c0;
      c.train.seq_len = int(m * T0);
      // No window at training (window >= T - 1): none at this length either. T - 1 exactly, so that the
      // decode ring holds the T keys a full-attention cache holds, not a longer window's empty slots.
      if (c0.model.window >= T0 - 1) c.model.window = c.train.seq_len - 1;
      const model::Model<float> net(c.model, *backend);
      const uint64_t seed = model::eval_seed(c0, split, m);
      std::printf("mult=%d T=%ld task=%s mode=%s split=%s step=%ld", m, long(c.train.seq_len), c.train.task.c_str(),
                  mode.c_str(), split_name.c_str(), st.step);
      if (rla_off) std::printf(" rla_off=1");
      if (decode || probe) {
        c.train.far_beyond = 0;  // the placed set picks its own gaps
        const std::unique_ptr<data::Task> task = model::make_task(c);
        data::Batch batch;
        placed_recall_set(dynamic_cast<const data::RecallTask&>(*task), empty, T0, eval_seqs,
                          seed ^ 0xDEC0DE5E7ULL, batch);
        size_t mem = 0;
        const model::EvalResult r = score_batch(net, st.params, batch, empty, decode, &mem);
        std::printf(" seqs=%d loss=%.6f acc=%s n=%ld", batch.B, r.loss(), frac(r.correct, r.scored).c_str(), r.scored);
        for (const model::DistanceBucket& b : r.buckets)
          std::printf(" %s_acc=%s %s_n=%ld", b.key.c_str(), frac(b.correct, b.total).c_str(), b.key.c_str(), b.total);
        if (decode) std::printf(" mem_bytes=%zu", mem);
        if (probe) {
          const model::GlobalProbe g = model::probe_global(net, st.params, batch);
          std::printf(" probe_layer=%d probe_n=%ld probe_mass=%.6f probe_top=%.6f probe_logodds_med=%.4f "
                      "probe_margin_med=%.4f",
                      g.layer, g.queries, g.mass(), g.top_fraction(), model::median(g.log_odds),
                      model::median(g.margin));
        }
      } else if (c.train.task == "passkey") {
        const data::PasskeyTask task(c.train.seq_len, c.train.passkey_len);
        std::mt19937_64 rng(seed);
        model::EvalResult all = empty;
        for (int pct : {0, 25, 50, 75, 100}) {
          const int hide = int(std::lround(double(pct) / 100.0 * task.max_hide()));
          data::Batch batch;
          batch.resize(eval_seqs, c.train.seq_len);
          for (int b = 0; b < eval_seqs; ++b)
            task.make(rng, hide, batch.tokens.data() + long(b) * batch.T, batch.targets.data() + long(b) * batch.T,
                      batch.dist.data() + long(b) * batch.T);
          const model::EvalResult r = score_batch(net, st.params, batch, empty, false);
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
        const model::EvalResult r = score_batch(net, st.params, batch, empty, false);
        std::printf(" seqs=%d loss=%.6f acc=%s n=%ld", batch.B, r.loss(), frac(r.correct, r.scored).c_str(), r.scored);
        if (task->synthetic()) {
          for (const model::DistanceBucket& b : r.buckets)
            std::printf(" %s_acc=%s %s_n=%ld", b.key.c_str(), frac(b.correct, b.total).c_str(), b.key.c_str(),
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
