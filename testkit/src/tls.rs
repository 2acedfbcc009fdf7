//! TLS for tests: a private CA and a server certificate for 127.0.0.1 and localhost (made with the `openssl`
//! command line), a redis-server that speaks TLS only, and a PostgreSQL that refuses plain connections.

use crate::postgres::PgServer;
use crate::process::{free_port, is_root, wait_port, which};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A CA of the test's own and a server certificate it signed, valid for `127.0.0.1` and `localhost`; the
/// files are removed when dropped.
#[derive(Debug)]
pub struct TlsCerts {
    /// The CA certificate (PEM): what a client must trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, unencrypted).
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsCerts {
    /// Makes a new CA and server certificate (P-256 keys: quick to generate), valid for two days.
    pub fn new() -> Self {
        let dir = crate::process::temp_dir("topk-tls-");
        let d = dir.path();
        // webpki accepts only v3 certificates, a CA marked as one, and an end-entity certificate whose
        // subjectAltName names the address the client dialled (the CN is ignored). clientAuth too: the nodes of
        // a TLS cluster present it to each other on the cluster bus and for replication.
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            d,
            &["req", "-x509", "-days", "2", "-subj", "/CN=topk test CA"],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            d,
            &["req", "-subj", "/CN=localhost"],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        );
        openssl(
            d,
            &["x509", "-req", "-days", "2", "-in", "server.csr"],
            &[],
            &[
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            _dir: dir,
        }
    }
}

impl Default for TlsCerts {
    fn default() -> Self {
        Self::new()
    }
}

fn openssl(dir: &Path, a: &[&str], b: &[&str], c: &[&str]) {
    crate::process::run_ok(
        Command::new(which("openssl"))
            .current_dir(dir)
            .args(a)
            .args(b)
            .args(c)
            .stdin(Stdio::null()),
        &format!("openssl {}", a.join(" ")),
    );
}

/// A redis-server that accepts TLS connections only (`--port 0`), with the certificate of [`TlsCerts`] and
/// no client certificate asked for; killed when dropped.
#[derive(Debug)]
pub struct TlsRedisServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsRedisServer {
    pub fn start(certs: &TlsCerts) -> Self {
        let dir = crate::process::temp_dir("topk-redis-tls-");
        let port = free_port();
        let child = Command::new(which("redis-server"))
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(&certs.cert)
            .arg("--tls-key-file")
            .arg(&certs.key)
            .arg("--tls-ca-cert-file")
            .arg(&certs.ca)
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        // A TCP connect is enough to know it listens; the handshake is the tests' business.
        wait_port(port, "redis-server (TLS)");
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server with `ssl = on` whose `pg_hba.conf` has `hostssl` lines only: a TCP connection
/// without TLS is refused by the server itself (no `pg_hba.conf` entry), whatever the client asks for.
pub fn tls_postgres(certs: &TlsCerts) -> PgServer {
    PgServer::start_configured(|data| {
        // Postgres refuses a key file that others can read, and runs as `postgres` when we are root.
        for (from, to) in [(&certs.cert, "server.crt"), (&certs.key, "server.key")] {
            let path = data.join(to);
            std::fs::copy(from, &path).expect("copy a TLS file into the data folder");
            set_private(&path);
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("write postgresql.conf");
        // `local` keeps pg_ctl's own checks on the Unix socket working; TCP is TLS only.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
    })
}

fn set_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    if is_root() {
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "chown {}", path.display());
    }
}
