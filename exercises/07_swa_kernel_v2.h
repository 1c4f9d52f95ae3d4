// Exercise 7 of 8: the tiled SWA forward kernel, v2: shared memory, barriers, online softmax.
// Paper §3.2 ("Kernel Design"); docs/spec.md §3.3; FlashAttention-2's loop order. Replaces
// swa_forward_v2_kernel (cuda/swa.cu). Run it: make exercise E=swa_kernel_v2
// (checks: bin/tests/emu/test_swa on the CPU execution layer, forward and reverse thread order)
//
// One block per (query tile of kBr = 32 rows, b, h), one thread per query row i (t = q0 + i). The block
// walks the K/V tiles of kBc = 32 keys that the window band of its rows touches (kv_tile_range: tiles
// kt0..kt1), and for each tile:
//   1. all threads copy the tile's keys and values into shared memory (load_tile, strided over threads);
//   2. each thread scores its row against the keys of the tile that are in its window (in_window(t, j, w),
//      and j < T), s_j = scale * q_t . k_j, masked keys count as -inf;
//   3. online softmax: with m the running maximum and l the running sum of exp(s - m), and m_new =
//      max(m, max of this tile): rescale l and the accumulator row by alpha = exp(m - m_new), add
//      exp(s_j - m_new) to l and exp(s_j - m_new) v_j to the accumulator, m = m_new.
//   At the end: o_t = acc_t / l, lse_t = m + log(l) (every row sees its own key, so l >= 1).
// Shared memory (given below): q_s, acc_s (kBr rows), k_s, v_s (kBc rows), each row padded to D+1 floats
// (no bank conflicts): element (row, d) of a tile at [row * P + d], P = D+1.
//
// The barriers are the lesson: every thread reads every row of k_s and v_s, and the next tile overwrites
// them. Which two points must all 32 threads have reached before anyone goes on? A barrier must be reached
// by EVERY thread of the block: rows past T (row_ok false) still run the loop, they only skip the work.
// Layout as in exercise 6: q, o: (B, T, H, D); k, v: (B, T, G, D); lse: (B, H, T).
//
// Hint: a tile can be wholly masked for one row but not for the block (m_tile = -inf): skip the update
// then, or exp(-inf - -inf) gives NaN. float s[kBc] in registers holds one tile's scores.
// On failure: right in forward order and wrong in reverse: a missing __syncthreads; "__syncthreads ... reached
//   by N threads ... while M threads have exited": a barrier that some threads skip (an early return, or a
//   barrier inside if (row_ok)); NaN: a wholly masked tile updated with m_tile = -inf.
__global__ void swa_forward_v2_kernel(const float* q, const float* k, const float* v, float* o, float* lse,
                                      int T, int H, int G, int D, int w, float scale) {
  DYNAMIC_SHARED(float, smem_fwd);
  const int P = D + 1;
  float* q_s = smem_fwd;         // (Br, D+1) the query tile
  float* acc_s = q_s + kBr * P;  // (Br, D+1) each thread's un-normalised output row
  float* k_s = acc_s + kBr * P;  // (Bc, D+1)
  float* v_s = k_s + kBc * P;    // (Bc, D+1)
  int b = blockIdx.y / H, h = blockIdx.y % H, g = h / (H / G);
  int q0 = blockIdx.x * kBr;
  int i = threadIdx.x;  // this thread's query row within the tile
  int t = q0 + i;
  bool row_ok = t < T;  // rows past T run the loop (for the barriers) but neither compute nor write

  load_tile(q_s, q, b, q0, kBr, T, H, h, D);
  for (int d = 0; d < D; ++d) acc_s[i * P + d] = 0.f;
  float m = -INFINITY;  // running maximum of this row's scores
  float l = 0.f;        // running sum of exp(s - m)
  int kt0, kt1;
  kv_tile_range(q0, T, w, &kt0, &kt1);
  // TODO(exercise 7): for kt = kt0 .. kt1: load the K/V tile (k0 = kt * kBc) with its barriers, then the
  // scores and the online-softmax update of this row; after the loop, write o and lse (rows with row_ok).
  (void)k, (void)v, (void)o, (void)lse, (void)g, (void)w, (void)scale, (void)row_ok, (void)k_s, (void)v_s;
  (void)m, (void)l;
}
