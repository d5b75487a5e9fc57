-- monitor_service: database schema, sample rows and the daemon's account.
--
-- Safe to run more than once (every statement is idempotent):
--     mariadb -u <admin-user> -p < sql/setup.sql
-- (run it as a DBA account that may create databases, users and grants;
--  the daemon itself never needs such an account).
--
-- Server settings the binlog path needs (my.cnf, [mysqld] / [mariadbd]):
--     log_bin          = mysql-bin   # binary log on
--     binlog_format    = ROW         # STATEMENT/MIXED carry no row images
--     binlog_row_image = FULL        # MINIMAL drops the before image columns
--     server_id        = 1           # any non-zero id, unique in the topology
-- Without them the daemon warns once and runs on periodic sweeps alone
-- (or refuses to start with `binlog = on` in config.ini).
--
-- Tests apply only the part up to the `@@end-of-schema` marker below, with
-- the database name replaced; keep statements there ending with `;` at the
-- end of a line.

CREATE DATABASE IF NOT EXISTS v_process_monitor;
USE v_process_monitor;

-- Processes the daemon may restart. process_name is the executable name
-- (matched exactly) and the default systemd unit.
CREATE TABLE IF NOT EXISTS PROCESE (
  process_id   INT PRIMARY KEY,
  process_name VARCHAR(100) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Many hosts on one database (optional upgrade step): name in PROCESE.host
-- the host whose daemon restarts the process ([monitor] host, default the
-- name `hostname` prints; compared case-insensitively, so keep the column's
-- default _ci collation). Each daemon then handles only its own rows; rows
-- with host NULL are left alone (counted at start-up and by `status`).
-- Without the column every daemon handles every row. The index serves the
-- sweep (`... JOIN PROCESE p ... WHERE p.host = ?`) and the counts:
--     ALTER TABLE PROCESE ADD COLUMN host VARCHAR(255) NULL,
--       ADD KEY idx_host (host);
--     UPDATE PROCESE SET host = 'web01' WHERE process_id IN (1, 2);

-- One row per process: alarma = 1 asks for a restart; the daemon sets it back
-- to 0 on success and writes the latest outcome into notes. sound is not used
-- by the daemon.
CREATE TABLE IF NOT EXISTS STATUS_PROCESS (
  process_id INT PRIMARY KEY,
  alarma     TINYINT NOT NULL DEFAULT 0,
  sound      TINYINT NOT NULL DEFAULT 0,
  notes      VARCHAR(100),
  KEY idx_alarma (alarma),
  FOREIGN KEY (process_id) REFERENCES PROCESE(process_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Optional: one row per restart procedure (the daemon works without it and
-- says so once). `trigger` is a reserved word: always backquote it.
--   trigger: binlog, sweep, startup, manual, breaker (a half-open trial)
--   outcome: success, failed, refused, skipped
CREATE TABLE IF NOT EXISTS RESTART_HISTORY (
  id           BIGINT AUTO_INCREMENT PRIMARY KEY,
  process_id   INT NOT NULL,
  process_name VARCHAR(100),
  started_at   DATETIME(3) NOT NULL,
  finished_at  DATETIME(3) NOT NULL,
  `trigger`    VARCHAR(16) NOT NULL,
  strategy     VARCHAR(16),
  attempts     INT NOT NULL DEFAULT 0,
  outcome      VARCHAR(16) NOT NULL,
  detail       VARCHAR(1000),
  KEY idx_process_started (process_id, started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Optional: one row per daemon, written at start and every 10 s (the daemon
-- works without it and says so once). `monitor_service status --hosts` lists
-- it and marks a daemon not seen for 30 s as stale. Times are the server's
-- UTC_TIMESTAMP(); binlog_source is NULL when the daemon runs on sweeps alone.
CREATE TABLE IF NOT EXISTS MONITOR_HOSTS (
  host               VARCHAR(255) NOT NULL PRIMARY KEY,
  version            VARCHAR(32) NOT NULL,
  started_at         DATETIME NOT NULL,
  last_seen          DATETIME NOT NULL,
  binlog_source      VARCHAR(255),
  binlog_lag         INT,
  breakers_open      INT UNSIGNED NOT NULL DEFAULT 0,
  procedures_running INT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- @@end-of-schema

-- Sample processes (existing rows are left alone).
INSERT IGNORE INTO PROCESE (process_id, process_name) VALUES
  (1, 'sshd'),
  (2, 'crond'),
  (3, 'httpd'),
  (4, 'rsyslogd');

INSERT IGNORE INTO STATUS_PROCESS (process_id, alarma, sound, notes) VALUES
  (1, 0, 0, NULL),
  (2, 0, 0, NULL),
  (3, 0, 0, NULL),
  (4, 0, 0, NULL);

-- @@end-of-samples

-- The daemon's account: least privilege, never root.
-- CHANGE THE PASSWORD: replace 'change-me' below (or run
--     ALTER USER 'monitor'@'localhost' IDENTIFIED BY '<a strong password>';
-- afterwards) and put the same password in config.ini ([database] password,
-- config.ini mode 600). 'localhost' matches connections over the Unix socket
-- (and, unless the server runs with skip-name-resolve, TCP from 127.0.0.1).
-- If the daemon connects over TCP to 127.0.0.1 on a server with
-- skip-name-resolve, or from another host, create 'monitor'@'127.0.0.1' or
-- 'monitor'@'<that host>' with the same grants.
CREATE USER IF NOT EXISTS 'monitor'@'localhost' IDENTIFIED BY 'change-me';

-- Sweeps and outcome writes: read both tables, clear alarms / write notes.
GRANT SELECT ON v_process_monitor.PROCESE TO 'monitor'@'localhost';
GRANT SELECT, UPDATE ON v_process_monitor.STATUS_PROCESS TO 'monitor'@'localhost';
-- Optional history table: INSERT for the daemon (one row per restart
-- procedure), SELECT for `monitor_service status` (each process's last restart).
GRANT SELECT, INSERT ON v_process_monitor.RESTART_HISTORY TO 'monitor'@'localhost';
-- Optional hosts table: SELECT, INSERT, UPDATE to upsert this daemon's row
-- (INSERT ... ON DUPLICATE KEY UPDATE) and, for `status`, read the others.
GRANT SELECT, INSERT, UPDATE ON v_process_monitor.MONITOR_HOSTS TO 'monitor'@'localhost';
-- GET_LOCK (one claim per restart procedure, so two daemons on one database
-- never restart a process twice) needs no grant.

-- Binlog tailing: REPLICATION SLAVE to register as a replica and read the
-- stream, and the privilege for the binlog status (SHOW BINARY LOG STATUS,
-- SHOW MASTER STATUS): REPLICATION CLIENT on MySQL and MariaDB before 10.5,
-- BINLOG MONITOR on MariaDB 10.5+ (where REPLICATION CLIENT is its old name).
-- The same line runs on all of them: `/*M!100502 ... */` is executed by
-- MariaDB 10.5.2+ only and is a plain comment for MySQL.
GRANT REPLICATION SLAVE, REPLICATION CLIENT /*M!100502 , BINLOG MONITOR */ ON *.* TO 'monitor'@'localhost';

-- The daemon also reads information_schema.COLUMNS (column order for the
-- binlog rows, the real length of notes). No grant is needed: every account
-- sees the information_schema rows of the tables it has privileges on.
