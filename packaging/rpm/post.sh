# monitor_service %post ($1: 1 = first install, 2 or more = upgrade).
# The service is never enabled or started here: the operator edits
# /etc/monitor_service/config.ini first, then runs
# `systemctl enable --now monitor_service`.
#
# Breaker state and binlog position: made here (0700, root) rather than
# owned by the package, so that erasing the package never deletes what is
# in it (%postun removes it only when empty); the .deb does the same.
if [ ! -d /var/lib/monitor_service ]; then
    install -d -m 0700 /var/lib/monitor_service || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
