#!/usr/bin/env bash
# scripts/bench_compare.sh: our training step (bin/bench_cpu --step) next to the same model in PyTorch
# (scripts/bench_torch.py), config by config, thread count by thread count, in one run.
#
#   scripts/bench_compare.sh            the four T=128 configs and the T=512 ones, 1 and 2 threads
#   scripts/bench_compare.sh --quick    the four T=128 configs, 2 timed steps each
#   BENCH_CPU=path/to/bench_cpu scripts/bench_compare.sh    another build of bench_cpu (e.g. other flags)
#
# The two programs run alternately for each (config, threads), so that both see the same machine
# load. Columns: median wall ms per step (what a user waits for) and CPU ms per step summed over
# threads (much less disturbed by other jobs on a shared machine), for us and for PyTorch, and the
# ratios ours / PyTorch of each (target: wall ratio <= 0.5 for the four T=128 configs).
# Without PyTorch the PyTorch columns say "skipped" (bench_torch.py explains) and the exit status is 0.
set -u
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
bench=${BENCH_CPU:-bin/bench_cpu}
if [ ! -x "$bench" ]; then
  echo "bench_compare: $bench is not built (make bin/bench_cpu)"
  exit 1
fi
configs="LLLG-swa LLLG-rattn LL-swa LL-rattn"
[ $quick = 0 ] && configs="$configs LLLG-swa-T512 LLLG-rattn-T512"
steps=5
[ $quick = 1 ] && steps=2

torch_ok=1
probe=$(python3 scripts/bench_torch.py --check 2>&1 | tail -1)
case "$probe" in torch*) echo "bench_compare: PyTorch: $probe" ;; *) torch_ok=0; echo "$probe" ;; esac

echo "bench_compare: median ms per training step (forward + backward + clip + AdamW), float32, $(nproc) processors, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %3s | %9s %9s | %9s %9s | %10s %10s\n' config thr "ours wall" "ours cpu" "torch wall" "torch cpu" "wall ratio" "cpu ratio"
for c in $configs; do
  s=$steps
  case "$c" in *T512) s=$(( steps > 3 ? 3 : steps ));; esac
  for th in 1 2; do
    ours=$("$bench" --step "$c" --threads "$th" --steps "$s")
    ow=$(echo "$ours" | awk '{print $6}'); oc=$(echo "$ours" | awk '{print $8}')
    if [ $torch_ok = 1 ]; then
      theirs=$(python3 scripts/bench_torch.py --config "$c" --threads "$th" --steps "$s")
      tw=$(echo "$theirs" | awk '{print $6}'); tc=$(echo "$theirs" | awk '{print $8}')
      rw=$(awk -v a="$ow" -v b="$tw" 'BEGIN{printf "%.2fx", a/b}')
      rc=$(awk -v a="$oc" -v b="$tc" 'BEGIN{printf "%.2fx", a/b}')
    else
      tw=skipped; tc=skipped; rw=-; rc=-
    fi
    printf '%-16s %3s | %9s %9s | %10s %9s | %10s %10s\n' "$c" "$th" "$ow" "$oc" "$tw" "$tc" "$rw" "$rc"
  done
done
