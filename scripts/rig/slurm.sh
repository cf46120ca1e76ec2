# Slurm (slurmctld + slurmd + slurmdbd on MariaDB, munge auth) and sshd on 127.0.0.1, idempotently.
#
# Sourced by scripts/services, which defines say, port_open, wait_port, apt_install, ROOT and RIG_DIR.
#
#   sshd_up       sshd on 127.0.0.1:$GENIUS_SSH_PORT (2222), root login with the key $RIG_DIR/ssh/id_ed25519
#   slurm_up      one-node cluster "local" (node = this host; partitions debug (default) and short with
#                 MaxTime=5), accounting (sacct) through slurmdbd into the MariaDB database slurm_acct_db;
#                 munge auth plus auth/jwt with the key $SLURM_JWT_KEY (for slurmrestd, scripts/rig/slurmrestd.sh);
#                 job credentials live 30 s (cred_expire), so a requeued job may start again after 30 s, not 120
#   sshd_status, slurm_status   print "up    ..." / "down  ..." lines
#
# Daemons already running are left alone; slurm.conf, cgroup.conf and slurmdbd.conf are rewritten (and
# their daemons restarted) only when their content changes. The daemons fork into the background.

SSH_PORT=${GENIUS_SSH_PORT:-2222}
SSH_KEY=$RIG_DIR/ssh/id_ed25519
SLURM_CLUSTER=local
SLURM_JWT_KEY=/etc/slurm/jwt_hs256.key
SLURM_DB=slurm_acct_db
SLURM_DB_USER=slurm
SLURM_DB_PASS=genius-slurmdbd
SLURMCTLD_PORT=6817
SLURMD_PORT=6818
SLURMDBD_PORT=6819
MARIADB_PORT=3306

