#!/usr/bin/env bash
# A throwaway MariaDB with the binary log on (ROW, FULL), for tests and demos.
# No systemd, no docker: a private data dir and a free port on 127.0.0.1.
#
#   scripts/testdb.sh start    start it (or reuse the running one); prints
#                              `export MONITOR_TEST_DB_URL=...` lines, so:
#                                eval "$(scripts/testdb.sh start)"
#   scripts/testdb.sh env      print the same lines for the running server
#   scripts/testdb.sh status   say whether it runs (exit 0) or not (exit 1)
#   scripts/testdb.sh stop     shut it down and delete its state dir
#
# State dir: $MONITOR_TESTDB_DIR, default <repo>/target/testdb (data dir,
# socket, pid, port, error log). Progress messages go to stderr.
# The server accepts root without a password on its socket and on
# 127.0.0.1 only; never point this at a real data dir.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

state_dir="${MONITOR_TESTDB_DIR:-$repo_dir/target/testdb}"
marker="$state_dir/.monitor-testdb"
start_timeout=30
stop_timeout=15

usage() {
  log "usage: $0 start|stop|env|status"
  exit 2
}

mariadbd_bin() {
  if command -v mariadbd >/dev/null 2>&1; then
    command -v mariadbd
  else
    echo /usr/sbin/mariadbd
  fi
}

# Socket paths are limited to 107 bytes; fall back to a short temp dir.
socket_path() {
  if [ -f "$state_dir/socket" ]; then
    cat "$state_dir/socket"
    return
  fi
  local sock="$state_dir/mysqld.sock"
  if [ "${#sock}" -gt 100 ]; then
    sock="$(mktemp -d /tmp/mstdb.XXXXXX)/mysqld.sock"
  fi
  echo "$sock"
}

recorded_pid() {
  [ -f "$state_dir/pid" ] && cat "$state_dir/pid" 2>/dev/null || true
}

# True when pid is a live (not zombie) mariadbd: a recycled pid is not ours.
pid_alive() {
  local pid="$1" stat
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/stat" ] || return 0
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  case "$stat" in
  *"(mariadbd) "[!Z]*) return 0 ;;
  # A zombie leader whose other threads still run is still shutting down.
  *"(mariadbd) Z"*)
    local tasks=("/proc/$pid/task/"*)
    [ "${#tasks[@]}" -gt 1 ]
    ;;
  *) return 1 ;;
  esac
}

answers() {
  local sock="$1"
  mariadb --no-defaults -uroot --socket="$sock" --connect-timeout=2 \
    -e 'select 1' >/dev/null 2>&1
}

# True when the recorded server is alive and answers.
running() {
  [ -f "$marker" ] && [ -f "$state_dir/port" ] && [ -f "$state_dir/socket" ] || return 1
  pid_alive "$(recorded_pid)" || return 1
  answers "$(cat "$state_dir/socket")"
}

print_env() {
  local port sock
  port="$(cat "$state_dir/port")"
  sock="$(cat "$state_dir/socket")"
  printf "export MONITOR_TEST_DB_URL='mysql://root@127.0.0.1:%s'\n" "$port"
  printf "export MONITOR_TEST_DB_SOCKET='%s'\n" "$sock"
}

free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
    return
  fi
  local port
  for port in $(seq 33060 33999); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  log "testdb: no free port found"
  return 1
}

# Refuses to act on a directory this script did not create (it would kill
# the pid recorded there and delete it).
require_ours() {
  if [ -d "$state_dir" ] && [ ! -f "$marker" ]; then
    log "testdb: $state_dir exists but has no $marker; not touching it"
    log "testdb: set MONITOR_TESTDB_DIR to another path or remove it yourself"
    exit 1
  fi
}

# Removes the state dir, but only one this script created.
remove_state() {
  [ -d "$state_dir" ] || return 0
  if [ ! -f "$marker" ]; then
    log "testdb: $state_dir has no $marker; not deleting it"
    return 1
  fi
  local sock
  sock="$(cat "$state_dir/socket" 2>/dev/null || true)"
  case "$sock" in
  /tmp/mstdb.*/mysqld.sock) rm -rf "$(dirname "$sock")" ;;
  esac
  rm -rf "$state_dir"
}

