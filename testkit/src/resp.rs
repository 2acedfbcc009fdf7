//! A minimal blocking client of the Redis protocol (RESP2), for tests to observe a server independently of the
//! service's client.

use crate::redis_access::RedisAccess;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One reply of the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status or bulk string).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => self.text().and_then(|t| t.parse().ok()),
        }
    }

    /// The elements of an array reply (None for any other reply, a null array included).
    pub fn array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// The message of an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// A minimal blocking Redis client for tests to observe a server (INFO, DBSIZE, SCAN) independently of the
/// service's client, so what it measures never depends on the code under test. Reads time out: a frozen
/// server fails a call rather than hanging the test.
pub struct RedisConn {
    reader: std::io::BufReader<Box<dyn Stream>>,
}

/// A connection's byte stream: plain TCP, or TLS over it.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn").finish_non_exhaustive()
    }
}

impl RedisConn {
    /// Connects to a server on a loopback port.
    pub fn open(port: u16) -> std::io::Result<Self> {
        Self::open_with(port, &RedisAccess::default())
    }

    /// Connects to a server on a loopback port with `access`: TLS (trusting its CA) and `AUTH` first.
    pub fn open_with(port: u16, access: &RedisAccess) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let stream: Box<dyn Stream> = match &access.tls {
            Some(tls) => Box::new(tls_stream(stream, &tls.ca)?),
            None => Box::new(stream),
        };
        let mut conn = Self {
            reader: std::io::BufReader::new(stream),
        };
        if let Some(auth) = access.auth_command() {
            if let Reply::Error(e) = conn.cmd(&auth)? {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("AUTH on {port}: {e}"),
                ));
            }
        }
        Ok(conn)
    }

    /// Connects to a `redis://host:port` URL's port on loopback.
    pub fn open_url(url: &str) -> std::io::Result<Self> {
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(6379);
        Self::open(port)
    }

    /// Sends one command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out)?;
        self.read_reply()
    }

    fn read_line(&mut self) -> std::io::Result<String> {
        use std::io::BufRead;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    fn read_reply(&mut self) -> std::io::Result<Reply> {
        let line = self.read_line()?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad RESP reply");
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        let n = || rest.parse::<i64>().map_err(|_| bad());
        Ok(match kind {
            "+" => Reply::Status(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(n()?),
            "$" if n()? < 0 => Reply::Bulk(None),
            "$" => {
                let mut buf = vec![0; n()? as usize + 2];
                self.reader.read_exact(&mut buf)?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(buf))
            }
            "*" if n()? < 0 => Reply::Array(None),
            "*" => Reply::Array(Some(
                (0..n()?)
                    .map(|_| self.read_reply())
                    .collect::<Result<_, _>>()?,
            )),
            _ => return Err(bad()),
        })
    }

    /// One numeric field of `INFO section` (e.g. `used_memory` of `memory`).
    pub fn info_field(&mut self, section: &str, field: &str) -> Option<u64> {
        let info = topk_core::redis::Info::parse(&self.cmd(&["INFO", section]).ok()?.text()?);
        info.field(field)?.parse().ok()
    }

    /// Bytes the server uses for its data (`used_memory`).
    pub fn used_memory(&mut self) -> u64 {
        self.info_field("memory", "used_memory")
            .expect("INFO memory")
    }

    /// Every key whose name starts with `prefix`, optionally only those of a Redis type (SCAN ... TYPE).
    pub fn keys_with_prefix(&mut self, prefix: &str, kind: Option<&str>) -> Vec<String> {
        let pattern = format!("{prefix}*");
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let mut args = vec!["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"];
            if let Some(k) = kind {
                args.extend(["TYPE", k]);
            }
            let reply = self.cmd(&args).expect("SCAN");
            let Reply::Array(Some(parts)) = reply else {
                panic!("SCAN replied {reply:?}")
            };
            let next = parts[0].text().expect("SCAN cursor");
            if let Reply::Array(Some(found)) = &parts[1] {
                keys.extend(found.iter().filter_map(Reply::text));
            }
            if next == "0" {
                return keys;
            }
            cursor = next;
        }
    }

    /// Total entries of every stream whose key starts with `prefix` (the services' logs are streams).
    pub fn stream_entries(&mut self, prefix: &str) -> u64 {
        self.keys_with_prefix(prefix, Some("stream"))
            .iter()
            .map(|k| {
                self.cmd(&["XLEN", k])
                    .ok()
                    .and_then(|r| r.int())
                    .unwrap_or(0)
                    .max(0) as u64
            })
            .sum()
    }
}

/// A TLS client stream over `tcp` to 127.0.0.1, trusting the CA in `ca` (PEM).
fn tls_stream(tcp: TcpStream, ca: &Path) -> std::io::Result<impl Stream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| invalid(e.to_string()))? {
        roots
            .add(cert.map_err(|e| invalid(e.to_string()))?)
            .map_err(|e| invalid(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").map_err(|e| invalid(e.to_string()))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}
