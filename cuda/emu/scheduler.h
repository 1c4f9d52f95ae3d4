// cuda/emu/scheduler.h: running a grid on the CPU. The heart of the CPU execution layer.
//
// A launch runs its blocks on fresh host "worker" threads (one by default, so blocks run one after
// another; EMU_HOST_THREADS=N runs N blocks at a time). EMU_ORDER sets the order in which blocks are
// taken as well: forward (block 0 first), reverse (the last block first) or a seeded permutation, since
// a GPU promises no order between blocks either: a kernel whose result depends on it (float atomics
// from several blocks into one address, a block reading what another block writes) gives different
// bits in different orders. A worker runs a block like this:
//
//   1. every CUDA thread of the block gets a fiber (its own stack) that will call the kernel;
//   2. a ROUND: the scheduler switches to each runnable fiber in turn, in EMU_ORDER order
//      (forward 0,1,2,..; reverse ..,2,1,0; random:<seed> a fresh seeded permutation every round).
//      A fiber runs the kernel until it reaches a synchronising operation (__syncthreads, __syncwarp,
//      a shuffle or vote) or returns; then it switches back. Nothing else interrupts it;
//   3. after the round every fiber is waiting or has exited. The scheduler RELEASES what can go on:
//        - a warp operation completes when every lane named in its mask waits in the same operation
//          with the same mask; shuffle / vote results are computed then;
//        - __syncthreads releases when every thread of the block waits at the same __syncthreads;
//      and starts the next round. When all fibers have exited the block is done;
//   4. if nothing can be released, the kernel is wrong (a barrier some threads never reach, a lane
//      missing from a warp op, different barriers, ...): the launch throws emu::Error naming the
//      stuck thread, the operation, its source line, and the thread that is missing and why.
//
// So threads of a block really interleave at barriers, and the order between barriers is the
// scheduler's choice: a kernel that reads shared memory another thread writes without a barrier in
// between gets the value that order produces (forward order often hides the bug; reverse shows it).
//
// Debugging: break in the kernel in gdb (`break my_kernel`, or `break file.cu:123`), then `p threadIdx`,
// `p blockIdx`; `next`/`step` stay in the current CUDA thread until it reaches a barrier. To follow one
// thread: `break file.cu:123 if threadIdx.x == 5`. `emu_dump()` (call it from gdb) prints every
// thread of the running block and where it waits.
#pragma once

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "cuda/emu/fiber.h"
#include "cuda/emu/memory.h"
#include "cuda/emu/types.h"

// The CPU layer's own bookkeeping is invisible to ThreadSanitizer: fibers hand data to the scheduler
// without TSan-visible synchronisation (a switch must not order memory, or races between CUDA
// threads would be hidden), so only the kernel's own memory accesses are checked.
#if EMU_TSAN
#define EMU_INTERNAL __attribute__((no_sanitize("thread")))
#else
#define EMU_INTERNAL
#endif

