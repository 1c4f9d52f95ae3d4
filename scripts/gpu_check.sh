#!/usr/bin/env bash
# make gpu-check: everything a GPU can tell us that the CPU execution layer cannot, in one run.
# Writes a log to ${OUT:-out}/gpu-check.log (and prints it). GPU time is scarce: this script is tested on the CPU
# first (it degrades to "no GPU" messages there) so one run on a GPU answers everything.
#   1. nvidia-smi; 2. native build (sm_90 by default, CUDA_ARCH=sm_XX to change); 3. the CUDA tests on the device;
#   4. compute-sanitizer memcheck / racecheck / synccheck on the test binaries (small shapes); 5. GPU benchmarks,
#   among them bin/gpu/bench_train (the device-resident training step: tokens/s, per-kernel share, memory) and the
#   same two models in PyTorch on the same GPU (scripts/bench_torch.py --device cuda; skipped without torch);
#   6. bin/gpu/train_tiny --device cuda, and with 2 or more GPUs the NCCL data-parallel case of tests/test_mpi.cpp.
set -u
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
log="$out/gpu-check.log"
: >"$log"
say() { echo "$@" | tee -a "$log"; }
run() { say "\$ $*"; "$@" 2>&1 | tee -a "$log"; return "${PIPESTATUS[0]}"; }
status=0

say "== gpu-check $(date -u +%FT%TZ)"
if command -v nvidia-smi >/dev/null; then run nvidia-smi || true; else say "nvidia-smi not found"; fi

say "== build (native, nvcc)"
jobs=$(nproc)
run make --no-print-directory -j"$jobs" gpu-build bin/tests/test_mpi || { say "BUILD FAILED"; exit 1; }

say "== CUDA tests on the device"
tests=$(ls bin/tests/gpu/test_* 2>/dev/null)
run scripts/run_tests.sh $tests || status=1

say "== compute-sanitizer"
cs=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1 || true)
if [ -z "$cs" ]; then
  py_cs=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
  [ -n "$py_cs" ] && cs=$(find "$py_cs" -name compute-sanitizer -type f 2>/dev/null | head -1)
fi
if [ -z "$cs" ]; then
  say "compute-sanitizer: not found on this machine (skipped; install the nvidia-cuda-sanitizer-api wheel to enable)"
else
  for tool in memcheck racecheck synccheck; do
    for t in $tests; do
      # RATTN_SMALL=1 asks the tests for their small shapes only (sanitizers are 10-100x slower).
      RATTN_SMALL=1 run timeout 300 "$cs" --tool "$tool" --error-exitcode 3 "$t" --no-version || { say "SANITIZER $tool FAILED on $t"; status=1; }
    done
  done
fi

say "== train_tiny on the GPU (bin/gpu/train_tiny --device cuda), and data parallel over GPUs with NCCL"
if [ -x bin/gpu/train_tiny ]; then
  run bin/gpu/train_tiny --single --device cuda --steps 200 --ckpt "$out/gpu-train.ckpt" || status=1
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  if [ "$gpus" -ge 2 ]; then
    # the mpirun --device cuda case of tests/test_mpi.cpp, on bin/gpu/train_tiny: 2 (and 4) ranks, one GPU each
    RATTN_BIN=$PWD/bin/gpu RATTN_GPUS=$gpus run bin/tests/test_mpi -tc='mpirun --device cuda*' || status=1
  else
    say "NCCL data parallel: skipped, $gpus GPU on this machine (it needs 2 or more: one GPU per rank)"
  fi
else
  say "bin/gpu/train_tiny was not built (nvcc missing?)"
fi

say "== GPU benchmarks"
for b in bin/gpu/bench_*; do
  [ -x "$b" ] && { run "$b" || status=1; }
done
say "== the training step in PyTorch on this GPU (the models of bin/gpu/bench_train)"
run python3 scripts/bench_torch.py --device cuda --steps 10 || say "bench_torch --device cuda failed (not counted: a comparison, not a check)"
say "== gpu-check done, status $status"
exit $status
