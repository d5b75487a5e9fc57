#!/bin/sh
# Entry point of the monitor_service demo container (see docker-compose.yml):
# installs the mounted config with mode 600, starts the demo processes that
# are not running yet, then replaces itself with the daemon. Arguments are
# passed on to monitor_service (e.g. --check-config).
set -eu

src=/usr/local/etc/monitor_service/config.ini
dst="${MONITOR_SERVICE_CONFIG:-/etc/monitor_service/config.ini}"
if [ -f "$src" ]; then
  # The bind mount keeps the host's mode (usually 644); the daemon warns
  # about a readable file that holds a password.
  install -m 600 "$src" "$dst"
fi

for w in demo_worker1 demo_worker2 demo_worker3; do
  if ! pgrep -x "$w" >/dev/null 2>&1; then
    # Detached in its own session, like the daemon's `process` strategy.
    setsid -f "/usr/local/bin/$w" infinity </dev/null >/dev/null 2>&1
  fi
done

exec /usr/bin/monitor_service -c "$dst" "$@"
