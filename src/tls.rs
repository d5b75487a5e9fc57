//! TLS for the database connections: `ssl_mode` and the `ssl_*` files turned into the driver's
//! [`SslOpts`], the `preferred` probe (does the server offer TLS?), and hints for TLS failures.
//!
//! The backend is native-tls (the system's OpenSSL, so RHEL's crypto policy applies). It takes a
//! client identity only as PKCS#12, so `ssl_cert` + `ssl_key` (PEM, as the mysql client takes
//! them) are packed into an in-memory PKCS#12 archive here.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::{ClientIdentity, SslOpts};
use tracing::{debug, error, warn};

use crate::config::{DatabaseConfig, SslMode, TlsConfig};

/// The capability bit a server sets when it accepts TLS (`CLIENT_SSL`).
const CLIENT_SSL: u16 = 0x0800;
/// Set once the "cannot ask the server" warning was logged (later ones go to DEBUG: the
/// binlog asks again on every reconnect during an outage).
static WARNED: AtomicBool = AtomicBool::new(false);
/// Longest the `preferred` probe waits for the server's greeting.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a connection to `cfg` should do about TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Plain connection.
    Plain,
    /// TLS, with the checks `ssl_mode` asks for.
    Tls,
}

/// Decides plain or TLS from `ssl_mode`, the transport and (for `preferred` only) whether the
/// server offers TLS (`None`: could not tell). A Unix socket is local: never TLS (as the mysql
/// client; a server with `require_secure_transport` accepts socket connections).
pub fn plan(mode: SslMode, socket: bool, offered: impl FnOnce() -> Option<bool>) -> Plan {
    match mode {
        _ if socket => Plan::Plain,
        SslMode::Disabled => Plan::Plain,
        SslMode::Preferred => match offered() {
            Some(true) => Plan::Tls,
            _ => Plan::Plain,
        },
        SslMode::Required | SslMode::VerifyCa | SslMode::VerifyIdentity => Plan::Tls,
    }
}

/// The driver's TLS options for `cfg`, or `None` for a plain connection. For `preferred` this
/// asks the server (one short blocking TCP exchange: call it off the async threads when it
/// matters).
/// `socket`: the connection goes through a Unix socket (configured or found for localhost).
pub fn ssl_opts(cfg: &DatabaseConfig, socket: bool) -> Option<SslOpts> {
    let plan = plan(cfg.tls.mode, socket, || {
        let target = format!("{}:{}", cfg.host, cfg.port);
        let offered = server_offers_tls(&cfg.host, cfg.port, cfg.connect_timeout);
        match offered {
            Some(offered) => {
                debug!(target_db = %target, offered, "ssl_mode = preferred: asked the server whether it offers TLS")
            }
            None if WARNED.swap(true, Ordering::Relaxed) => {
                debug!(target_db = %target, "ssl_mode = preferred: server not reachable; connecting without TLS")
            }
            None => {
                warn!(target_db = %target, "ssl_mode = preferred: cannot ask the server whether it offers TLS (not reachable now); these connections go without TLS: set ssl_mode = required (or a verify_ mode) when the server must be reached over TLS")
            }
        }
        offered
    });
    (plan == Plan::Tls).then(|| opts_for(&cfg.tls))
}

/// [`crate::db::connect_opts`] run on a blocking thread (the `preferred` probe blocks), for
/// connections opened from async code outside the pool (the binlog stream).
pub async fn connect_opts(cfg: &DatabaseConfig) -> mysql_async::OptsBuilder {
    let owned = cfg.clone();
    match tokio::task::spawn_blocking(move || crate::db::connect_opts(&owned)).await {
        Ok(opts) => opts,
        Err(_) => crate::db::connect_opts(cfg),
    }
}

/// The checks each mode asks for; the CA and client identity when given.
fn opts_for(tls: &TlsConfig) -> SslOpts {
    let verify_chain = matches!(tls.mode, SslMode::VerifyCa | SslMode::VerifyIdentity);
    let verify_name = tls.mode == SslMode::VerifyIdentity;
    let mut opts = SslOpts::default()
        .with_danger_accept_invalid_certs(!verify_chain)
        .with_danger_skip_domain_validation(!verify_name);
    if let Some(ca) = &tls.ca {
        // As the mysql client: ssl_ca replaces the system's CAs.
        opts = opts
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        match pkcs12(cert, key) {
            Ok(der) => {
                opts = opts.with_client_identity(Some(ClientIdentity::new(der.into())));
            }
            // Checked at load; reaching this means the files changed since.
            Err(e) => {
                error!(error = %e, "no client certificate sent; fix ssl_cert/ssl_key and reload")
            }
        }
    }
    opts
}

/// Checks that `cert` and `key` are a PEM certificate and its private key (used at load).
pub fn check_identity(cert: &Path, key: &Path) -> Result<(), String> {
    pkcs12(cert, key).map(|_| ())
}

