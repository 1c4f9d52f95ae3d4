// tools/rattn-show.cpp: one picture per idea, in the terminal (docs/workshop.md).
//
//   bin/rattn-show [--T 12] [--w 3] [--C 4] [--tokens 8] [--what all|mask|chunks|decode]
//
//   mask     which keys j each query t reads: S = the SWA window [max(0,t-w), t] (ref::window_start),
//            R = the RLA branch, j <= t-w-1 (ref::rla_mask), . = neither (spec §2.8)
//   chunks   the chunked RLA form for chunk size C (spec §3.2): for each query chunk, which keys it reads
//            through the state S_[i] and which through its masked intra-chunk block (ref::detail::chunk_keys,
//            the indexing of ref::rla_forward_chunked), element by element and block by block
//   decode   the decode cache of one rattn layer after each token of a prompt (spec §3.1): which positions
//            sit in the ring of w+1 slots and which have been folded into the state, read from the cache
//            that ref::attention_layer_decode_step fills
// Every picture is computed by the project's own functions, so it cannot disagree with the code; each
// section ends with a line that checks the picture against the definition. Bad flags: exit 2, one line.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "model/cli.h"
#include "ref/attention.h"
#include "ref/decode.h"
#include "ref/rla.h"

namespace {

struct ShowConfig {
  int T = 12, w = 3, C = 4, tokens = 8;
  std::string what = "all";
};

void print_columns(int T) {
  std::printf("      j:");
  for (int j = 0; j < T; ++j) std::printf("%3d", j);
  std::printf("\n");
}

// The SWA and RLA masks, and the check that they partition the causal prefix.
void show_mask(const ShowConfig& c) {
  const ref::Mat<double> M = ref::rla_mask<double>(c.T, c.w);
  std::printf("Masks for T = %d, w = %d (spec §2.8). Rows: query t; columns: key j.\n", c.T, c.w);
  if (c.w < 0)  // no window: the two branches are never in one layer (a global layer, or the linear kind)
    std::printf("  w = -1: no window. A global layer reads [0, t] with softmax attention; the linear kind reads\n"
                "  [0, t] with RLA (ref::rla_mask(T, -1)), shown here: R = read, . = the future\n\n");
  else
    std::printf("  S = SWA reads k_j (window [max(0,t-w), t], ref::window_start); R = RLA reads k_j (j <= t-w-1,\n"
                "  ref::rla_mask); . = neither (the future); ! = both (never: the two sets are disjoint)\n\n");
  print_columns(c.T);
  bool partition = true;
  for (int t = 0; t < c.T; ++t) {
    std::printf("t = %2d: ", t);
    for (int j = 0; j < c.T; ++j) {
      const bool swa = c.w >= 0 && j >= ref::window_start(t, c.w) && j <= t;
      const bool rla = M(t, j) != 0.0;
      std::printf("%3s", swa && rla ? "!" : swa ? "S" : rla ? "R" : ".");
      if ((swa && rla) || ((swa || rla) != (j <= t))) partition = false;
    }
    std::printf("\n");
  }
  std::printf("\ncheck: S and R disjoint, S + R = [0, t] in every row: %s\n", partition ? "yes" : "NO");
}

// The chunked form: per query chunk i, the keys read through the state S_[i] (folded before the chunk)
// and the keys of the intra-chunk score block, as ref::rla_forward_chunked indexes them.
void show_chunks(const ShowConfig& c) {
  const int T = c.T, C = c.C, s = c.w + 1;
  const ref::Mat<double> M = ref::rla_mask<double>(T, c.w);
  // kind[t][j]: 'S' through the state, 'I' intra block kept by tril, 'x' intra block zeroed by tril,
  // 'w' SWA window (not RLA), '.' future
  std::vector<std::string> kind(size_t(T), std::string(size_t(T), '.'));
  bool same = true;
  std::printf("Chunked RLA for T = %d, w = %d, C = %d (spec §3.2): shift s = w+1 = %d, shifted key u = j + s.\n",
              T, c.w, C, s);
  std::printf("  O_[i] = Q~_[i] S_[i] + ((Q~_[i] K'_[i]^T) ⊙ tril) V'_[i],   S_[i+1] = S_[i] + K'_[i]^T V'_[i]\n\n");
  int state_end = 0;  // keys [0, state_end) are folded into S_[i]
  for (int c0 = 0, i = 0; c0 < T; c0 += C, ++i) {
    const int n = std::min(C, T - c0);
    const ref::detail::ChunkKeys ck = ref::detail::chunk_keys(c0, n, s);
    char state[32], intra[64];
    if (state_end == 0) std::snprintf(state, sizeof state, "no key;");
    else std::snprintf(state, sizeof state, "keys %2d..%2d;", 0, state_end - 1);
    if (ck.m > 0)
      std::snprintf(intra, sizeof intra, "keys %2d..%2d (%d x %d scores, tril)", ck.j0, ck.j0 + ck.m - 1, n, ck.m);
    else
      std::snprintf(intra, sizeof intra, "none (its keys are all in the window)");
    std::printf("  chunk %d, queries %2d..%2d: state S_[%d]: %-12s intra block: %s\n", i, c0, c0 + n - 1, i, state,
                intra);
    for (int t = c0; t < c0 + n; ++t)
      for (int j = 0; j < T; ++j) {
        char k = '.';
        if (j < state_end) k = 'S';
        else if (ck.m > 0 && j >= ck.j0 && j < ck.j0 + ck.m) k = (j + s <= t) ? 'I' : 'x';  // tril on u = j+s
        if (k == '.' && j <= t) k = 'w';
        kind[size_t(t)][size_t(j)] = k;
        const bool read = k == 'S' || k == 'I';
        if (read != (M(t, j) != 0.0)) same = false;
      }
    if (ck.m > 0) state_end = ck.j0 + ck.m;
  }
  std::printf("\n  S = through the state S_[i]; I = intra-chunk block, kept; x = intra-chunk block, zeroed by tril;\n"
              "  w = in the SWA window (not RLA); . = the future. A line under each query chunk.\n\n");
  print_columns(T);
  for (int t = 0; t < T; ++t) {
    std::printf("t = %2d: ", t);
    for (int j = 0; j < T; ++j) std::printf("%3c", kind[size_t(t)][size_t(j)]);
    std::printf("\n");
    if ((t + 1) % C == 0 && t + 1 < T) std::printf("        %s\n", std::string(size_t(3 * T), '-').c_str());
  }
  // Blocks: query chunk x key chunk (keys by index, chunk C).
  const int nc = (T + C - 1) / C;
  std::printf("\n  Blocks (query chunk i, key chunk jc of %d keys): S = state only, I = intra block only,\n"
              "  + = both, . = empty (nothing of RLA)\n\n         jc:", C);
  for (int jc = 0; jc < nc; ++jc) std::printf("%3d", jc);
  std::printf("\n");
  for (int i = 0; i < nc; ++i) {
    std::printf("  chunk %2d: ", i);
    for (int jc = 0; jc < nc; ++jc) {
      bool st = false, in = false;
      for (int t = i * C; t < std::min(T, (i + 1) * C); ++t)
        for (int j = jc * C; j < std::min(T, (jc + 1) * C); ++j) {
          st = st || kind[size_t(t)][size_t(j)] == 'S';
          in = in || kind[size_t(t)][size_t(j)] == 'I' || kind[size_t(t)][size_t(j)] == 'x';
        }
      std::printf("%3s", st && in ? "+" : st ? "S" : in ? "I" : ".");
    }
    std::printf("\n");
  }
  std::printf("\ncheck: the keys the chunked form reads (S, I) are exactly rla_mask's: %s\n", same ? "yes" : "NO");
}

// The decode cache of one rattn layer, token by token. The layer is built so that its cache can be read:
// identity feature map, k_t = e_t (one-hot of the position) and v_t = e_0, so the state
// S = sum_j phi(k_j)^T v_j has S(j, 0) = 1 exactly for the positions j folded into it.
void show_decode(const ShowConfig& c) {
  if (c.w < 0) {
    std::printf("Decode: w = -1 has no window and no ring (a global layer keeps every k, v; a linear one only S).\n");
    return;
  }
  ref::AttnConfig cfg;
  cfg.H = cfg.G = 1;
  cfg.D = std::max(2, c.tokens + c.tokens % 2);  // one dimension per position, even for RoPE
  cfg.w = c.w;
  cfg.kind = ref::LocalKind::rattn;
  cfg.fm = ref::FeatureMap::identity;
  const int Cm = cfg.D;  // model width = D, one-hot inputs
  ref::AttnParams<double> p = ref::attn_params_zero<double>(cfg, Cm);
  p.Wk = ref::Mat<double>::Identity(Cm, cfg.D);  // k_t = x_t = e_t
  p.Wv.col(0).setOnes();                         // v_t = e_0
  p.gamma_swa.setOnes();
  p.gamma_rla.setOnes();
  ref::AttnDecodeCache<double> cache = ref::attn_decode_init<double>(cfg);
  std::printf("Decode cache of one rattn layer, w = %d: a ring of w+1 = %d slots of raw k, v and one state S\n"
              "(spec §3.1). After token t: r = position in the ring, S = folded into the state, . = not yet seen.\n"
              "Slot t mod (w+1) held token t-w-1, which is folded into S before the slot is overwritten.\n\n",
              c.w, c.w + 1);
  std::printf("  after   positions");
  std::printf("%*s", std::max(0, 3 * c.tokens - 9), "");
  std::printf("   ring slots (position held)   state S holds   cache bytes\n");
  std::printf("  token  ");
  for (int j = 0; j < c.tokens; ++j) std::printf("%3d", j);
  std::printf("\n");
  bool invariant = true;
  for (int t = 0; t < c.tokens; ++t) {
    ref::Mat<double> x = ref::Mat<double>::Zero(1, Cm);
    x(0, t) = 1.0;
    ref::attention_layer_decode_step(cfg, p, cache, x);
    std::string row;
    std::vector<int> folded;
    for (int j = 0; j < c.tokens; ++j) {
      const bool in_ring = std::find(cache.ring_pos.begin(), cache.ring_pos.end(), long(j)) != cache.ring_pos.end();
      const bool in_state = cache.state[0](j, 0) != 0.0;
      if (in_state) folded.push_back(j);
      row += in_ring && in_state ? "  !" : in_ring ? "  r" : in_state ? "  S" : "  .";
      // the ring is the SWA window [max(0, t-w), t], the state exactly the keys j <= t-w-1
      if (in_ring != (j >= ref::window_start(t, c.w) && j <= t) || in_state != (j <= t - c.w - 1)) invariant = false;
    }
    std::string ring = "[";
    for (size_t sl = 0; sl < cache.ring_pos.size(); ++sl)
      ring += (sl ? " " : "") + (cache.ring_pos[sl] < 0 ? std::string(" -") : (cache.ring_pos[sl] < 10 ? " " : "") +
                                                                              std::to_string(cache.ring_pos[sl]));
    ring += "]";
    std::string st = "{";
    for (size_t i = 0; i < folded.size(); ++i) st += (i ? " " : "") + std::to_string(folded[i]);
    st += "}";
    std::printf("  %5d  %s   %-28s %-15s %zu\n", t, row.c_str(), ring.c_str(), st.c_str(), cache.bytes());
  }
  std::printf("\ncheck: after token t the ring holds [max(0,t-w), t] and S exactly j <= t-w-1: %s\n",
              invariant ? "yes" : "NO");
}

}  // namespace

int main(int argc, char** argv) {
  return model::cli_main_guard("rattn-show", [&]() -> int {
    ShowConfig c;
    model::FlagSet fs("rattn-show");
    fs.add_int("T", &c.T, 1, 64, "sequence length of the mask and chunk pictures");
    fs.add_int("w", &c.w, -1, 63, "window: keys to the left of the query (-1: no window)");
    fs.add_int("C", &c.C, 1, 64, "chunk size of the chunked RLA form");
    fs.add_int("tokens", &c.tokens, 1, 32, "prompt length of the decode picture");
    fs.add_choice("what", &c.what, {"all", "mask", "chunks", "decode"}, "which picture");
    fs.parse(argc, argv);
    if (fs.help_requested()) {
      std::cout << fs.usage();
      return 0;
    }
    const bool all = c.what == "all";
    if (all || c.what == "mask") show_mask(c);
    if (all) std::printf("\n");
    if (all || c.what == "chunks") show_chunks(c);
    if (all) std::printf("\n");
    if (all || c.what == "decode") show_decode(c);
    return 0;
  });
}
