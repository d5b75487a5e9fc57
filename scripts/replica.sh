#!/usr/bin/env bash
# A throwaway replica of a throwaway primary, both made by scripts/testdb.sh (each in its own
# MONITOR_TESTDB_DIR) of the flavour MONITOR_TESTDB_FLAVOR names (mariadb, the default, or
# mysql: Oracle MySQL), for tests of reading the binlog from a replica.
#
#   scripts/replica.sh start PRIMARY_DIR REPLICA_DIR [SERVER_ID]
#       starts the primary (or reuses it) and the replica, restarts the replica with
#       --server-id=SERVER_ID (default 2) and the option that makes it log what it replicates,
#       points it at the primary by GTID and waits until both replication threads run:
#         MariaDB: --log-slave-updates; CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos;
#                  START SLAVE; SHOW SLAVE STATUS
#         MySQL:   --log-replica-updates=ON; CHANGE REPLICATION SOURCE TO ...
#                  SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1; START REPLICA;
#                  SHOW REPLICA STATUS
#       On each server it makes sure of root@127.0.0.1 without a password (MySQL's
#       --initialize-insecure only makes root@localhost, the socket), kept out of the binlog
#       like testdb.sh's test account, so replicas hold no transaction of their own.
#       Prints `export MONITOR_TEST_PRIMARY_URL=...`, MONITOR_TEST_PRIMARY_SOCKET,
#       MONITOR_TEST_REPLICA_URL and MONITOR_TEST_REPLICA_SOCKET lines, so:
#         eval "$(scripts/replica.sh start ...)"
#       MONITOR_REPLICA_LOG_UPDATES=OFF starts it not logging what it replicates
#       (--log-slave-updates left out; MySQL: --log-replica-updates=OFF): a replica the daemon
#       must refuse to read alarms from.
#   scripts/replica.sh restart REPLICA_DIR
#       stops the replica (SIGTERM) and starts it again with the same options; replication
#       resumes by GTID.
#   scripts/replica.sh stop DIR...
#       stops and removes each server (testdb.sh stop).
#
# The flavour of a running server is the one testdb.sh recorded in its dir. Progress messages
# go to stderr. Never point this at a real server's data dir.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

usage() {
  log "usage: $0 start PRIMARY_DIR REPLICA_DIR [SERVER_ID] | restart REPLICA_DIR | stop DIR..."
  exit 2
}

testdb() {
  local dir="$1" action="$2"
  MONITOR_TESTDB_DIR="$dir" bash "$script_dir/testdb.sh" "$action"
}

# The flavour of the server of `dir` (as testdb.sh recorded it), else the one asked for.
flavor_of() {
  cat "$1/flavor" 2>/dev/null || echo "${MONITOR_TESTDB_FLAVOR:-mariadb}"
}

# The admin client of the server of `dir`: root over its socket.
sql() {
  local dir="$1" sock
  shift
  sock="$(cat "$dir/socket")"
  if [ "$(flavor_of "$dir")" = mysql ]; then
    "$script_dir/mysql-sid.sh" run mysql --no-defaults -uroot --socket="$sock" -N -B "$@"
  else
    mariadb --no-defaults -uroot --socket="$sock" -N -B "$@"
  fi
}

# The options respawn replaces (testdb.sh sets --server-id=1 on MariaDB's command line,
# server-id = 1 in MySQL's my.cnf).
replica_option() {
  case "$1" in
  --server-id=* | --log-slave-updates | --log-replica-updates=* | --skip-log-replica-updates) return 0 ;;
  *) return 1 ;;
  esac
}

# On MySQL, root@127.0.0.1 without a password (root@localhost only matches the socket), out
# of the binlog: the tests and the replication threads log in over TCP. MariaDB has it.
root_over_tcp() {
  local dir="$1"
  [ "$(flavor_of "$dir")" = mysql ] || return 0
  sql "$dir" -e "SET SESSION sql_log_bin = 0;
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
}

# True while pid is a running (not zombie) process.
running_pid() {
  local pid="$1" stat
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  case "$stat" in
  *") Z "*) return 1 ;;
  *) return 0 ;;
  esac
}

# On MySQL, the replica must have a server_uuid of its own (testdb.sh copies a data dir
# without auto.cnf) and no transaction of its own (else its GTID set is not a subset of another
# replica's, and a daemon moved between them cannot resume by GTID).
own_identity() {
  local primary="$1" replica="$2" p r gtids
  p="$(sql "$primary" -e 'SELECT @@GLOBAL.server_uuid')"
  r="$(sql "$replica" -e 'SELECT @@GLOBAL.server_uuid')"
  gtids="$(sql "$replica" -e 'SELECT @@GLOBAL.gtid_executed')"
  if [ "$p" = "$r" ]; then
    log "replica: $replica has the primary's server_uuid $p (a copied auto.cnf?); stop both and start again"
    exit 1
  fi
  if [[ "$gtids" == *"$r"* ]]; then
    log "replica: $replica has transactions of its own (gtid_executed $gtids); start it from a fresh dir"
    exit 1
  fi
}

