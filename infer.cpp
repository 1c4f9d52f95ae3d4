// infer.cpp: run a trained checkpoint with the constant-memory decode (ref/decode.h).
//
//   bin/infer --ckpt runs/tiny.ckpt                   evaluate the checkpoint's task by decode, print
//                                                     the accuracy by distance and the cache memory
//   bin/infer --ckpt runs/text.ckpt --prompt "ROMEO:" --gen 200 --temperature 0.8
//   bin/infer --ckpt runs/tiny.ckpt --mem-len 4096 --eval 0   cache memory at 4096 tokens vs full attention
//
// (a) --prompt: prefill the prompt, then generate --gen bytes one at a time.
// (b) evaluation: the checkpoint's validation set (same seed, so the same sequences train_tiny
//     scored), run token by token through the decode caches; its accuracy is printed next to the
//     full-sequence forward's, which it must reproduce.
// (c) memory: the bytes the decode caches hold after T and 8T tokens (or --mem-len), per layer kind and in
//     total, next to a full-attention model of the same shape (every layer keeps k and v of every
//     token).
//   bin/infer --export DIR CHECKPOINT                 every parameter as DIR/NAME.npy + DIR/config.json
//   bin/infer --logits CHECKPOINT --prompt TEXT [--out FILE.npy]   the forward's logits (T, V)
//     (these two modes live in io/export.cpp; see io/export.h)
// Exit status (the same in train_tiny and rattn-op): 0 ok; 2 bad input (a flag, a missing, corrupt or
// invalid checkpoint, a changed training text, an output path that may not be replaced), one line on
// stderr naming the flag or file; 3 a numerical stop (finite weights whose logits or loss overflow
// float32; nothing written); 1 the environment failed (permission denied, disk full, ...).
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>

#include "io/export.h"
#include "io/files.h"
#include "model/backend_cpu.h"
#include "model/checkpoint.h"
#include "model/cli.h"
#include "model/eval.h"
#include "model/generate.h"
#include "model/trainer.h"