namespace emu {

// Every misuse the CPU layer detects. A std::runtime_error, so cu::launch's contract holds.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {

// The synchronising operations a fiber can wait in.
enum class Op : uint8_t {
  none,
  syncthreads, syncthreads_count, syncthreads_and, syncthreads_or,  // block-wide
  syncwarp, shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all,   // warp-wide
};
EMU_INTERNAL inline bool is_block_op(Op o) { return o >= Op::syncthreads && o <= Op::syncthreads_or; }
EMU_INTERNAL inline const char* op_name(Op o) {
  switch (o) {
    case Op::none: return "(running)";
    case Op::syncthreads: return "__syncthreads";
    case Op::syncthreads_count: return "__syncthreads_count";
    case Op::syncthreads_and: return "__syncthreads_and";
    case Op::syncthreads_or: return "__syncthreads_or";
    case Op::syncwarp: return "__syncwarp";
    case Op::shfl: return "__shfl_sync";
    case Op::shfl_up: return "__shfl_up_sync";
    case Op::shfl_down: return "__shfl_down_sync";
    case Op::shfl_xor: return "__shfl_xor_sync";
    case Op::ballot: return "__ballot_sync";
    case Op::any: return "__any_sync";
    case Op::all: return "__all_sync";
  }
  return "?";
}

enum class State : uint8_t { runnable, waiting, exited };

// One CUDA thread: its fiber and what it waits in.
struct Thread {
  Context ctx;
  Stack stack;
  uint3 idx{0, 0, 0};
  unsigned linear = 0, warp = 0, lane = 0;
  State state = State::runnable;
  // The operation it waits in (state == waiting) and its operands.
  Op op = Op::none;
  unsigned mask = 0;
  const char* file = "";
  int line = 0;
  uint64_t value = 0;  // the value it contributes (shuffle operand, vote predicate)
  int arg = 0;         // srcLane / delta / laneMask
  int width = 32;
  uint64_t result = 0;  // what the operation returns to it
#if EMU_TSAN
  char warp_arrive[2] = {0, 0};               // __syncwarp arrivals, by generation parity
  unsigned syncwarp_gen = 0, completed_gen = 0;
#endif
};

enum class Order { forward, reverse, random };

// What all blocks of one launch share.
struct LaunchState {
  dim3 grid, block;
  size_t smem_bytes = 0;
  void (*run_kernel)(const void* params) = nullptr;  // calls the kernel with a private copy of the arguments
  const void* params = nullptr;
  Order order = Order::forward;
  uint64_t seed = 0;
  std::vector<long> block_order;  // Order::random: the seeded permutation of the blocks (else empty)
  std::atomic<long> next_block{0};  // how many blocks have been taken (an index into the order)
  std::atomic<bool> failed{false};
  std::mutex error_mu;
  std::exception_ptr error;  // the first error of any worker
};

// One host worker thread running blocks.
struct Worker {
  LaunchState* launch = nullptr;
  Context scheduler;            // the worker thread's own stack, where the round loop runs
  std::vector<Thread> threads;  // one per CUDA thread of a block, reused block after block
  Thread* current = nullptr;    // the fiber running now
  std::exception_ptr fiber_error;
  long block_linear = 0;
  uint64_t round = 0;
  unsigned char* dyn_smem = nullptr;
#if EMU_TSAN
  // Addresses TSan uses as synchronisation objects: barriers; the worker's setup before a block's
  // threads start (block_start); each thread's exit before the worker goes on (block_end).
  // Barrier generation g collects its arrivals in barrier_sync[g % 2]: a thread resuming from g
  // must not acquire the arrivals of g + 1 (fast threads may already be there), or TSan would see
  // order where there is none.
  char barrier_sync[2] = {0, 0}, block_start = 0, block_end = 0, error_sync = 0;
  unsigned barrier_gen = 0;
#endif
};
inline thread_local Worker* tls_worker = nullptr;

EMU_INTERNAL inline std::string fmt3(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
EMU_INTERNAL inline std::string hex(unsigned m) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", m);
  return b;
}
EMU_INTERNAL inline std::string where(const Thread& t) {
  return std::string(op_name(t.op)) + " at " + t.file + ":" + std::to_string(t.line);
}
EMU_INTERNAL inline std::string who(const Thread& t) {
  return "thread " + fmt3(t.idx) + " of block " + fmt3(blockIdx);
}

EMU_INTERNAL inline Worker& worker_or_throw(const char* what, const char* file, int line) {
  if (!tls_worker || !tls_worker->current)
    throw Error(std::string(what) + " called outside a kernel at " + file + ":" + std::to_string(line));
  return *tls_worker;
}

// The lanes that exist in warp `warp` of this block (the last warp may be partial).
EMU_INTERNAL inline unsigned lanes_present(const Worker& w, unsigned warp) {
  unsigned n = unsigned(w.threads.size()) - warp * 32;
  return n >= 32 ? 0xffffffffu : ((1u << n) - 1);
}

// Wait in a synchronising operation: record it, let the scheduler run the others, return the
// operation's result once the scheduler has released it. Called on the fiber's own stack.
EMU_INTERNAL inline uint64_t wait_in(Op op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line) {
  Worker& w = worker_or_throw(op_name(op), file, line);
  Thread& t = *w.current;
  t.op = op;
  t.mask = mask;
  t.value = value;
  t.arg = arg;
  t.width = width;
  t.file = file;
  t.line = line;
  if (!is_block_op(op)) {
    // Checked where the mistake is made, so the exception comes from the offending thread.
    if (!(mask >> t.lane & 1u))
      throw Error(who(t) + ": " + where(t) + " with mask " + hex(mask) + " that does not contain its own lane " +
                  std::to_string(t.lane));
    unsigned present = lanes_present(w, t.warp);
    if (mask & ~present)
      throw Error(who(t) + ": " + where(t) + " with mask " + hex(mask) + " naming lanes that do not exist: warp " +
                  std::to_string(t.warp) + " of this " + std::to_string(w.threads.size()) +
                  "-thread block has lanes " + hex(present));
    if (width < 1 || width > 32 || (width & (width - 1)))
      throw Error(who(t) + ": " + where(t) + " with width " + std::to_string(width) +
                  " (must be a power of 2 from 1 to 32)");
  }
  t.state = State::waiting;
#if EMU_TSAN
  // Barriers order memory (everything before the barrier happens before everything after it, in
  // every thread it releases); shuffles and votes do not.
  if (is_block_op(op)) __tsan_release(&w.barrier_sync[w.barrier_gen & 1]);
  if (op == Op::syncwarp) __tsan_release(&t.warp_arrive[++t.syncwarp_gen & 1]);
#endif
  switch_to(t.ctx, w.scheduler);
#if EMU_TSAN
  if (is_block_op(op)) __tsan_acquire(&w.barrier_sync[(w.barrier_gen - 1) & 1]);
  if (op == Op::syncwarp) {  // the arrivals of the lanes of this __syncwarp, not of later ones
    const Thread* base = &w.threads[t.warp * 32];
    for (unsigned l = 0; l < 32; ++l)
      if (mask >> l & 1u) __tsan_acquire(const_cast<char*>(&base[l].warp_arrive[base[l].completed_gen & 1]));
  }
#endif
  t.op = Op::none;
  return t.result;
}

// Keep the first exception a fiber throws, as an emu::Error that names the thread.
EMU_INTERNAL inline void record_fiber_error(Worker& w, const Thread& t) {
  try {
    throw;
  } catch (const Error&) {
    if (!w.fiber_error) w.fiber_error = std::current_exception();
  } catch (const std::exception& e) {
    if (!w.fiber_error) w.fiber_error = std::make_exception_ptr(Error(who(t) + ": exception in the kernel: " + e.what()));
  } catch (...) {
    if (!w.fiber_error) w.fiber_error = std::make_exception_ptr(Error(who(t) + ": unknown exception in the kernel"));
  }
}

// Where a fiber starts: run the kernel for this CUDA thread, then switch away for good.
EMU_INTERNAL inline void fiber_entry(void* arg) {
  Thread& t = *static_cast<Thread*>(arg);
  Worker& w = *tls_worker;
#if EMU_TSAN
  __tsan_acquire(&w.block_start);
#endif
  try {
    w.launch->run_kernel(w.launch->params);
  } catch (...) {
#if EMU_TSAN
    __tsan_acquire(&w.error_sync);  // the worker's earlier reads of fiber_error happen before this write
#endif
    record_fiber_error(w, t);
  }
#if EMU_TSAN
  __tsan_release(&w.block_end);
#endif
  t.state = State::exited;
  t.op = Op::none;
  switch_to(t.ctx, w.scheduler, true);  // the scheduler never switches back to an exited thread
  std::abort();
}

// ---- releasing operations ------------------------------------------------------------------------

// The source lane lane `t` reads in its shuffle, or -1 when it keeps its own value.
EMU_INTERNAL inline int shuffle_source(const Thread& t) {
  int lane = int(t.lane), w = t.width, seg = lane & ~(w - 1);
  int src = lane;
  switch (t.op) {
    case Op::shfl: src = seg | (t.arg & (w - 1)); break;
    case Op::shfl_up: src = lane - t.arg; if (src < seg) return -1; break;
    case Op::shfl_down: src = lane + t.arg; if (src >= seg + w) return -1; break;
    // xor may read an earlier segment but not a later one (CUDA Programming Guide, __shfl_xor_sync).
    case Op::shfl_xor: src = lane ^ t.arg; if (src >= seg + w) return -1; break;
    default: return -1;
  }
  return src < 0 || src > 31 ? -1 : src;
}

// If the warp op thread t waits in can complete now (every lane of its mask waits in the same op
// with the same mask), complete it: compute every participant's result, make them runnable.
EMU_INTERNAL inline bool try_complete_warp_op(Worker& w, Thread& t) {
  Thread* base = &w.threads[t.warp * 32];
  for (unsigned l = 0; l < 32; ++l) {
    if (!(t.mask >> l & 1u)) continue;
    const Thread& u = base[l];
    if (u.state != State::waiting || u.op != t.op || u.mask != t.mask) return false;
  }
  // Every lane of the mask is here. A lane outside the mask waiting in the same call with a mask
  // that includes some of these lanes disagrees about who takes part: report it rather than let
  // this group go on and leave that lane waiting for lanes that have moved on.
  for (unsigned l = 0; l < 32 && t.warp * 32 + l < w.threads.size(); ++l) {
    const Thread& u = base[l];
    if (!(t.mask >> l & 1u) && u.state == State::waiting && u.op == t.op && u.line == t.line &&
        (u.mask & t.mask) && std::strcmp(u.file, t.file) == 0)
      throw Error("lanes of warp " + std::to_string(t.warp) + " in block " + fmt3(blockIdx) + " disagree on the mask of " +
                  where(t) + ": thread " + fmt3(t.idx) + " passes " + hex(t.mask) + ", thread " + fmt3(u.idx) +
                  " passes " + hex(u.mask) + ". Every lane named in the mask must pass the same mask.");
  }
  unsigned votes = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((t.mask >> l & 1u) && base[l].value) votes |= 1u << l;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(t.mask >> l & 1u)) continue;
    Thread& u = base[l];
    switch (u.op) {
      case Op::shfl: case Op::shfl_up: case Op::shfl_down: case Op::shfl_xor: {
        int src = shuffle_source(u);
        if (src >= 0 && !(t.mask >> src & 1u))
          throw Error(who(u) + ": " + where(u) + " reads lane " + std::to_string(src) + ", which is not in the mask " +
                      hex(t.mask) + " (the value would be undefined)");
        u.result = src >= 0 ? base[src].value : u.value;
        break;
      }
      case Op::ballot: u.result = votes; break;
      case Op::any: u.result = votes != 0; break;
      case Op::all: u.result = votes == t.mask; break;
      default: u.result = 0; break;
    }
  }
  for (unsigned l = 0; l < 32; ++l)
    if (t.mask >> l & 1u) {
      base[l].state = State::runnable;
#if EMU_TSAN
      base[l].completed_gen = base[l].syncwarp_gen;
#endif
    }
  return true;
}

