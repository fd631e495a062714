#!/bin/sh
# `eopt study --slurm` against a real Slurm (make test-slurm): starts a one-node cluster on
# localhost (cluster.sh), submits a study of 4 tiny MLP runs as a job array, waits for it, checks
# that every run finished with complete metrics; then submits again and checks that nothing ran
# again (every file of every run unchanged). The daemons are stopped on any exit.
# EOPT_BIN: the eopt program (default build/eopt). Needs root (the cluster runs as root), the
# Debian packages munge, slurmctld, slurmd, slurm-client (make deps) and Fashion-MNIST.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
EOPT=${EOPT_BIN:-$ROOT/build/eopt}
WAIT_S=${EOPT_SLURM_JOB_WAIT_S:-120} # per job array; the study takes ~15 s on 2 busy cores
fail() { echo "test-slurm: FAIL: $*" >&2; exit 1; }
[ -x "$EOPT" ] || fail "no eopt program at $EOPT (make first)"
[ "$(id -u)" = 0 ] || fail "needs root (the test cluster's daemons run as root)"

T=$(mktemp -d /tmp/eopt-slurm-test.XXXXXX)
ok=0
cleanup() {
    sh "$ROOT/tests/slurm/cluster.sh" stop "$T/cluster" || true
    if [ $ok = 1 ] && [ -z "${EOPT_SLURM_KEEP:-}" ]; then rm -rf "$T"; else echo "test-slurm: files kept in $T" >&2; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
t0=$(date +%s)
sh "$ROOT/tests/slurm/cluster.sh" start "$T/cluster"
eval "$(sh "$ROOT/tests/slurm/cluster.sh" env "$T/cluster")"

# 2 learning rates x 2 seeds of 20 steps; every step logged, so complete metrics are checkable.
cat > "$T/tiny.cfg" <<EOF
base = "$ROOT/configs/mlp_adamw.cfg";
set = ["run.steps=20", "optimizers.[0].schedule.warmup=2", "run.eval_interval=10",
       "run.eval_batches=2", "checkpoint.interval=10", "log.interval=1"];
grid = ( { key = "lr"; path = "optimizers.adamw.args.lr"; values = [0.001, 0.003]; } );
seeds = [1, 2];
threads = 1;
EOF
STUDY=$T/study

# Prints the tasks' "<id>_<task> <state>" lines once none is pending or running (bounded).
wait_array() {
    i=0
    while squeue -h -j "$1" -t PD,CF,R,CG,S 2>/dev/null | grep -q .; do
        i=$((i + 1))
        [ $i -le $((WAIT_S * 2)) ] || { squeue -j "$1" -t all >&2; fail "job array $1 still running after ${WAIT_S} s"; }
        sleep 0.5
    done
    squeue -h -j "$1" -t all -o '%i %T' | sort
}

# Every array task completed (exit 0), one per run.
check_tasks() {
    n=$(printf '%s\n' "$2" | grep -c ' COMPLETED$' || true)
    [ "$n" = 4 ] || { tail -n 20 "$STUDY"/slurm/"$1"_*.out >&2; fail "job $1: $n of 4 tasks completed:
$2"; }
}

# A run finished and logged steps 1..20 once each and the final evaluation.
check_runs() {
    python3 - "$STUDY" <<'EOF' || fail "runs incomplete (above)"
import json, os, sys
study = sys.argv[1]
runs = sorted(os.listdir(os.path.join(study, "runs")))
assert len(runs) == 4, f"{len(runs)} run folders, want 4: {runs}"
for r in runs:
    d = os.path.join(study, "runs", r)
    out = json.load(open(os.path.join(d, "outcome.json")))
    assert out["state"] == "finished" and out["step"] == 20, f"{r}: outcome {out}"
    lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    assert lines[0].get("schema") == "eopt-metrics" and lines[0]["steps"] == 20, f"{r}: header {lines[0]}"
    lines = lines[1:]
    steps = [l["step"] for l in lines if "train_loss" in l]
    assert steps == list(range(1, 21)), f"{r}: training steps logged {steps}"
    assert any(l["step"] == 20 and "eval_loss" in l for l in lines), f"{r}: no final evaluation"
print(f"test-slurm: {len(runs)} runs finished, steps 1..20 and the final evaluation logged: {', '.join(runs)}")
EOF
}

# Every file of every run folder with its size and modification time.
snapshot() { find "$STUDY/runs" -type f -printf '%P %s %T@\n' | sort; }

id=$("$EOPT" study "$T/tiny.cfg" --dir "$STUDY" --slurm) || fail "eopt study --slurm failed"
echo "test-slurm: submitted job array $id"
tasks=$(wait_array "$id")
check_tasks "$id" "$tasks"
check_runs
t1=$(date +%s)

before=$(snapshot)
id2=$("$EOPT" study "$T/tiny.cfg" --dir "$STUDY" --slurm) || fail "eopt study --slurm (again) failed"
[ "$id2" != "$id" ] || fail "the second submission returned the first job id $id"
tasks=$(wait_array "$id2")
check_tasks "$id2" "$tasks"
after=$(snapshot)
n=$(cat "$STUDY"/slurm/"$id2"_*.out | grep -c '^skip .*: finished at step 20$' || true)
[ "$n" = 4 ] || fail "job $id2: $n of 4 tasks said they skip a finished run: $(cat "$STUDY"/slurm/"$id2"_*.out)"
[ "$before" = "$after" ] || fail "resubmitting changed run files:
$(printf '%s\n' "$before" >"$T/before"; printf '%s\n' "$after" >"$T/after"; diff "$T/before" "$T/after")"
echo "test-slurm: resubmitted as job $id2: all 4 tasks ended at once, no run file changed"
echo "test-slurm: ok ($((t1 - t0)) s to the first array's end, $(($(date +%s) - t0)) s in all)"
ok=1
