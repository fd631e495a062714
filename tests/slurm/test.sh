#!/bin/sh
# `eopt study --slurm` against a real Slurm (make test-slurm): starts a one-node cluster on
# localhost (cluster.sh) and submits a study of 4 small MLP runs as a job array, whose task 0 is
# cancelled (scancel: SIGTERM) after its first checkpoint; the 3 others must finish with complete
# metrics. Submitted again, run 0 must resume from its checkpoint and finish with every step logged
# once, and the other tasks leave their runs' files alone; submitted a third time, nothing may run (every file of
# every run unchanged). The daemons are stopped on any exit.
# Then, with EOPT_MPI_BIN (the MPI build), a 2-rank data-parallel run through srun --mpi=pmix.
# EOPT_BIN: the eopt program (default build/eopt); EOPT_SLURM_KEEP=1 keeps the files. Needs root
# (the cluster's daemons run as root), the Debian packages munge, slurmctld, slurmd, slurm-client
# (make deps) and Fashion-MNIST.
set -eu
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
EOPT=${EOPT_BIN:-$ROOT/build/eopt}
WAIT_S=${EOPT_SLURM_JOB_WAIT_S:-120} # per wait; the whole test takes ~30 s on 2 busy cores
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

# 2 learning rates x 2 seeds of STEPS steps, every step logged (so that complete metrics are
# checkable), a checkpoint every 20 steps to resume from. Long enough (~2 s on the 2-core VM of
# 3 December 2026) that task 0 is still running when the test sees its first checkpoint: 200
# steps ran in 0.24 s there, and its first checkpoint was pruned or the run over between polls.
STEPS=2000
cat >"$T/tiny.cfg" <<END
base = "$ROOT/configs/mlp_adamw.cfg";
set = ["run.steps=$STEPS", "run.batch_size=32", "optimizers.[0].schedule.warmup=2", "run.eval_interval=100",
       "run.eval_batches=2", "checkpoint.interval=20", "log.interval=1"];
grid = ( { key = "lr"; path = "optimizers.adamw.args.lr"; values = [0.001, 0.003]; } );
seeds = [1, 2];
threads = 1;
END
STUDY=$T/study

# Prints the tasks' "<id>_<task> <state>" lines once none is pending or running (bounded).
wait_array() {
    i=0
    while squeue -h -j "$1" -t PD,CF,R,CG,S 2>/dev/null | grep -q .; do
        i=$((i + 1))
        [ $i -le $((WAIT_S * 5)) ] || { squeue -j "$1" -t all >&2; fail "job array $1 still running after ${WAIT_S} s"; }
        sleep 0.2
    done
    squeue -h -j "$1" -t all -o '%i %T' | sort
}

# check_tasks JOB TASKS N STATE: N of the 4 array tasks ended in STATE (COMPLETED: exit status 0).
check_tasks() {
    n=$(printf '%s\n' "$2" | grep -c " $4\$" || true)
    [ "$n" = "$3" ] || { tail -n 20 "$STUDY"/slurm/"$1"_*.out >&2; fail "job $1: $n of 4 tasks $4, want $3:
$2"; }
}

# check_runs N_FINISHED [RESUMED]: that many runs finished with steps 1..STEPS logged once each and
# the final evaluation, the others were interrupted and hold a checkpoint; RESUMED went on from a
# checkpoint (resumes.jsonl) instead of starting over.
check_runs() {
    python3 - "$STUDY" "$STEPS" "$1" "${2:-}" <<'END' || fail "runs not as expected (above)"
import glob, json, os, sys
study, steps, want, resumed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
runs = sorted(os.listdir(os.path.join(study, "runs")))
assert len(runs) == 4, f"{len(runs)} run folders, want 4: {runs}"
done = []
for r in runs:
    d = os.path.join(study, "runs", r)
    out = json.load(open(os.path.join(d, "outcome.json")))
    if out["state"] != "finished":
        assert out["state"] == "interrupted" and glob.glob(os.path.join(d, "step_*.h5")), f"{r}: outcome {out}"
        continue
    assert out["step"] == steps, f"{r}: outcome {out}"
    lines = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl"))]
    assert lines[0].get("schema") == "eopt-metrics" and lines[0]["steps"] == steps, f"{r}: header {lines[0]}"
    logged = [l["step"] for l in lines[1:] if "train_loss" in l]
    assert logged == list(range(1, steps + 1)), f"{r}: training steps logged {logged[:3]}...{logged[-3:]}"
    assert any(l.get("step") == steps and "eval_loss" in l for l in lines[1:]), f"{r}: no final evaluation"
    done.append(r)
assert len(done) == want, f"{len(done)} runs finished, want {want}: {done}"
if resumed:
    res = [json.loads(l) for l in open(os.path.join(study, "runs", resumed, "resumes.jsonl"))]
    assert len(res) == 1 and 20 <= res[0]["step"] < steps, f"{resumed}: resumes {res}"
    print(f"test-slurm: {resumed} resumed at step {res[0]['step']}")
print(f"test-slurm: {len(done)} runs finished, steps 1..{steps} logged once each, and the final evaluation")
END
}

# Every file of every run folder but $1 with its size and modification time.
snapshot() { find "$STUDY/runs" -type f -printf '%P %s %T@\n' | grep -v "^${1:-/}/" | sort; }

# unchanged JOB BEFORE AFTER: the job changed no file of a run that had ended.
unchanged() {
    [ "$2" = "$3" ] || fail "job $1 changed the files of ended runs:
$(printf '%s\n' "$2" >"$T/before"; printf '%s\n' "$3" >"$T/after"; diff "$T/before" "$T/after")"
}

submit() { "$EOPT" study "$T/tiny.cfg" --dir "$STUDY" --slurm || fail "eopt study --slurm failed"; }

# 1. Task 0 cancelled after its first checkpoint; the others finish.
run0=$("$EOPT" study "$T/tiny.cfg" --list | head -n 1)
id=$(submit)
echo "test-slurm: submitted job array $id; task 0 runs $run0"
i=0
until ls "$STUDY/runs/$run0"/step_*.h5 >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -le $((WAIT_S * 50)) ] || fail "run $run0 wrote no checkpoint in ${WAIT_S} s"
    sleep 0.02
