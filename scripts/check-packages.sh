#!/usr/bin/env bash
# Builds the .rpm and the .deb (scripts/package.sh all) and checks what is in
# them: exactly the expected paths with the expected modes and owners,
# config.ini a config file not replaced on upgrade (rpm noreplace, deb
# conffile), contents identical to the repository's files, the install and
# remove scripts as written (never enabling or starting the service), the
# tags and changelogs; then installs each package for real into throwaway
# roots (dpkg --root, rpm --root): fresh install, reinstall over a changed
# config, a host with the bash service's /opt config, remove and purge.
# Finally Debian's lintian and rpmlint: any error or warning that is not
# overridden (packaging/deb/lintian-overrides, packaging/rpm/*.rpmlintrc,
# each with its reason) fails, and so does an override that no longer
# matches.
#
#   scripts/check-packages.sh              build both packages, then check
#   scripts/check-packages.sh --no-build   check the ones already in
#                                          $TARGET/packages/
#
# Nothing is installed on this machine itself, apart from the tools (rpm,
# cpio, lintian, rpmlint) with apt-get when missing; the packages go into
# temporary roots only. Needs root (the rpm root is a small chroot). Exits
# non-zero, naming every mismatch, when anything differs.

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
missing=()
for tool in rpm rpm2cpio rpmbuild cpio lintian rpmlint; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "check-packages: ${missing[*]} not found: installing rpm cpio lintian rpmlint with apt-get"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y rpm cpio lintian rpmlint >&2
fi
for tool in dpkg dpkg-deb chroot; do
  command -v "$tool" >/dev/null 2>&1 || { log "check-packages: $tool not found"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { log "check-packages: run as root (rpm --root installs into a chroot)"; exit 1; }

# --- packages ----------------------------------------------------------------
target_dir="${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-$repo_dir/target}}"
case "$target_dir" in /*) ;; *) target_dir="$repo_dir/$target_dir" ;; esac
version="$(cargo_toml_value version)"
revision="$(cargo_toml_value revision)"
if [ "$build" = 1 ]; then
  mapfile -t built < <("$script_dir/package.sh" all)
  rpm_file="${built[0]}"
  deb_file="${built[1]}"
else
  rpm_file="$target_dir/packages/monitor_service-$version-$revision.$(uname -m).rpm"
  deb_file="$target_dir/packages/monitor-service_${version}-${revision}_$(dpkg --print-architecture).deb"
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

# Repository files and where they go (in both packages).
declare -A sources=(
  [/usr/bin/monitor_service]="$binary"
  [/usr/lib/systemd/system/monitor_service.service]=systemd/monitor_service.service
  [/etc/monitor_service/config.ini]=config.ini
  [/usr/share/monitor_service/setup.sql]=sql/setup.sql
  [/usr/share/monitor_service/test_alarm.sh]=scripts/test_alarm.sh
)
# Only in the .deb.
declare -A deb_sources=(
  [/usr/share/doc/monitor-service/copyright]=packaging/deb/copyright
  [/usr/share/lintian/overrides/monitor-service]=packaging/deb/lintian-overrides
)

# gunzipped NAME GZ_FILE SOURCE: GZ_FILE is SOURCE gzipped.
gunzipped() {
  if gzip -dc "$2" 2>/dev/null | cmp -s - "$3"; then
    ok "$1 is $3 gzipped"
  else
    fail "$1 is not $3 gzipped"
  fi
}

# --- .deb --------------------------------------------------------------------
echo "== $deb_file"

# File list: mode owner/group path, directories included.
dpkg-deb -c "$deb_file" | awk '{ print $1, $2, $6 }' | sort -k3 >"$tmp/deb.list"
sort -k3 >"$tmp/deb.expected" <<'EOF'
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/monitor_service/
-rw------- root/root ./etc/monitor_service/config.ini
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
-rw-r--r-- root/root ./usr/share/doc/monitor-service/changelog.Debian.gz
-rw-r--r-- root/root ./usr/share/doc/monitor-service/copyright
drwxr-xr-x root/root ./usr/share/lintian/
drwxr-xr-x root/root ./usr/share/lintian/overrides/
-rw-r--r-- root/root ./usr/share/lintian/overrides/monitor-service
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
printf '/etc/monitor_service/config.ini\n' >"$tmp/conffiles.expected"
if [ -f "$tmp/DEBIAN/conffiles" ]; then
  same "deb: conffiles is exactly config.ini (kept on upgrade)" "$tmp/conffiles.expected" "$tmp/DEBIAN/conffiles"
else
  fail "deb: no conffiles: config.ini would be replaced on upgrade"
fi
[ "$(dpkg-deb -f "$deb_file" Package)" = monitor-service ] \
  && ok "deb: Package: monitor-service" || fail "deb: Package is '$(dpkg-deb -f "$deb_file" Package)', expected monitor-service"
[ "$(dpkg-deb -f "$deb_file" Version)" = "$version-$revision" ] \
  && ok "deb: Version: $version-$revision" || fail "deb: Version is '$(dpkg-deb -f "$deb_file" Version)', expected $version-$revision"
[ "$(dpkg-deb -f "$deb_file" Homepage)" = "$(cargo_toml_value homepage)" ] \
  && ok "deb: Homepage: $(cargo_toml_value homepage)" || fail "deb: Homepage is '$(dpkg-deb -f "$deb_file" Homepage)'"
dpkg-deb -f "$deb_file" Depends >"$tmp/depends"
contains "deb: Depends on libc6" "$tmp/depends" "libc6"
for s in preinst postinst prerm postrm; do
  if [ -x "$tmp/DEBIAN/$s" ]; then
    same "deb: $s as in packaging/deb/$s" "packaging/deb/$s" "$tmp/DEBIAN/$s"
    if sh -n "$tmp/DEBIAN/$s"; then ok "deb: $s parses (sh -n)"; else fail "deb: $s does not parse"; fi
    never_starts "deb: $s" "$tmp/DEBIAN/$s"
    guarded "deb: $s" "$tmp/DEBIAN/$s"
  else
    fail "deb: no executable $s"
  fi
done
for s in config templates triggers; do
  [ ! -e "$tmp/DEBIAN/$s" ] && ok "deb: no $s" || fail "deb: unexpected $s"
done
contains "deb: postinst runs daemon-reload" "$tmp/DEBIAN/postinst" "systemctl daemon-reload"
contains "deb: prerm stops the service" "$tmp/DEBIAN/prerm" "systemctl stop monitor_service.service"
contains "deb: prerm disables the service" "$tmp/DEBIAN/prerm" "systemctl disable monitor_service.service"

# Contents identical to the repository's files.
dpkg-deb -x "$deb_file" "$tmp/deb"
for dest in "${!sources[@]}" "${!deb_sources[@]}"; do
  src="${sources[$dest]:-${deb_sources[$dest]:-}}"
  if cmp -s "$src" "$tmp/deb$dest"; then
    ok "deb: $dest is $src"
  else
    fail "deb: $dest differs from $src"
  fi
done
gunzipped "deb: monitor_service.8.gz" "$tmp/deb/usr/share/man/man8/monitor_service.8.gz" man/monitor_service.8
gunzipped "deb: changelog.Debian.gz" "$tmp/deb/usr/share/doc/monitor-service/changelog.Debian.gz" packaging/deb/changelog
if "$tmp/deb/usr/bin/monitor_service" --version >"$tmp/version" 2>&1; then
  ok "deb: packaged binary runs: $(head -n 1 "$tmp/version")"
else
  fail "deb: packaged binary --version failed: $(head -n 3 "$tmp/version")"
fi

# Installed for real into throwaway roots: dpkg --root with the scripts run
# outside a chroot and $DPKG_ROOT set (which also keeps systemctl away from
# this machine); libc6 is not in those roots, hence --force-depends.
# new_root DIR: an empty root with a dpkg database and /var/log.
new_root() {
  mkdir -p "$1/etc" "$1/var/lib/dpkg/info" "$1/var/lib/dpkg/updates" "$1/var/log"
  : >"$1/var/lib/dpkg/status"
}
# dpkg_in ROOT ARGS...: dpkg on ROOT; its output goes to $tmp/dpkg.out.
dpkg_in() {
  dpkg --root="$1" --force-script-chrootless --force-depends --log=/dev/null "${@:2}" \
    </dev/null >"$tmp/dpkg.out" 2>&1
}
mode_of() { stat -c %a "$1" 2>/dev/null || echo missing; }

# Checks shared by both formats' installs (KIND: deb or rpm).
# installed_config KIND ROOT: the packaged config.ini, mode 600, in /etc.
installed_config() {
  local f="$2/etc/monitor_service/config.ini"
  [ "$(mode_of "$f")" = 600 ] && cmp -s "$f" config.ini \
    && ok "$1: installed /etc/monitor_service/config.ini is config.ini, mode 600" \
    || fail "$1: installed config.ini: mode $(mode_of "$f"), or differs from config.ini"
}
# bash_service_config ROOT: the bash service's config in ROOT/opt (mode
# 644, as it often is there); a copy is kept as $tmp/opt.ini.
bash_service_config() {
  mkdir -p "$1/opt/monitor_service"
  printf '[database]\nuser = from_the_bash_service\n' >"$1/opt/monitor_service/config.ini"
  chmod 644 "$1/opt/monitor_service/config.ini"
  cp -p "$1/opt/monitor_service/config.ini" "$tmp/opt.ini"
}
# migrated KIND ROOT DEFAULT: after installing on a bash_service_config
# root, /etc has the /opt config with mode 600, the packaged default is
# /etc/monitor_service/DEFAULT, and /opt is as it was.
migrated() {
  local etc="$2/etc/monitor_service" opt="$2/opt/monitor_service/config.ini"
  cmp -s "$etc/config.ini" "$tmp/opt.ini" && [ "$(mode_of "$etc/config.ini")" = 600 ] \
    && ok "$1: the /opt config became /etc/monitor_service/config.ini, mode 600" \
    || fail "$1: /etc/monitor_service/config.ini is not the /opt config with mode 600 (mode $(mode_of "$etc/config.ini"))"
  cmp -s "$etc/$3" config.ini \
    && ok "$1: the packaged default is kept as $3" \
    || fail "$1: no $3 with the packaged default"
  cmp -s "$opt" "$tmp/opt.ini" && [ "$(mode_of "$opt")" = 644 ] \
    && ok "$1: /opt/monitor_service/config.ini left as it was" || fail "$1: /opt/monitor_service/config.ini changed"
}

# Fresh install: config 600 as packaged, state dir 700, no leftovers.
root="$tmp/deb-root"
new_root "$root"
if dpkg_in "$root" -i "$deb_file"; then
  ok "deb: dpkg -i into an empty root"
else
  fail "deb: dpkg -i into an empty root: $(tail -n 5 "$tmp/dpkg.out")"
fi
etc="$root/etc/monitor_service"
installed_config deb "$root"
[ "$(mode_of "$root/var/lib/monitor_service")" = 700 ] \
  && ok "deb: postinst makes /var/lib/monitor_service mode 700" \
  || fail "deb: /var/lib/monitor_service after install: $(mode_of "$root/var/lib/monitor_service"), expected 700"
[ "$(find "$etc" -mindepth 1 -printf "%f\n")" = config.ini ] && ok "deb: nothing but config.ini in /etc/monitor_service" \
  || fail "deb: /etc/monitor_service holds: $(find "$etc" -mindepth 1 -printf "%f ")"

# Reinstall over a changed config and state: both kept, no conffile prompt
# (stdin is /dev/null: a prompt would fail the install).
echo "; changed by the administrator" >>"$etc/config.ini"
cp "$etc/config.ini" "$tmp/changed.ini"
touch "$root/var/lib/monitor_service/position" "$root/var/log/monitor_service.log" "$root/var/log/monitor_service.log.1"
if dpkg_in "$root" -i "$deb_file" && cmp -s "$etc/config.ini" "$tmp/changed.ini" \
  && [ -f "$root/var/lib/monitor_service/position" ]; then
  ok "deb: reinstall keeps the changed config.ini and the state, without asking"
else
  fail "deb: reinstall failed or replaced config.ini/state: $(tail -n 5 "$tmp/dpkg.out")"
fi
if dpkg_in "$root" --remove monitor-service && cmp -s "$etc/config.ini" "$tmp/changed.ini" \
  && [ -f "$root/var/lib/monitor_service/position" ] && [ -f "$root/var/log/monitor_service.log" ] \
  && [ ! -e "$root/usr/bin/monitor_service" ]; then
  ok "deb: remove keeps config.ini, state and log"
else
  fail "deb: remove failed or removed config/state/log: $(tail -n 5 "$tmp/dpkg.out")"
fi
if dpkg_in "$root" --purge monitor-service && [ ! -e "$etc" ] \
  && [ ! -e "$root/var/lib/monitor_service" ] && [ -z "$(ls "$root/var/log")" ]; then
  ok "deb: purge removes /etc/monitor_service, the state dir and the log files"
else
  fail "deb: purge failed or left: $(cd "$root" && find etc var/lib/monitor_service var/log -mindepth 1 2>/dev/null | tr '\n' ' ')"
fi

# A host with the bash service's config (mode 644 there): it becomes the
# /etc config, mode 600; the packaged default is kept as .dpkg-dist; /opt
# is left alone.
root="$tmp/deb-bash-host"
new_root "$root"
etc="$root/etc/monitor_service"
bash_service_config "$root"
if dpkg_in "$root" -i "$deb_file"; then
  ok "deb: dpkg -i on a host with /opt/monitor_service/config.ini"
else
  fail "deb: dpkg -i on a host with /opt/monitor_service/config.ini: $(tail -n 5 "$tmp/dpkg.out")"
fi
migrated deb "$root" config.ini.dpkg-dist
[ ! -e "$etc/config.ini.dpkg-migrate" ] && ok "deb: no config.ini.dpkg-migrate left" \
  || fail "deb: config.ini.dpkg-migrate left behind"
if dpkg_in "$root" -i "$deb_file" && cmp -s "$etc/config.ini" "$tmp/opt.ini"; then
  ok "deb: reinstall keeps the migrated config"
else
  fail "deb: reinstall replaced the migrated config: $(tail -n 5 "$tmp/dpkg.out")"
fi
if dpkg_in "$root" --purge monitor-service && [ ! -e "$etc" ] \
  && cmp -s "$root/opt/monitor_service/config.ini" "$tmp/opt.ini"; then
  ok "deb: purge removes the migrated config and .dpkg-dist, keeps /opt"
else
  fail "deb: purge after migration left: $(cd "$root" && find etc -mindepth 1 2>/dev/null | tr '\n' ' ')"
fi

# --- .rpm --------------------------------------------------------------------
echo "== $rpm_file"
rpmq() { rpm -qp --nosignature "$@" "$rpm_file"; }

[ "$(rpmq --qf '%{NAME}-%{VERSION}-%{RELEASE}')" = "monitor_service-$version-$revision" ] \
  && ok "rpm: monitor_service-$version-$revision" || fail "rpm: NVR is '$(rpmq --qf '%{NAME}-%{VERSION}-%{RELEASE}')'"

# Tags rpmlint and RHEL's tools expect.
# rpm_tag TAG EXPECTED
rpm_tag() {
  local v
  v="$(rpmq --qf "%{$1}")"
  if [ "$v" = "$2" ]; then ok "rpm: $1 is $2"; else fail "rpm: $1 is '$v', expected '$2'"; fi
}
rpm_tag URL "$(cargo_toml_value homepage)"
rpm_tag PACKAGER "$(cargo_toml_value maintainer)"
rpm_tag GROUP "System Environment/Daemons"
rpm_tag LICENSE "MIT"
[ "$(rpmq --qf '%{BUILDHOST}')" != "(none)" ] && ok "rpm: BUILDHOST is set" || fail "rpm: no BUILDHOST"
# %changelog: the newest entry is packaging/rpm/changelog's, for this version.
rpm_tag CHANGELOGNAME "$(sed -n '1s/^\* [A-Z][a-z]* [A-Z][a-z]* [0-9]* [0-9]* //p' packaging/rpm/changelog)"
rpmq --qf '%{CHANGELOGNAME}' >"$tmp/changelogname"
contains "rpm: newest changelog entry is $version-$revision" "$tmp/changelogname" " - $version-$revision"

# File list: mode owner:group flags path (flags: c config, n noreplace,
# d doc; - none), directories included.
rpmq --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} <%{FILEFLAGS:fflags}> %{FILENAMES}\n]' \
  | sed 's/ <> / - /; s/ <\([a-z]*\)> / \1 /' | sort -k4 >"$tmp/rpm.list"
sort -k4 >"$tmp/rpm.expected" <<'LIST'
drwxr-xr-x root:root - /etc/monitor_service
-rw------- root:root cn /etc/monitor_service/config.ini
-rwxr-xr-x root:root - /usr/bin/monitor_service
-rw-r--r-- root:root - /usr/lib/systemd/system/monitor_service.service
-rw-r--r-- root:root d /usr/share/man/man8/monitor_service.8.gz
drwxr-xr-x root:root - /usr/share/monitor_service
-rw-r--r-- root:root - /usr/share/monitor_service/setup.sql
-rwxr-xr-x root:root - /usr/share/monitor_service/test_alarm.sh
LIST
same "rpm: file list, modes, owners and flags" "$tmp/rpm.expected" "$tmp/rpm.list"

printf '/etc/monitor_service/config.ini\n' >"$tmp/configfiles.expected"
rpmq --configfiles >"$tmp/configfiles"
same "rpm: --configfiles is exactly config.ini" "$tmp/configfiles.expected" "$tmp/configfiles"

# --dump: path size mtime sha256 mode owner group isconfig isdoc ...
rpmq --dump >"$tmp/dump"
awk '$1 == "/etc/monitor_service/config.ini" { print $5, $8 }' "$tmp/dump" >"$tmp/config.dump"
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
# The payload itself unpacks to the same files.
mkdir -p "$tmp/rpm"
# rpm2cpio's exit status is not used: Debian 12's rpm 4.18.0 exits 1 after
# writing a complete archive (the digests are checked by rpm -K below), and
# piped into cpio it would die of SIGPIPE after the trailer. cpio's is.
rpm2cpio "$rpm_file" >"$tmp/payload.cpio" 2>"$tmp/cpio.err" || true
if ! (cd "$tmp/rpm" && cpio -idm --quiet <"$tmp/payload.cpio") 2>>"$tmp/cpio.err"; then
  fail "rpm: payload does not unpack (rpm2cpio, cpio): $(head -n 3 "$tmp/cpio.err")"
elif cmp -s "$tmp/rpm/etc/monitor_service/config.ini" config.ini \
  && cmp -s "$tmp/rpm/usr/bin/monitor_service" "$binary"; then
  ok "rpm: payload unpacks (rpm2cpio) to the same config.ini and binary"
else
  fail "rpm: unpacked payload differs: $(cd "$tmp/rpm" && find . -type f | tr '\n' ' ')"
fi
gunzipped "rpm: monitor_service.8.gz" "$tmp/rpm/usr/share/man/man8/monitor_service.8.gz" man/monitor_service.8

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

# Scriptlets exactly as in packaging/rpm/ (rpm drops the final newline).
# scriptlet TAG FILE: the scriptlet's text, compared with FILE.
scriptlet() {
  printf '%s\n' "$(rpmq --qf "%{$1}")" >"$tmp/$1"
  same "rpm: %{$1} as in $2" "$2" "$tmp/$1"
}
for s in POSTIN:post PREUN:preun POSTUN:postun; do
  tag="${s%%:*}"
  scriptlet "$tag" "packaging/rpm/${s#*:}.sh"
  if sh -n "$tmp/$tag"; then ok "rpm: %${s#*:} parses (sh -n)"; else fail "rpm: %${s#*:} does not parse"; fi
  never_starts "rpm: %${s#*:}" "$tmp/$tag"
  guarded "rpm: %${s#*:}" "$tmp/$tag"
done
scriptlet PRETRANS packaging/rpm/pretrans.lua
[ "$(rpmq --qf '%{PRETRANSPROG}')" = "<lua>" ] && ok "rpm: %pretrans is Lua (needs no shell)" \
  || fail "rpm: %pretrans interpreter is '$(rpmq --qf '%{PRETRANSPROG}')', expected <lua>"
for tag in PREIN POSTTRANS; do
  v="$(rpmq --qf "%{$tag}")"
  [ "$v" = "(none)" ] && ok "rpm: no $tag scriptlet" || fail "rpm: unexpected $tag scriptlet"
done
contains "rpm: %post makes the state dir 0700" "$tmp/POSTIN" "install -d -m 0700 /var/lib/monitor_service"
contains "rpm: %post runs daemon-reload" "$tmp/POSTIN" "systemctl daemon-reload"
contains "rpm: %preun stops the service" "$tmp/PREUN" "systemctl stop monitor_service.service"
contains "rpm: %preun disables the service" "$tmp/PREUN" "systemctl disable monitor_service.service"
# shellcheck disable=SC2016
contains "rpm: %preun acts on erase only" "$tmp/PREUN" '[ "$1" -eq 0 ]'

# Installed for real into throwaway roots with rpm --root. rpm runs the
# scriptlets chrooted there, so each root gets /bin/sh and what the
# scriptlets call (install, rmdir; no systemctl, so none of that runs) with
# their libraries. Dependencies are not in the roots: --nodeps.
# rpm_root DIR: such a root with an empty rpm database.
rpm_root() {
  local prog lib
  mkdir -p "$1/etc" "$1/usr/bin" "$1/var/lib" "$1/var/log" "$1/dev"
  ln -s usr/bin "$1/bin"
  mknod -m 666 "$1/dev/null" c 1 3
  for prog in sh install rmdir; do
    prog="$(command -v "$prog")"
    cp -L "$prog" "$1/usr/bin/"
    for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
      mkdir -p "$1$(dirname "$lib")"
      cp -L "$lib" "$1$lib"
    done
  done
  rpm --root "$1" --initdb
}
# rpm_in ROOT ARGS...: rpm on ROOT; its output goes to $tmp/rpm.out.
rpm_in() { rpm --root "$1" "${@:2}" </dev/null >"$tmp/rpm.out" 2>&1; }

# Fresh install, verify, erase with a changed config.
root="$tmp/rpm-root"
rpm_root "$root"
etc="$root/etc/monitor_service"
if rpm_in "$root" -i --nodeps "$rpm_file"; then
  ok "rpm: rpm -i into an empty root"
else
  fail "rpm: rpm -i into an empty root: $(tail -n 5 "$tmp/rpm.out")"
fi
installed_config rpm "$root"
[ "$(mode_of "$root/var/lib/monitor_service")" = 700 ] \
  && ok "rpm: %post makes /var/lib/monitor_service mode 700" \
  || fail "rpm: /var/lib/monitor_service after install: $(mode_of "$root/var/lib/monitor_service"), expected 700"
if rpm_in "$root" -V --nodeps monitor_service; then
  ok "rpm: rpm -V finds every file as packaged"
else
  fail "rpm: rpm -V: $(tr '\n' ' ' <"$tmp/rpm.out")"
fi
echo "; changed by the administrator" >>"$etc/config.ini"
cp "$etc/config.ini" "$tmp/changed.ini"
if rpm_in "$root" -e --nodeps monitor_service && cmp -s "$etc/config.ini.rpmsave" "$tmp/changed.ini" \
  && [ ! -e "$root/usr/bin/monitor_service" ] && [ ! -e "$root/usr/share/monitor_service" ] \
  && [ ! -e "$root/var/lib/monitor_service" ]; then
  ok "rpm: erase keeps the changed config as config.ini.rpmsave, removes the rest (the empty state dir too)"
else
  fail "rpm: erase failed or left: $(cd "$root" && find etc usr/share var/lib -mindepth 1 2>/dev/null | tr '\n' ' ')"
fi

# A host with the bash service's config (mode 644 there): %pretrans copies
# it to /etc, mode 600, before rpm decides what to do with the files, so
# the packaged default lands as config.ini.rpmnew; /opt is left alone.
root="$tmp/rpm-bash-host"
rpm_root "$root"
bash_service_config "$root"
if rpm_in "$root" -i --nodeps "$rpm_file"; then
  ok "rpm: rpm -i on a host with /opt/monitor_service/config.ini"
else
  fail "rpm: rpm -i on a host with /opt/monitor_service/config.ini: $(tail -n 5 "$tmp/rpm.out")"
fi
migrated rpm "$root" config.ini.rpmnew

# --- linters -----------------------------------------------------------------
# lintian: every tag, info and overridden ones included, for the summary;
# errors and warnings fail, and so does an override that matches nothing.
echo "== lintian $(lintian --version | awk '{ print $2 }')"
# count_tags LETTER: lintian lines of that kind (E, W, I, O).
count_tags() { grep -c "^$1: " "$tmp/lintian" || true; }
if lintian --fail-on none --display-info --show-overrides "$deb_file" >"$tmp/lintian" 2>"$tmp/lintian.err"; then
  grep -v '^N:' "$tmp/lintian" | sed 's/^/     /' || true
  echo "lintian: $(count_tags E) errors, $(count_tags W) warnings, $(count_tags I) info, $(count_tags O) overridden"
  if [ "$(count_tags E)" -eq 0 ] && [ "$(count_tags W)" -eq 0 ]; then
    ok "lintian: no error or warning that is not overridden"
  else
    fail "lintian: errors or warnings above (fix them, or override with a reason in packaging/deb/lintian-overrides)"
  fi
  if grep -qE ': (unused-override|mismatched-override) ' "$tmp/lintian"; then
    fail "lintian: packaging/deb/lintian-overrides has overrides that match nothing (see above)"
  else
    ok "lintian: every override matches"
  fi
else
  fail "lintian did not run: $(grep -v 'root privileges' "$tmp/lintian.err" | head -n 3)"
fi

# rpmlint with RHEL's settings and the filters (an unused filter is an error).
echo "== rpmlint $(rpmlint --version)"
rpmlint -c packaging/rpm/rpmlint.toml -r packaging/rpm/monitor_service.rpmlintrc "$rpm_file" \
  >"$tmp/rpmlint" 2>&1 || true
grep -E '^monitor_service' "$tmp/rpmlint" | sed 's/^/     /' || true
summary="$(grep -E 'packages and .* checked;' "$tmp/rpmlint" | sed 's/^ *//; s/ *$//')"
echo "rpmlint: ${summary:-no summary line}"
if [[ "$summary" == *"; 0 errors, 0 warnings"* ]]; then
  ok "rpmlint: no error or warning that is not filtered"
else
  fail "rpmlint: errors or warnings (fix them, or filter with a reason in packaging/rpm/monitor_service.rpmlintrc): $(tail -n 3 "$tmp/rpmlint" | tr '\n' ' ')"
fi

echo "packages: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
  log "check-packages: $failed check(s) failed (see FAIL lines above)"
  exit 1
fi