// Why can't thread t's warp op complete? Names the first lane of the mask that is not there.
EMU_INTERNAL inline std::string explain_warp_op(const Worker& w, const Thread& t) {
  const Thread* base = &w.threads[t.warp * 32];
  std::string head = who(t) + " waits in " + where(t) + " with mask " + hex(t.mask) + ", but ";
  const char* rule = ". Every lane named in the mask must call the same warp intrinsic with the same mask "
                     "(a full-mask warp op inside `if (lane < 16)` is the classic case).";
  for (unsigned l = 0; l < 32; ++l) {
    if (!(t.mask >> l & 1u)) continue;
    const Thread& u = base[l];
    std::string lane = "lane " + std::to_string(l) + " (thread " + fmt3(u.idx) + ")";
    if (u.state == State::exited) return head + lane + " has exited without reaching it" + rule;
    if (u.op != t.op || u.mask != t.mask)
      return head + lane + " waits in " + where(u) + (is_block_op(u.op) ? "" : " with mask " + hex(u.mask)) + rule;
  }
  return head + "it cannot complete" + rule;
}

// After a round: release every warp op that can complete; if none, the block barrier if every
// live thread is at the same one. Throws emu::Error when nothing can go on.
EMU_INTERNAL inline void release(Worker& w) {
  bool progress = false;
  for (Thread& t : w.threads)
    if (t.state == State::waiting && !is_block_op(t.op)) progress |= try_complete_warp_op(w, t);
  if (progress) return;

  const Thread* first_warp_waiter = nullptr;
  const Thread* at_barrier = nullptr;
  const Thread* exited = nullptr;
  size_t n_at_barrier = 0, n_exited = 0;
  for (const Thread& t : w.threads) {
    if (t.state == State::exited) {
      ++n_exited;
      if (!exited) exited = &t;
    } else if (is_block_op(t.op)) {
      ++n_at_barrier;
      if (!at_barrier) at_barrier = &t;
      else if (t.op != at_barrier->op || t.line != at_barrier->line ||
               (t.file != at_barrier->file && std::strcmp(t.file, at_barrier->file) != 0))
        throw Error("threads of block " + fmt3(blockIdx) + " wait at different barriers: thread " +
                    fmt3(at_barrier->idx) + " in " + where(*at_barrier) + ", thread " + fmt3(t.idx) + " in " +
                    where(t) + ". Every thread of a block must reach the same __syncthreads (a barrier "
                    "inside divergent code?).");
    } else if (!first_warp_waiter) {
      first_warp_waiter = &t;
    }
  }
  if (first_warp_waiter) throw Error(explain_warp_op(w, *first_warp_waiter));
  if (n_exited > 0)
    throw Error(where(*at_barrier) + " in block " + fmt3(blockIdx) + " reached by " + std::to_string(n_at_barrier) +
                " threads (first: thread " + fmt3(at_barrier->idx) + ") while " + std::to_string(n_exited) +
                " threads have exited without reaching it (first: thread " + fmt3(exited->idx) +
                "): a barrier in divergent code or after an early return. Every thread of the block "
                "must reach every __syncthreads: guard the work, not the barrier.");
  // Every thread waits at the same barrier: release it (with the _count/_and/_or result).
  unsigned count = 0;
  for (const Thread& t : w.threads) count += t.value != 0;
  uint64_t result = 0;
  switch (at_barrier->op) {
    case Op::syncthreads_count: result = count; break;
    case Op::syncthreads_and: result = count == w.threads.size(); break;
    case Op::syncthreads_or: result = count != 0; break;
    default: break;
  }
  for (Thread& t : w.threads) {
    t.result = result;
    t.state = State::runnable;
  }
#if EMU_TSAN
  ++w.barrier_gen;
#endif
}

