#!/usr/bin/env bash
# make bench: every benchmark program, one after the other (benchmarks are not tests: they print
# times and ratios measured in the same run, and fail only if a program crashes).
set -u
cd "$(dirname "$0")/.."
status=0
for b in bin/bench_*; do
  [ -x "$b" ] || continue
  echo "== $b"
  "$b" || status=1
done
[ -x scripts/bench_torch.py ] && { echo "== scripts/bench_torch.py"; python3 scripts/bench_torch.py || status=1; }
exit $status
