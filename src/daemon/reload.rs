//! SIGHUP: re-reading the config file, applying what can change while running and naming the
//! settings that need a restart of the daemon.

use std::sync::Arc;

use tracing::{error, info, warn};

use crate::hub::Hub;
use crate::supervisor::Supervisor;
use crate::{Config, Hooks};

/// Re-reads the config file: a bad one is refused with an ERROR and the old one kept.
pub(super) fn reload(supervisor: &Supervisor, hub: &Hub, hooks: &Hooks) {
    let current = supervisor.config();
    match Config::load(&current.path) {
        Err(e) => {
            error!(error = %e, "configuration reload failed; keeping the configuration in force")
        }
        Ok(loaded) => {
            for w in &loaded.warnings {
                warn!("{w}");
            }
            let new = loaded.config;
            let later = restart_only_changes(&current, &new);
            if !later.is_empty() {
                warn!(settings = %later.join(", "), "changed settings that take effect only after a restart of the daemon");
            }
            (hooks.after_reload)(&new);
            let new = Arc::new(new);
            hub.set_config(new.clone());
            supervisor.set_config(new);
            info!(file = %current.path.display(), "configuration reloaded");
        }
    }
}

/// Settings a reload cannot apply (connections, sources and files are set up at start).
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.monitor, &new.monitor);
    let (ol, nl) = (&old.logging, &new.logging);
    [
        ("[database]", old.database != new.database),
        ("[binlog]", old.binlog_server != new.binlog_server),
        ("check_interval", o.check_interval != n.check_interval),
        ("binlog", o.binlog != n.binlog),
        ("server_id", o.server_id != n.server_id),
        (
            "max_parallel_restarts",
            o.max_parallel_restarts != n.max_parallel_restarts,
        ),
        ("state_dir", o.state_dir != n.state_dir),
        ("history_table", o.history_table != n.history_table),
        ("control_socket", o.control_socket != n.control_socket),
        ("host", o.host != n.host),
        ("hosts_table", o.hosts_table != n.hosts_table),
        ("[metrics]", old.metrics != new.metrics),
        ("log_file", ol.log_file != nl.log_file),
        ("max_log_size", ol.max_log_size_kb != nl.max_log_size_kb),
        (
            "log_files_to_keep",
            ol.log_files_to_keep != nl.log_files_to_keep,
        ),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect()
}