// ---- running blocks -------------------------------------------------------------------------------

// The order in which this round visits the fibers.
EMU_INTERNAL inline void round_order(Worker& w, std::vector<unsigned>& order) {
  order.resize(w.threads.size());
  std::iota(order.begin(), order.end(), 0u);
  switch (w.launch->order) {
    case Order::forward: break;
    case Order::reverse: std::reverse(order.begin(), order.end()); break;
    case Order::random: {
      // Seeded by (seed, block, round): the same EMU_ORDER gives the same interleaving every run.
      std::mt19937_64 rng(w.launch->seed * 0x9E3779B97F4A7C15ull + uint64_t(w.block_linear) * 1000003u + w.round);
      std::shuffle(order.begin(), order.end(), rng);
      break;
    }
  }
}

EMU_INTERNAL inline void run_block(Worker& w, long b) {
  const LaunchState& L = *w.launch;
  w.block_linear = b;
  blockIdx = uint3{unsigned(b % L.grid.x), unsigned(b / L.grid.x % L.grid.y), unsigned(b / L.grid.x / L.grid.y)};
  blockDim = L.block;
  gridDim = L.grid;
  if (L.smem_bytes) std::memset(w.dyn_smem, 0xFF, L.smem_bytes);  // poison: NaN for floats
#if EMU_TSAN
  __tsan_release(&w.block_start);  // what the worker did so far happens before the block's threads
#endif
  for (Thread& t : w.threads) {
    t.state = State::runnable;
    t.op = Op::none;
    fiber_init(t.ctx, t.stack, &fiber_entry, &t);
  }
  std::vector<unsigned> order;
  for (w.round = 0;; ++w.round) {
    round_order(w, order);
    bool live = false;
    for (unsigned i : order) {
      Thread& t = w.threads[i];
      if (t.state != State::runnable) continue;
      w.current = &t;
      threadIdx = t.idx;
      switch_to(w.scheduler, t.ctx);
      w.current = nullptr;
#if EMU_TSAN
      if (t.state == State::exited) __tsan_acquire(&w.block_end);  // its last writes (fiber_error too)
#endif
      if (w.fiber_error) std::rethrow_exception(w.fiber_error);
#if EMU_TSAN
      __tsan_release(&w.error_sync);
#endif
      live |= t.state != State::exited;
    }
    if (!live && std::all_of(w.threads.begin(), w.threads.end(), [](const Thread& t) { return t.state == State::exited; }))
      break;
    release(w);
  }
#if EMU_TSAN
  __tsan_acquire(&w.block_end);  // the block's threads happen before what the worker does next
#endif
}

