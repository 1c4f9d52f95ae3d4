// cuda/emu/fiber.h: fibers (one per CUDA thread) and their stacks.
//
// A fiber is a stack plus saved registers. switch_to(from, to) saves the running fiber's registers
// in `from` and resumes `to`, so two CUDA threads of a block take turns on one OS thread, and only
// where the scheduler lets them (at barriers and warp operations).
//
// Two ways to switch:
//   ucontext (glibc makecontext/swapcontext): portable and understood by gdb and the sanitizers, but
//     every swapcontext makes a sigprocmask system call (about 0.25 us).
//   a 10-instruction x86-64 switch (the default on x86-64): saves the callee-saved registers on the
//     old stack and swaps stack pointers; about 10x faster, which matters for kernel tests that do
//     millions of switches. Not used under ASan/TSan or with EMU_UCONTEXT defined, so the sanitizers
//     see the ucontext calls they intercept.
//
// Stacks are mmap'd with an inaccessible guard page below them, so a fiber's stack overflow is a
// SIGSEGV, not silent corruption; size EMU_STACK_KB (default 256 KiB of address space, committed
// only as touched). Stacks are pooled and reused across blocks and launches.
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define EMU_TSAN 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif
#if defined(__x86_64__) && !defined(EMU_TSAN) && !defined(EMU_ASAN) && !defined(EMU_UCONTEXT)
#define EMU_FAST_SWITCH 1
#endif

namespace emu::detail {

struct Stack {
  char* map = nullptr;  // the mapping, starting with the guard page
  size_t map_bytes = 0;
  char* lo() const { return map + page_size(); }
  char* hi() const { return map + map_bytes; }
  size_t bytes() const { return map_bytes - page_size(); }
  static size_t page_size() { return size_t(sysconf(_SC_PAGESIZE)); }
};

inline size_t stack_bytes() {
  static const size_t bytes = [] {
    const char* s = std::getenv("EMU_STACK_KB");
    long kb = s ? std::atol(s) : 256;
    if (kb < 16) kb = 16;
    return size_t(kb) * 1024;
  }();
  return bytes;
}

// Stacks are reused: a test launches thousands of blocks, and mmap/munmap are slow.
struct StackPool {
  std::mutex mu;
  std::vector<Stack> free;
};
inline StackPool& stack_pool() {
  static StackPool* pool = new StackPool;  // never destroyed: fibers may outlive static destructors
  return *pool;
}

inline Stack stack_acquire() {
  {
    std::lock_guard<std::mutex> lock(stack_pool().mu);
    if (!stack_pool().free.empty()) {
      Stack s = stack_pool().free.back();
      stack_pool().free.pop_back();
      return s;
    }
  }
  Stack s;
  s.map_bytes = Stack::page_size() + stack_bytes();
  void* p = mmap(nullptr, s.map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  s.map = static_cast<char*>(p);
  mprotect(s.map, Stack::page_size(), PROT_NONE);  // the guard page: overflow faults
  return s;
}

inline void stack_release(Stack s) {
  std::lock_guard<std::mutex> lock(stack_pool().mu);
  stack_pool().free.push_back(s);
}

#if EMU_FAST_SWITCH
// emu_switch(&from_sp, to_sp): push the callee-saved registers (and the x87/SSE control words) on
// the current stack, store the stack pointer into *from_sp, load to_sp, pop the same registers from
// there and return into the other fiber. A new fiber's stack is prepared (fiber_init) so that the
// first switch to it "returns" into emu_fiber_trampoline, which calls the entry function.
extern "C" void emu_switch(void** from_sp, void* to_sp);
extern "C" void emu_fiber_trampoline();
asm(R"(
  .pushsection .text
  .weak emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch

  .weak emu_fiber_trampoline
  .type emu_fiber_trampoline, @function
emu_fiber_trampoline:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
  .size emu_fiber_trampoline, .-emu_fiber_trampoline
  .popsection
)");
#endif

// The saved state of one fiber (or of the scheduler, which is the worker thread's own stack).
struct Context {
#if EMU_FAST_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
#if EMU_TSAN
  void* tsan_fiber = nullptr;
#endif
#if EMU_ASAN
  const void* asan_bottom = nullptr;  // the stack ASan must switch to (null: the worker's own)
  size_t asan_size = 0;
#endif
};

#if EMU_ASAN
// ASan must be told about every stack switch (or exceptions thrown on a fiber confuse it). The
// worker's own stack bounds are learnt when the first fiber starts.
inline thread_local const void* asan_worker_bottom = nullptr;
inline thread_local size_t asan_worker_size = 0;
#endif

#if !EMU_FAST_SWITCH
inline void ucontext_entry(unsigned e_hi, unsigned e_lo, unsigned a_hi, unsigned a_lo) {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &asan_worker_bottom, &asan_worker_size);
#endif
  auto entry = reinterpret_cast<void (*)(void*)>((uintptr_t(e_hi) << 32) | e_lo);
  void* arg = reinterpret_cast<void*>((uintptr_t(a_hi) << 32) | a_lo);
  entry(arg);
  std::abort();  // entry never returns
}
#endif

// Prepare ctx so that switching to it runs entry(arg) on stack s. entry must never return
// (it switches away for the last time instead).
inline void fiber_init(Context& ctx, const Stack& s, void (*entry)(void*), void* arg) {
#if EMU_FAST_SWITCH
  // The frame emu_switch pops: control words, r15, r14, r13 (= entry), r12 (= arg), rbx, rbp,
  // return address (= trampoline). The trampoline's call then leaves rsp 16-byte aligned - 8 at
  // entry, as the ABI wants.
  void** top = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(s.hi()) & ~uintptr_t(15));
  void** sp = top - 10;
  uint32_t csr[2];
  asm volatile("stmxcsr %0; fnstcw %1" : "=m"(csr[0]), "=m"(csr[1]));
  std::memcpy(&sp[0], csr, 8);
  sp[1] = nullptr;                                  // r15
  sp[2] = nullptr;                                  // r14
  sp[3] = reinterpret_cast<void*>(entry);           // r13
  sp[4] = arg;                                      // r12
  sp[5] = nullptr;                                  // rbx
  sp[6] = nullptr;                                  // rbp
  sp[7] = reinterpret_cast<void*>(&emu_fiber_trampoline);  // return address of emu_switch
  sp[8] = nullptr;                                  // (alignment slot; rsp = top - 16 at entry call)
  ctx.sp = sp;
#else
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = s.lo();
  ctx.uc.uc_stack.ss_size = s.bytes();
  ctx.uc.uc_link = nullptr;
#if EMU_ASAN
  ctx.asan_bottom = s.lo();
  ctx.asan_size = s.bytes();
#endif
  // makecontext passes int arguments only: split the pointers into two 32-bit halves.
  auto bits = [](void* p) { return reinterpret_cast<uintptr_t>(p); };
  makecontext(&ctx.uc, reinterpret_cast<void (*)()>(&ucontext_entry), 4, unsigned(bits((void*)entry) >> 32),
              unsigned(bits((void*)entry)), unsigned(bits(arg) >> 32), unsigned(bits(arg)));
#endif
#if EMU_TSAN
  if (!ctx.tsan_fiber) ctx.tsan_fiber = __tsan_create_fiber(0);
#endif
}

