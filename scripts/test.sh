#!/usr/bin/env bash
# The one test command (`make test` runs it): fmt check, clippy, all tests
# against a real server with the binlog on.
#
#   scripts/test.sh [extra cargo test args]   e.g. scripts/test.sh -- --nocapture
#
# Without MONITOR_TEST_DB_URL it starts a throwaway server (scripts/testdb.sh)
# and stops it at the end: MONITOR_TESTDB_FLAVOR=mariadb (default; installed
# with apt-get when missing) or mysql (Oracle MySQL from Debian sid, fetched
# once into target/mysql-sid; `make test FLAVOR=mysql`).
# With MONITOR_TEST_DB_URL=mysql://user:pass@host:port it uses that server
# instead (e.g. MySQL 8.4 from docker-compose.yml; binlog on, ROW, FULL); the
# few tests that kill or reconfigure a server of their own still start one of
# MONITOR_TESTDB_FLAVOR.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"
cd "$repo_dir"

started_db=0
cleanup() {
  if [ "$started_db" = 1 ]; then
    "$script_dir/testdb.sh" stop || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

export MONITOR_TESTDB_FLAVOR="${MONITOR_TESTDB_FLAVOR:-mariadb}"
if [ "$MONITOR_TESTDB_FLAVOR" = mariadb ]; then
  ensure_mariadb
fi
if [ -z "${MONITOR_TEST_DB_URL:-}" ]; then
  # Own state dir, so a server kept by `scripts/testdb.sh start` for manual
  # runs is neither reused nor stopped here.
  export MONITOR_TESTDB_DIR="${MONITOR_TESTDB_DIR:-$repo_dir/target/testdb-run-$MONITOR_TESTDB_FLAVOR}"
  started_db=1
  env_lines="$("$script_dir/testdb.sh" start)"
  eval "$env_lines"
  export MONITOR_TEST_DB_URL MONITOR_TEST_DB_SOCKET
else
  log "test: using the server at MONITOR_TEST_DB_URL"
fi

ensure_build_deps
log "test: cargo fmt --all -- --check"
cargo fmt --all -- --check
log "test: cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
log "test: cargo test --all-targets $*"
set +e
cargo test --all-targets "$@"
rc=$?
set -e
exit "$rc"
