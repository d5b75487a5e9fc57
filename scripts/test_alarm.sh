#!/bin/bash
# test_alarm.sh: raise, list and reset STATUS_PROCESS alarms to test
# monitor_service. Connection settings come from the daemon's own config.ini.
#
#   test_alarm.sh [-c PATH]                       interactive menu
#   test_alarm.sh [-c PATH] --list                every process and its alarm
#   test_alarm.sh [-c PATH] --alarm ID            raise the alarm of one process
#   test_alarm.sh [-c PATH] --alarm-all           raise every alarm
#   test_alarm.sh [-c PATH] --reset-all           clear every alarm
#   test_alarm.sh [-c PATH] --wait ID [--timeout S]
#                                     wait until the daemon cleared the alarm
#
# Exit status: 0 done; 1 --wait timed out, or no process has that ID;
# 2 usage error (e.g. an ID that is not a positive integer: nothing is sent
# to the database); 3 config file or database error.
#
# The password is handed to the mariadb/mysql client in a temporary option
# file (mode 600, removed on exit), never on the command line or in MYSQL_PWD.
# MONITOR_MYSQL_CLIENT names the client program to use (default: mariadb,
# else mysql).
set -euo pipefail

prog="$(basename "$0")"
# The daemon's lookup order: $MONITOR_SERVICE_CONFIG, else the packages'
# /etc/monitor_service/config.ini, else the bash service's /opt one.
config="${MONITOR_SERVICE_CONFIG:-}"
if [ -z "$config" ]; then
  config=/etc/monitor_service/config.ini
  if [ ! -e "$config" ] && [ ! -L "$config" ] && [ -e /opt/monitor_service/config.ini ]; then
    config=/opt/monitor_service/config.ini
  fi
fi
action=""
id=""
timeout=60
poll_interval=0.5

usage() {
  cat <<EOF
usage: $prog [-c PATH] [--list | --alarm ID | --alarm-all | --reset-all |
                        --wait ID [--timeout SECONDS]]

Without an action, an interactive menu is shown.

  -c, --config PATH  monitor_service config.ini to read [database] from
                     (default: \$MONITOR_SERVICE_CONFIG, else
                     /etc/monitor_service/config.ini, else
                     /opt/monitor_service/config.ini)
  --list             show every process, its alarm and notes
  --alarm ID         set alarma = 1 for process ID
  --alarm-all        set alarma = 1 for every process
  --reset-all        set alarma = 0 for every process
  --wait ID          wait until alarma = 0 for process ID (the daemon
                     cleared it); exit 1 on timeout
  --timeout SECONDS  for --wait (default: $timeout)
  -h, --help         this help

Exit status: 0 done, 1 wait timed out or unknown ID, 2 usage error,
3 config or database error.
EOF
}

die() {
  local code="$1"
  shift
  printf '%s: %s\n' "$prog" "$*" >&2
  exit "$code"
}

usage_error() {
  printf '%s: %s\n' "$prog" "$*" >&2
  printf "Try '%s --help'.\n" "$prog" >&2
  exit 2
}

# A process ID: a positive integer that fits the INT column. Checked before
# anything reaches SQL.
valid_id() {
  [[ "$1" =~ ^[1-9][0-9]{0,9}$ ]] && [ "$1" -le 2147483647 ]
}

set_action() {
  if [ -n "$action" ]; then
    usage_error "only one action at a time (--$action and --$1)"
  fi
  action="$1"
}

while [ $# -gt 0 ]; do
  case "$1" in
  -c | --config)
    [ $# -ge 2 ] || usage_error "$1 needs a PATH"
    config="$2"
    shift 2
    ;;
  --config=*)
    config="${1#--config=}"
    shift
    ;;
  --list)
    set_action list
    shift
    ;;
  --alarm-all)
    set_action alarm-all
    shift
    ;;
  --reset-all)
    set_action reset-all
    shift
    ;;
  --alarm | --wait)
    set_action "${1#--}"
    [ $# -ge 2 ] || usage_error "$1 needs an ID"
    id="$2"
    shift 2
    ;;
  --timeout)
    [ $# -ge 2 ] || usage_error "--timeout needs SECONDS"
    timeout="$2"
    shift 2
    ;;
  -h | --help)
    usage
    exit 0
    ;;
  *)
    usage_error "unknown argument: $1"
    ;;
  esac
