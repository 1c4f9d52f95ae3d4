#!/usr/bin/env bash
# make bench: the CPU benchmarks (benchmarks are not tests: they print times and ratios measured in the
# same run, and fail only if a program crashes).
#   1. bin/bench_cpu: SWA forward+backward against T, RLA masked / recurrent / chunked, matmul GFLOP/s,
#      the model's training step on 1 and 2 threads, the RATTENTION/SWA step ratio (interleaved) and
#      where a step's time goes, op by op, with its FLOPs against the core's measured FMA peak;
#   2. scripts/bench_compare.sh: our training step next to the same model in the current PyTorch (eager and
#      torch.compile; installed into build/bench/torch-venv on first use, about 5 GB) and Debian's, config
#      by config, run alternately, with the ratios;
#   3. bin/bench_ops, bin/bench_attn: the CUDA kernels on the CPU execution layer (emulation times, a
#      smoke run; the GPU figures come from `make gpu-check`).
#   BENCH_QUICK=1 make bench     shorter runs (bench_cpu --quick, bench_compare.sh --quick)
set -u
cd "$(dirname "$0")/.."
status=0
quick=()
[ "${BENCH_QUICK:-0}" = 1 ] && quick=(--quick)
echo "== bin/bench_cpu ${quick[*]}"
bin/bench_cpu "${quick[@]}" || status=1
echo "== scripts/bench_compare.sh ${quick[*]}"
scripts/bench_compare.sh "${quick[@]}" || status=1
for b in bin/bench_ops bin/bench_attn; do
  [ -x "$b" ] || continue
  echo "== $b (CUDA kernels on the CPU execution layer: emulation times)"
  "$b" || status=1
done
exit $status