/// `cert` + `key` (PEM) packed as a password-less PKCS#12 archive (DER).
fn pkcs12(cert: &Path, key: &Path) -> Result<Vec<u8>, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let x509 = openssl::x509::X509::from_pem(&cert_pem)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", cert.display()))?;
    let pkey = openssl::pkey::PKey::private_key_from_pem(&key_pem).map_err(|e| {
        format!(
            "{} is not a PEM private key (or it is encrypted; the daemon needs it without a passphrase): {e}",
            key.display()
        )
    })?;
    let matches = x509
        .public_key()
        .map(|pk| pk.public_eq(&pkey))
        .unwrap_or(false);
    if !matches {
        return Err(format!(
            "the private key in {} does not belong to the certificate in {}",
            key.display(),
            cert.display()
        ));
    }
    let archive = openssl::pkcs12::Pkcs12::builder()
        .name("monitor_service")
        .pkey(&pkey)
        .cert(&x509)
        .build2("")
        .and_then(|p| p.to_der())
        .map_err(|e| format!("cannot pack {} for TLS: {e}", cert.display()))?;
    Ok(archive)
}

/// Whether the server at `host:port` offers TLS, read from its greeting (capability flags);
/// `None` when it could not be reached or did not greet with a handshake.
pub fn server_offers_tls(host: &str, port: u16, timeout: Duration) -> Option<bool> {
    let timeout = timeout.min(PROBE_TIMEOUT);
    let addr = (host, port).to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; len.min(1024)];
    stream.read_exact(&mut payload).ok()?;
    greeting_offers_tls(&payload)
}

/// Reads the capability flags of a protocol-10 greeting: version byte, server version
/// (NUL-terminated), connection id (4), scramble part 1 (8), filler (1), capabilities (2).
pub fn greeting_offers_tls(payload: &[u8]) -> Option<bool> {
    if payload.first() != Some(&10) {
        return None;
    }
    let nul = payload.iter().skip(1).position(|b| *b == 0)? + 1;
    let at = nul + 1 + 4 + 8 + 1;
    let caps = payload.get(at..at + 2)?;
    Some(u16::from_le_bytes([caps[0], caps[1]]) & CLIENT_SSL != 0)
}

/// A hint for a TLS-related connection failure, naming the setting to change; "" for others.
pub fn hint(e: &mysql_async::Error) -> &'static str {
    let text = e.to_string().to_ascii_lowercase();
    match e {
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            "; the server does not offer TLS but ssl_mode asks for it: configure ssl_cert/ssl_key on the server, or set ssl_mode = preferred"
        }
        mysql_async::Error::Server(s) if s.code == 3159 || text.contains("secure transport") => {
            "; the server requires TLS (require_secure_transport): set ssl_mode = required (or preferred, verify_ca, verify_identity), not disabled"
        }
        _ if text.contains("hostname mismatch") || text.contains("ip address mismatch") => {
            "; ssl_mode = verify_identity: the server's certificate does not name the host connected to; connect by a name its CN/subjectAltName holds, or use ssl_mode = verify_ca"
        }
        _ if text.contains("certificate verify failed") || text.contains("unable to get local issuer") => {
            "; ssl_mode = verify_ca/verify_identity: the server's certificate is not signed by a CA in ssl_ca; set ssl_ca to the CA that signed it"
        }
        _ if text.contains("tls") || text.contains("ssl") => {
            "; check ssl_mode, ssl_ca, ssl_cert and ssl_key"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(caps: u16) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"10.11.6-MariaDB\0");
        p.extend_from_slice(&[1, 0, 0, 0]);
        p.extend_from_slice(b"abcdefgh");
        p.push(0);
        p.extend_from_slice(&caps.to_le_bytes());
        p
    }

    #[test]
    fn greeting_tells_whether_tls_is_offered() {
        assert_eq!(greeting_offers_tls(&greeting(0xffff)), Some(true));
        assert_eq!(greeting_offers_tls(&greeting(!CLIENT_SSL)), Some(false));
        // An error packet (0xff) or a cut greeting: cannot tell.
        assert_eq!(greeting_offers_tls(&[0xff, 0x15, 0x04]), None);
        assert_eq!(greeting_offers_tls(&greeting(0xffff)[..20]), None);
    }

    #[test]
    fn plan_follows_the_mysql_clients_modes() {
        let never = || -> Option<bool> { panic!("asked the server") };
        assert_eq!(plan(SslMode::Disabled, false, never), Plan::Plain);
        assert_eq!(plan(SslMode::Required, false, never), Plan::Tls);
        assert_eq!(plan(SslMode::VerifyIdentity, false, never), Plan::Tls);
        assert_eq!(plan(SslMode::Required, true, never), Plan::Plain);
        assert_eq!(plan(SslMode::Preferred, false, || Some(true)), Plan::Tls);
        assert_eq!(plan(SslMode::Preferred, false, || Some(false)), Plan::Plain);
        assert_eq!(plan(SslMode::Preferred, false, || None), Plan::Plain);
    }
}
