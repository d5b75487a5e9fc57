#!/usr/bin/env bash
# A throwaway MariaDB or Oracle MySQL with the binary log on (ROW, FULL), for
# tests and demos. No systemd, no docker: a private data dir and a free port on
# 127.0.0.1.
#
#   MONITOR_TESTDB_FLAVOR=mariadb (default) or mysql: which server. MySQL is
#   Debian sid's Oracle MySQL, fetched once and run from target/ through its own
#   loader (scripts/mysql-sid.sh); GTIDs on. Exit 3 when it cannot be fetched.
#
#   scripts/testdb.sh start    start it (or reuse the running one); prints
#                              `export MONITOR_TEST_DB_URL=...` lines, so:
#                                eval "$(scripts/testdb.sh start)"
#   scripts/testdb.sh env      print the same lines for the running server
#   scripts/testdb.sh status   say whether it runs (exit 0) or not (exit 1)
#   scripts/testdb.sh stop     shut it down and delete its state dir
#
# State dir: $MONITOR_TESTDB_DIR, default <repo>/target/testdb (data dir,
# socket, pid, port, flavor, password, error log). Progress messages go to stderr.
# The tests' account is `msit` with a random password (in the printed URL; all
# privileges, from any host); the script itself administers the server as root
# without a password over its socket only. Listens on 127.0.0.1 only; never
# point this at a real data dir.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

state_dir="${MONITOR_TESTDB_DIR:-$repo_dir/target/testdb}"
marker="$state_dir/.monitor-testdb"
flavor="${MONITOR_TESTDB_FLAVOR:-mariadb}"
case "$flavor" in
mariadb | mysql) ;;
*)
  log "testdb: MONITOR_TESTDB_FLAVOR=$flavor: use mariadb or mysql"
  exit 2
  ;;
esac
test_user=msit
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

# True when pid is a live (not zombie) server of ours: a recycled pid is not.
# Its comm is mariadbd, or ld-linux-x86-64 for MySQL (run through its loader);
# just after the start it may still be setsid or nohup, whose command line
# names the server.
pid_alive() {
  local pid="$1" stat state cmd
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/stat" ] || return 0
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  case "$stat" in
  *"(mariadbd) "* | *"(ld-linux-x86-64) "*) ;;
  *)
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cmd" in
    *mariadbd" "* | */usr/sbin/mysqld" "*) ;;
    *) return 1 ;;
    esac
    ;;
  esac
  state="${stat##*) }"
  case "$state" in
  Z*)
    # A zombie leader whose other threads still run is still shutting down.
    local tasks=("/proc/$pid/task/"*)
    [ "${#tasks[@]}" -gt 1 ]
    ;;
  *) return 0 ;;
  esac
}

# The flavour of the recorded server (the one asked for when none is recorded).
recorded_flavor() {
  cat "$state_dir/flavor" 2>/dev/null || echo "$flavor"
}

# The admin client (root over the socket) for the recorded server.
admin() {
  local sock="$1"
  shift
  if [ "$(recorded_flavor)" = mysql ]; then
    "$script_dir/mysql-sid.sh" run mysql --no-defaults -uroot --socket="$sock" "$@"
  else
    mariadb --no-defaults -uroot --socket="$sock" "$@"
  fi
}

answers() {
  admin "$1" --connect-timeout=2 -e 'select 1' >/dev/null 2>&1
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
  printf "export MONITOR_TEST_DB_URL='mysql://%s:%s@127.0.0.1:%s'\n" \
    "$test_user" "$(cat "$state_dir/password")" "$port"
  printf "export MONITOR_TEST_DB_SOCKET='%s'\n" "$sock"
  printf "export MONITOR_TESTDB_FLAVOR='%s'\n" "$(recorded_flavor)"
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
  log "testdb: stopping $(recorded_flavor) (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < stop_timeout * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  log "testdb: $(recorded_flavor) did not stop within ${stop_timeout}s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
}

# Initialises the MariaDB data dir.
init_mariadb() {
  if ! have_mariadbd; then
    log "testdb: mariadbd not found. Install it with:"
    log "  apt-get install -y mariadb-server mariadb-client"
    exit 1
  fi
  if ! mariadb-install-db --no-defaults --datadir="$state_dir/data" "${user_args[@]}" \
    --auth-root-authentication-method=normal --skip-test-db \
    >"$state_dir/install.log" 2>&1; then
    cat "$state_dir/install.log" >&2
    log "testdb: mariadb-install-db failed"
    exit 1
  fi
}

# The MariaDB server command line (port and socket as arguments).
mariadb_argv() {
  server_argv=("$(mariadbd_bin)" --no-defaults
    --datadir="$state_dir/data"
    --port="$1" --bind-address=127.0.0.1
    --socket="$2"
    --pid-file="$state_dir/server.pid"
    --log-error="$state_dir/error.log"
    --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL
    --server-id=1
    "${user_args[@]}"
    --skip-name-resolve
    --innodb-log-file-size=8M
    --max-connections=500)
}

