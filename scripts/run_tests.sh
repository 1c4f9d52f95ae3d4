#!/usr/bin/env bash
# Run each test binary given on the command line, sum its test-case counts, and end with one
# plain line "N passed, N failed" (", N skipped" when some were skipped). Exit 1 on any failure.
# A binary that crashes or exits non-zero without reporting a failure counts as one failed test.
set -u
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning workers made some
# tests several times slower without changing a single result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
counts=$(mktemp)
trap 'rm -f "$counts"' EXIT
passed=0 failed=0 skipped=0 crashed=()
# Kernels on the CPU execution layer (bin/tests/emu/*) run twice: forward, then reverse fiber order
# (EMU_ORDER, see cuda/emu/emu.h), so a race between barriers that one order hides shows in the other.
# RATTN_EMU_ONE_ORDER=1 runs them once (the sanitizer runs: make test-sanitize, make tsan-test).
runs=()
for t in "$@"; do
  runs+=("$t")
  case "$t" in */tests/emu/*) [ "${RATTN_EMU_ONE_ORDER:-0}" = 1 ] || runs+=("EMU_ORDER=reverse $t") ;; esac
done
for t in "${runs[@]}"; do
  : >"$counts"
  echo "== $t"
  env RATTN_COUNTS="$counts" $t --no-version
  rc=$?
  if [ -s "$counts" ]; then
    read -r p f s <"$counts"
  else
    p=0 f=0 s=0
  fi
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; crashed+=("$t (exit $rc)"); fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
for c in "${crashed[@]+"${crashed[@]}"}"; do echo "crashed or failed without a report: $c"; done
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
