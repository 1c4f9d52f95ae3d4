#!/usr/bin/env python3
"""scripts/bench_torch.py: the tiny model of bin/train_tiny written in PyTorch, timed per training step.

The comparison point for tools/bench_cpu.cpp (scripts/bench_compare.sh prints both side by side).
Same shapes and the same computation, float32 on the CPU:
  byte embedding (256, C); per block, pre-norm:  y = x + Attn(RMS(x));  x' = y + SwiGLU(RMS(y))
  local layer 'swa':   GRMS_swa(SWA(RoPE(q)/sqrt(D), RoPE(k), v; window [t-w, t]))
  local layer 'rattn': the above + GRMS_rla(RLA(q, k, v; keys j <= t-w-1)), phi = sm2
  global layer 'G':    causal softmax attention over [0, t], scale 1/sqrt(D), no RoPE, no branch norm
  RoPE: interleaved pairs (2i, 2i+1), theta 5e5, local layers, SWA branch only
  final RMSNorm, output head (C, 256), mean cross-entropy, clip grad norm 1.0, AdamW
The attention is written the way one writes it in PyTorch: (T, T) scores with a mask; the RLA branch
in its masked (quadratic) form, one batched product per head (the fastest form at these lengths).
The initialisation differs from ours (it does not change the time).

  python3 scripts/bench_torch.py                         every config, 1 and 2 threads (a table)
  python3 scripts/bench_torch.py --config LL-swa --threads 2 [--steps K]
      one line "step CONFIG threads N ms M cpu_ms X" (the format of bin/bench_cpu --step):
      M = median wall ms per step, X = median CPU ms per step summed over threads
  python3 scripts/bench_torch.py --device cuda [--config gpu-default|gpu-large] [--steps K]
      the models of tools/bench_train.cpp on the GPU (fp32, TF32 off): one line per config,
      "gpu CONFIG ms M tokens_per_s N max_mem_mib X" (make gpu-check prints it next to bin/gpu/bench_train)

Threads: torch.set_num_threads(N), and OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set to N before torch is
imported (Debian's torch calls OpenBLAS, whose own thread pool would otherwise use every core).
Without PyTorch it prints a message and exits 0 (a benchmark is not a test). If the interpreter running
it has no torch but /usr/bin/python3 does (Debian's python3-torch), it re-runs itself with that one.
"""
import argparse
import math
import os
import statistics
import subprocess
import sys
import time

