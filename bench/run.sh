#!/usr/bin/env bash
# Builds and runs the daemon benchmarks (benches/daemon.rs) against a throwaway MariaDB in
# target/bench-db (or $MONITOR_TEST_DB_URL), and writes the tables to
# target/bench/results-MODE.md (also printed).
#
#   bench/run.sh smoke   every scenario, tiny (CI; under 2 minutes)
#   bench/run.sh quick   every scenario, shorter (about 4 minutes)
#   bench/run.sh full    every scenario at the sizes of bench/RESULTS.md (about 12 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-quick}"
case "$mode" in
smoke) runs=("smoke") ;;
quick) runs=("latency 200" "storm quick" "noise 5" "footprint 10" "sweep 100000 300") ;;
full) runs=("latency 1000" "storm full" "noise 15" "footprint 60" "sweep 100000 1000") ;;
*)
  echo "usage: $0 [smoke|quick|full]" >&2
  exit 2
  ;;
esac
export MONITOR_TESTDB_DIR="$PWD/target/bench-db"
stop_db() {
  if [ -z "${MONITOR_TEST_DB_URL:-}" ]; then
    scripts/testdb.sh stop >/dev/null 2>&1 || true
  fi
}
trap stop_db EXIT
cargo bench --bench daemon --no-run
mkdir -p target/bench
out="target/bench/results-$mode.md"
{
  echo "# monitor_service benchmarks ($mode), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GB", $2 / 1048576}' /proc/meminfo) RAM; $( (mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version) | sed 's/^.*Ver //')"
  echo
} >"$out"
t0=$(date +%s)
for r in "${runs[@]}"; do
  echo "== cargo bench --bench daemon -- $r" >&2
  # One server for the whole run; the bench would stop it after each command otherwise.
  # shellcheck disable=SC2086
  MONITOR_BENCH_KEEP_DB=1 cargo bench --bench daemon -q -- $r | tee -a "$out"
done
echo "total: $(($(date +%s) - t0)) s" | tee -a "$out"
echo "written: $out" >&2
