//! Integration tests: one test binary, real MariaDB/MySQL server with the
//! binlog on (see `scripts/testdb.sh`, or set `MONITOR_TEST_DB_URL`), real processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod binlog;
mod breaker;
mod cli;
mod commands;
mod controls;
mod faults;
mod harness;
mod hostile;
mod lifecycle;
mod load;
mod metrics;
mod notes;
mod ops;
mod outage;
mod pipeline;
mod props;
mod replica;
mod restart;
mod rows;
mod secrets;
mod tls;
