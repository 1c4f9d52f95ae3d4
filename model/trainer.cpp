// model/trainer.cpp: the training loop (see trainer.h).
#include "model/trainer.h"

#include <omp.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <chrono>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <ostream>
#include <sstream>

#include "model/backend_cpu.h"
#include "model/branch_share.h"
#include "model/data_parallel.h"
#include "model/device_reduce.h"
#include "model/device_trainer.h"
#include "model/generate.h"
#include "model/model.h"

namespace model {

std::unique_ptr<data::Task> make_task(const Config& c) {
  const TrainConfig& t = c.train;
  if (t.task == "recall")
    return std::make_unique<data::RecallTask>(t.seq_len, t.pairs, data_window(c), t.in_window_frac, t.far_beyond,
                                              data::RecallOptions{t.filler == "random", t.distractors,
                                                                  t.pairs_at == "anywhere"});
  if (t.task == "passkey") return std::make_unique<data::PasskeyTask>(t.seq_len, t.passkey_len);
  if (t.task == "text") return std::make_unique<data::TextTask>(t.text_file, t.seq_len);
  throw UsageError("--task: expected one of recall|passkey|text, got '" + t.task + "'");
}

uint64_t eval_seed(const Config& c, Split split, int mult) {
  const uint64_t base = split == Split::validation ? 0x5EED0FE7A15E7ULL : 0x7E57C0DE5EEDULL;
  return (uint64_t(c.train.seed) ^ base) ^ (uint64_t(mult - 1) * 0x9E3779B97F4A7C15ULL);
}

uint64_t train_seed(const Config& c) { return uint64_t(c.train.seed) * 0x9E3779B97F4A7C15ULL + 1; }

Config resolve_resume(const Config& from_ckpt, const Config& from_cli, const std::vector<std::string>& cli_set) {
  Config out = from_ckpt;
  Config ck = from_ckpt, cl = from_cli;
  FlagSet a("ckpt"), b("cli");
  bind_model_flags(a, ck.model);
  bind_train_flags(a, ck.train);
  bind_model_flags(b, cl.model);
  bind_train_flags(b, cl.train);
  for (const std::string& name : cli_set) {
    if (!a.has(name)) continue;  // a run flag (--ckpt, --eval-interval, ...): free to change
    if (name == "steps") {
      out.train.steps = from_cli.train.steps;
      continue;
    }
    if (a.get(name) != b.get(name))
      throw UsageError("--" + name + ": the checkpoint being resumed has " + name + "=" + a.get(name) + ", got " +
                       b.get(name) + " (on --resume only --steps and the run flags may change)");
  }
  return out;
}

namespace {

// --rla-hold: the tensors not updated in the first steps (validate() allows the flag for rattn layers only,
// so every gamma_rla the model lists belongs to the RLA branch of a rattn layer).
constexpr const char* kHeldRla = "attn.gamma_rla";

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string rng_to_text(const std::mt19937_64& rng) {
  std::ostringstream os;
  os << rng;
  return os.str();
}

// Accuracy of a reach bucket for a progress line: "-" when no query fell in it.
std::string bucket_pct(const DistanceBucket& b) { return b.total ? fmt("%5.1f%%", 100 * b.accuracy()) : "    -"; }

// The validation line ("val ") or the held-out test line ("test"); text: with a generated sample from
// the start of the validation split.
void report_eval(std::ostream& out, const Model<float>& model, const ModelParams<float>& p, const data::Task& task,
                 const data::Batch& eval, long step, const Config& c, EvalResult* keep, const char* split = "val ") {
  const auto t0 = std::chrono::steady_clock::now();
  EvalResult r = evaluate(model, p, eval, false, empty_eval(c));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (task.synthetic()) {
    out << fmt("%s step %6ld | loss %.4f | acc %5.1f%% | d<=%ld %s | relay %s | d>%ld %s | chance %.1f%% | %.0f ms\n",
               split, step, r.loss(), 100 * r.accuracy(), r.reach(Reach::one_layer).hi,
               bucket_pct(r.reach(Reach::one_layer)).c_str(), bucket_pct(r.reach(Reach::relay)).c_str(),
               r.reach(Reach::beyond).lo - 1, bucket_pct(r.reach(Reach::beyond)).c_str(), 100 * task.chance(), ms);
  } else {
    out << fmt("%s step %6ld | loss %.4f | %.3f bits/byte | next-byte acc %5.1f%% | %.0f ms\n", split, step, r.loss(),
               r.loss() / std::log(2.0), 100 * r.accuracy(), ms);
    std::vector<int> prompt(eval.tokens.begin(), eval.tokens.begin() + std::min(32, eval.T));
    std::vector<int> gen = generate(model, p, prompt, 96, 0.8, uint64_t(c.train.seed) + uint64_t(step));
    out << "     sample: \"" << printable(prompt) << "|" << printable(gen) << "\"\n";
  }
  // How much each rattn layer uses its RLA branch (model/branch_share.h), on the first 16 sequences
  const std::vector<BranchRatio> br = branch_ratio(model, p, eval, 16);
  if (!br.empty()) {
    out << "     branch size RLA/SWA at scored positions:";
    for (size_t i = 0; i < br.size(); ++i) out << fmt("%s layer %d %.3f", i ? "," : "", br[i].layer, br[i].ratio);
    out << "\n";
  }
  out.flush();
  if (keep) *keep = r;
}

}  // namespace

void keep_freed_memory() {
  // glibc: blocks above M_MMAP_THRESHOLD get their own mapping, unmapped on free (raised to its
  // maximum, 32 MiB on 64-bit); the heap top is given back above M_TRIM_THRESHOLD (raised to 1 GiB).
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

TrainOutcome train(const Config& c_in, const RunConfig& run, std::ostream& out, const BeforeStepHook& hook) {
  keep_freed_memory();
  Config c = c_in;
  if (!c.train.text_file.empty()) c.train.task = "text";
  validate(c);
  if (run.threads > 0) omp_set_num_threads(run.threads);
  // --device cuda: the step runs device-resident (model/device_trainer.h); evaluation and generation run on
  // the host (ref/) from the parameters it downloads. cpu and cuda-ops: the step runs through the backend.
  const bool on_device = run.device == "cuda";
  std::unique_ptr<Backend<float>> backend = make_backend<float>(on_device ? "cpu" : run.device);
  std::unique_ptr<data::Task> task = make_task(c);
  const Model<float> model(c.model, *backend);

  // The text a --text run reads, by size and hash: recorded in every checkpoint, compared on --resume.
  TextFingerprint text_now;
  if (auto* tt = dynamic_cast<const data::TextTask*>(task.get())) text_now = fingerprint_of(tt->bytes());

  TrainState<float> st;
  std::mt19937_64 data_rng;
  std::string text_note;
  if (!run.resume.empty()) {
    st = load_checkpoint<float>(run.resume);
    if (const std::string change = text_change(st.text, text_now, c.train.text_file); !change.empty())
      throw UsageError("--resume: " + change + "; the run would not continue as it began (restore that text, "
                       "or start a new run with another --ckpt)");
    if (text_now.recorded && !st.text.recorded)
      text_note = "note: " + run.resume + " is a format 1 checkpoint, which records no hash of the training text: "
                  "that the text is unchanged is not checked\n";
    Config a = st.config;  // only --steps may differ from the checkpoint (see resolve_resume)
    a.train.steps = c.train.steps;
    if (config_to_text(a) != config_to_text(c))
      throw UsageError("--resume: the config differs from the checkpoint's; only --steps may change");
    if (c.train.steps < st.step)
      throw UsageError("--steps: the checkpoint '" + run.resume + "' is at step " + std::to_string(st.step) +
                       "; give --steps " + std::to_string(st.step) + " or more to continue it");
    st.config = c;
    std::istringstream is(st.data_rng);
    is >> data_rng;
    if (!is) throw CheckpointError("checkpoint '" + run.resume + "': bad data generator state");
  } else {
    st.config = c;
    st.params = init_params<float>(c.model, uint64_t(c.train.seed), c.train.init_scale, c.train.rla_gain_init);
    st.m = params_filled<float>(c.model, 0.0f);
    st.v = params_filled<float>(c.model, 0.0f);
    st.step = 0;
    data_rng.seed(train_seed(c));
  }

  st.text = text_now;

  // Data parallelism (model/data_parallel.h): this rank's share of every batch; the whole batch on one process.
  DataParallel& dp = data_parallel();
  const BatchShare share = share_of(c.train.batch, dp.rank(), dp.size());
  std::unique_ptr<DeviceTrainer> dev;
  std::unique_ptr<DeviceReducer> dev_reduce;  // several ranks on the device: model/device_reduce.h
  if (on_device) {
    // before any device allocation (a DeviceTrainer's buffers): no GPU or no driver is one clear line
    if (!cu::device_available()) throw std::runtime_error("--device cuda: no CUDA device is available here");
    if (dp.size() > 1) dev_reduce = make_device_reducer(dp);  // first: it picks this rank's GPU
    dev = std::make_unique<DeviceTrainer>(c.model, share.count, c.train.seq_len);
    dev->upload(st.params, st.m, st.v);
  }
  const int threads = omp_get_max_threads();
  out << "train_tiny: " << (run.resume.empty() ? "new run" : "resuming " + run.resume + " at step " + std::to_string(st.step))
      << ", device " << (dev ? dev->name() : backend->name()) << ", " << threads << " OpenMP thread" << (threads == 1 ? "" : "s")
      << (dp.size() > 1 ? fmt(" per rank, %d ranks (MPI) of %d sequences each", dp.size(), share.count) : "")
      << (dev_reduce ? ", device gradients all-reduced by " + dev_reduce->name() : std::string()) << "\n";
  out << describe(c) << text_note;
  if (auto* rt = dynamic_cast<const data::RecallTask*>(task.get()))
    out << fmt("data: recall gaps 0..%d mixed so that %.1f%% of the queries are expected within w = %d%s%s%s%s\n",
               rt->max_gap(), 100 * rt->expected_in_window(), data_window(c),
               rt->far_beyond() ? fmt(", the others beyond d = %d", rt->far_beyond()).c_str() : "",
               rt->options().random_filler ? "; random filler bytes" : "",
               rt->options().distractors > 0
                   ? fmt("; up to %d distractor keys in the gap", rt->options().distractors).c_str()
                   : "",
               rt->options().pairs_anywhere ? "; the pairs anywhere" : "");
  if (auto* rt = dynamic_cast<const data::RecallTask*>(task.get()); rt && rt->expected_in_window() < 0.3)
    out << "data: note: fewer than 30% of the queries can fall within w; the key-value block (2 * --pairs = "
        << 2 * c.train.pairs << " tokens) is longer than the window: lower --pairs for a balanced split\n";
  if (auto* tt = dynamic_cast<const data::TextTask*>(task.get()))
    out << "data: " << tt->train_bytes() << " train bytes, " << tt->val_bytes() << " validation bytes\n";
  out << "checkpoint: " << run.ckpt << " every " << run.ckpt_interval << " steps and at the end\n";
  out.flush();

  data::Batch eval_batch, batch;
  task->eval_set(run.eval_seqs, eval_seed(c), eval_batch);
  BatchWorkspace<float> ws;
  ModelParams<float> grad = params_filled<float>(c.model, 0.0f);
  auto P = named_tensors(c.model, st.params);
  auto G = named_tensors(c.model, grad);
  auto M = named_tensors(c.model, st.m);
  auto V = named_tensors(c.model, st.v);
  std::vector<Mat<float>*> grad_ptrs;
  for (auto& g : G) grad_ptrs.push_back(g.t);
  ref::AdamW adamw{c.train.lr, c.train.beta1, c.train.beta2, 1e-8, c.train.weight_decay};
  const double min_lr = c.train.cosine ? c.train.lr * c.train.lr_min_ratio : c.train.lr;

  auto save = [&](long step) {
    if (run.ckpt.empty() || !dp.leader()) return;
    if (dev) dev->download(st.params, st.m, st.v);
    const std::filesystem::path dir = std::filesystem::path(run.ckpt).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir);
    st.step = step;
    st.data_rng = rng_to_text(data_rng);
    save_checkpoint(run.ckpt, st);
  };
  long last_saved = run.resume.empty() ? -1 : st.step;
  std::string last_saved_path = run.resume;
  if (!run.resume.empty()) dp.checkpoint_written(run.resume, st.step);

  TrainOutcome res;
  const long log_every = log_interval(run, c.train.steps);
  res.first_step = st.step + 1;
  res.last_step = st.step;
  const auto loop_start = std::chrono::steady_clock::now();
  const double wait_before = dp.wait_seconds(), reduce_before = dp.reduce_seconds();
  for (long step = st.step + 1; step <= c.train.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    if (hook && dev) dev->download(st.params, st.m, st.v);  // the hook sees (and may change) the parameters
    if (hook) hook(step, st.params);
    if (hook && dev) dev->upload(st.params, st.m, st.v);
    task->sample(data_rng, c.train.batch, batch);
    const float max_norm = c.train.clip > 0 ? float(c.train.clip) : std::numeric_limits<float>::infinity();
    double loss = 0, gnorm = 0;
    if (dev) {  // this rank's share on the device, then the whole batch's gradient; clip (model/device_trainer.h)
      const ShareSums sums = dev->share_loss_and_grad(batch, share);
      double loss_sum = sums.loss_sum;
      if (dev_reduce) dev_reduce->all_reduce(dev->grads_device(), dev->grads_size(), loss_sum);
      loss = loss_sum / double(sums.scored);
      if (step <= c.train.rla_hold) dev->zero_grads_ending(kHeldRla);
      gnorm = double(dev->clip_grad_norm(max_norm));
    } else {
      // This rank's node of the reduction tree, then the root: the whole batch's gradient and loss.
      const ShareSums sums = share_loss_and_grad(model, st.params, batch, share, ws, &grad);
      double loss_sum = sums.loss_sum;
      dp.all_reduce_tree(grad_ptrs, loss_sum);
      loss = loss_sum / double(sums.scored);
      if (step <= c.train.rla_hold)
        for (NamedTensor<float>& g : G)
          if (g.name.ends_with(kHeldRla)) g.t->setZero();
      gnorm = double(backend->clip_grad_norm(grad_ptrs, max_norm));
    }
    if (!std::isfinite(loss) || !std::isfinite(gnorm)) {
      std::string& m = res.stop_message;
      m = fmt("step %ld: the %s is %s; stopping before the update. ", step, std::isfinite(loss) ? "gradient norm" : "loss",
              std::isfinite(loss) ? (std::isnan(gnorm) ? "nan" : "inf") : (std::isnan(loss) ? "nan" : "inf"));
      if (last_saved >= 0)
        m += "The last good checkpoint, " + (last_saved_path.empty() ? run.ckpt : last_saved_path) + " (step " +
             std::to_string(last_saved) + "), is left untouched. ";
      else
        m += "No checkpoint was written in this run. ";
      m += "Try a lower --lr, a --clip, or a longer --warmup.";
      out.flush();
      res.status = kStatusNonFinite;
      break;
    }
    adamw.lr = ref::lr_at(step, c.train.lr, min_lr, c.train.warmup, c.train.steps);
    if (dev) dev->adamw_step(step, adamw);
    else
      for (size_t i = 0; i < P.size(); ++i)
        backend->adamw_step(*P[i].t, *G[i].t, *M[i].t, *V[i].t, step, adamw, P[i].decay);
    res.losses.push_back(loss);
    res.last_step = step;
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (step % log_every == 0 || step == c.train.steps || step == res.first_step)
      out << fmt("step %6ld/%ld | loss %.4f | lr %.2e | grad norm %7.3f | %7.1f ms | %7.0f tok/s\n", step,
                 c.train.steps, loss, adamw.lr, gnorm, ms,
                 double(c.train.batch) * c.train.seq_len / (ms / 1000.0))
          << std::flush;
    const bool last = step == c.train.steps;
    if (!last && run.eval_interval > 0 && step % run.eval_interval == 0 && dp.leader()) {
      if (dev) dev->download(st.params, st.m, st.v);
      report_eval(out, model, st.params, *task, eval_batch, step, c, nullptr);
    }
    if (last || (run.ckpt_interval > 0 && step % run.ckpt_interval == 0)) {
      save(step);
      last_saved = step;
      last_saved_path = run.ckpt;
      if (!run.ckpt.empty()) dp.checkpoint_written(run.ckpt, step);
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
  if (res.status != 0 || !dp.leader()) return res;  // the other ranks neither evaluate nor print
  if (dev) dev->download(st.params, st.m, st.v);

  out << fmt("trained %ld steps in %.1f s (%.1f ms/step)\n", res.last_step - res.first_step + 1, res.seconds,
             res.losses.empty() ? 0.0 : 1000 * res.seconds / double(res.losses.size()));
  if (dp.size() > 1 && !res.losses.empty()) {
    const double n = double(res.losses.size()), wait = dp.wait_seconds() - wait_before,
                 reduce = dp.reduce_seconds() - reduce_before;
    out << fmt("rank 0: all-reduce %.1f ms/step (%.1f%% of the step), waiting for the other ranks %.1f ms/step\n",
               1000 * reduce / n, 100 * reduce / res.seconds, 1000 * wait / n);
  }
  report_eval(out, model, st.params, *task, eval_batch, res.last_step, c, &res.final_eval);
  if (task->synthetic()) {  // the reported numbers: the held-out test set, never used to choose settings
    data::Batch test_batch;
    task->eval_set(run.eval_seqs, eval_seed(c, Split::test), test_batch);
    report_eval(out, model, st.params, *task, test_batch, res.last_step, c, &res.final_eval, "test");
    if (run.final_table) out << "held-out test set, " << bucket_table(res.final_eval, task->chance());
  }
  if (!run.ckpt.empty()) out << "checkpoint: " << run.ckpt << " (step " << res.last_step << ")\n";
  out.flush();
  return res;
}

}  // namespace model
