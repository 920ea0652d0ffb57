#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (for tests/hpc).
# Installs Debian's slurm-wlm and munge when absent, writes a minimal slurm.conf for
# the local host (real CPU count and memory; no cgroups, no systemd), starts munged,
# slurmctld and slurmd, and waits until the node is idle. Safe to run twice.
# Needs root (apt-get, daemons). Set SLURM_SETUP_SKIP=1 to do nothing.
set -euo pipefail
[ "${SLURM_SETUP_SKIP:-0}" = 1 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# 1. Packages
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt="$SUDO apt-get -o DPkg::Lock::Timeout=600 -y -qq"  # wait for other apt runs
    $apt update
    $apt install --no-install-recommends slurm-wlm munge >/dev/null
fi

# 2. munge key and daemon
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO mkdir -p /etc/munge
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    $SUDO chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    $SUDO chmod 400 /etc/munge/munge.key
fi
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
if ! munge -n </dev/null >/dev/null 2>&1; then  # no working munged yet
    $SUDO runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 10); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 1; done
fi

# 3. slurm.conf for this host (written only once; delete it to regenerate)
CONF_DIR=/etc/slurm
HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))  # leave room for the OS
$SUDO mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
if [ ! -s "$CONF_DIR/slurm.conf" ] || ! grep -q "^NodeName=$HOST " "$CONF_DIR/slurm.conf"; then
    $SUDO tee "$CONF_DIR/slurm.conf" >/dev/null <<CONF
# Written by .ci/setup_slurm.sh: one node, localhost, no cgroups.
ClusterName=ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# sacct without slurmdbd: a text job-completion log plus the text accounting store.
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
DefMemPerCPU=1024
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
fi

# 4. Daemons (daemonised; logs in /var/log/slurm)
fail() { echo "setup_slurm.sh: $1; last log lines:" >&2; tail -n 15 /var/log/slurm/*.log >&2; exit 1; }
pgrep -x slurmctld >/dev/null || $SUDO slurmctld || fail "slurmctld did not start"
pgrep -x slurmd >/dev/null || $SUDO slurmd || fail "slurmd did not start"

# 5. Wait (at most 60 s) for the node to be idle; resume it if it came up down/drained.
for _ in $(seq 60); do
    state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc) echo "SLURM ready: node $HOST ($CPUS CPUs, $MEM_MB MB) is $state"; exit 0 ;;
        down*|drain*|drng*) $SUDO scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
fail "node $HOST did not become idle (state: ${state:-unknown})"
