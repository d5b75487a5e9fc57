#!/usr/bin/env bash
# Builds the .rpm and the .deb (scripts/package.sh all) and checks what is in
# them: exactly the expected paths with the expected modes and owners,
# config.ini a config file not replaced on upgrade (rpm noreplace, deb
# conffile), contents identical to the repository's files, the install and
# remove scripts as written (never enabling or starting the service), and,
# for the .deb, its scripts run against a throwaway root ($DPKG_ROOT)
# creating the 0700 state directory and purging it.
#
#   scripts/check-packages.sh              build both packages, then check
#   scripts/check-packages.sh --no-build   check the ones already in
#                                          $TARGET/packages/
#
# Only inspects the packages: nothing is installed on this machine (apart
# from the `rpm` tool with apt-get when missing). Exits non-zero, naming
# every mismatch, when anything differs.

# `[ test ] && ok ... || fail ...` is meant: ok never fails.
# shellcheck disable=SC2015
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"
cd "$repo_dir"

build=1
case "${1:-}" in
  "") ;;
  --no-build) build=0 ;;
  *) log "usage: scripts/check-packages.sh [--no-build]"; exit 2 ;;
esac

# --- tools -------------------------------------------------------------------
if ! command -v rpm >/dev/null 2>&1 || ! command -v rpm2cpio >/dev/null 2>&1 \
  || ! command -v cpio >/dev/null 2>&1; then
  log "check-packages: rpm/rpm2cpio/cpio not found: installing rpm cpio with apt-get"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y rpm cpio >&2
fi
command -v dpkg-deb >/dev/null 2>&1 || { log "check-packages: dpkg-deb not found"; exit 1; }