// Report a SIGSEGV with the CUDA thread that caused it, then let the previous handler (default:
// core dump; ASan: its report) deal with it: the faulting instruction runs again on return.
inline struct sigaction previous_segv_action;
EMU_INTERNAL inline void segv_handler(int sig, siginfo_t* info, void*) {
  char where_s[256];
  describe_address(info->si_addr, where_s, sizeof where_s);
  char msg[768];
  Worker* w = tls_worker;
  if (w && w->current) {
    const Thread& t = *w->current;
    bool stack_overflow = (char*)info->si_addr >= t.stack.map && (char*)info->si_addr < t.stack.lo();
    std::snprintf(msg, sizeof msg,
                  "\nemu: SIGSEGV in CUDA thread (%u,%u,%u) of block (%u,%u,%u) at address %p: %s\n", t.idx.x,
                  t.idx.y, t.idx.z, blockIdx.x, blockIdx.y, blockIdx.z, info->si_addr,
                  stack_overflow ? "fiber stack overflow (deep recursion or big local arrays? raise EMU_STACK_KB)"
                                 : where_s);
  } else {
    std::snprintf(msg, sizeof msg, "\nemu: SIGSEGV in host code at address %p: %s\n", info->si_addr, where_s);
  }
  ssize_t unused = write(2, msg, std::strlen(msg));
  (void)unused;
  sigaction(sig, &previous_segv_action, nullptr);
}
// Called at every cudaMalloc and launch: (re)install the reporter when something else (a test
// framework's crash handler) has replaced it since; that handler then runs after ours.
EMU_INTERNAL inline void ensure_segv_reporter() {
  struct sigaction cur;
  sigaction(SIGSEGV, nullptr, &cur);
  if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == &segv_handler) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = &segv_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &previous_segv_action);
}

