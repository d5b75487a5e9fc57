#!/usr/bin/env bash
# Demo: the daemon against a throwaway MariaDB and three demo processes.
#
#   scripts/demo.sh          (or `make demo`) runs in the foreground until Ctrl-C
#   scripts/demo.sh stop     cleans up what a killed demo left behind
#
# It installs MariaDB when missing (apt-get), builds the release binary,
# starts a throwaway server (state in target/demodb), loads sql/setup.sql
# (schema and the least-privilege `monitor` account with a random password;
# the sample rows are skipped so no real service such as sshd is listed),
# adds demo_worker1..3 (copies of sleep, started detached), writes
# target/demo/config.ini (mode 600) and runs
#   monitor_service -c target/demo/config.ini
# On exit it stops the demo processes and the server.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"
cd "$repo_dir"

demo_dir="$repo_dir/target/demo"
export MONITOR_TESTDB_DIR="$repo_dir/target/demodb"
workers=(demo_worker1 demo_worker2 demo_worker3)
bin="${CARGO_TARGET_DIR:-$repo_dir/target}/release/monitor_service"

# PIDs of the processes running one of our copied binaries (exact path of the
# executable, so nothing else on the host is touched).
demo_pids() {
  local p exe w
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    for w in "${workers[@]}"; do
      if [ "$exe" = "$demo_dir/bin/$w" ]; then
        echo "${p#/proc/}"
      fi
    done
  done
}

stop_demo() {
  local pids
  pids="$(demo_pids)"
  if [ -n "$pids" ]; then
    log "demo: stopping demo processes: $(echo "$pids" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
  fi
  "$script_dir/testdb.sh" stop || true
}

if [ "${1:-}" = stop ]; then
  stop_demo
  exit 0
elif [ $# -gt 0 ]; then
  log "usage: $0 [stop]"
  exit 2
fi

ensure_mariadb

ensure_build_deps
log "demo: cargo build --release"
cargo build --release

daemon_pid=""
cleanup() {
  trap - INT TERM
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  stop_demo
}
trap cleanup EXIT

# A fresh server each time (a previous demo's leftovers are removed).
stop_demo
eval "$("$script_dir/testdb.sh" start)"
port="${MONITOR_TEST_DB_URL##*:}"
sock="$MONITOR_TEST_DB_SOCKET"
admin=(mariadb --no-defaults -uroot --socket="$sock")

password="$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24 || true)"
[ "${#password}" -eq 24 ] || {
  log "demo: cannot make a random password"
  exit 1
}

log "demo: loading sql/setup.sql (schema and account, no sample rows)"
# The password goes through stdin, never argv.
{
  awk '/^-- @@end-of-schema/ { skip = 1 } /^-- @@end-of-samples/ { skip = 0 } !skip' \
    sql/setup.sql | sed "s/'change-me'/'$password'/"
  # The daemon connects over TCP to 127.0.0.1 and the server runs with
  # skip-name-resolve: that is 'monitor'@'127.0.0.1', not @'localhost'.
  cat <<SQL
CREATE USER IF NOT EXISTS 'monitor'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT SELECT ON v_process_monitor.PROCESE TO 'monitor'@'127.0.0.1';
GRANT SELECT, UPDATE ON v_process_monitor.STATUS_PROCESS TO 'monitor'@'127.0.0.1';
GRANT SELECT, INSERT ON v_process_monitor.RESTART_HISTORY TO 'monitor'@'127.0.0.1';
GRANT SELECT, INSERT, UPDATE ON v_process_monitor.MONITOR_HOSTS TO 'monitor'@'127.0.0.1';
GRANT REPLICATION SLAVE, REPLICATION CLIENT /*M!100502 , BINLOG MONITOR */ ON *.* TO 'monitor'@'127.0.0.1';
SQL
  echo "USE v_process_monitor;"
  i=1
  for w in "${workers[@]}"; do
    echo "INSERT IGNORE INTO PROCESE (process_id, process_name) VALUES ($i, '$w');"
    echo "INSERT IGNORE INTO STATUS_PROCESS (process_id, alarma) VALUES ($i, 0);"
    i=$((i + 1))
  done
} | "${admin[@]}"

log "demo: starting ${workers[*]}"
mkdir -p "$demo_dir/bin" "$demo_dir/state"
for w in "${workers[@]}"; do
  cp /bin/sleep "$demo_dir/bin/$w"
  setsid -f "$demo_dir/bin/$w" infinity </dev/null >/dev/null 2>&1
done

config="$demo_dir/config.ini"
(
  umask 077
  rm -f "$config"
  cat >"$config" <<INI
; monitor_service demo configuration (written by scripts/demo.sh)
[database]
host = 127.0.0.1
port = $port
; socket = $sock
user = monitor
password = $password
database = v_process_monitor
connect_timeout = 5

[monitor]
check_interval = 30
binlog = auto
; replica id for the binlog stream; the demo server itself is server_id 1
server_id = 4242
state_dir = $demo_dir/state

[logging]
log_file = $demo_dir/monitor_service.log
level = info

[process.default]
restart_strategy = process
restart_delay = 1
INI
  for w in "${workers[@]}"; do
    printf '\n[process.%s]\nstart_command = %s infinity\n' "$w" "$demo_dir/bin/$w" >>"$config"
  done
)
chmod 600 "$config"

cat >&2 <<EOF

demo: ready. Server 127.0.0.1:$port (socket $sock), config $config,
      log $demo_dir/monitor_service.log. Demo processes:
$(i=1; for w in "${workers[@]}"; do echo "        process_id $i = $w"; i=$((i + 1)); done)

Raise an alarm from another terminal (the daemon restarts the process and
clears it; watch with \`pgrep -a demo_worker\`):
  ${admin[*]} v_process_monitor \\
    -e "UPDATE STATUS_PROCESS SET alarma=1 WHERE process_id=1"
Look at the table:
  ${admin[*]} v_process_monitor -e "SELECT * FROM STATUS_PROCESS"
(scripts/test_alarm.sh will offer the same.) Ctrl-C stops everything.

EOF

if [ ! -x "$bin" ]; then
  log "demo: $bin not found after the build"
  exit 1
fi
log "demo: $bin -c $config"
# Not `exec`: the trap must survive to stop the demo processes and the server.
# Background + wait, so that SIGINT/SIGTERM reach this script at once and are
# forwarded to the daemon (which stops gracefully on SIGTERM).
"$bin" -c "$config" &
daemon_pid=$!
forward() {
  kill -TERM "$daemon_pid" 2>/dev/null || true
}
trap forward INT TERM
rc=0
while :; do
  set +e
  wait "$daemon_pid"
  rc=$?
  set -e
  # wait returns > 128 when a trapped signal interrupted it; keep waiting
  # until the daemon has really exited.
  kill -0 "$daemon_pid" 2>/dev/null || break
done
daemon_pid=""
log "demo: monitor_service exited with status $rc"
exit "$rc"
