#!/usr/bin/env bash
# Oracle MySQL for tests, from Debian's unstable suite (sid), unpacked under
# target/ and run through its own loader: the system's apt state, dpkg
# database and libraries are never touched.
#
#   scripts/mysql-sid.sh fetch   download (once) and unpack (once); prints the
#                                unpacked root, e.g. <repo>/target/mysql-sid/root
#   scripts/mysql-sid.sh root    print the root when already unpacked (exit 1 if not)
#   scripts/mysql-sid.sh run PROGRAM ARGS...
#                                run ROOT/usr/{sbin,bin}/PROGRAM through the loader
#
# Cache: $MONITOR_MYSQL_SID_DIR, default <repo>/target/mysql-sid: apt/ (private
# apt config, lists and state), debs/ (the downloaded .debs, kept, so a rerun
# needs no network) and root/ (the unpacked tree). Remove the dir to refetch.
# Mirror: $MONITOR_MYSQL_SID_MIRROR, default the system's Debian mirror.
# Exit 3 when the download fails (e.g. sid no longer carries MySQL).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"

cache_dir="${MONITOR_MYSQL_SID_DIR:-${CARGO_TARGET_DIR:-$repo_dir/target}/mysql-sid}"
root="$cache_dir/root"
packages=(mysql-server-core mysql-client-core)

# The system's Debian mirror (first URIs line naming .../debian), else deb.debian.org.
mirror() {
  if [ -n "${MONITOR_MYSQL_SID_MIRROR:-}" ]; then
    echo "$MONITOR_MYSQL_SID_MIRROR"
    return
  fi
  local uri
  uri="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

write_apt_config() {
  local apt="$cache_dir/apt"
  mkdir -p "$apt/etc/apt.conf.d" "$apt/etc/preferences.d" "$apt/etc/sources.list.d" \
    "$apt/etc/trusted.gpg.d" "$apt/lists/partial" "$apt/cache" "$cache_dir/debs/partial"
  : >"$apt/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(mirror) sid main" \
    >"$apt/etc/sources.list"
  cat >"$apt/apt.conf" <<CONF
Dir::Etc "$apt/etc";
Dir::Etc::main "$apt/etc/apt.conf";
Dir::Etc::parts "$apt/etc/apt.conf.d";
Dir::Etc::sourcelist "$apt/etc/sources.list";
Dir::Etc::sourceparts "$apt/etc/sources.list.d";
Dir::Etc::preferences "$apt/etc/preferences";
Dir::Etc::preferencesparts "$apt/etc/preferences.d";
Dir::Etc::trusted "$apt/etc/trusted.gpg";
Dir::Etc::trustedparts "$apt/etc/trusted.gpg.d";
Dir::State "$apt";
Dir::State::lists "$apt/lists";
Dir::State::status "$apt/status";
Dir::State::extended_states "$apt/extended_states";
Dir::Cache "$apt/cache";
Dir::Cache::archives "$cache_dir/debs";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Log "$apt";
APT::Architecture "$(dpkg --print-architecture)";
APT::Architectures { "$(dpkg --print-architecture)"; };
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Acquire::Languages "none";
// The mirror may serve a sid snapshot older than its Valid-Until (signatures are still checked).
Acquire::Check-Valid-Until "false";
CONF
  : >"$apt/etc/apt.conf"
}

# Downloads the packages and their whole dependency closure into debs/.
download() {
  write_apt_config
  export APT_CONFIG="$cache_dir/apt/apt.conf"
  log "mysql-sid: apt-get update (sid, $(mirror); private state in $cache_dir/apt)"
  if ! apt-get -q update >"$cache_dir/apt/update.log" 2>&1; then
    cat "$cache_dir/apt/update.log" >&2
    return 3
  fi
  log "mysql-sid: downloading ${packages[*]} and their dependencies"
  if ! apt-get -q -y --download-only install "${packages[@]}" \
    >"$cache_dir/apt/download.log" 2>&1; then
    tail -n 20 "$cache_dir/apt/download.log" >&2
    return 3
  fi
  # The package lists (63 MB) are not needed once the .debs are here.
  rm -rf "$cache_dir/apt/lists"
}

unpack() {
  local tmp="$cache_dir/root.tmp" deb
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for deb in "$cache_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$tmp"
  done
  [ -x "$tmp/usr/sbin/mysqld" ] || {
    log "mysql-sid: no usr/sbin/mysqld in the unpacked packages"
    return 3
  }
  dpkg-deb -f "$(ls "$cache_dir"/debs/mysql-server-core_*.deb | head -n 1)" Version \
    >"$tmp/.version"
  rm -rf "$root"
  mv "$tmp" "$root"
}

fetch() {
  mkdir -p "$cache_dir"
  exec 8>"$cache_dir.lock"
  flock 8
  if [ -f "$root/.version" ]; then
    echo "$root"
    return
  fi
  local t0
  t0="$(date +%s.%N)"
  if ! ls "$cache_dir"/debs/mysql-server-core_*.deb >/dev/null 2>&1 ||
    ! ls "$cache_dir"/debs/mysql-client-core_*.deb >/dev/null 2>&1; then
    download || {
      log "mysql-sid: could not download ${packages[*]} from Debian sid"
      exit 3
    }
  fi
  unpack || exit 3
  log "mysql-sid: MySQL $(cat "$root/.version") unpacked in $root ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s)"
  echo "$root"
}

loader() {
  echo "$root/usr/lib64/ld-linux-x86-64.so.2"
}

run() {
  local prog="$1" path
  shift
  if [ -x "$root/usr/sbin/$prog" ]; then
    path="$root/usr/sbin/$prog"
  else
    path="$root/usr/bin/$prog"
  fi
  exec "$(loader)" --library-path "$root/usr/lib/x86_64-linux-gnu" "$path" "$@"
}

case "${1:-}" in
fetch) fetch ;;
root)
  [ -f "$root/.version" ] || exit 1
  echo "$root"
  ;;
run)
  shift
  [ "$#" -ge 1 ] || {
    log "usage: $0 run PROGRAM ARGS..."
    exit 2
  }
  run "$@"
  ;;
*)
  log "usage: $0 fetch|root|run PROGRAM ARGS..."
  exit 2
  ;;
esac
