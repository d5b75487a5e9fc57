//! Dispatch: one procedure per process at a time, a bound on procedures in parallel.

use std::sync::Arc;

use monitor_service::db::Db;
use monitor_service::pipeline::Pipeline;
use monitor_service::source::{Trigger, TriggerSource};
use monitor_service::state::StateDir;
use monitor_service::supervisor::Supervisor;
use tokio_util::sync::CancellationToken;

use crate::common::daemon::{read_lines, Scratch};
use crate::common::db::TestDb;

fn pipeline(config: monitor_service::Config) -> Pipeline {
    let config = Arc::new(config);
    let db = Arc::new(Db::new(&config.database, &config.monitor.history_table));
    let state = StateDir::open(&config.monitor.state_dir).unwrap();
    let token = CancellationToken::new();
    let sup = Arc::new(Supervisor::new(
        config.clone(),
        db,
        state,
        false,
        token.clone(),
    ));
    Pipeline::new(sup, config.monitor.max_parallel_restarts, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_triggers_for_one_process_give_one_procedure() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let log = s.path("pre.log");
    db.add_process(1, "svc").await;
    db.set_alarm(1).await;
    let config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = service\npre_restart_command = sh -c \"echo run >> {}; sleep 0.3\"\nhealth_check_command = true\n",
            log.display()
        ),
    );
    let p = pipeline(config);
    p.submit(Trigger {
        process_id: 1,
        source: TriggerSource::Sweep,
    });
    p.submit(Trigger {
        process_id: 1,
        source: TriggerSource::Binlog,
    });
    p.submit(Trigger {
        process_id: 1,
        source: TriggerSource::Sweep,
    });
    p.idle().await;
    assert_eq!(
        read_lines(&log).len(),
        1,
        "one procedure for concurrent triggers"
    );
    assert_eq!(p.counts().succeeded, 1);
    assert_eq!(s.systemctl_calls(), vec!["restart svc".to_string()]);
    assert_eq!(db.row(1).await.0, 0);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn procedures_in_parallel_are_bounded() {
    let db = TestDb::new().await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let log = s.path("spans.log");
    for id in 1..=8 {
        db.add_process(id, &format!("svc{id}")).await;
        db.set_alarm(id).await;
    }
    let mut config = s.config(
        &db,
        &format!(
            "[process.default]\nrestart_strategy = service\npre_restart_command = sh -c \"echo start >> {l}; sleep 0.3; echo end >> {l}\"\nhealth_check_command = true\n",
            l = log.display()
        ),
    );
    config.monitor.max_parallel_restarts = 2;
    let p = pipeline(config);
    for id in 1..=8 {
        p.submit(Trigger {
            process_id: id,
            source: TriggerSource::Sweep,
        });
    }
    p.idle().await;
    assert_eq!(p.counts().succeeded, 8);
    let (mut now, mut max) = (0i32, 0i32);
    for l in read_lines(&log) {
        now += if l == "start" { 1 } else { -1 };
        max = max.max(now);
    }
    assert_eq!(
        max, 2,
        "at most max_parallel_restarts at once, and that many used"
    );
    db.drop_db().await;
}