done
scancel "${id}_0"
tasks=$(wait_array "$id")
check_tasks "$id" "$tasks" 1 CANCELLED
check_tasks "$id" "$tasks" 3 COMPLETED
check_runs 3
t1=$(date +%s)

# 2. Submitted again: run 0 resumes and finishes, the other tasks leave their runs alone.
before=$(snapshot "$run0")
id2=$(submit)
tasks=$(wait_array "$id2")
check_tasks "$id2" "$tasks" 4 COMPLETED
check_runs 4 "$run0"
unchanged "$id2" "$before" "$(snapshot "$run0")"
t2=$(date +%s)

# 3. Submitted a third time: nothing runs.
before=$(snapshot)
id3=$(submit)
tasks=$(wait_array "$id3")
check_tasks "$id3" "$tasks" 4 COMPLETED
unchanged "$id3" "$before" "$(snapshot)"
echo "test-slurm: submitted a third time (job $id3): every task ended at once, no run file changed"

# 4. The MPI build under srun (README's Slurm line): 2 ranks through PMIx are one data-parallel
# run, bit for bit the same run under `mpirun -np 2` (two stray one-process runs would differ).
if [ -x "${EOPT_MPI_BIN:-}" ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
    DP="$ROOT/configs/gpt_muon_adamw.cfg --set run.steps=10 --set run.threads=1 --set run.sample_tokens=0
        --set optimizers.[0].schedule.kind=constant --set optimizers.[1].schedule.kind=constant"
    # shellcheck disable=SC2086
    timeout 120 srun -n 2 --mpi=pmix "$EOPT_MPI_BIN" train $DP --run-dir "$T/srun" >"$T/srun.log" 2>&1 ||
        { tail -n 20 "$T/srun.log" >&2; fail "srun -n 2 --mpi=pmix failed"; }
    grep -q "optimizer state per rank: [0-9.]* MiB, [0-9.]* MiB" "$T/srun.log" || fail "srun: not one 2-rank run"
    # shellcheck disable=SC2086
    timeout 120 mpirun --oversubscribe -np 2 "$EOPT_MPI_BIN" train $DP --run-dir "$T/mpirun" >"$T/mpirun.log" 2>&1 ||
        fail "mpirun -np 2 failed"
    cmp "$T/srun/step_000000000010.h5" "$T/mpirun/step_000000000010.h5" >/dev/null 2>&1 ||
        /usr/bin/python3 "$ROOT/tests/mpi/compare.py" "$T/srun/step_000000000010.h5" "$T/mpirun/step_000000000010.h5" \
            --tol 0 || fail "srun's 2-rank run differs from mpirun's"
    echo "test-slurm: srun -n 2 --mpi=pmix ran the MPI build as one 2-rank run (the same bits as mpirun -np 2)"
fi
echo "test-slurm: ok (the arrays ended $((t1 - t0)), $((t2 - t0)) and $(($(date +%s) - t0)) s after the start)"
ok=1