// The i-th block a launch runs, in its EMU_ORDER: forward, reverse, or the seeded permutation.
EMU_INTERNAL inline long block_at(const LaunchState& L, long i, long n_blocks) {
  switch (L.order) {
    case Order::forward: return i;
    case Order::reverse: return n_blocks - 1 - i;
    case Order::random: return L.block_order[size_t(i)];
  }
  return i;
}

// A worker thread: take blocks from the launch until none are left (or one failed).
EMU_INTERNAL inline void worker_main(LaunchState* L) {
  Worker w;
  w.launch = L;
  tls_worker = &w;
  // A signal stack, so a fiber stack overflow can still be reported.
  std::vector<char> altstack(64 * 1024);
  stack_t ss{};
  ss.ss_sp = altstack.data();
  ss.ss_size = altstack.size();
  sigaltstack(&ss, nullptr);
  unsigned n = L->block.x * L->block.y * L->block.z;
  w.threads.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = w.threads[i];
    t.linear = i;
    t.idx = uint3{i % L->block.x, i / L->block.x % L->block.y, i / L->block.x / L->block.y};
    t.warp = i / 32;
    t.lane = i % 32;
    t.stack = stack_acquire();
  }
  std::vector<float4> smem(L->smem_bytes / sizeof(float4) + 1);  // 16-byte aligned, as on the GPU
  w.dyn_smem = reinterpret_cast<unsigned char*>(smem.data());
  context_of_this_thread(w.scheduler);
  const long n_blocks = long(L->grid.x) * L->grid.y * L->grid.z;
  try {
    for (long i; !L->failed && (i = L->next_block++) < n_blocks;) run_block(w, block_at(*L, i, n_blocks));
  } catch (...) {
    std::lock_guard<std::mutex> lock(L->error_mu);
    if (!L->error) L->error = std::current_exception();
    L->failed = true;
#if EMU_TSAN
    // The fibers left waiting after an error never release block_end: tell TSan their accesses
    // happen before what follows (a synchronising switch to each and back; nothing runs on them).
    __tsan_acquire(&w.block_end);
    for (Thread& t : w.threads)
      if (t.state != State::exited) {
        __tsan_switch_to_fiber(t.ctx.tsan_fiber, 0);
        __tsan_switch_to_fiber(w.scheduler.tsan_fiber, 0);
      }
#endif
  }
  // Stacks of fibers abandoned after an error are reused as they are: their frames are never
  // unwound (kernels should not own resources anyway).
  for (Thread& t : w.threads) {
    stack_release(t.stack);
    context_destroy(t.ctx);
  }
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, nullptr);
  tls_worker = nullptr;
}

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), per kernel.
struct KernelAttributes {
  std::mutex mu;
  std::map<const void*, int> max_dynamic_smem;
};
EMU_INTERNAL inline KernelAttributes& kernel_attributes() {
  static KernelAttributes a;
  return a;
}
constexpr size_t kDefaultMaxDynamicSmem = 48 * 1024;  // without cudaFuncSetAttribute
constexpr size_t kMaxDynamicSmem = 227 * 1024;        // sm_90 (H100/H200) opt-in limit per block