done

if { [ "$action" = alarm ] || [ "$action" = wait ]; } && ! valid_id "$id"; then
  usage_error "invalid ID '$id': a process ID is a positive integer"
fi
if ! [[ "$timeout" =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
  usage_error "invalid --timeout '$timeout': give seconds, e.g. 30 or 0.5"
fi

# --- config.ini -------------------------------------------------------------

[ -f "$config" ] || die 3 "config file $config not found (use -c PATH or MONITOR_SERVICE_CONFIG)"
[ -r "$config" ] || die 3 "config file $config is not readable (run as root?)"

# Prints the value of KEY in [database], read like monitor_service reads it:
# comment lines start with ; or # (after blanks), the key ends at the first =
# or :, key and value are trimmed, the last occurrence wins, no quoting.
ini_get() {
  awk -v want="$1" '
    function trim(s) { sub(/^[ \t\r]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
    { line = trim($0) }
    line == "" || line ~ /^[;#]/ { next }
    line ~ /^\[/ {
      name = line; sub(/^\[/, "", name); sub(/\][^]]*$/, "", name)
      in_db = (trim(name) == "database")
      next
    }
    in_db {
      pos = match(line, /[=:]/)
      if (pos == 0) next
      key = trim(substr(line, 1, pos - 1))
      if (key == want) { value = trim(substr(line, pos + 1)); found = 1 }
    }
    END { if (found) print value }
  ' "$config"
}

db_host="$(ini_get host)"
db_port="$(ini_get port)"
db_user="$(ini_get user)"
db_password="$(ini_get password)"
db_name="$(ini_get database)"
db_socket="$(ini_get socket)"
db_connect_timeout="$(ini_get connect_timeout)"
# The daemon's defaults.
db_host="${db_host:-localhost}"
db_port="${db_port:-3306}"
db_user="${db_user:-root}"
db_name="${db_name:-v_process_monitor}"
db_connect_timeout="${db_connect_timeout:-10}"
db_connect_timeout="${db_connect_timeout%%.*}"
[ -n "$db_connect_timeout" ] && [ "$db_connect_timeout" != 0 ] || db_connect_timeout=1

# --- client and option file -------------------------------------------------

client="${MONITOR_MYSQL_CLIENT:-}"
if [ -z "$client" ]; then
  if command -v mariadb >/dev/null 2>&1; then
    client=mariadb
  elif command -v mysql >/dev/null 2>&1; then
    client=mysql
  else
    die 3 "neither the mariadb nor the mysql client is installed"
  fi
fi

optfile=""
cleanup() {
  if [ -n "$optfile" ]; then
    rm -f "$optfile"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A value for an option file: double-quoted, with \ and " escaped, so that
# #, ; and blanks in a password survive.
opt_quote() {
  local v="$1"
  v="${v//\\/\\\\}"
  v="${v//\"/\\\"}"
  printf '"%s"' "$v"
}

optfile="$(umask 077 && mktemp "${TMPDIR:-/tmp}/test_alarm.XXXXXX.cnf")"
chmod 600 "$optfile"
{
  echo "[client]"
  echo "user=$(opt_quote "$db_user")"
  if [ -n "$db_password" ]; then
    echo "password=$(opt_quote "$db_password")"
  fi
  # Like the daemon: the socket when set, else TCP to host:port (also for
  # localhost, so the same account is used as by the daemon).
  if [ -n "$db_socket" ]; then
    echo "socket=$(opt_quote "$db_socket")"
  else
    echo "host=$(opt_quote "$db_host")"
    echo "port=$db_port"
    echo "protocol=TCP"
  fi
  echo "database=$(opt_quote "$db_name")"
  echo "connect-timeout=$db_connect_timeout"
} >"$optfile"

# Runs SQL (given on stdin) with the client; extra arguments are client
# options. --defaults-file (not --defaults-extra-file) so that a [client]
# password in ~/.my.cnf cannot override the one from config.ini.
sql() {
  "$client" --defaults-file="$optfile" "$@"
}

# One value (batch mode, no column names); exits 3 on database errors.
sql_value() {
  local out
  if ! out="$(sql --batch --skip-column-names <<<"$1")"; then
    die 3 "query failed on $db_name (see the client's message above)"
  fi
  printf '%s' "$out"
}

# --- actions ----------------------------------------------------------------

do_list() {
  local query="SELECT s.process_id, p.process_name, s.alarma, s.notes
FROM STATUS_PROCESS s LEFT JOIN PROCESE p ON p.process_id = s.process_id
ORDER BY s.process_id;"
  if ! sql --table <<<"$query"; then
    echo "$prog: query failed on $db_name" >&2
    return 3
  fi
}

do_alarm() {
  local n
  n="$(sql_value "SELECT COUNT(*) FROM STATUS_PROCESS WHERE process_id = $1;
UPDATE STATUS_PROCESS SET alarma = 1 WHERE process_id = $1;")" || return 3
  if [ "$n" = 0 ]; then
    echo "$prog: no process with ID $1 in STATUS_PROCESS" >&2
    return 1
  fi
  echo "alarm raised for process $1"
}

do_set_all() {
  local value="$1" n
  n="$(sql_value "UPDATE STATUS_PROCESS SET alarma = $value WHERE alarma <> $value;
SELECT ROW_COUNT();")" || return 3
  if [ "$value" = 1 ]; then
    echo "alarm raised for $n process(es)"
  else
    echo "alarm cleared for $n process(es)"
  fi
}

now_ms() { date +%s%3N; }

do_wait() {
  local id="$1" end v
  end=$(($(now_ms) + $(awk -v t="$timeout" 'BEGIN { printf "%d", t * 1000 }')))
  while :; do
    v="$(sql_value "SELECT alarma FROM STATUS_PROCESS WHERE process_id = $id;")" || return 3
    if [ -z "$v" ]; then
      echo "$prog: no process with ID $id in STATUS_PROCESS" >&2
      return 1
    fi
    if [ "$v" = 0 ]; then
      echo "alarm of process $id is cleared"
      return 0
    fi
    if [ "$(now_ms)" -ge "$end" ]; then
      echo "$prog: alarm of process $id still raised after ${timeout}s" >&2
      return 1
    fi
    sleep "$poll_interval"
  done
}

menu() {
  local choice answer
  while :; do
    cat <<EOF

monitor_service alarm test ($db_name)
  1) Display all processes
  2) Raise the alarm of one process
  3) Raise all alarms
  4) Reset all alarms
  5) Exit
EOF
    if ! read -r -p "Choice [1-5]: " choice; then
      echo
      return 0
    fi
    case "$choice" in
    1) do_list || true ;;
    2)
      if ! read -r -p "Process ID: " answer; then
        echo
        return 0
      fi
      if valid_id "$answer"; then
        do_alarm "$answer" || true
      else
        echo "invalid ID '$answer': a process ID is a positive integer" >&2
      fi
      ;;
    3)
      read -r -p "Raise the alarm of EVERY process? [y/N] " answer || answer=""
      case "$answer" in
      y | Y | yes) do_set_all 1 || true ;;
      *) echo "nothing changed" ;;
      esac
      ;;
    4) do_set_all 0 || true ;;
    5 | q | Q) return 0 ;;
    *) echo "choose 1 to 5" >&2 ;;
    esac
  done
}

case "$action" in
"") menu ;;
list) do_list ;;
alarm) do_alarm "$id" ;;
alarm-all) do_set_all 1 ;;
reset-all) do_set_all 0 ;;
wait) do_wait "$id" ;;
esac
