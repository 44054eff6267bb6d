#!/usr/bin/env bash
# A private single-node Slurm cluster for the tests, from Debian's slurm-wlm and munge
# (scripts/setup.sh installs them). Everything lives under DIR: the munge key and socket, the
# configuration, the controller's state, the node's spool, pid and log files. Ports are chosen
# free, so two clusters, or a system one, do not clash.
#
#   tests/support/slurm_cluster.sh start DIR   # DIR: an absolute, short path (unix sockets)
#   export SLURM_CONF=DIR/slurm.conf            # what `start` prints last
#   tests/support/slurm_cluster.sh stop DIR    # cancels the jobs, stops the daemons
#
# See tests/support/SLURM.md for what the commands print and this cluster's quirks.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

START_TIMEOUT_S="${SLURM_CLUSTER_START_TIMEOUT_S:-30}"
STOP_TIMEOUT_S="${SLURM_CLUSTER_STOP_TIMEOUT_S:-15}"

die() { printf 'slurm_cluster: %s\n' "$*" >&2; exit 1; }

usage() { die "usage: $0 start|stop DIR (DIR an absolute path)"; }

[ $# -eq 2 ] || usage
cmd="$1"
dir="$2"
case "$dir" in /*) ;; *) usage ;; esac
dir="${dir%/}"

# A free TCP port on the loopback (the kernel picks it; bound and closed at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Whether process $1 runs. A zombie does not count: where PID 1 reaps no orphans (containers),
# an ended daemon stays a zombie.
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ] && [ "${stat%% *}" != X ]
}

pid_of() { [ -s "$1" ] && tr -dc '0-9' < "$1" || true; }

# Ends the process whose pid is in file $1 if it is a $2 (a stale file's pid may have been
# reused): TERM, a bounded wait, then KILL. Removes the file.
stop_pidfile() {
    local pid waited=0
    pid="$(pid_of "$1")"
    rm -f "$1"
    alive "$pid" || return 0
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && [ "$waited" -lt $((STOP_TIMEOUT_S * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
}

# The pids of the slurmstepd processes of this cluster (they hold DIR/slurmd.log open, their
# log) and of all their descendants: the jobs' processes.
stepd_trees() {
    local roots=() p fd log
    log="$(realpath -m "$dir/slurmd.log")"
    for p in /proc/[0-9]*; do
        [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
        for fd in "$p"/fd/*; do
            if [ "$(readlink "$fd" 2>/dev/null)" = "$log" ]; then
                roots+=("${p#/proc/}")
                break
            fi
        done
    done
    [ ${#roots[@]} -gt 0 ] || return 0
    ps -eo pid=,ppid= | awk -v roots="${roots[*]}" '
        { parent[$1] = $2 }
        END {
            n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1
            do { grew = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
            for (p in keep) print p
        }'
}

print_logs() {
    local f
    for f in "$dir/munged.log" "$dir/slurmctld.log" "$dir/slurmd.log" "$dir/slurmctld.out" "$dir/slurmd.out"; do
        [ -s "$f" ] || continue
        printf '==> %s <==\n' "$f" >&2
        tail -n 25 "$f" >&2
    done
}

start() {
    local c
    for c in sbatch squeue scontrol sinfo scancel slurmctld slurmd munged munge; do
        command -v "$c" >/dev/null || die "slurm-wlm and munge are not installed: run scripts/setup.sh"
    done
    local user host cpus mem ctld_port slurmd_port
    user="$(id -un)"
    host="$(hostname -s)"
    mkdir -p "$dir" "$dir/state" "$dir/spool"
    # A start that fails leaves nothing running.
    trap 'stop >/dev/null 2>&1 || true' EXIT
    chmod 0711 "$dir"   # munged wants its socket's folder searchable by all

    # munge: its own key, socket, pid, seed and log, all in DIR.
    if [ ! -s "$dir/munge.key" ]; then
        rm -f "$dir/munge.key"
        dd if=/dev/urandom of="$dir/munge.key" bs=1 count=1024 status=none
    fi
    chmod 0400 "$dir/munge.key"
    # --force: munged refuses otherwise to run as root, or with a key under /tmp.
    munged --force --socket="$dir/munge.socket" --key-file="$dir/munge.key" \
        --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed" \
        >"$dir/munged.out" 2>&1 || { cat "$dir/munged.out" >&2; print_logs; die "munged did not start"; }
    munge -n -S "$dir/munge.socket" | unmunge -S "$dir/munge.socket" >/dev/null 2>&1 \
        || { print_logs; die "munged does not answer on $dir/munge.socket"; }

    # The node as slurmd sees it.
    local probe
    probe="$(slurmd -C 2>/dev/null | head -n 1)"
    cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$probe")"
    mem="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")"
    [ -n "$cpus" ] && [ -n "$mem" ] || die "slurmd -C did not describe this node: $probe"
    local layout
    layout="$(grep -o 'Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' <<<"$probe" || true)"

    ctld_port="$(free_port)"
    slurmd_port="$(free_port)"
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port="$(free_port)"; done

    cat >"$dir/slurm.conf" <<EOF
# Written by tests/support/slurm_cluster.sh: a private single-node cluster under $dir.
ClusterName=gymnos
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
MinJobAge=3600
KillWait=5
InactiveLimit=0
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host CPUs=$cpus $layout RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF" >"$dir/slurmctld.out" 2>&1 \
        || { print_logs; die "slurmctld did not start"; }
    slurmd -f "$SLURM_CONF" -N "$host" >"$dir/slurmd.out" 2>&1 \
        || { print_logs; die "slurmd did not start"; }

    local deadline=$((SECONDS + START_TIMEOUT_S)) state=""
    while [ "$SECONDS" -lt "$deadline" ]; do
        state="$(sinfo -h -o %T 2>/dev/null || true)"
        [ "$state" != idle ] || break
        sleep 0.5
    done
    if [ "$state" != idle ]; then
        print_logs
        die "the node is not idle after ${START_TIMEOUT_S}s (sinfo: ${state:-no answer})"
    fi
    trap - EXIT
    printf 'export SLURM_CONF=%s\n' "$SLURM_CONF"
}

stop() {
    [ -d "$dir" ] || return 0
    export SLURM_CONF="$dir/slurm.conf"
    # Cancel every job while the controller still runs, so no job outlives the cluster.
    if alive "$(pid_of "$dir/slurmctld.pid")" && [ -f "$SLURM_CONF" ]; then
        local jobs deadline=$((SECONDS + STOP_TIMEOUT_S))
        jobs="$(timeout 10 squeue -h -o %A 2>/dev/null | sort -u || true)"
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            timeout 10 scancel $jobs 2>/dev/null || true
            while [ "$SECONDS" -lt "$deadline" ] && [ -n "$(timeout 10 squeue -h -o %A 2>/dev/null || true)" ]; do
                sleep 0.2
            done
        fi
    fi
    stop_pidfile "$dir/slurmd.pid" slurmd
    stop_pidfile "$dir/slurmctld.pid" slurmctld
    local left
    left="$(stepd_trees)"
    if [ -n "$left" ]; then
        # shellcheck disable=SC2086
        kill -KILL $left 2>/dev/null || true
    fi
    stop_pidfile "$dir/munged.pid" munged
    rm -f "$dir/munge.socket" "$dir/munge.socket.lock"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
