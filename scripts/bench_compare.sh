#!/usr/bin/env bash
# scripts/bench_compare.sh: our training step (bin/bench_cpu --step) next to the same model in PyTorch
# (scripts/bench_torch.py), config by config, thread count by thread count, in one run.
#
#   scripts/bench_compare.sh            the four T=128 configs and the T=512 ones, 1 and 2 threads
#   scripts/bench_compare.sh --quick    the four T=128 configs, 2 timed steps each
#   BENCH_CPU=path/to/bench_cpu scripts/bench_compare.sh    another build of bench_cpu (e.g. other flags)
#   BENCH_TORCH_INSTALL=0 scripts/bench_compare.sh          never install PyTorch (its columns then say skipped)
#
# PyTorch columns:
#   eager, compiled   the current PyTorch from PyPI, in a virtual environment of the benchmark's own
#                     (build/bench/torch-venv). When it is missing, this script creates it and runs
#                     `pip install torch numpy` there, saying so first: about 5 GB, because the Linux
#                     wheel brings its CUDA libraries (not used here). "compiled" is torch.compile of the
#                     model (TorchInductor; compile time not timed, a minute or more per config).
#   debian            Debian's python3-torch (eager), when /usr/bin/python3 has it.
# The programs run alternately for each (config, threads), so that all see the same machine load.
# Columns: median wall ms per step (what a user waits for) and CPU ms per step summed over threads (much
# less disturbed by other jobs on a shared machine); ratios ours / PyTorch of the wall times.
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

# The current PyTorch: the benchmark's own virtual environment, installed on first use.
venv=build/bench/torch-venv
cur_py=""
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  cur_py=$venv/bin/python
elif [ "${BENCH_TORCH_INSTALL:-1}" = 1 ]; then
  echo "bench_compare: no PyTorch in $venv: installing the current PyTorch from PyPI there"
  echo "bench_compare: (about 5 GB: the Linux wheel brings its CUDA libraries; BENCH_TORCH_INSTALL=0 skips this)"
  if python3 -m venv "$venv" && "$venv/bin/pip" install -q torch numpy; then
    cur_py=$venv/bin/python
  else
    echo "bench_compare: the PyTorch install failed (no network?); its columns say skipped"
  fi
fi
deb_py=""
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import torch" >/dev/null 2>&1; then deb_py=/usr/bin/python3; fi
[ -n "$cur_py" ] && echo "bench_compare: current PyTorch: $("$cur_py" scripts/bench_torch.py --check 2>/dev/null | tail -1)"
[ -n "$deb_py" ] && echo "bench_compare: Debian's PyTorch: $("$deb_py" scripts/bench_torch.py --check 2>/dev/null | tail -1)"
[ -z "$deb_py" ] && echo "bench_compare: no Debian python3-torch (apt-get install python3-torch libopenblas0-pthread adds its column)"

# torch_ms PYTHON CONFIG THREADS STEPS [--compile] -> "wall cpu" or "skipped skipped"
torch_ms() {
  local py=$1
  shift
  if [ -z "$py" ]; then echo "skipped skipped"; return; fi
  local out
  out=$("$py" scripts/bench_torch.py --config "$1" --threads "$2" --steps "$3" ${4:-} 2>/dev/null | grep '^step ' | tail -1)
  if [ -z "$out" ]; then echo "failed failed"; return; fi
  echo "$out" | awk '{print $6, $8}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b + 0 > 0) printf "%.2fx", a/b; else printf "-" }'; }

echo "bench_compare: median ms per training step (forward + backward + clip + AdamW), float32, $(nproc) processors, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %3s | %9s %9s | %9s %9s | %9s %9s | %9s | %8s %8s %8s\n' config thr "ours wall" "ours cpu" \
  "eager" "eager cpu" "compiled" "comp cpu" "debian" "/eager" "/comp" "/debian"
for c in $configs; do
  s=$steps
  case "$c" in *T512) s=$(( steps > 3 ? 3 : steps ));; esac
  for th in 1 2; do
    ours=$("$bench" --step "$c" --threads "$th" --steps "$s")
    ow=$(echo "$ours" | awk '{print $6}'); oc=$(echo "$ours" | awk '{print $8}')
    read -r ew ec <<<"$(torch_ms "$cur_py" "$c" "$th" "$s")"
    read -r cw cc <<<"$(torch_ms "$cur_py" "$c" "$th" "$s" --compile)"
    read -r dw _ <<<"$(torch_ms "$deb_py" "$c" "$th" "$s")"
    printf '%-16s %3s | %9s %9s | %9s %9s | %9s %9s | %9s | %8s %8s %8s\n' "$c" "$th" "$ow" "$oc" "$ew" "$ec" \
      "$cw" "$cc" "$dw" "$(ratio "$ow" "$ew")" "$(ratio "$ow" "$cw")" "$(ratio "$ow" "$dw")"
  done
done
echo "targets (T = 128 configs): ours / eager <= 0.45x, ours / compiled <= 0.5x"
