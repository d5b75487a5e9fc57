//! Integration tests: one test binary, real MariaDB/MySQL server with the
//! binlog on (see `scripts/testdb.sh`, or set `MONITOR_TEST_DB_URL`), real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod binlog;
mod binlog_origin;
mod binlog_settings;
mod breaker;
mod cli;
mod commands;
mod controls;
mod database;
mod faults;
mod fleet;
mod harness;
mod hostile;
mod lifecycle;
mod load;
mod metrics;
mod notes;
mod ops;
mod outage;
mod outcomes;
mod pipeline;
mod policy;
mod props;
mod replica;
mod restart;
mod rows;
mod secrets;
mod setup_sql;
mod tls;
