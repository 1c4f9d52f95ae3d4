// model/config.cpp: the flag table behind ModelConfig / TrainConfig / RunConfig (see config.h).
#include "model/config.h"

#include <sstream>

namespace model {

std::string ModelConfig::layer_string() const {
  std::string s;
  for (int l = 0; l < n_layers; ++l) s += is_global(l) ? 'G' : 'L';
  return s;
}

namespace {
// "" when p is a non-empty string of L and G, otherwise the expected form (also used for --help).
std::string check_pattern(const std::string& p) {
  bool ok = !p.empty() && p.size() <= 64;
  for (char ch : p) ok = ok && (ch == 'L' || ch == 'G');
  return ok ? "" : "a string of L (local) and G (global), 1 to 64 letters, e.g. LLLG";
}
}  // namespace

void bind_model_flags(FlagSet& fs, ModelConfig& m) {
  fs.add_int("d-model", &m.d_model, 8, 1024, "model width C");
  fs.add_int("heads", &m.n_heads, 1, 64, "query heads H");
  fs.add_int("kv-heads", &m.n_kv_heads, 1, 64, "key/value heads G (H must be a multiple of G)");
  fs.add_int("head-dim", &m.head_dim, 2, 256, "head dimension D (even: RoPE rotates pairs)");
  fs.add_int("ffn-dim", &m.ffn_dim, 0, 16384, "SwiGLU hidden width F; 0 = 8/3 C rounded up to 8");
  fs.add_int("layers", &m.n_layers, 1, 64, "number of blocks");
  fs.add_pattern("pattern", &m.pattern, check_pattern, "local/global pattern, repeated over the layers");
  fs.add_int("window", &m.window, 0, 1 << 20, "window w: keys to the left of the query (SWA sees w+1)");
  fs.add_choice("local", &m.local_kind, {"swa", "rattn", "linear"}, "kind of the local layers");
  fs.add_choice("feature-map", &m.feature_map, {"sm2", "relu2", "identity"}, "RLA feature map phi");
  fs.add_int("chunk", &m.chunk, 1, 4096, "RLA chunk size of the chunked training form");
  fs.add_real("rope-theta", &m.rope_theta, 1.0, 1e12, "RoPE base of the local layers");
  fs.add_real("norm-eps", &m.norm_eps, 0.0, 1.0, "eps of the block RMSNorms");
  fs.add_real("branch-eps", &m.branch_eps, 0.0, 1.0, "eps of the per-head branch norms");
  fs.add_int("qk-norm", &m.qk_norm, 0, 1,
             "1: RMSNorm (eps --norm-eps) of q and k over the head dim after RoPE, on SWA and global attention "
             "(never RLA); 0: off");
}

void bind_train_flags(FlagSet& fs, TrainConfig& t) {
  fs.add_choice("task", &t.task, {"recall", "passkey", "text"}, "training task");
  fs.add_string("text", &t.text_file, "train a byte-level LM on FILE (sets --task text)");
  fs.add_int("seq-len", &t.seq_len, 8, 1 << 16, "sequence length T");
  fs.add_int("batch", &t.batch, 1, 4096, "sequences per step B");
  fs.add_int("pairs", &t.pairs, 1, 64, "recall: key-value pairs per sequence");
  fs.add_int("passkey-len", &t.passkey_len, 1, 32, "passkey: letters in the hidden key");
  fs.add_real("in-window-frac", &t.in_window_frac, 0.0, 1.0,
              "recall: target fraction of queries with key-to-query distance <= w");
  fs.add_int("data-window", &t.data_window, -1, 1 << 20,
             "recall: the window w that --in-window-frac (the gap mix) refers to; -1 = --window");
  fs.add_int("far-beyond", &t.far_beyond, 0, 1 << 20,
             "recall: D > w: draw no gap that puts a key at a distance in (w, D], so every query is within w "
             "or past D (D = layers * w: past the reach of stacked SWA layers); 0 = off");
  fs.add_choice("filler", &t.filler, {"constant", "random"},
                "recall: the gap's filler: constant ('.') or random bytes from an alphabet disjoint from keys and "
                "values");
  fs.add_int("distractors", &t.distractors, 0, 1 << 16,
             "recall: keys of the sequence that recur in the gap, each followed by a filler byte, not a value "
             "(as many as the gap holds, up to this)");
  fs.add_choice("pairs-at", &t.pairs_at, {"start", "anywhere"},
                "recall: the key-value pairs at position 0, or anywhere (after a filler lead of random length)");
  fs.add_real("lr", &t.lr, 1e-8, 1.0, "peak learning rate");
  fs.add_long("warmup", &t.warmup, 0, 1L << 40, "linear warmup steps");
  fs.add_int("cosine", &t.cosine, 0, 1, "1: cosine decay after warmup to lr * lr-min-ratio; 0: constant");
  fs.add_real("lr-min-ratio", &t.lr_min_ratio, 0.0, 1.0, "final lr as a fraction of --lr");
  fs.add_real("weight-decay", &t.weight_decay, 0.0, 10.0, "AdamW decoupled weight decay (matrices only)");
  fs.add_real("beta1", &t.beta1, 0.0, 0.999999, "AdamW beta1");
  fs.add_real("beta2", &t.beta2, 0.0, 0.999999, "AdamW beta2");
  fs.add_real("clip", &t.clip, 0.0, 1e6, "global gradient-norm clip; 0 = off");
  fs.add_long("steps", &t.steps, 1, 1L << 40, "training steps");
  fs.add_long("seed", &t.seed, 0, (1L << 62), "seed of the initial weights and of the data");
  fs.add_real("init-scale", &t.init_scale, 0.0, 100.0, "multiplies every initial weight's std");
  fs.add_real("rla-gain-init", &t.rla_gain_init, 0.0, 100.0,
              "rattn layers: the initial scale gamma_rla of the RLA branch's norm (1: as every norm scale; 0: the "
              "branch starts off and grows as training updates gamma_rla)");
  fs.add_long("rla-hold", &t.rla_hold, 0, 1L << 40,
              "rattn layers: gamma_rla is not updated in the first N steps (its gradient is zeroed before the "
              "clip); with --rla-gain-init 0 the layers train as SWA until then");
}

void bind_run_flags(FlagSet& fs, RunConfig& r) {
  fs.add_long("eval-interval", &r.eval_interval, 0, 1L << 40, "validate every N steps; 0 = at the end only");
  fs.add_int("eval-seqs", &r.eval_seqs, 1, 1 << 20, "sequences in the fixed validation set");
  fs.add_string("ckpt", &r.ckpt, "checkpoint file written during training");
  fs.add_long("ckpt-interval", &r.ckpt_interval, 0, 1L << 40, "checkpoint every N steps; 0 = at the end only");
  fs.add_string("resume", &r.resume, "continue the run saved in FILE, bit-exactly");
  fs.add_choice("device", &r.device, {"cpu", "cuda", "cuda-ops"},
                "where the model trains (cuda: the device-resident step; cuda-ops: the kernel checker, op by op)");
  fs.add_int("threads", &r.threads, 0, 1024, "OpenMP threads; 0 = OpenMP default");
  fs.add_int("log-every", &r.log_every, 0, 1 << 30, "print a progress line every N steps; 0 = steps / 20");
  fs.add_choice("compare", &r.compare, {"none", "swa", "rattn", "linear"},
                "then train the same model with this local kind on the same data, and print both side by side");
}

void validate(const Config& c) {
  const ModelConfig& m = c.model;
  const TrainConfig& t = c.train;
  auto need = [](bool ok, const std::string& msg) {
    if (!ok) throw UsageError(msg);
  };
  need(m.n_heads % m.n_kv_heads == 0,
       "--kv-heads: expected a divisor of --heads (" + std::to_string(m.n_heads) + "), got " +
           std::to_string(m.n_kv_heads));
  need(m.head_dim % 2 == 0, "--head-dim: expected an even number (RoPE rotates pairs), got " +
                                std::to_string(m.head_dim));
  need(!m.pattern.empty(), "--pattern: expected a string of L and G");
  need((t.rla_gain_init == 1.0 && t.rla_hold == 0) || m.local_kind == "rattn",
       "--rla-gain-init, --rla-hold: act on the RLA branch of rattn layers; --local is " + m.local_kind);
  if (t.task == "recall")
    need(t.seq_len >= 4 * t.pairs,
         "--seq-len: the recall task needs at least 4 * --pairs = " + std::to_string(4 * t.pairs) +
             " tokens, got " + std::to_string(t.seq_len));
  if (t.task == "recall" && t.far_beyond > 0)
    need(t.far_beyond > data_window(c), "--far-beyond: expected 0 or more than the data window w = " +
                                            std::to_string(data_window(c)) + ", got " + std::to_string(t.far_beyond));
  if (t.task == "passkey")
    need(t.seq_len >= 2 * (t.passkey_len + 1) + 4,
         "--seq-len: the passkey task needs at least 2 * (--passkey-len + 1) + 4 = " +
             std::to_string(2 * (t.passkey_len + 1) + 4) + " tokens, got " + std::to_string(t.seq_len));
  if (t.task == "text")
    need(!t.text_file.empty(), "--task text: expected --text FILE");
  need(t.warmup <= t.steps, "--warmup: expected at most --steps (" + std::to_string(t.steps) + "), got " +
                                std::to_string(t.warmup));
}

std::string clamp_warmup(Config& c) {
  if (c.train.warmup <= c.train.steps) return "";
  const std::string note = "note: --warmup " + std::to_string(c.train.warmup) + " is longer than --steps " +
                           std::to_string(c.train.steps) + "; warming up over all " + std::to_string(c.train.steps) +
                           " steps\n";
  c.train.warmup = c.train.steps;
  return note;
}

void bind_train_tiny_flags(FlagSet& fs, Config& c, RunConfig& r) {
  bind_model_flags(fs, c.model);
  bind_train_flags(fs, c.train);
  bind_run_flags(fs, r);
}

namespace {
// One FlagSet bound to a Config: the single table behind both directions of the text form.
FlagSet config_flags(Config& c) {
  FlagSet fs("config");
  bind_model_flags(fs, c.model);
  bind_train_flags(fs, c.train);
  return fs;
}

// A value on one line: '\\' -> "\\\\", '\n' -> "\\n"; unescape inverts it (and refuses any other escape).
std::string escape(const std::string& v) {
  std::string out;
  for (char ch : v) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}
std::string unescape(const std::string& name, const std::string& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '\\') {
      out += v[i];
      continue;
    }
    const char next = i + 1 < v.size() ? v[i + 1] : '\0';
    if (next != '\\' && next != 'n')
      throw UsageError("config key '" + name + "': bad escape in its value (expected \\\\ or \\n)");
    out += next == 'n' ? '\n' : '\\';
    ++i;
  }
  return out;
}
}  // namespace

