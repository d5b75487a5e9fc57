# Sourced (not executed: keep this file non-executable) by the mysql image's
# entrypoint on the first start with an empty data directory; it provides
# docker_process_sql. Loads the schema part of sql/setup.sql (everything
# before `-- @@end-of-schema`). The rest of setup.sql is not loaded here:
#  - its sample rows name host services (sshd, crond, ...) that do not exist
#    in the demo container; 30-demo.sql adds the demo processes instead;
#  - its account section creates 'monitor'@'localhost', which does not match
#    connections from the daemon's container; 20-account.sql creates the same
#    account for any host of the compose network.
echo "monitor_service: loading the schema from sql/setup.sql"
sed '/^-- @@end-of-schema/,$d' "${MONITOR_SETUP_SQL:-/monitor_service/setup.sql}" | docker_process_sql
