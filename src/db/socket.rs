//! Which Unix socket a connection uses: the configured one, else for `localhost` on the
//! default port the server's socket at a usual path (as the mysql client does); an address
//! such as `127.0.0.1` always means TCP.

use std::path::{Path, PathBuf};

/// Where MySQL and MariaDB packages put the server's socket: Debian/Ubuntu, systemd's /run,
/// RHEL/Fedora, and builds from source.
pub const USUAL_SOCKETS: [&str; 4] = [
    "/var/run/mysqld/mysqld.sock",
    "/run/mysqld/mysqld.sock",
    "/var/lib/mysql/mysql.sock",
    "/tmp/mysql.sock",
];

/// The default TCP port; only `localhost` on it may switch to a socket.
const DEFAULT_PORT: u16 = 3306;

/// The socket to connect through, or `None` for TCP to host:port. `present` are the usual
/// socket paths that exist on this host, in order of preference.
pub fn choose(
    configured: Option<&Path>,
    host: &str,
    port: u16,
    present: &[PathBuf],
) -> Option<PathBuf> {
    if let Some(sock) = configured {
        return Some(sock.to_path_buf());
    }
    if host.eq_ignore_ascii_case("localhost") && port == DEFAULT_PORT {
        return present.first().cloned();
    }
    None
}

/// The paths of `candidates` that are Unix sockets on this host.
pub fn present(candidates: &[&str]) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    candidates
        .iter()
        .map(PathBuf::from)
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<PathBuf> {
        p.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn localhost_on_the_default_port_takes_the_first_present_socket() {
        let found = paths(&["/run/mysqld/mysqld.sock", "/tmp/mysql.sock"]);
        assert_eq!(
            choose(None, "localhost", 3306, &found),
            Some(PathBuf::from("/run/mysqld/mysqld.sock"))
        );
        assert_eq!(
            choose(None, "LocalHost", 3306, &found[1..]),
            Some(PathBuf::from("/tmp/mysql.sock"))
        );
    }

    #[test]
    fn localhost_without_a_socket_or_on_another_port_uses_tcp() {
        let found = paths(&["/var/lib/mysql/mysql.sock"]);
        assert_eq!(choose(None, "localhost", 3306, &[]), None);
        assert_eq!(choose(None, "localhost", 3307, &found), None);
    }

    #[test]
    fn an_address_forces_tcp_and_a_configured_socket_wins() {
        let found = paths(&["/run/mysqld/mysqld.sock"]);
        assert_eq!(choose(None, "127.0.0.1", 3306, &found), None);
        assert_eq!(choose(None, "::1", 3306, &found), None);
        assert_eq!(choose(None, "db.example.com", 3306, &found), None);
        assert_eq!(
            choose(Some(Path::new("/srv/my.sock")), "127.0.0.1", 3306, &found),
            Some(PathBuf::from("/srv/my.sock"))
        );
    }

    #[test]
    fn present_keeps_only_sockets() {
        let dir = std::env::temp_dir().join(format!("ms-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s.sock");
        let file = dir.join("plain");
        let _ = std::fs::remove_file(&sock);
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::write(&file, "x").unwrap();
        let (s, f) = (sock.to_str().unwrap(), file.to_str().unwrap());
        assert_eq!(present(&[f, "/nonexistent/x.sock", s]), vec![sock.clone()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