std::string config_to_text(const Config& c_in) {
  Config c = c_in;
  FlagSet fs = config_flags(c);
  std::string out;
  for (const std::string& n : fs.names()) {
    // at their defaults: absent, as in checkpoints from before these flags
    if (n == "qk-norm" && c.model.qk_norm == 0) continue;
    if (n == "rla-gain-init" && c.train.rla_gain_init == 1.0) continue;
    if (n == "rla-hold" && c.train.rla_hold == 0) continue;
    out += n + "=" + escape(fs.get(n)) + "\n";
  }
  return out;
}

Config config_from_text(const std::string& text, bool escaped) {
  Config c;
  FlagSet fs = config_flags(c);
  std::istringstream in(text);
  std::string line;
  std::vector<std::string> seen;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) throw UsageError("config line without '=': '" + line + "'");
    const std::string name = line.substr(0, eq);
    const std::string value = escaped ? unescape(name, line.substr(eq + 1)) : line.substr(eq + 1);
    for (const std::string& n : seen)
      if (n == name) throw UsageError("config key '" + name + "' appears twice");
    seen.push_back(name);
    if (name == "text" && value.empty()) continue;  // no text file: the default
    fs.set(name, value);
  }
  return c;
}

long parameter_count(const ModelConfig& m) {
  const long C = m.d_model, H = m.n_heads, G = m.n_kv_heads, D = m.head_dim, F = m.ffn(), V = m.vocab;
  long n = 2 * V * C + C;  // E, W_out, final norm
  for (int l = 0; l < m.n_layers; ++l) {
    n += 2 * C;                                   // two block norms
    n += C * H * D + 2 * C * G * D + H * D * C;   // Wq, Wk, Wv, Wo
    n += 3 * C * F;                               // SwiGLU
    // branch-norm scales (H, D), one per branch the layer has: swa and linear one, rattn two, global none
    if (!m.is_global(l)) n += (m.local_kind == "rattn" ? 2 : 1) * H * D;
    // qk-norm scales q_norm, k_norm (1, D) each, on layers with softmax attention (spec §2.9)
    if (m.qk_norm && (m.is_global(l) || m.local_kind != "linear")) n += 2 * D;
  }
  return n;
}

