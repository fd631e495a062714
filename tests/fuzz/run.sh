#!/bin/sh
# Runs libFuzzer targets: tests/fuzz/run.sh SECONDS PROGRAM... Each starts from its seeds
# (configs/ for the config parser, the fixtures' HDF5 files for the checkpoint reader) and a
# corpus kept in build-fuzz/corpus/<target>; a crash, leak, time-out or over-memory input is
# written to build-fuzz/artifacts/ and fails the run. A find becomes a regression input under
# tests/corpus/ (see tests/test_guard.c).
set -e
seconds=$1; shift
FIXTURES=${FIXTURES:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/fixtures}
mkdir -p build-fuzz/artifacts
# libhdf5's own allocations it keeps until exit are not eopt's leaks (the file says why).
export LSAN_OPTIONS="suppressions=$(pwd)/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for prog in "$@"; do
  name=$(basename "$prog")
  case $name in
    fuzz_config) seeds=configs ;;
    *) seeds="$FIXTURES tests/corpus/checkpoint" ;;
  esac
  mkdir -p "build-fuzz/corpus/$name"
  echo "== fuzz: $name for $seconds s"
  if [ "${name%_raw}" != "$name" ]; then
    # The unguarded reader: libhdf5's crashes and hangs are expected; collect them all.
    "$prog" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 -max_total_time="$seconds" -timeout=5 \
      -rss_limit_mb=2048 -max_len=1048576 -artifact_prefix="build-fuzz/artifacts/$name-" "build-fuzz/corpus/$name" \
      $seeds >"build-fuzz/$name.log" 2>&1 || true
    echo "$(ls build-fuzz/artifacts | grep -c "^$name-") finds in build-fuzz/artifacts/: copy new ones to tests/corpus/checkpoint/"
    continue
  fi
  # -timeout above the guard's 2 s limit; -rss_limit_mb catches a file that declares huge sizes.
  "$prog" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$name-" "build-fuzz/corpus/$name" $seeds 2>"build-fuzz/$name.log" ||
    { tail -n 40 "build-fuzz/$name.log"; echo "fuzz: $name failed (inputs in build-fuzz/artifacts/)"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "build-fuzz/$name.log" | tr '\n' ' '; echo
done