# --- packages ----------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-$repo_dir/target}}"
case "$target_dir" in /*) ;; *) target_dir="$repo_dir/$target_dir" ;; esac
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
if [ "$build" = 1 ]; then
  mapfile -t built < <("$script_dir/package.sh" all)
  rpm_file="${built[0]}"
  deb_file="${built[1]}"
else
  rpm_file="$target_dir/packages/monitor_service-$version-1.$(uname -m).rpm"
  deb_file="$target_dir/packages/monitor-service_${version}-1_$(dpkg --print-architecture).deb"
fi
binary="$target_dir/release/monitor_service"
for f in "$rpm_file" "$deb_file" "$binary"; do
  [ -n "$f" ] && [ -f "$f" ] || { log "check-packages: missing: ${f:-the .deb} (build first, or drop --no-build)"; exit 1; }
done
log "check-packages: $rpm_file"
log "check-packages: $deb_file"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); printf 'ok   %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }

# same NAME EXPECTED_FILE ACTUAL_FILE: passes when identical, else shows the
# diff (- expected, + in the package).
same() {
  if diff -u --label expected --label package "$2" "$3" >"$tmp/diff"; then
    ok "$1"
  else
    fail "$1 (- expected, + in the package):"
    sed 's/^/     /' "$tmp/diff"
  fi
}

# contains NAME FILE FIXED_STRING
contains() {
  if grep -qF -- "$3" "$2"; then ok "$1"; else fail "$1: '$3' not found"; fi
}

# never_starts NAME FILE: no script enables, starts or restarts the service
# (try-restart, which only restarts a running one, is allowed).
never_starts() {
  if grep -nE 'systemctl.*[[:space:]](start|enable|restart|reenable)([[:space:]]|$)|--now' "$2" \
    | grep -vE '^[0-9]+:[[:space:]]*#' >"$tmp/starts"; then
    fail "$1 enables/starts the service: $(tr '\n' ' ' <"$tmp/starts")"
  else
    ok "$1 never enables or starts the service"
  fi
}

# guarded NAME FILE: every systemctl call is inside a
# `[ -d /run/systemd/system ]` block.
guarded() {
  if awk '
      /\[ -d \/run\/systemd\/system \]/ { depth = 1; next }
      depth && /^[[:space:]]*if / { depth++ }
      depth && /^[[:space:]]*fi([[:space:]]|$)/ { depth--; next }
      /^[[:space:]]*#/ { next }
      /systemctl/ && !depth { bad = 1; print FILENAME ":" NR ": " $0 }
      END { exit bad }' "$2" >"$tmp/unguarded"; then
    ok "$1: systemctl only when systemd runs"
  else
    fail "$1: systemctl outside [ -d /run/systemd/system ]: $(cat "$tmp/unguarded")"
  fi
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Repository files and where they go.
declare -A sources=(
  [/usr/bin/monitor_service]="$binary"
  [/usr/lib/systemd/system/monitor_service.service]=systemd/monitor_service.service
  [/opt/monitor_service/config.ini]=config.ini
  [/usr/share/monitor_service/setup.sql]=sql/setup.sql
  [/usr/share/monitor_service/test_alarm.sh]=scripts/test_alarm.sh
)

# --- .deb --------------------------------------------------------------------
echo "== $deb_file"

# File list: mode owner/group path, directories included.
dpkg-deb -c "$deb_file" | awk '{ print $1, $2, $6 }' | sort -k3 >"$tmp/deb.list"
sort -k3 >"$tmp/deb.expected" <<'EOF'
drwxr-xr-x root/root ./opt/
drwxr-xr-x root/root ./opt/monitor_service/
-rw------- root/root ./opt/monitor_service/config.ini
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/bin/
-rwxr-xr-x root/root ./usr/bin/monitor_service
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/systemd/
drwxr-xr-x root/root ./usr/lib/systemd/system/
-rw-r--r-- root/root ./usr/lib/systemd/system/monitor_service.service
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/monitor-service/
-rw-r--r-- root/root ./usr/share/doc/monitor-service/copyright
drwxr-xr-x root/root ./usr/share/man/
drwxr-xr-x root/root ./usr/share/man/man8/
-rw-r--r-- root/root ./usr/share/man/man8/monitor_service.8.gz
drwxr-xr-x root/root ./usr/share/monitor_service/
-rw-r--r-- root/root ./usr/share/monitor_service/setup.sql
-rwxr-xr-x root/root ./usr/share/monitor_service/test_alarm.sh
EOF
# dpkg-deb prints numeric owners (0/0) for packages built by cargo-deb.
sed -i 's| 0/0 | root/root |' "$tmp/deb.list"
same "deb: file list, modes and owners" "$tmp/deb.expected" "$tmp/deb.list"

# Control: conffiles, name, dependencies, scripts.
dpkg-deb -e "$deb_file" "$tmp/DEBIAN"
printf '/opt/monitor_service/config.ini\n' >"$tmp/conffiles.expected"
if [ -f "$tmp/DEBIAN/conffiles" ]; then
  same "deb: conffiles is exactly config.ini (kept on upgrade)" "$tmp/conffiles.expected" "$tmp/DEBIAN/conffiles"
else
  fail "deb: no conffiles: config.ini would be replaced on upgrade"
fi
[ "$(dpkg-deb -f "$deb_file" Package)" = monitor-service ] \
  && ok "deb: Package: monitor-service" || fail "deb: Package is '$(dpkg-deb -f "$deb_file" Package)', expected monitor-service"
[ "$(dpkg-deb -f "$deb_file" Version)" = "$version-1" ] \
  && ok "deb: Version: $version-1" || fail "deb: Version is '$(dpkg-deb -f "$deb_file" Version)', expected $version-1"
dpkg-deb -f "$deb_file" Depends >"$tmp/depends"
contains "deb: Depends on libc6" "$tmp/depends" "libc6"
for s in postinst prerm postrm; do
  if [ -x "$tmp/DEBIAN/$s" ]; then
    same "deb: $s as in packaging/deb/$s" "packaging/deb/$s" "$tmp/DEBIAN/$s"
    if sh -n "$tmp/DEBIAN/$s"; then ok "deb: $s parses (sh -n)"; else fail "deb: $s does not parse"; fi
    never_starts "deb: $s" "$tmp/DEBIAN/$s"
    guarded "deb: $s" "$tmp/DEBIAN/$s"
  else
    fail "deb: no executable $s"
  fi
done
[ ! -e "$tmp/DEBIAN/preinst" ] && ok "deb: no preinst" || fail "deb: unexpected preinst"
contains "deb: postinst runs daemon-reload" "$tmp/DEBIAN/postinst" "systemctl daemon-reload"
contains "deb: prerm stops the service" "$tmp/DEBIAN/prerm" "systemctl stop monitor_service.service"
contains "deb: prerm disables the service" "$tmp/DEBIAN/prerm" "systemctl disable monitor_service.service"

# Contents identical to the repository's files.
dpkg-deb -x "$deb_file" "$tmp/deb"
for dest in "${!sources[@]}"; do
  if cmp -s "${sources[$dest]}" "$tmp/deb$dest"; then
    ok "deb: $dest is ${sources[$dest]}"
  else
    fail "deb: $dest differs from ${sources[$dest]}"
  fi
done
if gzip -dc "$tmp/deb/usr/share/man/man8/monitor_service.8.gz" | cmp -s - man/monitor_service.8; then
  ok "deb: monitor_service.8.gz is man/monitor_service.8 gzipped"
else
  fail "deb: monitor_service.8.gz is not man/monitor_service.8 gzipped"
fi
if "$tmp/deb/usr/bin/monitor_service" --version >"$tmp/version" 2>&1; then
  ok "deb: packaged binary runs: $(head -n 1 "$tmp/version")"
else
  fail "deb: packaged binary --version failed: $(head -n 3 "$tmp/version")"
fi

# Scripts against a throwaway root: state dir 0700 on configure (kept as it
# is on upgrade), kept on remove, gone on purge. $DPKG_ROOT also keeps
# systemctl away from this machine.
root="$tmp/root"
mkdir -p "$root/var/log"
run_script() { DPKG_ROOT="$root" sh "$tmp/DEBIAN/$1" "${@:2}"; }
if run_script postinst configure ""; then
  mode="$(stat -c %a "$root/var/lib/monitor_service" 2>/dev/null || echo missing)"
  [ "$mode" = 700 ] && ok "deb: postinst configure makes /var/lib/monitor_service mode 700" \
    || fail "deb: /var/lib/monitor_service after postinst configure: $mode, expected 700"
else
  fail "deb: postinst configure failed"
fi
touch "$root/var/lib/monitor_service/position" "$root/var/log/monitor_service.log" "$root/var/log/monitor_service.log.1"
if run_script postinst configure "0.0.1-1" && [ -f "$root/var/lib/monitor_service/position" ]; then
  ok "deb: postinst configure (upgrade) keeps the state"
else
  fail "deb: postinst configure (upgrade) failed or lost the state"
fi
if run_script prerm remove && run_script postrm remove && [ -f "$root/var/lib/monitor_service/position" ] \
  && [ -f "$root/var/log/monitor_service.log" ]; then
  ok "deb: prerm/postrm remove keep state and log"
else
  fail "deb: prerm/postrm remove failed or removed state/log"
fi
if run_script postrm purge && [ ! -e "$root/var/lib/monitor_service" ] \
  && [ -z "$(ls "$root/var/log")" ]; then
  ok "deb: postrm purge removes state dir and log files"
else
  fail "deb: postrm purge failed or left: $(cd "$root" && find var -mindepth 1 | tr '\n' ' ')"
fi

# --- .rpm --------------------------------------------------------------------
echo "== $rpm_file"
rpmq() { rpm -qp --nosignature "$@" "$rpm_file"; }

[ "$(rpmq --qf '%{NAME}-%{VERSION}-%{RELEASE}')" = "monitor_service-$version-1" ] \
  && ok "rpm: monitor_service-$version-1" || fail "rpm: NVR is '$(rpmq --qf '%{NAME}-%{VERSION}-%{RELEASE}')'"

# File list: mode owner:group flags path (flags: c config, n noreplace,
# d doc; - none).
rpmq --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} <%{FILEFLAGS:fflags}> %{FILENAMES}\n]' \
  | sed 's/ <> / - /; s/ <\([a-z]*\)> / \1 /' | sort -k4 >"$tmp/rpm.list"
sort -k4 >"$tmp/rpm.expected" <<'EOF'
-rw------- root:root cn /opt/monitor_service/config.ini
-rwxr-xr-x root:root - /usr/bin/monitor_service
-rw-r--r-- root:root - /usr/lib/systemd/system/monitor_service.service
-rw-r--r-- root:root d /usr/share/man/man8/monitor_service.8
-rw-r--r-- root:root - /usr/share/monitor_service/setup.sql
-rwxr-xr-x root:root - /usr/share/monitor_service/test_alarm.sh
EOF
same "rpm: file list, modes, owners and flags" "$tmp/rpm.expected" "$tmp/rpm.list"

printf '/opt/monitor_service/config.ini\n' >"$tmp/configfiles.expected"
rpmq --configfiles >"$tmp/configfiles"
same "rpm: --configfiles is exactly config.ini" "$tmp/configfiles.expected" "$tmp/configfiles"

# --dump: path size mtime sha256 mode owner group isconfig isdoc ...
rpmq --dump >"$tmp/dump"
awk '$1 == "/opt/monitor_service/config.ini" { print $5, $8 }' "$tmp/dump" >"$tmp/config.dump"
[ "$(cat "$tmp/config.dump")" = "0100600 1" ] && ok "rpm: --dump config.ini mode 0100600, config" \
  || fail "rpm: --dump config.ini: '$(cat "$tmp/config.dump")', expected '0100600 1'"
awk '$1 == "/usr/bin/monitor_service" { print $5 }' "$tmp/dump" >"$tmp/bin.dump"
[ "$(cat "$tmp/bin.dump")" = "0100755" ] && ok "rpm: --dump binary mode 0100755" \
  || fail "rpm: --dump binary mode '$(cat "$tmp/bin.dump")', expected 0100755"
for dest in "${!sources[@]}"; do
  digest="$(awk -v p="$dest" '$1 == p { print $4 }' "$tmp/dump")"
  if [ "$digest" = "$(sha "${sources[$dest]}")" ]; then
    ok "rpm: $dest is ${sources[$dest]} (sha256)"
  else
    fail "rpm: $dest digest ${digest:-missing} differs from ${sources[$dest]}"
  fi
done
digest="$(awk '$1 == "/usr/share/man/man8/monitor_service.8" { print $4 }' "$tmp/dump")"
[ "$digest" = "$(sha man/monitor_service.8)" ] && ok "rpm: monitor_service.8 is man/monitor_service.8 (sha256)" \
  || fail "rpm: monitor_service.8 differs from man/monitor_service.8"
# The payload itself unpacks to the same files.
mkdir -p "$tmp/rpm"
# rpm2cpio's exit status is not used: Debian 12's rpm 4.18.0 exits 1 after
# writing a complete archive (the digests are checked by rpm -K below), and
# piped into cpio it would die of SIGPIPE after the trailer. cpio's is.
rpm2cpio "$rpm_file" >"$tmp/payload.cpio" 2>"$tmp/cpio.err" || true
if ! (cd "$tmp/rpm" && cpio -idm --quiet <"$tmp/payload.cpio") 2>>"$tmp/cpio.err"; then
  fail "rpm: payload does not unpack (rpm2cpio, cpio): $(head -n 3 "$tmp/cpio.err")"
elif cmp -s "$tmp/rpm/opt/monitor_service/config.ini" config.ini \
  && cmp -s "$tmp/rpm/usr/bin/monitor_service" "$binary"; then
  ok "rpm: payload unpacks (rpm2cpio) to the same config.ini and binary"
else
  fail "rpm: unpacked payload differs: $(cd "$tmp/rpm" && find . -type f | tr '\n' ' ')"
fi

if rpm -K --nosignature "$rpm_file" >"$tmp/rpmk" 2>&1; then
  ok "rpm: header and payload digests (rpm -K)"
else
  fail "rpm: rpm -K: $(tr '\n' ' ' <"$tmp/rpmk")"
fi

rpmq --requires >"$tmp/requires"
contains "rpm: Requires /bin/sh" "$tmp/requires" "/bin/sh"
contains "rpm: Requires libc.so.6()(64bit)" "$tmp/requires" "libc.so.6()(64bit)"
glibc="$(grep -o 'GLIBC_[0-9.]*' "$tmp/requires" | sort -uV | tail -n 1)"
echo "info rpm: newest glibc symbol version required: ${glibc:-none} (RHEL 8 has 2.28, RHEL 9 2.34)"

# Scriptlets exactly as in packaging/rpm/ (cargo-generate-rpm takes a path
# that does not exist as the script text itself).
for s in POSTIN:post PREUN:preun POSTUN:postun; do
  tag="${s%%:*}"
  file="packaging/rpm/${s#*:}.sh"
  rpmq --qf "%{$tag}" >"$tmp/$tag"
  same "rpm: %${s#*:} as in $file" "$file" "$tmp/$tag"
  if sh -n "$tmp/$tag"; then ok "rpm: %${s#*:} parses (sh -n)"; else fail "rpm: %${s#*:} does not parse"; fi
  never_starts "rpm: %${s#*:}" "$tmp/$tag"
  guarded "rpm: %${s#*:}" "$tmp/$tag"
done
for tag in PREIN POSTTRANS PRETRANS; do
  v="$(rpmq --qf "%{$tag}")"
  [ "$v" = "(none)" ] && ok "rpm: no $tag scriptlet" || fail "rpm: unexpected $tag scriptlet"
done
contains "rpm: %post makes the state dir 0700" "$tmp/POSTIN" "install -d -m 0700 /var/lib/monitor_service"
contains "rpm: %post runs daemon-reload" "$tmp/POSTIN" "systemctl daemon-reload"
contains "rpm: %preun stops the service" "$tmp/PREUN" "systemctl stop monitor_service.service"
contains "rpm: %preun disables the service" "$tmp/PREUN" "systemctl disable monitor_service.service"
# shellcheck disable=SC2016
contains "rpm: %preun acts on erase only" "$tmp/PREUN" '[ "$1" -eq 0 ]'

echo "packages: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  log "check-packages: $failed check(s) failed (see FAIL lines above)"
  exit 1
fi