std::string describe(const Config& c) {
  const ModelConfig& m = c.model;
  const TrainConfig& t = c.train;
  std::ostringstream os;
  os << "model: " << m.n_layers << " layers " << m.layer_string() << " (pattern " << m.pattern
     << "), d_model " << m.d_model << ", heads " << m.n_heads << " (kv " << m.n_kv_heads << ") x dim "
     << m.head_dim << ", ffn " << m.ffn() << ", vocab " << m.vocab << ", " << parameter_count(m)
     << " parameters\n";
  os << "attention: local = " << m.local_kind << ", window w = " << m.window
     << " (SWA sees w+1 keys), feature map " << m.feature_map << ", RLA chunk " << m.chunk
     << ", RoPE theta " << m.rope_theta << " on local layers; global layers full causal, NoPE";
  if (m.qk_norm) os << "; qk-norm (eps " << m.norm_eps << ") on SWA and global attention";
  os << "\n";
  os << "task: " << t.task;
  if (t.task == "recall") {
    os << " (" << t.pairs << " key-value pairs, target in-window fraction " << t.in_window_frac;
    if (t.data_window >= 0) os << " of the data window " << t.data_window;
    if (t.far_beyond > 0) os << ", no key at a distance in (w, " << t.far_beyond << "]";
    os << ")";
  }
  if (t.task == "passkey") os << " (" << t.passkey_len << "-letter key)";
  if (t.task == "text") os << " (" << t.text_file << ", 90/10 split)";
  os << ", T " << t.seq_len << ", batch " << t.batch << " (" << long(t.seq_len) * t.batch << " tokens/step)\n";
  os << "optimizer: AdamW lr " << t.lr << ", warmup " << t.warmup << ", "
     << (t.cosine ? "cosine to " + format_real(t.lr) + " x " + format_real(t.lr_min_ratio) : std::string("constant"))
     << ", betas (" << t.beta1 << ", " << t.beta2 << "), weight decay " << t.weight_decay
     << ", clip " << t.clip << ", steps " << t.steps << ", seed " << t.seed << "\n";
  if (t.rla_gain_init != 1.0 || t.rla_hold > 0)
    os << "RLA branch scale gamma_rla: starts at " << t.rla_gain_init
       << (t.rla_hold > 0 ? ", not updated in steps 1.." + std::to_string(t.rla_hold) : std::string()) << "\n";
  return os.str();
}

}  // namespace model
