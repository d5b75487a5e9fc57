//! A TCP proxy in front of the test server that a test can take down (refuse and cut every
//! connection) and bring back, to make the database unreachable without touching the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    epoch: watch::Sender<u64>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target_port` while up.
    pub async fn start(target_host: &str, target_port: u16, up: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let flag = Arc::new(AtomicBool::new(up));
        let (epoch, _) = watch::channel(0u64);
        let target = format!("{target_host}:{target_port}");
        let (f, e) = (flag.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !f.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut = e.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy {
            port,
            up: flag,
            epoch,
        }
    }

    /// Refuses new connections and cuts the open ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.epoch.send_modify(|e| *e += 1);
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