# Restarts the server of `dir` with its own command line plus the given options (a later
# option wins over an earlier one of the same name).
respawn() {
  local dir="$1" pid i
  shift
  pid="$(cat "$dir/pid")"
  local argv=()
  mapfile -d '' argv <"/proc/$pid/cmdline"
  # The options given here replace those of the same name.
  local base=()
  for a in "${argv[@]}"; do
    replica_option "$a" || base+=("$a")
  done
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do
    running_pid "$pid" || break
    sleep 0.1
  done
  if running_pid "$pid"; then
    log "replica: server $pid ($dir) did not stop within 30 s"
    exit 1
  fi
  rm -f "$(cat "$dir/socket")"
  setsid nohup "${base[@]}" "$@" </dev/null >>"$dir/stdout.log" 2>&1 9>&- &
  echo "$!" >"$dir/pid"
  for ((i = 0; i < 300; i++)); do
    if sql "$dir" -e 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  log "replica: the server in $dir did not answer within 30 s; error log:"
  tail -n 20 "$dir/error.log" >&2 || true
  exit 1
}

# Waits until both replication threads run; prints the replica status on failure.
wait_replicating() {
  local dir="$1" i status show='SHOW SLAVE STATUS' thread=Slave
  if [ "$(flavor_of "$dir")" = mysql ]; then
    show='SHOW REPLICA STATUS'
    thread=Replica
  fi
  for ((i = 0; i < 300; i++)); do
    status="$(sql "$dir" --column-names --vertical -e "$show" 2>/dev/null || true)"
    if grep -q "${thread}_IO_Running: Yes" <<<"$status" && grep -q "${thread}_SQL_Running: Yes" <<<"$status"; then
      return 0
    fi
    sleep 0.1
  done
  log "replica: replication did not start within 30 s:"
  log "$status"
  exit 1
}

print_env() {
  local primary="$1" replica="$2"
  printf "export MONITOR_TEST_PRIMARY_URL='mysql://root@127.0.0.1:%s'\n" "$(cat "$primary/port")"
  printf "export MONITOR_TEST_PRIMARY_SOCKET='%s'\n" "$(cat "$primary/socket")"
  printf "export MONITOR_TEST_REPLICA_URL='mysql://root@127.0.0.1:%s'\n" "$(cat "$replica/port")"
  printf "export MONITOR_TEST_REPLICA_SOCKET='%s'\n" "$(cat "$replica/socket")"
}

start() {
  local primary="$1" replica="$2" server_id="${3:-2}"
  testdb "$primary" start >/dev/null
  testdb "$replica" start >/dev/null
  local flavor port log_updates="${MONITOR_REPLICA_LOG_UPDATES:-ON}"
  flavor="$(flavor_of "$replica")"
  if [ "$(flavor_of "$primary")" != "$flavor" ]; then
    log "replica: $primary runs $(flavor_of "$primary"), $replica runs $flavor; stop one first"
    exit 1
  fi
  port="$(cat "$primary/port")"
  local extra=("--server-id=$server_id")
  if [ "$flavor" = mysql ]; then
    # ON by default since 8.0; named either way, so a restart keeps it.
    if [ "$log_updates" = OFF ]; then
      extra+=(--log-replica-updates=OFF)
    else
      extra+=(--log-replica-updates=ON)
    fi
  elif [ "$log_updates" != OFF ]; then
    extra+=(--log-slave-updates)
  fi
  respawn "$replica" "${extra[@]}"
  root_over_tcp "$primary"
  root_over_tcp "$replica"
  if [ "$flavor" = mysql ]; then
    own_identity "$primary" "$replica"
    # caching_sha2_password over plain TCP needs the source's RSA key (or TLS). A heartbeat
    # every second ends the source's dump thread soon after the replica is gone (else the
    # source's shutdown waits about 9 s for it).
    sql "$replica" -e "STOP REPLICA; CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=$port, SOURCE_USER='root', SOURCE_PASSWORD='', SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1; START REPLICA"
  else
    sql "$replica" -e "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$port, MASTER_USER='root', MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; START SLAVE"
  fi
  wait_replicating "$replica"
  log "replica: $replica (server_id $server_id, port $(cat "$replica/port")) replicates $primary (port $(cat "$primary/port"))"
  print_env "$primary" "$replica"
}

restart() {
  local replica="$1" pid
  pid="$(cat "$replica/pid")"
  local extra=()
  mapfile -d '' argv <"/proc/$pid/cmdline"
  for a in "${argv[@]}"; do
    replica_option "$a" && extra+=("$a")
  done
  respawn "$replica" "${extra[@]}"
  wait_replicating "$replica"
  log "replica: $replica restarted"
}

cmd="${1:-}"
case "$cmd" in
start)
  [ $# -ge 3 ] || usage
  start "$2" "$3" "${4:-2}"
  ;;
restart)
  [ $# -eq 2 ] || usage
  restart "$2"
  ;;
stop)
  [ $# -ge 2 ] || usage
  shift
  for dir in "$@"; do
    testdb "$dir" stop
  done
  ;;
*) usage ;;
esac