# Writes my.cnf for the unpacked MySQL (fetched first when needed).
mysql_cnf() {
  local root rc=0
  root="$("$script_dir/mysql-sid.sh" fetch)" || rc=$?
  if [ "$rc" != 0 ]; then
    log "testdb: Oracle MySQL is not available (scripts/mysql-sid.sh fetch failed, exit $rc)"
    exit 3
  fi
  mkdir -p "$state_dir/files"
  cat >"$state_dir/my.cnf" <<CNF
[mysqld]
basedir = $root/usr
lc-messages-dir = $root/usr/share/mysql
character-sets-dir = $root/usr/share/mysql/charsets
plugin-dir = $root/usr/lib/mysql/plugin
datadir = $state_dir/data
secure-file-priv = $state_dir/files
pid-file = $state_dir/server.pid
log-error = $state_dir/error.log
bind-address = 127.0.0.1
mysqlx = OFF
skip-name-resolve
max-connections = 500
log-bin = mysql-bin
binlog-format = ROW
binlog-row-image = FULL
server-id = 1
innodb-redo-log-capacity = 16M
gtid-mode = ON
enforce-gtid-consistency = ON
# Durability a test server does not need (like MariaDB's defaults).
sync-binlog = 0
innodb-flush-log-at-trx-commit = 2
CNF
  if [ "$(id -u)" -eq 0 ]; then
    echo "user = root" >>"$state_dir/my.cnf"
  fi
}

# Initialises the MySQL data dir: a copy of a data dir initialised once per
# MySQL version (no binlog, no GTIDs while doing so) and kept beside the
# unpacked server, minus auto.cnf, so each server gets its own server_uuid.
init_mysql() {
  mysql_cnf
  local cache template
  cache="$(dirname "$("$script_dir/mysql-sid.sh" root)")"
  template="$cache/datadir-$(cat "$cache/root/.version")"
  (
    exec 7>"$template.lock"
    flock 7
    [ -d "$template" ] && exit 0
    rm -rf "$template.tmp"
    if ! "$script_dir/mysql-sid.sh" run mysqld --defaults-file="$state_dir/my.cnf" \
      --initialize-insecure --skip-log-bin --gtid-mode=OFF --enforce-gtid-consistency=OFF \
      --datadir="$template.tmp" --log-error="$state_dir/install.log" \
      >>"$state_dir/install.log" 2>&1; then
      cat "$state_dir/install.log" >&2
      log "testdb: mysqld --initialize-insecure failed"
      exit 1
    fi
    rm -f "$template.tmp/auto.cnf"
    mv "$template.tmp" "$template"
  ) 7>&- || exit 1
  cp -a --reflink=auto "$template" "$state_dir/data"
}

mysql_argv() {
  local root
  root="$("$script_dir/mysql-sid.sh" root)"
  server_argv=("$root/usr/lib64/ld-linux-x86-64.so.2"
    --library-path "$root/usr/lib/x86_64-linux-gnu"
    "$root/usr/sbin/mysqld" --defaults-file="$state_dir/my.cnf"
    --port="$1" --socket="$2")
}

# The tests' account: a random password, every privilege, from anywhere.
# Then FLUSH PRIVILEGES, so its first login is a full authentication. Kept out
# of the binlog: a replica of this server (scripts/replica.sh) has its own.
create_test_user() {
  local sock="$1" pw
  pw="msit-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
  (umask 077 && echo "$pw" >"$state_dir/password")
  admin "$sock" -e "
    SET SESSION sql_log_bin = 0;
    DROP USER IF EXISTS ''@'localhost';
    CREATE USER '$test_user'@'%' IDENTIFIED BY '$pw';
    GRANT ALL PRIVILEGES ON *.* TO '$test_user'@'%' WITH GRANT OPTION;
    FLUSH PRIVILEGES;"
}

start_server() {
  if running; then
    if [ "$(recorded_flavor)" != "$flavor" ]; then
      log "testdb: a $(recorded_flavor) server runs in $state_dir, not $flavor; stop it first:"
      log "  MONITOR_TESTDB_DIR=$state_dir $0 stop"
      exit 1
    fi
    log "testdb: reusing the $flavor server on port $(cat "$state_dir/port") ($state_dir)"
    print_env
    return
  fi
  # Stale or half-made state: start from scratch.
  require_ours
  if [ -d "$state_dir" ]; then
    kill_server
    remove_state
  fi

  local t0
  t0="$(date +%s.%N)"
  mkdir -p "$state_dir"
  touch "$marker"
  echo "$flavor" >"$state_dir/flavor"
  user_args=()
  if [ "$(id -u)" -eq 0 ]; then
    user_args=(--user=root)
  fi
  log "testdb: initialising $state_dir/data ($flavor)"
  "init_$flavor"

  local sock port pid attempt
  sock="$(socket_path)"
  echo "$sock" >"$state_dir/socket"
  for attempt in 1 2 3; do
    port="$(free_port)"
    echo "$port" >"$state_dir/port"
    : >"$state_dir/error.log"
    "${flavor}_argv" "$port" "$sock"
    log "testdb: starting $flavor on 127.0.0.1:$port"
    setsid nohup "${server_argv[@]}" \
      </dev/null >>"$state_dir/stdout.log" 2>&1 9>&- 8>&- &
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
    log "testdb: $flavor did not answer within ${start_timeout}s; error log:"
    cat "$state_dir/error.log" "$state_dir/stdout.log" >&2 || true
    kill_server
    exit 1
  done
  create_test_user "$sock"

  local t1
  t1="$(date +%s.%N)"
  log "testdb: $flavor ready on 127.0.0.1:$port, socket $sock ($(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s)"
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
