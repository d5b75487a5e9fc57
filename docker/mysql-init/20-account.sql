-- The daemon's account on MySQL 8 (loaded by the mysql image on the first
-- start). Same grants as sql/setup.sql, with MySQL's privilege names:
-- REPLICATION CLIENT (MariaDB 10.5+ calls it BINLOG MONITOR). Host '%' because
-- the daemon connects from another container of the compose network.
-- Demo password 'change-me' (docker/config.ini holds the same).
CREATE USER IF NOT EXISTS 'monitor'@'%' IDENTIFIED BY 'change-me';
GRANT SELECT ON v_process_monitor.PROCESE TO 'monitor'@'%';
GRANT SELECT, UPDATE ON v_process_monitor.STATUS_PROCESS TO 'monitor'@'%';
GRANT SELECT, INSERT ON v_process_monitor.RESTART_HISTORY TO 'monitor'@'%';
GRANT SELECT, INSERT, UPDATE ON v_process_monitor.MONITOR_HOSTS TO 'monitor'@'%';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'monitor'@'%';
