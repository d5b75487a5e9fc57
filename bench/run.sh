#!/usr/bin/env bash
# Builds and runs the daemon benchmarks (benches/daemon/) against a throwaway MariaDB in
# target/bench-db (MONITOR_TESTDB_FLAVOR=mysql: Oracle MySQL in target/bench-db-mysql; or
# $MONITOR_TEST_DB_URL), and writes the tables to target/bench/results-MODE.md (also printed).
#
#   bench/run.sh smoke   every scenario, tiny, fleet of 2 daemons (also through a replica on
#                        MariaDB) (CI; about a minute)
#   bench/run.sh quick   every scenario, shorter; fleet of 1 and 10 (about 5 minutes)
#   bench/run.sh full    every scenario at the sizes of bench/RESULTS.md; fleet of 1, 10, 50,
#                        100 daemons (about 17 minutes)
# The full fleet through a replica (`fleet replica`, its own primary + replica pair from
# scripts/replica.sh) is run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-quick}"
case "$mode" in
smoke) runs=("smoke") ;;
quick) runs=("latency 200" "storm quick" "noise 5" "footprint 10" "sweep 100000 300" "fleet 1 10 idle=10") ;;
full) runs=("latency 1000" "storm full" "noise 15" "footprint 60" "sweep 100000 1000" "fleet") ;;
*)
  echo "usage: $0 [smoke|quick|full]" >&2
  exit 2
  ;;
esac
flavor="${MONITOR_TESTDB_FLAVOR:-mariadb}"
if [ "$flavor" = mariadb ]; then
  export MONITOR_TESTDB_DIR="$PWD/target/bench-db"
else
  export MONITOR_TESTDB_DIR="$PWD/target/bench-db-$flavor"
fi
stop_db() {
  if [ -z "${MONITOR_TEST_DB_URL:-}" ]; then
    scripts/testdb.sh stop >/dev/null 2>&1 || true
  fi
  # The fleet through a replica (smoke) starts its own pair.
  if [ -d target/bench-primary ] || [ -d target/bench-replica ]; then
    scripts/replica.sh stop target/bench-replica target/bench-primary >/dev/null 2>&1 || true
  fi
}
trap stop_db EXIT
cargo bench --bench daemon --no-run
mkdir -p target/bench
out="target/bench/results-$mode.md"
{
  echo "# monitor_service benchmarks ($mode), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  if [ "$flavor" = mysql ]; then
    server="$(scripts/mysql-sid.sh run mysqld --version 2>/dev/null | sed 's/^.*Ver //')"
  else
    server="$( (mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version) | sed 's/^.*Ver //')"
  fi
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo) RAM; $server"
  echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
} >"$out"
t0=$(date +%s)
for r in "${runs[@]}"; do
  echo "== cargo bench --bench daemon -- $r (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # One server for the whole run; the bench would stop it after each command otherwise.
  # shellcheck disable=SC2086
  MONITOR_BENCH_KEEP_DB=1 cargo bench --bench daemon -q -- $r | tee -a "$out"
done
echo "total: $(($(date +%s) - t0)) s" | tee -a "$out"
echo "written: $out" >&2
