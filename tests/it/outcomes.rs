//! What handling one trigger came to, said precisely: a busy claim is not "not alarmed", a
//! refused query is not an outage.

use std::sync::Arc;

use monitor_service::db::Db;
use monitor_service::source::TriggerSource;
use monitor_service::state::StateDir;
use monitor_service::supervisor::{Handled, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::common::daemon::Scratch;
use crate::common::db::TestDb;

fn supervisor(config: &monitor_service::Config) -> Supervisor {
    let config = Arc::new(config.clone());
    let db = Arc::new(Db::new(&config.database, &config.monitor.history_table));
    let state = StateDir::open(&config.monitor.state_dir).unwrap();
    Supervisor::new(config, db, state, false, CancellationToken::new())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_held_elsewhere_is_lock_busy_and_a_refused_query_is_not_an_outage() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    db.add_process(1, "svcbusy").await;
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
    );
    // Another monitor_service (another session) holds the claim.
    let other = Db::new(&config.database, &config.monitor.history_table);
    let claim = other.claim(1).await.unwrap().expect("claimed");
    let sup = supervisor(&config);
    assert_eq!(
        sup.handle(1, TriggerSource::Manual).await,
        Handled::LockBusy
    );
    assert!(s.systemctl_calls().is_empty());
    claim.release().await;
    assert_eq!(
        sup.handle(1, TriggerSource::Manual).await,
        Handled::Succeeded
    );

    // The server refuses the row query (the table is gone): not DbUnavailable.
    db.exec("DROP TABLE STATUS_PROCESS").await;
    assert_eq!(
        sup.handle(1, TriggerSource::Manual).await,
        Handled::QueryRefused
    );
    db.drop_db().await;
}