EMU_INTERNAL inline std::string env_or(const char* name, const char* fallback) {
  const char* s = std::getenv(name);
  return s && *s ? s : fallback;
}

// Check the launch configuration as the GPU would, then run the grid.
EMU_INTERNAL inline void run_grid(const void* kernel, LaunchState& L) {
  const dim3 g = L.grid, b = L.block;
  std::string config = "grid " + fmt3(g) + " block " + fmt3(b);
  if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) throw Error("invalid launch configuration (zero size): " + config);
  if (size_t(b.x) * b.y * b.z > 1024 || b.z > 64)
    throw Error("invalid launch configuration: " + config + " (at most 1024 threads per block, block.z <= 64)");
  if (g.y > 65535 || g.z > 65535) throw Error("invalid launch configuration: " + config + " (grid.y, grid.z <= 65535)");
  if (L.smem_bytes > kDefaultMaxDynamicSmem) {
    int allowed = 0;
    {
      std::lock_guard<std::mutex> lock(kernel_attributes().mu);
      auto it = kernel_attributes().max_dynamic_smem.find(kernel);
      if (it != kernel_attributes().max_dynamic_smem.end()) allowed = it->second;
    }
    if (L.smem_bytes > size_t(allowed))
      throw Error("launch with " + std::to_string(L.smem_bytes) + " bytes of dynamic shared memory (more than " +
                  std::to_string(kDefaultMaxDynamicSmem) + "): call cudaFuncSetAttribute(kernel, "
                  "cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) first" +
                  (allowed ? " (it allows " + std::to_string(allowed) + ")" : std::string()));
  }
  std::string order = env_or("EMU_ORDER", "forward");
  if (order == "forward") L.order = Order::forward;
  else if (order == "reverse") L.order = Order::reverse;
  else if (order.rfind("random", 0) == 0) {
    L.order = Order::random;
    L.seed = order.size() > 7 ? std::strtoull(order.c_str() + 7, nullptr, 10) : 1;
  } else {
    throw Error("EMU_ORDER=" + order + ": expected forward, reverse or random:<seed>");
  }
  const long n_blocks = long(g.x) * g.y * g.z;
  if (L.order == Order::random) {  // the same seed gives the same block order every run
    L.block_order.resize(size_t(n_blocks));
    std::iota(L.block_order.begin(), L.block_order.end(), 0L);
    std::mt19937_64 rng(L.seed * 0xD1B54A32D192ED03ull + 17);
    std::shuffle(L.block_order.begin(), L.block_order.end(), rng);
  }
  long n_workers = std::clamp(std::atol(env_or("EMU_HOST_THREADS", "1").c_str()), 1L, n_blocks);

  ensure_segv_reporter();
  OpenDeviceMemory open;  // device memory is accessible to kernels only
  // Fresh worker threads for every launch: static __shared__ variables (thread_local) start at
  // zero in every launch instead of holding the previous launch's values, which could hide a race.
  std::vector<std::thread> workers;
  for (long i = 0; i < n_workers; ++i) workers.emplace_back(worker_main, &L);
  for (auto& t : workers) t.join();
  if (L.error) std::rethrow_exception(L.error);
}

