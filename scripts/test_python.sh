#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest) as one entry of scripts/run_tests.sh: it runs like a test
# binary, writing "passed failed skipped" to $RATTN_COUNTS, so make test's closing count includes them.
# Needs the package installed in build/python/venv (make test-python or make test build it there) and
# bin/rattn-op, bin/train_tiny, bin/infer (the tests compare with them; RATTN_BIN names another folder).
# Arguments are ignored (run_tests.sh passes --no-version).
set -u
cd "$(dirname "$0")/.."
py=${RATTN_PY_VENV:-build/python/venv}/bin/python
export RATTN_BIN=${RATTN_BIN:-$PWD/bin} RATTN_OP_REQUIRED=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if [ ! -x "$py" ]; then
  echo "test_python: $py not found: run make test-python (it builds the package into build/python/venv)"
  [ -n "${RATTN_COUNTS:-}" ] && echo "0 1 0" >"$RATTN_COUNTS"
  exit 1
fi
# -p no:cacheprovider: pytest writes no .pytest_cache into the tree; -rs lists why a test was skipped.
"$py" -m pytest -q -rs -p no:cacheprovider python/tests >"$out" 2>&1
rc=$?
cat "$out"
count() { grep -Eo "[0-9]+ $1" "$out" | tail -n 1 | cut -d' ' -f1; }
p=$(count passed) f=$(count failed) e=$(count errors\?) s=$(count skipped)
p=${p:-0} f=$((${f:-0} + ${e:-0})) s=${s:-0}
if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # pytest could not run (a collection error, no pytest)
# run_tests.sh shows the first "SKIPPED (reason)" of a run that skipped something
[ "$s" -gt 0 ] && echo "SKIPPED ($(grep -m1 -Eo "SKIPPED \[[0-9]+\] [^:]*:[0-9]+: .*" "$out" | sed 's/^SKIPPED \[[0-9]*\] [^ ]*: //'))"
[ -n "${RATTN_COUNTS:-}" ] && echo "$p $f $s" >"$RATTN_COUNTS"
exit $rc
