#!/usr/bin/env bash
# Builds the installable packages (`make rpm`, `make deb`, `make packages`).
#
#   scripts/package.sh rpm|deb|all
#
# Installs cargo-deb with `cargo install --locked` and rpmbuild (Debian's
# `rpm` package) with apt-get when missing, builds the release binary,
# writes the package(s) to $TARGET/packages/ ($TARGET: $CARGO_TARGET_DIR,
# else ./target) and prints each package's path on stdout, one per line
# (progress goes to stderr). What goes into the packages is declared in
# Cargo.toml ([package.metadata.deb]), packaging/rpm/monitor_service.spec
# and packaging/{deb,rpm}/ (install/remove scripts, changelogs); README.md,
# Packages. Refuses to build when a changelog's newest entry is not for the
# version being built.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$script_dir/lib.sh"
cd "$repo_dir"

# Versions these packages were written and checked with
# (scripts/check-packages.sh); an already installed other version is used
# as it is.
CARGO_DEB_VERSION=3.8.0

usage() {
  log "usage: scripts/package.sh rpm|deb|all"
  exit 2
}

[ $# -eq 1 ] || usage
case "$1" in
  rpm) kinds=(rpm) ;;
  deb) kinds=(deb) ;;
  all) kinds=(rpm deb) ;;
  *) usage ;;
esac

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# cargo_subcommand_or_install SUBCOMMAND CRATE VERSION
cargo_subcommand_or_install() {
  if cargo "$1" --version >/dev/null 2>&1; then
    return 0
  fi
  log "package: cargo $1 not found: cargo install --locked $2@$3 (a few minutes)"
  cargo install --locked "$2@$3" >&2
}

target_dir="${CARGO_TARGET_DIR:-${CARGO_BUILD_TARGET_DIR:-$repo_dir/target}}"
case "$target_dir" in
  /*) ;;
  *) target_dir="$repo_dir/$target_dir" ;;
esac
export CARGO_TARGET_DIR="$target_dir"
out_dir="$target_dir/packages"
mkdir -p "$out_dir"

# Reproducible timestamps: the last commit's time, unless given.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git -C "$repo_dir" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH

# rpmbuild_or_install: Debian's `rpm` package has rpmbuild (on RHEL it is
# rpm-build).
rpmbuild_or_install() {
  if command -v rpmbuild >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "package: rpmbuild not found: install it (dnf install rpm-build)"
    exit 1
  fi
  log "package: rpmbuild not found: installing rpm with apt-get"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y rpm >&2
}

version="$(cargo_toml_value version)"
revision="$(cargo_toml_value revision)"
homepage="$(cargo_toml_value homepage)"
maintainer="$(cargo_toml_value maintainer)"
for v in version revision homepage maintainer; do
  [ -n "${!v}" ] || { log "package: no $v = \"...\" in Cargo.toml"; exit 1; }
done

# changelog_is_current KIND FILE NEWEST_ENTRY_VERSION
changelog_is_current() {
  if [ "$3" != "$version-$revision" ]; then
    log "package: $2: newest entry is ${3:-missing}, but this builds $version-$revision:"
    log "package: add a $1 changelog entry (or change revision in Cargo.toml)"
    exit 1
  fi
}

for kind in "${kinds[@]}"; do
  case "$kind" in
    rpm)
      rpmbuild_or_install
      changelog_is_current rpm packaging/rpm/changelog \
        "$(sed -n '1s/^\*.* - \([^ ]*\)$/\1/p' packaging/rpm/changelog)"
      ;;
    deb)
      cargo_subcommand_or_install deb cargo-deb "$CARGO_DEB_VERSION"
      changelog_is_current deb packaging/deb/changelog \
        "$(sed -n '1s/^monitor-service (\([^)]*\)).*/\1/p' packaging/deb/changelog)"
      ;;
  esac
done

ensure_build_deps
log "package: cargo build --release --locked (target dir $target_dir)"
cargo build --release --locked >&2

for kind in "${kinds[@]}"; do
  case "$kind" in
    rpm)
      arch="$(uname -m)"
      rpm_file="$out_dir/monitor_service-$version-$revision.$arch.rpm"
      rm -f "$rpm_file"
      log "package: rpmbuild -bb packaging/rpm/monitor_service.spec"
      top="$(mktemp -d)"
      # Requirements (libc.so.6(GLIBC_x)(64bit), /bin/sh for the scriptlets)
      # come from rpmbuild's own dependency generator.
      rpmbuild -bb --target "$arch" \
        --define "_topdir $top" \
        --define "_rpmdir $out_dir" \
        --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
        --define "repo $repo_dir" \
        --define "binary $target_dir/release/monitor_service" \
        --define "pkg_version $version" \
        --define "pkg_release $revision" \
        --define "pkg_url $homepage" \
        --define "pkg_packager $maintainer" \
        packaging/rpm/monitor_service.spec >&2 || { rm -rf "$top"; exit 1; }
      rm -rf "$top"
      [ -f "$rpm_file" ] || { log "package: $rpm_file was not written"; exit 1; }
      printf '%s\n' "$rpm_file"
      ;;
    deb)
      log "package: cargo deb --no-build"
      # cargo deb prints the path of the .deb it wrote.
      deb_file="$(cargo deb --no-build --locked -o "$out_dir/" | tail -n 1)"
      [ -f "$deb_file" ] || { log "package: cargo deb wrote no .deb ($deb_file)"; exit 1; }
      printf '%s\n' "$deb_file"
      ;;
  esac
done
