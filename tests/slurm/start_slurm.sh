#!/bin/bash
# A single-node SLURM for the tests (Debian bookworm, as root); idempotent.
# CPUs are declared as 8 (config_overrides) so 2-core machines fit 4-8 tasks.
set -euo pipefail
BASE=${SLURM_TEST_BASE:-/tmp/slurmtest}
export DEBIAN_FRONTEND=noninteractive
command -v slurmctld >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; }
mkdir -p "$BASE"/{state,spool,log,run} /run/munge
chown munge:munge /run/munge; chmod 755 /run/munge
[ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
H=$(hostname -s); MEM=$(free -m | awk '/^Mem:/{print int($2*0.9)}')
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=drlmpitest
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=pmi2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
KillOnBadExit=1
ReturnToService=2
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
KillWait=10
MinJobAge=300
NodeName=${H} NodeAddr=127.0.0.1 CPUs=8 RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${H} Default=YES MaxTime=INFINITE State=UP
CONF
[ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null || runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
[ -s "$BASE/run/slurmctld.pid" ] && kill -0 "$(cat "$BASE/run/slurmctld.pid")" 2>/dev/null || /usr/sbin/slurmctld -f /etc/slurm/slurm.conf
[ -s "$BASE/run/slurmd.pid" ] && kill -0 "$(cat "$BASE/run/slurmd.pid")" 2>/dev/null || /usr/sbin/slurmd -f /etc/slurm/slurm.conf
for i in $(seq 1 100); do sinfo -h -o %T 2>/dev/null | grep -q idle && exit 0; sleep 0.2; done
echo "slurm did not come up" >&2; exit 1