// A kernel and a copy of its arguments, converted to the parameter types once, as a <<<>>> launch does.
template <class... P>
struct KernelCall {
  void (*kernel)(P...);
  std::tuple<std::decay_t<P>...> args;
  static void run(const void* self) {
    const KernelCall& c = *static_cast<const KernelCall*>(self);
    std::tuple<std::decay_t<P>...> mine = c.args;  // every CUDA thread gets its own copy
    std::apply(c.kernel, std::move(mine));
  }
};

// A pointer argument must point into device memory (or be null), as on a GPU, where a host pointer
// would fault.
template <class T>
void check_argument(size_t i, const T& a) {
  if constexpr (std::is_pointer_v<T> && !std::is_function_v<std::remove_pointer_t<T>>) {
    if (a && !find_allocation(a))
      throw Error("kernel argument " + std::to_string(i) +
                  " is a pointer that is not device memory from cudaMalloc (a host pointer?)");
  }
}

}  // namespace detail

// Run kernel over grid x block on the CPU; see the top of this file. Throws emu::Error.
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem_bytes, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "cu::launch: wrong number of kernel arguments");
  detail::KernelCall<P...> call{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  {
    std::lock_guard<std::recursive_mutex> lock(detail::memory().mu);
    std::apply([](const auto&... a) {
      size_t i = 0;
      (detail::check_argument(i++, a), ...);
    }, call.args);
  }
  detail::LaunchState L;
  L.grid = grid;
  L.block = block;
  L.smem_bytes = smem_bytes;
  L.run_kernel = &detail::KernelCall<P...>::run;
  L.params = &call;
  detail::run_grid(reinterpret_cast<const void*>(kernel), L);
}

// DYNAMIC_SHARED's pointer: the running block's dynamic shared memory.
template <class T>
EMU_INTERNAL T* dynamic_shared() {
  detail::Worker& w = detail::worker_or_throw("DYNAMIC_SHARED", __builtin_FILE(), __builtin_LINE());
  return reinterpret_cast<T*>(w.dyn_smem);
}

}  // namespace emu

template <class T>
cudaError_t cudaFuncSetAttribute(T* kernel, cudaFuncAttribute attr, int value) {
  using namespace emu::detail;
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > kMaxDynamicSmem) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(kernel_attributes().mu);
    kernel_attributes().max_dynamic_smem[reinterpret_cast<const void*>(kernel)] = value;
  }
  return cudaSuccess;
}

// Call from gdb while stopped in a kernel: every thread of the running block and where it is.
extern "C" inline __attribute__((used, noinline)) void emu_dump() {
  emu::detail::Worker* w = emu::detail::tls_worker;
  if (!w) {
    std::fprintf(stderr, "emu_dump: no block is running on this host thread\n");
    return;
  }
  std::fprintf(stderr, "block (%u,%u,%u), round %llu:\n", blockIdx.x, blockIdx.y, blockIdx.z,
               (unsigned long long)w->round);
  for (const auto& t : w->threads) {
    const char* st = t.state == emu::detail::State::exited ? "exited"
                     : &t == w->current                    ? "RUNNING"
                     : t.state == emu::detail::State::waiting ? "waits in"
                                                              : "runnable";
    std::fprintf(stderr, "  thread (%u,%u,%u) warp %u lane %2u: %s", t.idx.x, t.idx.y, t.idx.z, t.warp, t.lane, st);
    if (t.state == emu::detail::State::waiting)
      std::fprintf(stderr, " %s at %s:%d mask 0x%08x", emu::detail::op_name(t.op), t.file, t.line, t.mask);
    std::fprintf(stderr, "\n");
  }
}
