#!/usr/bin/env bash
# The one test command (`make test` runs it): fmt check, clippy, all tests
# against a real server with the binlog on.
#
#   scripts/test.sh [extra cargo test args]   e.g. scripts/test.sh -- --nocapture
#
# Without MONITOR_TEST_DB_URL it installs MariaDB when missing (apt-get),
# starts a throwaway server (scripts/testdb.sh) and stops it at the end.
# With MONITOR_TEST_DB_URL=mysql://user:pass@host:port it uses that server
# instead (e.g. MySQL 8 from docker-compose.yml; binlog on, ROW, FULL).
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

if [ -z "${MONITOR_TEST_DB_URL:-}" ]; then
  ensure_mariadb
  # Own state dir, so a server kept by `scripts/testdb.sh start` for manual
  # runs is neither reused nor stopped here.
  export MONITOR_TESTDB_DIR="${MONITOR_TESTDB_DIR:-$repo_dir/target/testdb-run}"
  started_db=1
  eval "$("$script_dir/testdb.sh" start)"
  export MONITOR_TEST_DB_URL MONITOR_TEST_DB_SOCKET
else
  log "test: using the server at MONITOR_TEST_DB_URL"
fi

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
