#!/usr/bin/env bash
# Builds the installable packages (`make rpm`, `make deb`, `make packages`).
#
#   scripts/package.sh rpm|deb|all
#
# Installs cargo-generate-rpm / cargo-deb with `cargo install --locked` when
# missing, builds the release binary, writes the package(s) to
# $TARGET/packages/ ($TARGET: $CARGO_TARGET_DIR, else ./target) and prints
# each package's path on stdout, one per line (progress goes to stderr).
# What goes into the packages is declared in Cargo.toml
# ([package.metadata.deb], [package.metadata.generate-rpm]) and
# packaging/{deb,rpm}/ (install/remove scripts); README.md, Packages.
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
CARGO_GENERATE_RPM_VERSION=0.21.1

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

for kind in "${kinds[@]}"; do
  case "$kind" in
    rpm) cargo_subcommand_or_install generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION" ;;
    deb) cargo_subcommand_or_install deb cargo-deb "$CARGO_DEB_VERSION" ;;
  esac
done

log "package: cargo build --release --locked (target dir $target_dir)"
cargo build --release --locked >&2

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"

for kind in "${kinds[@]}"; do
  case "$kind" in
    rpm)
      arch="$(uname -m)"
      rpm_file="$out_dir/monitor_service-$version-1.$arch.rpm"
      rm -f "$rpm_file"
      log "package: cargo generate-rpm"
      # builtin: requirements from ldd (libc.so.6(GLIBC_x)(64bit), ...), the
      # same on every build machine whether or not rpm is installed there.
      cargo generate-rpm --target-dir "$target_dir" --auto-req builtin \
        --arch "$arch" -o "$rpm_file" >&2
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