# name: (pattern, layers, local kind, T, w, B); the same table as kConfigs in tools/bench_cpu.cpp
CONFIGS = {
    "LLLG-swa": ("LLLG", 4, "swa", 128, 16, 32),
    "LLLG-rattn": ("LLLG", 4, "rattn", 128, 16, 32),
    "LL-swa": ("LL", 2, "swa", 128, 16, 32),
    "LL-rattn": ("LL", 2, "rattn", 128, 16, 32),
    "LLLG-swa-T512": ("LLLG", 4, "swa", 512, 64, 32),
    "LLLG-rattn-T512": ("LLLG", 4, "rattn", 512, 64, 32),
}
# The models of tools/bench_train.cpp: (pattern, layers, kind, T, w, B, C, H, G, D)
GPU_CONFIGS = {
    "gpu-default": ("LLLG", 2, "rattn", 128, 16, 32, 64, 2, 2, 32),
    "gpu-large": ("LLLG", 8, "rattn", 2048, 128, 8, 512, 8, 8, 64),
}
C, H, G, D, V = 64, 2, 2, 32, 256
F = ((8 * C // 3 + 7) // 8) * 8  # 176, as ModelConfig::ffn()


def set_shape(c, h, g, d):
    """The width, heads and head dim build_model reads (the CPU configs keep the defaults above)."""
    global C, H, G, D, F
    C, H, G, D = c, h, g, d
    F = ((8 * C // 3 + 7) // 8) * 8
THETA = 5e5


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS) + sorted(GPU_CONFIGS), help="one config (default: all)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: the gpu-* configs on the GPU (default: both of them)")
    ap.add_argument("--threads", type=int, default=0, help="with --config: threads (default 1)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up (median printed)")
    ap.add_argument("--quick", action="store_true", help="T=128 configs only, 2 timed steps")
    ap.add_argument("--check", action="store_true", help="print the PyTorch version found and exit")
    ap.add_argument("--compile", action="store_true",
                    help="with --config: the model through torch.compile (its compile time is not timed)")
    return ap.parse_args()


def find_torch_or_exit():
    """Import torch here, or re-run under /usr/bin/python3 if that one has it, or exit 0."""
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    alt = "/usr/bin/python3"
    if os.path.realpath(sys.executable) != os.path.realpath(alt) and os.path.exists(alt) and \
            subprocess.run([alt, "-c", "import torch"], capture_output=True).returncode == 0:
        os.execv(alt, [alt] + sys.argv)
    print("bench_torch: SKIPPED: PyTorch is not installed (pip install torch, or apt-get install "
          "python3-torch libopenblas0-pthread); nothing to compare against")
    sys.exit(0)


def build_model(torch, pattern, layers, kind, T, w, dev="cpu"):
    nn = torch.nn

    def rms(x, weight, eps):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    # RoPE tables (T, D/2): angle = pos * theta^(-2i/D), interleaved pairs
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    inv = THETA ** (-2.0 * torch.arange(D // 2, dtype=torch.float64) / D)
    ang = pos * inv
    cos, sin = torch.cos(ang).float().to(dev), torch.sin(ang).float().to(dev)

    def rope(x):  # x: (B, heads, T, D)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y0 = x0 * cos - x1 * sin
        y1 = x0 * sin + x1 * cos
        return torch.stack((y0, y1), dim=-1).flatten(-2)

    t = torch.arange(T, device=dev)
    causal = t[None, :] <= t[:, None]                       # j <= t
    window = causal & (t[None, :] >= t[:, None] - w)         # t-w <= j <= t
    rla_mask = (t[None, :] <= t[:, None] - w - 1).float()    # j <= t-w-1
    neg_inf = float("-inf")

    def softmax_attn(q, k, v, mask):  # (B, H, T, D); mask (T, T) bool
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(~mask, neg_inf)
        return torch.softmax(s, dim=-1) @ v

    def sm2(x):  # phi(x) = [softmax(x), softmax(-x)] over the head dim
        return torch.cat((torch.softmax(x, -1), torch.softmax(-x, -1)), -1)

    class Block(nn.Module):
        def __init__(self, is_global):
            super().__init__()
            self.is_global = is_global
            self.norm1, self.norm2 = nn.Parameter(torch.ones(C)), nn.Parameter(torch.ones(C))
            self.wq, self.wk = nn.Linear(C, H * D, bias=False), nn.Linear(C, G * D, bias=False)
            self.wv, self.wo = nn.Linear(C, G * D, bias=False), nn.Linear(H * D, C, bias=False)
            self.g_swa, self.g_rla = nn.Parameter(torch.ones(H, 1, D)), nn.Parameter(torch.ones(H, 1, D))
            self.w1, self.w3 = nn.Linear(C, F, bias=False), nn.Linear(C, F, bias=False)
            self.w2 = nn.Linear(F, C, bias=False)

        def attn(self, a):
            B = a.shape[0]
            q = self.wq(a).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D); G == H here
            k = self.wk(a).view(B, T, G, D).transpose(1, 2)
            v = self.wv(a).view(B, T, G, D).transpose(1, 2)
            if self.is_global:
                c = softmax_attn(q, k, v, causal)
            else:
                c = rms(softmax_attn(rope(q), rope(k), v, window), self.g_swa, 1e-8)
                if kind == "rattn":
                    p = (sm2(q) @ sm2(k).transpose(-1, -2)) * rla_mask  # masked form of the RLA
                    c = c + rms(p @ v, self.g_rla, 1e-8)
            return self.wo(c.transpose(1, 2).reshape(B, T, H * D))

        def forward(self, x):
            y = x + self.attn(rms(x, self.norm1, 1e-5))
            b = rms(y, self.norm2, 1e-5)
            return y + self.w2(torch.nn.functional.silu(self.w1(b)) * self.w3(b))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, C)
            self.blocks = nn.ModuleList(Block(pattern[l % len(pattern)] == "G") for l in range(layers))
            self.norm_f = nn.Parameter(torch.ones(C))
            self.out = nn.Linear(C, V, bias=False)

        def forward(self, tokens):
            x = self.embed(tokens)
            for blk in self.blocks:
                x = blk(x)
            return self.out(rms(x, self.norm_f, 1e-5))

    return Net()


def time_config(torch, name, threads, steps, compiled=False):
    pattern, layers, kind, T, w, B = CONFIGS[name]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    net = build_model(torch, pattern, layers, kind, T, w)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, V, (B, T + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    # torch.compile: forward and backward of the model compiled by TorchInductor (C++ on the CPU); the
    # optimizer stays eager. The first steps compile (minutes on 2 cores) and are not timed.
    model = torch.compile(net) if compiled else net
    warmup = 2 if compiled else 1
    ms, cpu = [], []
    for s in range(steps + warmup):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if s >= warmup:  # the first steps are the warm-up
            ms.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (time.process_time() - c0))
    return statistics.median(ms), statistics.median(cpu)


def time_gpu(torch, name, steps):
    """Median ms per training step of a gpu-* config on the GPU, and the peak memory PyTorch allocated."""
    pattern, layers, kind, T, w, B, c, h, g, d = GPU_CONFIGS[name]
    set_shape(c, h, g, d)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 as the hand-written kernels
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(1)
    net = build_model(torch, pattern, layers, kind, T, w, "cuda").cuda()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, V, (B, T + 1), device="cuda")
    x, y = tokens[:, :-1], tokens[:, 1:]
    torch.cuda.reset_peak_memory_stats()
    ms = []
    for s in range(steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x).reshape(-1, V), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        if s >= 1:  # the first step is the warm-up
            ms.append(1000 * (time.perf_counter() - t0))
    m = statistics.median(ms)
    return m, B * T / (m / 1000), torch.cuda.max_memory_allocated() / 2**20


def main():
    args = parse_args()
    if args.config:  # thread variables must be set before torch is imported
        n = str(max(1, args.threads or 1))
        os.environ["OMP_NUM_THREADS"] = n
        os.environ["OPENBLAS_NUM_THREADS"] = n
    find_torch_or_exit()
    import torch
    if args.check:
        print(f"torch {torch.__version__} ({sys.executable})")
        return
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("bench_torch: SKIPPED: this PyTorch sees no CUDA device")
            return
        if args.config and args.config not in GPU_CONFIGS:
            sys.exit(f"bench_torch: --device cuda runs {'|'.join(GPU_CONFIGS)}, not {args.config}")
        for name in [args.config] if args.config else list(GPU_CONFIGS):
            ms, tok, mib = time_gpu(torch, name, max(1, args.steps))
            print(f"gpu {name} ms {ms:.3f} tokens_per_s {tok:.0f} max_mem_mib {mib:.1f}")
            sys.stdout.flush()
        return
    if args.config in GPU_CONFIGS:
        sys.exit(f"bench_torch: {args.config} is a GPU config: add --device cuda")
    if args.config:
        n = max(1, args.threads or 1)
        ms, cpu = time_config(torch, args.config, n, max(1, args.steps), args.compile)
        print(f"step {args.config} threads {n} ms {ms:.1f} cpu_ms {cpu:.1f}")
        return
    # The table: one subprocess per (config, threads), so that each gets its own thread settings.
    print(f"bench_torch: PyTorch {torch.__version__}, float32, median ms per training step "
          f"(forward + backward + clip + AdamW)")
    print(f"{'config':<18} {'T':>4} {'w':>3} {'B':>3} {'thr':>3} {'wall ms':>9} {'cpu ms':>9} {'tokens/s':>9}")
    for name, (pattern, layers, kind, T, w, B) in CONFIGS.items():
        if args.quick and T > 128:
            continue
        for n in (1, 2):
            steps = 2 if args.quick else (3 if T > 128 else args.steps)
            out = subprocess.run([sys.executable, __file__, "--config", name, "--threads", str(n),
                                  "--steps", str(steps)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name:<18} failed: {out.stderr.strip().splitlines()[-1:]}")
                continue
            f = out.stdout.split()
            ms, cpu = float(f[5]), float(f[7])
            print(f"{name:<18} {T:>4} {w:>3} {B:>3} {n:>3} {ms:>9.1f} {cpu:>9.1f} {B * T / (ms / 1000):>9.0f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