kill_server() {
  local pid
  pid="$(recorded_pid)"
  pid_alive "$pid" || return 0
  log "testdb: stopping mariadbd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < stop_timeout * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "testdb: mariadbd did not stop within ${stop_timeout}s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
}

start_server() {
  if ! have_mariadbd; then
    log "testdb: mariadbd not found. Install it with:"
    log "  apt-get install -y mariadb-server mariadb-client"
    exit 1
  fi
  if running; then
    log "testdb: reusing the server on port $(cat "$state_dir/port") ($state_dir)"
    print_env
    return
  fi
  # Stale or half-made state: start from scratch.
  require_ours
  if [ -d "$state_dir" ]; then
    kill_server
    remove_state
  fi

  local t0 user_args=()
  t0="$(date +%s.%N)"
  mkdir -p "$state_dir"
  touch "$marker"
  if [ "$(id -u)" -eq 0 ]; then
    user_args=(--user=root)
  fi
  local datadir="$state_dir/data"
  log "testdb: initialising $datadir"
  if ! mariadb-install-db --no-defaults --datadir="$datadir" "${user_args[@]}" \
    --auth-root-authentication-method=normal --skip-test-db \
    >"$state_dir/install.log" 2>&1; then
    cat "$state_dir/install.log" >&2
    log "testdb: mariadb-install-db failed"
    exit 1
  fi

  local sock port pid attempt
  sock="$(socket_path)"
  echo "$sock" >"$state_dir/socket"
  for attempt in 1 2 3; do
    port="$(free_port)"
    echo "$port" >"$state_dir/port"
    : >"$state_dir/error.log"
    log "testdb: starting mariadbd on 127.0.0.1:$port"
    setsid nohup "$(mariadbd_bin)" --no-defaults \
      --datadir="$datadir" \
      --port="$port" --bind-address=127.0.0.1 \
      --socket="$sock" \
      --pid-file="$state_dir/mariadbd.pid" \
      --log-error="$state_dir/error.log" \
      --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL \
      --server-id=1 \
      "${user_args[@]}" \
      --skip-name-resolve \
      --innodb-log-file-size=8M \
      --max-connections=500 \
      </dev/null >>"$state_dir/stdout.log" 2>&1 9>&- &
    pid=$!
    echo "$pid" >"$state_dir/pid"

    local i ok=0
    for ((i = 0; i < start_timeout * 10; i++)); do
      if answers "$sock"; then
        ok=1
        break
      fi
      if ! pid_alive "$pid"; then
        break
      fi
      sleep 0.1
    done
    if [ "$ok" = 1 ]; then
      break
    fi
    if ! pid_alive "$pid" && grep -qiE 'address already in use|Do you already have another' \
      "$state_dir/error.log" && [ "$attempt" -lt 3 ]; then
      log "testdb: port $port was taken meanwhile; trying another"
      continue
    fi
    log "testdb: mariadbd did not answer within ${start_timeout}s; error log:"
    cat "$state_dir/error.log" "$state_dir/stdout.log" >&2 || true
    kill_server
    exit 1
  done

  local t1
  t1="$(date +%s.%N)"
  log "testdb: ready on 127.0.0.1:$port, socket $sock ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s)"
  print_env
}

cmd="${1:-}"
case "$cmd" in
start)
  # One start at a time for this state dir (concurrent test processes).
  mkdir -p "$(dirname "$state_dir")"
  exec 9>"$state_dir.lock"
  flock 9
  start_server
  ;;
env)
  if ! running; then
    log "testdb: not running ($state_dir); use: $0 start"
    exit 1
  fi
  print_env
  ;;
status)
  if running; then
    log "testdb: running, pid $(recorded_pid), port $(cat "$state_dir/port"), socket $(cat "$state_dir/socket"), dir $state_dir"
  else
    log "testdb: not running ($state_dir)"
    exit 1
  fi
  ;;
stop)
  require_ours
  if [ -d "$state_dir" ]; then
    mkdir -p "$(dirname "$state_dir")"
    exec 9>"$state_dir.lock"
    flock 9
    kill_server
    remove_state
    rm -f "$state_dir.lock"
    log "testdb: stopped and removed $state_dir"
  else
    log "testdb: nothing to stop ($state_dir)"
  fi
  ;;
*) usage ;;
esac
