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
for prog in "$@"; do
  name=$(basename "$prog")
  case $name in
    fuzz_config) seeds=configs ;;
    *) seeds="$FIXTURES tests/corpus/checkpoint" ;;
  esac
  mkdir -p "build-fuzz/corpus/$name"
  echo "== fuzz: $name for $seconds s"
  # -timeout above the guard's 2 s limit; -rss_limit_mb catches a file that declares huge sizes.
  "$prog" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$name-" "build-fuzz/corpus/$name" $seeds 2>"build-fuzz/$name.log" ||
    { tail -n 40 "build-fuzz/$name.log"; echo "fuzz: $name failed (inputs in build-fuzz/artifacts/)"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "build-fuzz/$name.log" | tr '\n' ' '; echo
done