# Is something listening on 127.0.0.1:PORT? Asked of the kernel (ss), not by connecting: Slurm daemons
# log an error for every connection that sends nothing, sshd too.
listening() {
  if command -v ss >/dev/null; then [ -n "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; else port_open "$1"; fi
}

ssh_rig() { # command... : run a command as root@127.0.0.1 through the rig's sshd
  ssh -p "$SSH_PORT" -i "$SSH_KEY" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o LogLevel=ERROR root@127.0.0.1 "$@"
}

sshd_up() {
  [ -x /usr/sbin/sshd ] || apt_install openssh-server
  mkdir -p "$RIG_DIR/ssh" /root/.ssh
  chmod 700 "$RIG_DIR/ssh" /root/.ssh
  [ -f "$SSH_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C genius-rig -f "$SSH_KEY"
  local pub
  pub=$(cat "$SSH_KEY.pub")
  touch /root/.ssh/authorized_keys
  if ! grep -qxF "$pub" /root/.ssh/authorized_keys; then
    # One rig key at a time: drop the key of an earlier (deleted) rig dir, keep everything else.
    grep -v ' genius-rig$' /root/.ssh/authorized_keys >/root/.ssh/authorized_keys.new || true
    printf '%s\n' "$pub" >>/root/.ssh/authorized_keys.new
    mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
  fi
  chmod 600 /root/.ssh/authorized_keys
  if ! listening "$SSH_PORT"; then
    ssh-keygen -A >/dev/null
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    say "starting sshd on 127.0.0.1:$SSH_PORT"
    # sshd daemonizes itself; -E puts its log in the rig dir.
    /usr/sbin/sshd -p "$SSH_PORT" -o ListenAddress=127.0.0.1 -o PidFile="$RIG_DIR/sshd.pid" \
      -E "$RIG_DIR/sshd.log"
    wait_port "$SSH_PORT" sshd 20
  fi
  ssh_rig true || { say "ssh root@127.0.0.1 -p $SSH_PORT -i $SSH_KEY fails (log: $RIG_DIR/sshd.log)"; return 1; }
}

sshd_status() {
  if listening "$SSH_PORT"; then echo "up    sshd (127.0.0.1:$SSH_PORT, root with $SSH_KEY)"
  else echo "down  sshd (127.0.0.1:$SSH_PORT)"; fi
}

munge_up() {
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
  say "starting munged"
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    chown munge: /etc/munge
    chmod 700 /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge: /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  su -s /bin/sh munge -c /usr/sbin/munged # daemonizes itself
  for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  say "munged does not answer (log: /var/log/munge/munged.log)"; return 1
}

mariadb_up() {
  listening "$MARIADB_PORT" && return 0
  [ -x /usr/sbin/mariadbd ] || apt_install mariadb-server
  say "starting MariaDB"
  mkdir -p /run/mysqld
  chown mysql /run/mysqld
  nohup setsid /usr/sbin/mariadbd --user=mysql >"$RIG_DIR/mariadb.log" 2>&1 </dev/null &
  wait_port "$MARIADB_PORT" MariaDB 60
}

# Write $2 to file $1 only when the content differs; succeeds when the file changed.
_write_if_changed() {
  [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] && return 1
  printf '%s\n' "$2" >"$1"
}

# Memory limits: with a usable cgroup v1 memory controller, task/cgroup ends a job over its --mem as
# OUT_OF_MEMORY, like a real cluster. Otherwise task/none, and the 1 s accounting poll kills steps
# over their --mem (JobAcctGatherParams=OverMemoryKill; the job ends FAILED with ExitCode 0:9).
_memcg_usable() {
  local probe=/sys/fs/cgroup/memory/genius-rig-probe
  [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ] && mkdir -p "$probe" 2>/dev/null && rmdir "$probe"
}

_cgroup_conf() {
  cat <<EOF
# Written by scripts/rig/slurm.sh. Edits are overwritten.
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainDevices=no
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
EOF
}

_slurm_conf() { # task plugin: task/cgroup or task/none
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  cat <<EOF
# Written by scripts/rig/slurm.sh: a one-node test cluster on 127.0.0.1. Edits are overwritten.
ClusterName=$SLURM_CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=30
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$SLURM_JWT_KEY
CredType=cred/munge
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=$1
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
# Memory is a consumable resource, so --mem is accounted (and enforced, see TaskPlugin).
SelectTypeParameters=CR_Core_Memory
# The node declares 32000 MB whatever the machine has (config_overrides, a test-only setting, keeps
# it from being drained for it), and a job without --mem gets 512 MB: ~60 small jobs fit at once.
SlurmdParameters=config_overrides
DefMemPerNode=512
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
EOF
  if [ "$1" = task/none ]; then echo "JobAcctGatherParams=OverMemoryKill"; fi
  cat <<EOF
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$SLURMDBD_PORT
JobCompType=jobcomp/none
MailProg=/bin/true
MinJobAge=300
# A job asking more than its partition allows (e.g. --time over MaxTime) is refused at sbatch, not
# left pending forever (PartitionTimeLimit).
EnforcePartLimits=ALL
# A job past its --time is signalled at slurmctld's next time-limit check (every 30 s) and killed 5 s
# later (defaults: KillWait=30).
KillWait=5
OverTimeLimit=0
# Cores are shared: up to 32 jobs per core at once.
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=32000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE OverSubscribe=FORCE:32 State=UP
PartitionName=short Nodes=$host MaxTime=5 OverSubscribe=FORCE:32 State=UP
EOF
}

_slurmdbd_conf() {
  cat <<EOF
# Written by scripts/rig/slurm.sh. Edits are overwritten.
AuthType=auth/munge
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$SLURM_JWT_KEY
DbdHost=$(hostname -s)
DbdAddr=127.0.0.1
DbdPort=$SLURMDBD_PORT
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MARIADB_PORT
StorageUser=$SLURM_DB_USER
StoragePass=$SLURM_DB_PASS
StorageLoc=$SLURM_DB
EOF
}

# Stop a Slurm daemon by its pid file and wait until its port is closed.
_slurm_stop() { # name port
  local pid
  pid=$(cat "/run/$1.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  for _ in $(seq 1 300); do listening "$2" || return 0; sleep 0.1; done
  say "$1 did not stop"; return 1
}

# Start a daemonizing Slurm daemon unless its port is taken; wait until it listens.
_slurm_start() { # name port
  listening "$2" && return 0
  say "starting $1"
  "/usr/sbin/$1"
  for _ in $(seq 1 600); do listening "$2" && return 0; sleep 0.1; done
  say "$1 did not come up on port $2 (log: /var/log/slurm/$1.log)"; return 1
}

_slurm_node_state() { sinfo -h -N -n "$(hostname -s)" -o %T 2>/dev/null | sed -n 1p; }

slurm_up() {
  local pkgs=() p
  for p in slurmctld slurmd slurm-client slurmdbd slurm-wlm-jwt-plugin munge; do dpkg -s "$p" >/dev/null 2>&1 || pkgs+=("$p"); done
  listening "$MARIADB_PORT" || [ -x /usr/sbin/mariadbd ] || pkgs+=(mariadb-server)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"

  munge_up
  mariadb_up
  mysql -uroot --protocol=socket -e "
    CREATE DATABASE IF NOT EXISTS $SLURM_DB;
    CREATE USER IF NOT EXISTS '$SLURM_DB_USER'@'localhost' IDENTIFIED BY '$SLURM_DB_PASS';
    CREATE USER IF NOT EXISTS '$SLURM_DB_USER'@'127.0.0.1' IDENTIFIED BY '$SLURM_DB_PASS';
    GRANT ALL ON $SLURM_DB.* TO '$SLURM_DB_USER'@'localhost';
    GRANT ALL ON $SLURM_DB.* TO '$SLURM_DB_USER'@'127.0.0.1';"

  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  chown slurm: /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  local task=task/none dbd_changed=0 conf_changed=0
  if [ ! -s "$SLURM_JWT_KEY" ]; then # read by slurmctld and slurmdbd at start only: a new key restarts both
    (umask 077 && head -c 32 /dev/urandom >"$SLURM_JWT_KEY")
    conf_changed=1 dbd_changed=1
  fi
  chown slurm: "$SLURM_JWT_KEY"
  chmod 600 "$SLURM_JWT_KEY"
  if _memcg_usable; then
    task=task/cgroup
    if _write_if_changed /etc/slurm/cgroup.conf "$(_cgroup_conf)"; then conf_changed=1; fi
  fi
  if _write_if_changed /etc/slurm/slurm.conf "$(_slurm_conf "$task")"; then conf_changed=1; fi
  chmod 644 /etc/slurm/slurm.conf
  if _write_if_changed /etc/slurm/slurmdbd.conf "$(_slurmdbd_conf)"; then dbd_changed=1; fi
  chown slurm: /etc/slurm/slurmdbd.conf
  chmod 600 /etc/slurm/slurmdbd.conf

  if [ "$conf_changed" = 1 ] && { listening "$SLURMCTLD_PORT" || listening "$SLURMD_PORT"; }; then
    say "slurm.conf changed: restarting slurmctld and slurmd"
    _slurm_stop slurmd "$SLURMD_PORT"
    _slurm_stop slurmctld "$SLURMCTLD_PORT"
  fi
  if [ "$dbd_changed" = 1 ] && listening "$SLURMDBD_PORT"; then
    say "slurmdbd.conf changed: restarting slurmdbd"
    _slurm_stop slurmdbd "$SLURMDBD_PORT"
  fi

  _slurm_start slurmdbd "$SLURMDBD_PORT"
  # The cluster must be known to slurmdbd before slurmctld registers with it.
  if [ "$(sacctmgr -n -P list cluster "$SLURM_CLUSTER" format=cluster 2>/dev/null)" != "$SLURM_CLUSTER" ]; then
    sacctmgr -i add cluster "$SLURM_CLUSTER" >/dev/null
  fi
  _slurm_start slurmctld "$SLURMCTLD_PORT"
  _slurm_start slurmd "$SLURMD_PORT"

  local state="" i
  for i in $(seq 1 120); do
    state=$(_slurm_node_state)
    case "$state" in
      idle|mixed|allocated|completing) break ;;
      down*|drain*|fail*)
        if [ "$i" -gt 4 ]; then scontrol update nodename="$(hostname -s)" state=resume 2>/dev/null || true; fi ;;
    esac
    sleep 0.5
  done
  case "$state" in
    idle|mixed|allocated|completing) ;;
    *) say "Slurm node $(hostname -s) is '$state', not idle (logs in /var/log/slurm)"; return 1 ;;
  esac

  # Proof: a job runs and reaches accounting (sacct lags the end of a job by a moment).
  local job
  job=$(sbatch --parsable --job-name=rig-probe --chdir=/tmp --output=/dev/null --wrap true) \
    || { say "sbatch fails (logs in /var/log/slurm)"; return 1; }
  job=${job%%;*}
  for _ in $(seq 1 150); do
    [ "$(sacct -n -X -P -j "$job" -o State 2>/dev/null)" = COMPLETED ] && return 0
    sleep 0.2
  done
  say "probe job $job does not show COMPLETED in sacct (logs in /var/log/slurm)"; return 1
}

slurm_status() {
  local d name port missing=()
  for d in "slurmctld $SLURMCTLD_PORT" "slurmd $SLURMD_PORT" "slurmdbd $SLURMDBD_PORT"; do
    name=${d% *}; port=${d#* }
    listening "$port" || missing+=("$name")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "up    Slurm (cluster $SLURM_CLUSTER, node $(hostname -s) $(_slurm_node_state), slurmctld 127.0.0.1:$SLURMCTLD_PORT)"
  else
    echo "down  Slurm (not running: ${missing[*]})"
  fi
}
