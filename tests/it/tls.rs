//! TLS against real servers: each `ssl_mode` against a MariaDB with certificates the test makes,
//! client certificates, `require_secure_transport`, an alarm handled over TLS through the binlog
//! for a `REQUIRE SSL` account, and the suite's own server (MySQL's automatic certificates).

use std::path::PathBuf;
use std::time::Duration;

use monitor_service::config::{DatabaseConfig, Secret, SslMode, TlsConfig};
use monitor_service::db::Db;
use mysql_async::prelude::Queryable;

use crate::common::certs::Certs;
use crate::common::daemon::{bin, eventually, Daemon, Scratch};
use crate::common::db::TestDb;
use crate::common::server::OwnServer;

fn config_for(db: &TestDb, host: &str, mode: SslMode, ca: Option<PathBuf>) -> DatabaseConfig {
    DatabaseConfig {
        host: host.to_string(),
        port: db.port,
        user: db.user.clone(),
        password: db.password.clone().map(Secret::new),
        database: db.name.clone(),
        socket: None,
        connect_timeout: Duration::from_secs(5),
        tls: TlsConfig {
            mode,
            ca,
            cert: None,
            key: None,
        },
    }
}

/// Connects the daemon's way and returns the session's `Ssl_cipher` ("" for a plain
/// connection), or the daemon's error message.
async fn cipher(cfg: &DatabaseConfig) -> Result<String, String> {
    let db = Db::new(cfg, "RESTART_HISTORY");
    let result = match db.conn().await {
        Ok(mut conn) => {
            let row: Option<(String, String)> = conn
                .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                .await
                .map_err(|e| e.to_string())?;
            Ok(row.map(|(_, v)| v).unwrap_or_default())
        }
        Err(e) => Err(e.to_string()),
    };
    db.close().await;
    result
}

