#!/bin/sh
# A real one-node Slurm on localhost for the tests: Debian's munged, slurmctld and slurmd, every
# file (munge key and socket, slurm.conf, state, spool, logs in log/, pids in run/) in one folder
# DIR. The daemons run in the foreground as background jobs of this script (no systemd needed).
#
#   cluster.sh start DIR   write DIR/slurm.conf, start munged, slurmctld, slurmd; wait (bounded) until
#                          `sinfo` shows the node idle, else stop them and print their logs
#   cluster.sh env DIR     print `export SLURM_CONF=...` (eval it: sbatch, squeue, sinfo read it)
#   cluster.sh stop DIR    stop the daemons started from DIR (by the pids in DIR/run); safe to repeat
#
# Runs as root with no systemd and no cgroups (a CI container), hence the choices in slurm.conf:
# - SlurmUser=root, SlurmdUser=root: no `slurm` account or privilege drop to set up.
# - ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: track a job's processes through their
#   parent pids, bind nothing. The cgroup plugins need a writable cgroup hierarchy (and, for v2,
#   systemd's delegation), which containers do not give; nothing then loads the cgroup plugin.
# - JobAcctGatherType=jobacct_gather/none, AccountingStorageType=accounting_storage/none: no
#   slurmdbd; job states come from squeue while the controller keeps them (MinJobAge).
# - SelectType=select/cons_tres with CR_Core: each array task holds its --cpus-per-task cores, so
#   on a 2-core node two 1-thread tasks run at once, as on a cluster's nodes.
# - NodeName=localhost (slurmd started with -N localhost) with the CPUs and RealMemory that
#   `slurmd -C` finds: the node registers whatever the machine's hostname is.
# - SchedulerParameters=sched_min_interval=0,batch_sched_delay=0: the next array tasks start as
#   soon as cores free up (the defaults wait up to 3 s between waves; 4 x `true` took 5 s, now 1.3 s).
# - MinJobAge=600: finished tasks stay in squeue with their state, which the test reads.
# - Ports picked free at start (two test runs, or a system Slurm, on one machine do not collide).
# - munged with its own key and socket in DIR (AuthInfo=socket=...), --force because DIR may sit
#   under a world-writable /tmp, which munged otherwise refuses.
set -eu
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: cluster.sh start|stop|env DIR" >&2; exit 2; }
WAIT_S=${EOPT_SLURM_WAIT_S:-30} # how long start waits for the node to come up idle

die() { echo "cluster.sh: $*" >&2; exit 1; }

# Prints two free TCP ports on 127.0.0.1 (the OS picks them; closed again at once).
free_ports() {
    python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))'
}

write_conf() {
    hw=$(slurmd -C | head -n 1) # NodeName=host CPUs=.. Boards=.. ... RealMemory=..
    cpus=$(printf '%s\n' "$hw" | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
    mem=$(printf '%s\n' "$hw" | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
    topo=$(printf '%s\n' "$hw" | grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*')
    [ -n "$cpus" ] && [ -n "$mem" ] || die "slurmd -C printed no CPUs/RealMemory: $hw"
    set -- $(free_ports)
    cat > "$dir/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a one-node test cluster, every path under $dir.
ClusterName=eopt-test
SlurmctldHost=localhost
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
MinJobAge=600
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus $topo RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

show_logs() {
    for f in "$dir"/log/*; do
        [ -f "$f" ] || continue
        echo "---- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}

# launch NAME PROGRAM ARGS...: runs the daemon in the background, its log (a daemon in the
# foreground logs to stderr) in log/NAME.log and its pid in run/NAME.
launch() {
    name=$1
    shift
    "$@" </dev/null >>"$dir/log/$name.log" 2>&1 &
    echo $! >"$dir/run/$name"
}

# Whether process $1 runs: a zombie does not (the daemons outlive this script, and a container's
# init may never reap them).
alive() {
    [ -r "/proc/$1/stat" ] && [ "$(cut -d ' ' -f 3 "/proc/$1/stat" 2>/dev/null)" != Z ]
}

stop_pidfile() {
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
    i=0
    while alive "$pid" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    alive "$pid" && kill -9 "$pid" 2>/dev/null
    rm -f "$1"
}

start() {
    for p in munged slurmctld slurmd sinfo python3; do
        command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] ||
            die "$p is missing (Debian: apt-get install munge slurmctld slurmd slurm-client; or make deps)"
    done
    export PATH="$PATH:/usr/sbin"
    mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
    chmod 755 "$dir" "$dir/munge" # munged wants its socket folder searchable by all; the key is 0600
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 2>/dev/null
    chmod 600 "$dir/munge/munge.key"
    write_conf
    export SLURM_CONF="$dir/slurm.conf"
    # In the foreground (-F, -D) as background jobs: their pids are known at once, so stop never
    # misses a daemon that has not written its own pid file yet.
    launch munged munged -F --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --seed-file="$dir/munge/munged.seed"
    i=0
    while [ ! -S "$dir/munge/munge.socket" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    [ -S "$dir/munge/munge.socket" ] || { show_logs; stop; die "munged did not start (no socket)"; }
    launch slurmctld slurmctld -D -c -f "$SLURM_CONF"
    launch slurmd slurmd -D -N localhost -f "$SLURM_CONF"
    t=0
    while [ $t -lt $((WAIT_S * 5)) ]; do
        state=$(sinfo -h -N -n localhost -o %t 2>/dev/null || true)
        [ "$state" = idle ] && { echo "cluster.sh: node localhost idle (SLURM_CONF=$SLURM_CONF)"; return 0; }
        for d in munged slurmctld slurmd; do
            alive "$(cat "$dir/run/$d")" || { show_logs; stop; die "$d exited at start; logs above"; }
        done
        sleep 0.2
        t=$((t + 1))
    done
    show_logs
    stop
    die "node localhost not idle after ${WAIT_S} s (sinfo state: '${state:-none}'); logs above"
}

stop() {
    # The node daemon first (it ends its running job steps), then the controller, then munged.
    stop_pidfile "$dir/run/slurmd"
    stop_pidfile "$dir/run/slurmctld"
    stop_pidfile "$dir/run/munged"
}

case $cmd in
start) start ;;
stop) stop ;;
env) echo "export SLURM_CONF='$dir/slurm.conf'" ;;
*) die "unknown command '$cmd' (start, stop or env)" ;;
esac
