#!/usr/bin/env bash
# make exercise-solutions: prove that the workshop kit agrees with the code (docs/workshop.md).
#   scripts/exercise_solutions.sh "NAME|PROJECT_BINARY|EXERCISE_BINARY|FILTER" ...
# For every exercise: (a) the project's own test binary, run with the exercise's filter, passes: the checks
# accept the project's body; (b) the exercise binary, built from the stub as committed, fails them, and the
# verdict names a first failed check (a stub must fail, not crash or hang). One line per exercise, then a
# closing line; exit 1 when any exercise does not hold.
#   EXERCISE_SMALL=1 (the default here)  kernel checks on the small shapes only (RATTN_SMALL=1): make test
#                                        already runs every shape against the project's kernels
set -u
export RATTN_SMALL=${EXERCISE_SMALL:-1}
start=$(date +%s)
bad=0 n=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for entry in "$@"; do
  IFS='|' read -r name ref_bin ex_bin filter <<<"$entry"
  n=$((n + 1))
  src=$(ls exercises/[0-9][0-9]_"$name".h)
  if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet HEAD -- "$src" 2>/dev/null; then
    echo "exercise-solutions: $src differs from the committed stub (a solution in progress?): this check"
    echo "  needs the stubs as committed; set your work aside (git stash) and run it again"
    bad=$((bad + 1))
    continue
  fi
  t0=$(date +%s)
  scripts/exercise.sh "$name" "$ref_bin" "$filter" >"$tmp/ref" 2>&1
  ref_rc=$?
  scripts/exercise.sh "$name" "$ex_bin" "$filter" >"$tmp/stub" 2>&1
  stub_rc=$?
  secs=$(($(date +%s) - t0))
  if [ $ref_rc -ne 0 ] || ! grep -q 'PASSED' "$tmp/ref"; then
    echo "exercise-solutions: $name: the project's body does NOT pass the exercise's checks:"
    sed 's/^/  /' "$tmp/ref"
    bad=$((bad + 1))
  elif [ $stub_rc -ne 1 ] || ! grep -q 'NOT YET' "$tmp/stub" || ! grep -q 'first failed check:' "$tmp/stub"; then
    echo "exercise-solutions: $name: the stub $src does not fail with a first failed check (exit $stub_rc):"
    sed 's/^/  /' "$tmp/stub"
    bad=$((bad + 1))
  else
    check=$(grep -m1 -E ': (FATAL )?ERROR: ' "$tmp/stub" | sed -E 's/.*ERROR: //' | cut -c1-60)
    printf '  %-14s project body passes, stub fails: %s  (%d s)\n' "$name" "$check" "$secs"
  fi
done
secs=$(($(date +%s) - start))
if [ $bad -eq 0 ]; then
  echo "exercise-solutions: $n exercises: every project body passes its checks, every stub fails them ($secs s)"
else
  echo "exercise-solutions: $bad of $n exercises do not hold ($secs s)"
  exit 1
fi
