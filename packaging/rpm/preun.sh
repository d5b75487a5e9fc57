# monitor_service %preun ($1: 0 = erase, 1 or more = upgrade).
# On erase: stop and disable the service. On upgrade: nothing (%postun
# try-restarts it).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl stop monitor_service.service >/dev/null 2>&1 || :
    systemctl disable monitor_service.service >/dev/null 2>&1 || :
fi
exit 0
