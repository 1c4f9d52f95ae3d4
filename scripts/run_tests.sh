#!/usr/bin/env bash
# Run each test binary given on the command line and print one line per run: its name, its counts
# and its seconds. A binary's own output (doctest's report, and the error messages that tests provoke
# on purpose) is kept in a log and shown only when the binary fails. The closing line is the suite's
# "N passed, N failed" (", N skipped" when some were skipped); exit 1 on any failure. A binary that
# crashes or exits non-zero without reporting a failure counts as one failed test.
#   RATTN_TEST_VERBOSE=1   print every binary's output as it runs
#   RATTN_EMU_ONE_ORDER=1  run the CPU-layer kernel tests in one fiber order only (the sanitizer runs)
set -u
# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning workers made some
# tests several times slower without changing a single result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
counts=$tmp/counts log=$tmp/log
passed=0 failed=0 skipped=0 failures=()
# Kernels on the CPU execution layer (bin/tests/emu/*) run twice: forward, then reverse fiber and block order
# (EMU_ORDER, see cuda/emu/emu.h), so a race between barriers that one order hides shows in the other.
runs=()
for t in "$@"; do
  runs+=("$t")
  case "$t" in */tests/emu/*) [ "${RATTN_EMU_ONE_ORDER:-0}" = 1 ] || runs+=("EMU_ORDER=reverse $t") ;; esac
done
for t in "${runs[@]}"; do
  : >"$counts"
  name=${t#EMU_ORDER=reverse }
  name=${name#*tests/}
  case "$t" in EMU_ORDER=*) name="$name (reverse order)" ;; esac
  start=$(date +%s.%N)
  if [ "${RATTN_TEST_VERBOSE:-0}" = 1 ]; then
    env RATTN_COUNTS="$counts" $t --no-version 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    env RATTN_COUNTS="$counts" $t --no-version >"$log" 2>&1
    rc=$?
  fi
  secs=$(echo "$start $(date +%s.%N)" | awk '{ printf "%.1f", $2 - $1 }')
  if [ -s "$counts" ]; then read -r p f s <"$counts"; else p=0 f=0 s=0; fi
  note=""
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; note="  exit status $rc without a reported failure (crash?)"; fi
  [ "$s" -gt 0 ] && note="  $(grep -m1 -o 'SKIPPED ([^)]*)' "$log")"
  printf '%-44s %4d passed, %d failed%s %7s s%s\n' "$name" "$p" "$f" "$([ "$s" -gt 0 ] && echo ", $s skipped")" \
    "$secs" "$note"
  if [ "$f" -gt 0 ]; then
    failures+=("$name")
    if [ "${RATTN_TEST_VERBOSE:-0}" != 1 ]; then
      echo "---- output of $t (last 80 lines) ----"
      tail -n 80 "$log"
      echo "---- end of $name ----"
    fi
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
done
for n in "${failures[@]+"${failures[@]}"}"; do echo "failed: $n"; done
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ]
