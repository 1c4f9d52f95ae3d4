#!/usr/bin/env bash
# Run the checks of one workshop exercise and print a verdict a student can act on (docs/workshop.md).
#   scripts/exercise.sh NAME BINARY [DOCTEST_FILTER]
# NAME: the exercise (exercises/NN_NAME.h); BINARY: a test binary built with the student's body in place of
# the project's function (make exercise E=NAME builds bin/exercise/NAME), or the project's own test binary
# (make exercise-solutions); DOCTEST_FILTER: the --test-case filter of the checks that concern the function
# (empty: every case of the binary). The checks of a kernel exercise run on the CPU execution layer, twice:
# in forward then reverse thread order (EMU_ORDER), as make test does.
# Prints "PASSED" and the next exercise, or "NOT YET" with the first failed check (the test's own message:
# the worst element, got and want), what the CPU layer reported, and where to look. Exit 0 passed, 1 not.
#   EXERCISE_TIMEOUT   seconds one run may take (default 600); a hang counts as a failure
set -u
name=$1 bin=$2 filter=${3:-}
src=$(ls exercises/[0-9][0-9]_"$name".h 2>/dev/null | head -1)
if [ -z "$src" ]; then
  echo "exercise: no exercise named '$name'; the exercises are:" >&2
  ls exercises/[0-9][0-9]_*.h | sed 's|exercises/[0-9]*_\(.*\)\.h|  \1|' >&2
  exit 2
fi
num=$(basename "$src" | cut -c1-2 | sed 's/^0//')
next=$(ls exercises/[0-9][0-9]_*.h | awk -v s="$src" 'found { print; exit } $0 == s { found = 1 }')
# The exercise file names its hint for a failure in a line "// On failure: ..." (continued by "//   " lines).
hint=$(awk '/^\/\/ On failure:/ { on = 1; sub(/^\/\/ On failure: */, ""); print; next }
            on && /^\/\/   / { sub(/^\/\/ +/, ""); print; next } { on = 0 }' "$src")
orders=("")  # a kernel exercise (a __global__ function) runs on the CPU layer: both thread orders
grep -q '^__global__' "$src" && orders=("forward" "reverse")

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(--no-version)
[ -n "$filter" ] && args+=("--test-case=$filter")
shown="$bin${filter:+ --test-case='$filter'}"
for order in "${orders[@]}"; do
  log=$out/log.$order counts=$out/counts.$order
  : >"$counts"
  {  # (the shell's own "Aborted" line for a crash goes nowhere: the verdict says it)
    env ${order:+EMU_ORDER=$order} RATTN_COUNTS="$counts" timeout "${EXERCISE_TIMEOUT:-600}" "$bin" "${args[@]}" \
      >"$log" 2>&1
  } 2>/dev/null
  rc=$?
  read -r p f s <"$counts" 2>/dev/null || { p=0 f=0 s=0; }
  checks=$(grep -o 'assertions: *[0-9]* | *[0-9]* passed | *[0-9]* failed' "$log" | tail -1 |
           awk -F'|' '{ gsub(/[^0-9]/, "", $1); gsub(/[^0-9]/, "", $3); print $1 " checks, " $3 " failed" }')
  grep -q 'test case CRASHED' "$log" && checks="a crash"
  if [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then
    continue
  fi
  # Not passed: say what failed, first failure first.
  where=${order:+ in $order thread order}
  echo "exercise $num ($name): NOT YET: $f of $((p + f)) test cases failed$where (${checks:-no count})."
  if [ "$rc" -eq 124 ]; then
    echo "  the checks did not finish in ${EXERCISE_TIMEOUT:-600} s: an endless loop? (a kernel thread that never"
    echo "  reaches a barrier is reported by the CPU layer, it does not hang)"
  elif [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    echo "  the binary stopped (exit status $rc) before any test case ended: a crash. Its last lines:"
    tail -n 8 "$log" | sed 's/^/    /'
  fi
  if [ "$order" = reverse ] && [ -s "$out/log.forward" ]; then
    echo "  It passes in forward thread order and fails in reverse: threads of a block that read what other"
    echo "  threads write, with no __syncthreads between (a race the forward order hides)."
  fi
  # The first failed check: doctest's "file:line: ERROR: ..." (or FATAL ERROR) block, with its logged values.
  first=$(awk '/^=+$/ { tc = "" } /^TEST CASE:/ { tc = $0 }
               /: (FATAL )?ERROR: / && !done { print tc; on = 1; done = 1 }
               on { if ($0 ~ /^$/ || $0 ~ /^=+$/) { on = 0; exit } print }' "$log")
  if [ -n "$first" ]; then
    echo "  first failed check:"
    cut -c1-600 <<<"$first" | fold -s -w 112 | sed 's/ *$//; s/^/    /'  # at most 116 columns
  fi
  if grep -q 'Assertion `' "$log"; then
    echo "  it stopped on a failed assertion (Eigen's: an index below 0 or past the end of a matrix):"
    grep -m1 'Assertion `' "$log" | sed 's/.*Assertion `/Assertion `/' | cut -c1-220 | fold -w 112 | sed 's/^/    /'
  fi
  # What the CPU execution layer reported beyond the first failure (docs/kernels-on-cpu.md, "What it catches").
  layer=$(grep -E 'emu::|__syncthreads at|__shfl|__syncwarp|fiber|guard' "$log" | sed 's/.*exception: //' |
          grep -vxF -f <(sed 's/.*exception: //' <<<"$first") | sort | uniq -c | sort -rn | head -3)
  if [ -n "$layer" ]; then
    echo "  the CPU execution layer also reported (count, message):"
    sed 's/^ *//' <<<"$layer" | cut -c1-400 | fold -s -w 112 | sed 's/ *$//; s/^/    /'
  fi
  if grep -qiE 'got -?nan|non-finite' "$log"; then
    echo "  NaN in the output: an element nobody wrote (the tests NaN-fill outputs before every launch), 0/0,"
    echo "  or exp(-inf - -inf) from a row with no key yet."
  fi
  [ -n "$hint" ] && { echo "  where to look:"; sed 's/^/    /' <<<"$hint"; }
  echo "  the whole output: ${order:+EMU_ORDER=$order }$shown"
  exit 1
done
both=""
[ "${#orders[@]}" -gt 1 ] && both=" in forward and reverse thread order"
echo "exercise $num ($name): PASSED: $p test cases, ${checks:-} ($shown)$both."
if [ -n "$next" ]; then
  nn=$(basename "$next" .h)
  echo "  next: make exercise E=${nn#[0-9][0-9]_}   ($next)"
else
  echo "  that was the last exercise: docs/workshop.md, \"After the workshop\", says where to go from here."
fi
exit 0