namespace {

struct InferConfig {
  std::string ckpt = "runs/tiny.ckpt";
  std::string prompt = "";
  int gen = 200;
  double temperature = 0.8;
  long sample_seed = 1;
  int eval = 1;           // 1: evaluate the task by decode
  int eval_seqs = 256;
  int compare_forward = 1;
  long mem_len = 0;       // 0: the training length T and 8 T
  int threads = 0;
  std::string device = "cpu";
};

std::string kind_name(const model::ModelConfig& m, int layer) {
  if (m.is_global(layer)) return "global (full causal)";
  std::string s = "local " + m.local_kind;
  if (m.local_kind != "linear") s += " (w = " + std::to_string(m.window) + ")";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  // --export / --logits: export for NumPy/PyTorch, handled in io/export.cpp.
  if (io::is_export_command(argc, argv))
    return model::cli_main_guard("infer", [&]() -> int { return io::infer_export_main(argc, argv); });
  return model::cli_main_guard("infer", [&]() -> int {
    InferConfig ic;
    model::FlagSet fs("infer");
    fs.add_string("ckpt", &ic.ckpt, "checkpoint written by train_tiny");
    fs.add_string("prompt", &ic.prompt, "generate text after this prompt");
    fs.add_int("gen", &ic.gen, 1, 1 << 20, "bytes to generate after --prompt");
    fs.add_real("temperature", &ic.temperature, 0.0, 100.0, "sampling temperature; 0 = greedy");
    fs.add_long("sample-seed", &ic.sample_seed, 0, 1L << 62, "seed of the sampler");
    fs.add_int("eval", &ic.eval, 0, 1, "1: evaluate the checkpoint's task with the decode");
    fs.add_int("eval-seqs", &ic.eval_seqs, 1, 1 << 20, "validation sequences to evaluate");
    fs.add_int("compare-forward", &ic.compare_forward, 0, 1, "1: also score the full forward, for comparison");
    fs.add_long("mem-len", &ic.mem_len, 0, 1L << 24, "tokens for the cache-memory report; 0 = T and 8 T");
    fs.add_int("threads", &ic.threads, 0, 1024, "OpenMP threads; 0 = OpenMP default");
    fs.add_choice("device", &ic.device, {"cpu", "cuda"}, "where the model runs");
    fs.parse(argc, argv);
    if (fs.help_requested()) {
      std::cout << fs.usage();
      return 0;
    }
    // The longest prompt any model here can take: the largest --seq-len train_tiny accepts.
    constexpr size_t kMaxPrompt = 65536;
    if (ic.prompt.size() > kMaxPrompt)
      throw model::UsageError("--prompt: " + std::to_string(ic.prompt.size()) + " bytes; at most " +
                              std::to_string(kMaxPrompt) + " allowed");
    if (ic.threads > 0) omp_set_num_threads(ic.threads);

    // A missing, empty or bad checkpoint is a bad --ckpt value: exit 2 with one line naming the flag.
    model::TrainState<float> st;
    try {
      st = model::load_checkpoint<float>(ic.ckpt);
    } catch (const model::CheckpointError& e) {
      throw model::UsageError(std::string("--ckpt: ") + e.what());
    }
    const model::Config& c = st.config;
    auto backend = model::make_backend<float>(ic.device);
    const model::Model<float> net(c.model, *backend);
    // The evaluation regenerates the run's validation set: for a text run, from its text file, which must
    // still be the one the run trained on (size and hash recorded in the checkpoint). Checked before any
    // output: exit 2 naming the file, with --eval 0 as the way around.
    std::unique_ptr<data::Task> task;
    if (ic.eval) {
      try {
        task = model::make_task(c);
      } catch (const io::FileFailed&) {
        throw;  // permission denied, an I/O error: the environment, status 1
      } catch (const std::runtime_error& e) {
        throw model::UsageError("--ckpt: the run's training text is needed for the evaluation: " +
                                std::string(e.what()) + " (--eval 0 skips the evaluation)");
      }
      if (auto* tt = dynamic_cast<const data::TextTask*>(task.get()))
        if (const std::string change = model::text_change(st.text, model::fingerprint_of(tt->bytes()), c.train.text_file);
            !change.empty())
          throw model::UsageError("--ckpt: " + change + "; its validation split is not the one the run was scored on "
                                  "(restore that text, or --eval 0 skips the evaluation)");
    }
    std::cout << "infer: " << ic.ckpt << " (step " << st.step << ")\n" << model::describe(c);

    // (a) generation
    if (!ic.prompt.empty()) {
      std::vector<int> prompt(ic.prompt.begin(), ic.prompt.end());
      for (int& b : prompt) b &= 0xFF;
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<int> out;
      try {
        out = model::generate(net, st.params, prompt, ic.gen, ic.temperature, uint64_t(ic.sample_seed));
      } catch (const model::NonFiniteLogits& e) {  // a numerical stop, status 3, as in the evaluation
        std::cerr << "infer: --prompt: generating from checkpoint '" << ic.ckpt << "': " << e.what() << "\n";
        return 3;
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << "\n--- generated (" << ic.gen << " bytes, temperature " << ic.temperature << ", "
                << (double(prompt.size() + out.size()) / s) << " tokens/s) ---\n"
                << ic.prompt;
      for (int b : out) {  // printable ASCII, newline and tab as they are; other bytes as \xHH
        if ((b >= 32 && b < 127) || b == '\n' || b == '\t') std::cout << char(b);
        else std::cout << model::printable({b});
      }
      std::cout << "\n---\n";
    }

    // (b) the task, by decode (and by the full forward for comparison)
    if (ic.eval) {
      data::Batch eval;
      task->eval_set(ic.eval_seqs, model::eval_seed(c, model::Split::test), eval);  // the held-out test set
      auto t0 = std::chrono::steady_clock::now();
      const model::EvalResult dec = model::evaluate(net, st.params, eval, true, model::empty_eval(c));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!std::isfinite(dec.loss())) {  // finite weights that overflow float32: a numerical stop, status 3
        std::cerr << "infer: the decode of checkpoint '" << ic.ckpt << "' gives a non-finite loss (" << dec.loss()
                  << ") on its held-out set: its weights overflow float32\n";
        return 3;
      }
      std::printf("\nevaluation of %d held-out %s sequences of T = %d by constant-memory decode (%.1f s, "
                  "%.0f tokens/s)\n",
                  eval.B, task->name().c_str(), eval.T, s, double(eval.B) * eval.T / s);
      if (task->synthetic()) std::cout << model::bucket_table(dec, task->chance());
      else std::printf("  loss %.4f (%.3f bits/byte), next-byte accuracy %.1f%%\n", dec.loss(),
                       dec.loss() / std::log(2.0), 100 * dec.accuracy());
      if (ic.compare_forward) {
        const model::EvalResult fwd = model::evaluate(net, st.params, eval, false, model::empty_eval(c));
        std::printf("full-sequence forward on the same sequences: accuracy %.1f%% (%ld / %ld), loss %.4f; "
                    "decode %s it (%ld vs %ld correct)\n",
                    100 * fwd.accuracy(), fwd.correct, fwd.scored, fwd.loss(),
                    fwd.correct == dec.correct ? "reproduces" : "DIFFERS FROM", dec.correct, fwd.correct);
      }
    }

    // (c) decode memory per layer kind vs full attention of the same shape, at the training length
    // and at 8x it (or at --mem-len): feed that many tokens through the caches and count bytes.
    std::vector<long> lengths = {long(c.train.seq_len), 8L * c.train.seq_len};
    if (ic.mem_len > 0) lengths = {ic.mem_len};
    for (const long T : lengths) {
      model::DecodeState<float> ds = net.decode_init();
      for (long t = 0; t < T; ++t) net.decode_step(st.params, ds, 'a' + int(t % 26));
      std::map<std::string, std::pair<int, size_t>> by_kind;  // kind -> (layers, bytes)
      size_t total = 0, full = 0;
      for (int l = 0; l < c.model.n_layers; ++l) {
        auto& e = by_kind[kind_name(c.model, l)];
        e.first += 1;
        e.second += ds.caches[size_t(l)].bytes();
        total += ds.caches[size_t(l)].bytes();
        full += ref::full_attention_cache_bytes<float>(net.layer_attn(l), T);
      }
      std::printf("\ndecode cache after T = %ld tokens (float32):\n", T);
      std::printf("  %-26s %6s %14s %14s\n", "layer kind", "layers", "bytes/layer", "bytes");
      for (const auto& [kind, e] : by_kind)
        std::printf("  %-26s %6d %14zu %14zu\n", kind.c_str(), e.first, e.second / size_t(e.first), e.second);
      std::printf("  %-26s %6d %14s %14zu\n", "total", c.model.n_layers, "", total);
      std::printf("  %-26s %6d %14zu %14zu   (k and v of every token in every layer)\n",
                  "full attention, same shape", c.model.n_layers, full / size_t(c.model.n_layers), full);
      std::printf("  ratio: %.3f of full attention\n", double(total) / double(full));
    }
    return 0;
  });
}