/// A throwaway server of the suite's flavour serving TLS with a certificate for `localhost` only.
async fn tls_server(tag: &str) -> (OwnServer, Certs) {
    let mut server = OwnServer::start(tag);
    let certs = Certs::make(&server.dir().join("pki"), "localhost", "DNS:localhost");
    server.restart_with(&certs.server_options()).await;
    (server, certs)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_ssl_mode_against_a_server_with_certificates() {
    let (server, certs) = tls_server("tls-modes").await;
    let db = server.db().await;
    let ca = Some(certs.ca.clone());

    assert_eq!(
        cipher(&config_for(&db, "127.0.0.1", SslMode::Disabled, None)).await,
        Ok(String::new())
    );
    for mode in [SslMode::Preferred, SslMode::Required] {
        let c = cipher(&config_for(&db, "127.0.0.1", mode, None)).await;
        assert!(c.as_ref().is_ok_and(|c| !c.is_empty()), "{mode}: {c:?}");
    }

    // verify_identity: the certificate names localhost, not 127.0.0.1.
    let right = cipher(&config_for(
        &db,
        "localhost",
        SslMode::VerifyIdentity,
        ca.clone(),
    ))
    .await;
    assert!(right.as_ref().is_ok_and(|c| !c.is_empty()), "{right:?}");
    let wrong = cipher(&config_for(
        &db,
        "127.0.0.1",
        SslMode::VerifyIdentity,
        ca.clone(),
    ))
    .await
    .unwrap_err();
    assert!(wrong.contains("ssl_mode = verify_identity"), "{wrong}");
    assert!(wrong.contains("does not name the host"), "{wrong}");

    // verify_ca checks the chain, not the name; a CA that did not sign it is refused.
    let c = cipher(&config_for(&db, "127.0.0.1", SslMode::VerifyCa, ca.clone())).await;
    assert!(c.as_ref().is_ok_and(|c| !c.is_empty()), "{c:?}");
    let e = cipher(&config_for(
        &db,
        "localhost",
        SslMode::VerifyCa,
        Some(certs.other_ca.clone()),
    ))
    .await
    .unwrap_err();
    assert!(e.contains("not signed by a CA in ssl_ca"), "{e}");

    // An account that requires a client certificate.
    db.exec("CREATE USER 'x509'@'127.0.0.1' REQUIRE X509").await;
    db.exec(&format!(
        "GRANT ALL ON `{}`.* TO 'x509'@'127.0.0.1'",
        db.name
    ))
    .await;
    let mut cfg = config_for(&db, "localhost", SslMode::VerifyIdentity, ca.clone());
    cfg.user = "x509".into();
    cfg.password = None;
    let e = cipher(&cfg).await.unwrap_err();
    assert!(e.contains("Access denied"), "{e}");
    cfg.tls.cert = Some(certs.client_cert.clone());
    cfg.tls.key = Some(certs.client_key.clone());
    let c = cipher(&cfg).await;
    assert!(c.as_ref().is_ok_and(|c| !c.is_empty()), "{c:?}");

    // require_secure_transport: plain TCP is refused with the setting named; TLS works.
    db.exec("SET GLOBAL require_secure_transport = ON").await;
    let e = cipher(&config_for(&db, "127.0.0.1", SslMode::Disabled, None))
        .await
        .unwrap_err();
    let on = cipher(&config_for(&db, "127.0.0.1", SslMode::Preferred, None)).await;
    let mut root = mysql_async::Conn::new(
        mysql_async::OptsBuilder::default()
            .user(Some("root"))
            .socket(Some(server.socket.display().to_string())),
    )
    .await
    .unwrap();
    root.query_drop("SET GLOBAL require_secure_transport = OFF")
        .await
        .unwrap();
    let _ = root.disconnect().await;
    // MariaDB answers a plain connection with "access denied" here; MySQL with its own error.
    assert!(e.contains("require_secure_transport"), "{e}");
    assert!(e.contains("ssl_mode"), "{e}");
    assert!(e.contains("not disabled"), "{e}");
    assert!(on.as_ref().is_ok_and(|c| !c.is_empty()), "{on:?}");
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alarm_is_handled_over_tls_through_the_binlog_for_a_require_ssl_account() {
    let (server, certs) = tls_server("tls-binlog").await;
    let db = server.db().await;
    db.exec("CREATE USER 'tlsmon'@'127.0.0.1' IDENTIFIED BY 'pw' REQUIRE SSL")
        .await;
    db.exec("GRANT ALL ON *.* TO 'tlsmon'@'127.0.0.1'").await;
    db.add_process(1, "svc1").await;
    let s = Scratch::new();
    s.fake_systemctl(0, "loaded");
    let mut config = s.config(
        &db,
        "[process.default]\nrestart_strategy = service\nhealth_check_command = true\n",
    );
    config.database.host = "localhost".into();
    config.database.user = "tlsmon".into();
    config.database.password = Some(Secret::new("pw"));
    config.database.tls.mode = SslMode::VerifyIdentity;
    config.database.tls.ca = Some(certs.ca.clone());
    let daemon = Daemon::start(config);
    let pos = s.path("state/binlog_position");
    assert!(
        eventually(Duration::from_secs(20), || pos.exists()).await,
        "binlog never connected"
    );

    db.set_alarm(1).await;
    assert!(
        db.wait_cleared(1, Duration::from_secs(10)).await,
        "alarm not handled"
    );
    let mut triggers = Vec::new();
    for _ in 0..100 {
        triggers = db
            .query_strings("SELECT `trigger` FROM RESTART_HISTORY WHERE process_id = 1")
            .await;
        if !triggers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(triggers, vec!["binlog".to_string()]);
    daemon.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_files_are_checked_when_the_config_is_read() {
    let s = Scratch::new();
    let path = s.path("config.ini");
    std::fs::write(
        &path,
        "[database]\nssl_mode = verify_ca\nssl_ca = /nonexistent/ca.pem\n",
    )
    .unwrap();
    let out = bin(&["--check-config", "-c", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(":3: [database] ssl_ca = \"/nonexistent/ca.pem\""),
        "{err}"
    );
    assert!(err.contains("cannot read /nonexistent/ca.pem"), "{err}");

    let certs = Certs::make(&s.path("pki"), "localhost", "DNS:localhost");
    std::fs::write(
        &path,
        format!(
            "[database]\nssl_cert = {}\nssl_key = {}\n",
            certs.client_cert.display(),
            certs.server_key.display()
        ),
    )
    .unwrap();
    let out = bin(&["--check-config", "-c", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("[database] ssl_key"), "{err}");
    assert!(err.contains("does not belong to the certificate"), "{err}");
}

/// The suite's own server: MySQL makes its own certificates at start, so `required` works
/// against it; a MariaDB without certificates refuses `required` with the setting named and
/// serves `preferred` in plain text.
#[tokio::test(flavor = "multi_thread")]
async fn suite_server_with_its_own_certificates() {
    let db = TestDb::new().await;
    let version = db.query_strings("SELECT VERSION()").await.join("");
    let offered =
        monitor_service::tls::server_offers_tls(&db.host, db.port, Duration::from_secs(5));
    let mysql = !version.contains("MariaDB");
    if mysql {
        assert_eq!(offered, Some(true), "MySQL {version} offers no TLS");
    }
    let required = cipher(&config_for(&db, &db.host, SslMode::Required, None)).await;
    let preferred = cipher(&config_for(&db, &db.host, SslMode::Preferred, None)).await;
    if offered == Some(true) {
        assert!(
            required.as_ref().is_ok_and(|c| !c.is_empty()),
            "{version}: {required:?}"
        );
        assert!(
            preferred.as_ref().is_ok_and(|c| !c.is_empty()),
            "{version}: {preferred:?}"
        );
        // Its automatic certificate is signed by its own CA, which the system does not trust.
        let e = cipher(&config_for(&db, &db.host, SslMode::VerifyCa, None))
            .await
            .unwrap_err();
        assert!(e.contains("ssl_ca"), "{e}");
    } else {
        assert_eq!(offered, Some(false), "{version}");
        let e = required.unwrap_err();
        assert!(
            e.contains("does not offer TLS but ssl_mode asks for it"),
            "{e}"
        );
        assert_eq!(preferred, Ok(String::new()), "{version}");
    }
    db.drop_db().await;
}
