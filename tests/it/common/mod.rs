//! Helpers shared by the integration tests.
pub mod bin;
pub mod certs;
pub mod daemon;
pub mod db;
pub mod host;
pub mod procs;
pub mod procstat;
pub mod proxy;
pub mod replica;
pub mod server;
