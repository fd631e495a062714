#!/bin/sh
# valgrind memcheck of short runs of eopt: 2 training steps of every configs/gpt_*.cfg (so of
# every optimizer class there, on a 1-layer width-16 model), a resume of the last, inspect (and
# --check) of a checkpoint it wrote, and replays of fixture trajectories. Any error or definite/indirect
# leak fails (--error-exitcode); third-party leaks are suppressed by name in
# tests/memcheck.supp, with the reason. Run by `make memcheck` (BUILD, FIXTURES from make).
set -e
BUILD=${BUILD:-build}
FIXTURES=${FIXTURES:-../shared/fixtures}
BIN=$BUILD/eopt
command -v valgrind >/dev/null || { echo "memcheck: valgrind is not installed"; exit 1; }
work=$(mktemp -d /tmp/eopt-memcheck.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A small text corpus: training needs only a few batches.
i=0; while [ $i -lt 300 ]; do echo "Call me Ishmael. Some years ago, never mind how long precisely."; i=$((i+1)); done > "$work/text.txt"

# The guard's child (fork, no exec) leaves by _exit holding the parent's memory: it is not
# traced (--child-silent-after-fork). OpenMP's worker threads are joined by the runtime after
# exit, so their stacks are "possibly lost": only definite and indirect leaks count.
VG="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
  --show-leak-kinds=definite,indirect --child-silent-after-fork=yes --suppressions=tests/memcheck.supp
  --num-callers=30 -q"
# Products by OpenBLAS: valgrind cannot follow oneDNN's generated code (its masked vector loads
# read past the ends of buffers by design and show as invalid reads); eopt's own code around
# oneDNN's products runs under ASan in make test-asan.
export EOPT_CPU_GEMM=openblas
runs=0
check() { # name, command...
  name=$1; shift
  if ! OMP_NUM_THREADS=1 $VG "$@" >"$work/$name.log" 2>&1; then
    echo "memcheck: $name failed:"; tail -n 60 "$work/$name.log"; exit 1
  fi
  runs=$((runs+1))
}
SMALL="--set data.path=$work/text.txt --set model.block_size=16 --set model.n_layer=1 --set model.n_embd=16
  --set model.n_head=2 --set run.steps=2 --set run.batch_size=2 --set run.seq_len=16
  --set run.eval_interval=2 --set run.eval_batches=1 --set run.sample_tokens=0 --set run.threads=1
  --set log.progress=\"none\""
last=""
for cfg in configs/gpt_*.cfg; do
  name=$(basename "$cfg" .cfg)
  # No warmup: the configs' 30 warmup steps need a run longer than 2 steps.
  nopt=$(grep -c "schedule = " "$cfg")
  nowarm=""; k=0; while [ $k -lt "$nopt" ]; do nowarm="$nowarm --set optimizers.[$k].schedule.warmup=0"; k=$((k+1)); done
  echo "$nowarm" >"$work/$name.sets"
  check "$name" "$BIN" train "$cfg" $SMALL $nowarm --set checkpoint.dir=\"$work/$name\" --set checkpoint.interval=1
  last=$name
done
check resume "$BIN" train "configs/$last.cfg" $SMALL $(cat "$work/$last.sets") --set run.steps=3 --set checkpoint.dir=\"$work/$last\" --resume auto --force
ckpt=$(ls "$work/$last"/*.h5 | tail -n 1)
check inspect "$BIN" inspect "$ckpt"
check inspect-check "$BIN" inspect "$ckpt" --check
# Replay from step 5 of one case of each family (the training runs above cover every class).
for case in muon_default soap_default dion2_soft; do
  dir="$FIXTURES/optimizers/$case"
  check "replay-$case" "$BIN" replay "$dir/step_5.h5" "$dir/trajectory.h5"
done
echo "memcheck: ok ($runs runs under valgrind: no errors, no leaks of eopt's own)"
