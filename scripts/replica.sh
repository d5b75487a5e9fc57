#!/usr/bin/env bash
# A throwaway MariaDB replica of a throwaway primary, both made by scripts/testdb.sh (each in
# its own MONITOR_TESTDB_DIR), for tests of reading the binlog from a replica.
#
#   scripts/replica.sh start PRIMARY_DIR REPLICA_DIR [SERVER_ID]
#       starts the primary (or reuses it) and the replica, restarts the replica with
#       --server-id=SERVER_ID (default 2) and --log-slave-updates, points it at the primary
#       (CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos; START SLAVE) and waits until both
#       replication threads run. Prints `export MONITOR_TEST_PRIMARY_URL=...`,
#       MONITOR_TEST_PRIMARY_SOCKET, MONITOR_TEST_REPLICA_URL and MONITOR_TEST_REPLICA_SOCKET
#       lines, so: eval "$(scripts/replica.sh start ...)"
#       MONITOR_REPLICA_LOG_UPDATES=OFF leaves --log-slave-updates out (a replica the daemon
#       must refuse to read alarms from).
#   scripts/replica.sh restart REPLICA_DIR
#       stops the replica (SIGTERM) and starts it again with the same options; replication
#       resumes by GTID.
#   scripts/replica.sh stop DIR...
#       stops and removes each server (testdb.sh stop).
#
# Progress messages go to stderr. Never point this at a real server's data dir.
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

sql() {
  local dir="$1"
  shift
  mariadb --no-defaults -uroot --socket="$(cat "$dir/socket")" -N -B "$@"
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

# Restarts the server of `dir` with its own command line plus the given options (a later
# option wins over an earlier one of the same name).
respawn() {
  local dir="$1" pid i
  shift
  pid="$(cat "$dir/pid")"
  local argv=()
  mapfile -d '' argv <"/proc/$pid/cmdline"
  # The options given here replace those of the same name (testdb.sh sets --server-id=1).
  local base=()
  for a in "${argv[@]}"; do
    case "$a" in
    --log-slave-updates | --server-id=*) ;;
    *) base+=("$a") ;;
    esac
  done
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do
    running_pid "$pid" || break
    sleep 0.1
  done
  if running_pid "$pid"; then
    log "replica: mariadbd $pid did not stop within 30 s"
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
  log "replica: mariadbd in $dir did not answer within 30 s; error log:"
  tail -n 20 "$dir/error.log" >&2 || true
  exit 1
}

# Waits until both replication threads run; prints the replica status on failure.
wait_replicating() {
  local dir="$1" i status
  for ((i = 0; i < 300; i++)); do
    status="$(sql "$dir" --column-names -e 'SHOW SLAVE STATUS\G' 2>/dev/null || true)"
    if grep -q 'Slave_IO_Running: Yes' <<<"$status" && grep -q 'Slave_SQL_Running: Yes' <<<"$status"; then
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
  local extra=("--server-id=$server_id")
  if [ "${MONITOR_REPLICA_LOG_UPDATES:-ON}" != OFF ]; then
    extra+=(--log-slave-updates)
  fi
  respawn "$replica" "${extra[@]}"
  sql "$replica" -e "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(cat "$primary/port"), MASTER_USER='root', MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; START SLAVE"
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
    case "$a" in
    --log-slave-updates | --server-id=*) extra+=("$a") ;;
    esac
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
