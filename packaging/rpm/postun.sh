# monitor_service %postun ($1: 0 = erase, 1 or more = upgrade).
# The unit file changed or is gone: reload systemd. After an upgrade a
# running daemon is restarted on the new binary (a stopped one stays
# stopped; processes it started keep running, KillMode=process).
# On erase a modified config.ini is kept as config.ini.rpmsave, and the
# state in /var/lib/monitor_service and the log file are kept; the state
# directory (made by %post, not owned by the package) is removed when empty.
if [ "$1" -eq 0 ]; then
    rmdir /var/lib/monitor_service 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart monitor_service.service >/dev/null 2>&1 || :
    fi
fi
exit 0