// The worker thread's own context (its scheduler loop), before any switch.
inline void context_of_this_thread(Context& ctx) {
#if EMU_TSAN
  ctx.tsan_fiber = __tsan_get_current_fiber();
#else
  (void)ctx;
#endif
}

// Save the running fiber into `from`, resume `to`. Returns when something switches back to `from`.
// last: `from` is a fiber that will never run again.
inline void switch_to(Context& from, Context& to, bool last = false) {
#if EMU_ASAN
  void* fake_stack = nullptr;
  __sanitizer_start_switch_fiber(last ? nullptr : &fake_stack, to.asan_bottom ? to.asan_bottom : asan_worker_bottom,
                                 to.asan_bottom ? to.asan_size : asan_worker_size);
#else
  (void)last;
#endif
#if EMU_TSAN
  // no_sync: a switch itself orders nothing, so TSan sees two CUDA threads that touch the same
  // shared memory between two barriers as the data race it is. Barriers add the ordering
  // explicitly (scheduler.h).
  __tsan_switch_to_fiber(to.tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
#if EMU_FAST_SWITCH
  emu_switch(&from.sp, to.sp);
#else
  swapcontext(&from.uc, &to.uc);
#endif
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
}

inline void context_destroy(Context& ctx) {
#if EMU_TSAN
  if (ctx.tsan_fiber) __tsan_destroy_fiber(ctx.tsan_fiber);
  ctx.tsan_fiber = nullptr;
#else
  (void)ctx;
#endif
}

}  // namespace emu::detail
