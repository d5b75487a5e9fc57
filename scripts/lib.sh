# Shared helpers for scripts/*.sh (sourced, not run).

# Prints a message on stderr.
log() { printf '%s\n' "$*" >&2; }

# True when the MariaDB server binary is available.
have_mariadbd() {
  command -v mariadbd >/dev/null 2>&1 || test -x /usr/sbin/mariadbd
}

# Installs mariadb-server and mariadb-client with apt-get when mariadbd is
# missing (needs root, Debian/Ubuntu).
ensure_mariadb() {
  if have_mariadbd; then
    return 0
  fi
  log "mariadbd not found: installing mariadb-server mariadb-client with apt-get"
  apt_install mariadb-server mariadb-client
}

# apt-get update, then installs the packages named (sudo when not root; Debian/Ubuntu).
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >&2
}

# Installs what building needs beyond Rust when it is missing: OpenSSL's headers and
# pkg-config (TLS goes through the system's OpenSSL; needs root, Debian/Ubuntu).
ensure_build_deps() {
  if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl; then
    return 0
  fi
  log "OpenSSL headers or pkg-config not found: installing libssl-dev pkg-config with apt-get"
  apt_install libssl-dev pkg-config
}

# Prints the value of the first `KEY = "value"` line of Cargo.toml (in the
# current directory): version, revision, homepage, maintainer.
cargo_toml_value() {
  sed -n "s/^$1 = \"\\(.*\\)\"\$/\\1/p" Cargo.toml | head -n 1
}
