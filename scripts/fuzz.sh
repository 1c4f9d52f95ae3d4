#!/usr/bin/env bash
# make fuzz: build the libFuzzer targets in fuzz/ with clang (ASan + UBSan) and run each one for
# FUZZ_SECONDS seconds (default 60) from its committed seed corpus fuzz/corpus/<target>/.
#
#   make fuzz                        60 s per target
#   FUZZ_SECONDS=10 make fuzz        the short run CI uses
#   scripts/fuzz.sh --seeds          regenerate fuzz/corpus/ from fuzz/make_seeds.cpp (after a format change)
#   scripts/fuzz.sh npy              one target only (npy | checkpoint | text | flags)
#
# New interesting inputs go to build/fuzz/corpus/<target>/ (not committed). A crash, leak, sanitizer
# report, timeout or out-of-memory stops the run with exit status 1 and leaves the input in
# build/fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/ and commit it:
# bin/tests/test_fuzz_corpus replays every file there (and the seeds) in `make test`.
# Needs clang++ and libFuzzer (Debian: clang, libclang-rt-14-dev); `scripts/deps.sh fuzz` installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-60}
scripts/deps.sh fuzz
CXX=${FUZZ_CXX:-$(command -v clang++ || command -v clang++-14)}
# -gline-tables-only: reports name file:line, at a fraction of -g's compile time.
FLAGS=(-std=c++20 -O1 -gline-tables-only -fno-omit-frame-pointer -Wno-unknown-warning-option -I. -isystem /usr/include/eigen3)
SAN=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
out=build/fuzz
mkdir -p "$out"

declare -A SRCS=(
  [npy]="io/npy.cpp io/files.cpp"
  [checkpoint]="model/checkpoint.cpp model/config.cpp model/cli.cpp io/files.cpp"
  [text]="data/tasks.cpp io/files.cpp"
  [flags]="model/config.cpp model/cli.cpp io/files.cpp"
)

if [ "${1:-}" = "--seeds" ]; then
  # shellcheck disable=SC2086
  "$CXX" "${FLAGS[@]}" fuzz/make_seeds.cpp io/npy.cpp ${SRCS[checkpoint]} -o "$out/make_seeds"
  rm -rf fuzz/corpus
  "$out/make_seeds" fuzz/corpus
  exit 0
fi

targets=("${@:-npy checkpoint text flags}")
# shellcheck disable=SC2206
targets=(${targets[*]})
status=0
for t in "${targets[@]}"; do
  [ -n "${SRCS[$t]+x}" ] || { echo "fuzz: unknown target '$t' (npy | checkpoint | text | flags)" >&2; exit 2; }
  bin="$out/fuzz_$t"
  echo "== fuzz: building $bin"
  # shellcheck disable=SC2086
  "$CXX" "${FLAGS[@]}" "${SAN[@]}" "fuzz/fuzz_$t.cpp" ${SRCS[$t]} -o "$bin"
  mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
  # Inputs: the corpus grown by earlier runs (new finds go there), the seeds, the regressions.
  dirs=("$out/corpus/$t" "fuzz/corpus/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  echo "== fuzz: $t for ${secs} s"
  # -rss_limit_mb / -malloc_limit_mb: a small file must not make the loader allocate gigabytes.
  # -timeout: one input taking over 10 s is a hang.
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 \
      "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=70000 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" \
        "${dirs[@]}" 2>"$out/$t.log"; then
    status=1
    echo "fuzz: $t FAILED; last lines of $out/$t.log:"
    tail -n 40 "$out/$t.log"
    echo "fuzz: the input is in $out/artifacts/$t/: copy it to fuzz/regressions/$t/ as a regression test"
  else
    grep -E '^stat::number_of_executed_units|^Done|cov:' "$out/$t.log" | tail -n 2
  fi
done
[ $status -eq 0 ] && echo "fuzz: no crash in ${targets[*]} (${secs} s each)"
exit $status
