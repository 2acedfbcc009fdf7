//! The Redis URL (`TOPK_REDIS_URL`), parsed once where the settings are read into one typed value that
//! every other place uses: where the servers are, whether they form a cluster, whether TLS is on, and the
//! credentials, which apply to every node of a cluster (managed clusters require AUTH on each).
//!
//! Forms: `redis://[user:password@]host[:port][/db]`, `rediss://` with TLS,
//! `redis-cluster://[user:password@]host[:port]?node=host:port&node=...` (any reachable nodes; the rest
//! are discovered), `rediss-cluster://` with TLS. `user` and `password` may be percent-encoded. The value
//! prints with its password as `***` (`Display`, `Debug`), so no log line or error can show it.

use ::redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use std::fmt;

/// Redis's default port.
const DEFAULT_PORT: u16 = 6379;

/// A parsed Redis URL.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    tls: bool,
    cluster: bool,
    /// One node, or a cluster's seed nodes (the authority first, then each `node=`).
    nodes: Vec<Node>,
    user: Option<String>,
    password: Option<String>,
    db: i64,
}

/// `host:port` of one server.
#[derive(Clone, PartialEq, Eq)]
struct Node {
    host: String,
    port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl RedisUrl {
    /// Parses `raw`, refusing what topk cannot use, with a message that never echoes the URL (it may hold a
    /// password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let forms = "redis://[user:password@]host:port (rediss:// for TLS) or \
                     redis-cluster://[user:password@]host:port?node=host:port&... (rediss-cluster:// for TLS)";
        if raw.contains('#') {
            // redis-rs reads `#insecure` as "skip the certificate checks": TLS must not be weakened by a URL.
            return Err("TOPK_REDIS_URL must not end in a #fragment (#insecure asks the client to skip the \
                        server certificate checks); use TOPK_REDIS_CA_FILE for a private CA"
                .to_owned());
        }
        let scheme = raw.split_once("://").map(|(s, _)| s);
        let (tls, cluster) = match scheme {
            Some("redis") => (false, false),
            Some("rediss") => (true, false),
            Some("redis-cluster") => (false, true),
            Some("rediss-cluster") => (true, true),
            _ => {
                return Err(format!(
                    "TOPK_REDIS_URL must be {forms}; got scheme {:?}",
                    scheme.unwrap_or("(none)")
                ))
            }
        };
        let bad = |why: &str| format!("TOPK_REDIS_URL: {why}; expected {forms}");
        let url = url::Url::parse(raw).map_err(|e| bad(&format!("not a URL ({e})")))?;
        let decode = |part: &str, what: &str| -> Result<Option<String>, String> {
            if part.is_empty() {
                return Ok(None);
            }
            percent_decode(part)
                .map(Some)
                .ok_or_else(|| bad(&format!("the {what} is not valid percent-encoded UTF-8")))
        };
        let user = decode(url.username(), "user name")?;
        let password = decode(url.password().unwrap_or(""), "password")?;
        if user.is_some() && password.is_none() {
            return Err(bad("a user needs a password (user:password@)"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let mut nodes = vec![Node {
            host: host.to_owned(),
            port: url.port().unwrap_or(DEFAULT_PORT),
        }];
        let path = url.path().trim_start_matches('/');
        let db = match path {
            "" => 0,
            _ if cluster => {
                return Err(bad("a Redis Cluster has no database number (no /db path)"))
            }
            db => db
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("the path must be a database number"))?,
        };
        for (name, value) in url.query_pairs() {
            match name.as_ref() {
                "node" if cluster => nodes.push(parse_node(&value).ok_or_else(|| {
                    bad("a node= parameter must be host:port (the credentials of the URL apply to every node)")
                })?),
                other => {
                    return Err(bad(&format!(
                        "unknown parameter {other:?} (only a cluster URL takes node=host:port)"
                    )))
                }
            }
        }
        Ok(Self {
            tls,
            cluster,
            nodes,
            user,
            password,
            db,
        })
    }

    /// Whether the URL names a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Whether the connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// How errors name the server: `Redis at host:port`, or `Redis Cluster at host:port,...` (the seeds).
    pub fn server_name(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(Node::to_string).collect();
        match self.cluster {
            true => format!("Redis Cluster at {}", nodes.join(",")),
            false => format!("Redis at {}", nodes[0]),
        }
    }

    /// The URL with its password, for handing to a process this one starts (never for a log line).
    pub fn expose(&self) -> String {
        self.render(self.password.as_deref().map(percent_encode).as_deref())
    }

    /// The client's settings of each node (one for a single node, the seeds of a cluster), each with the
    /// credentials: redis-rs refuses seeds whose credentials differ.
    pub(in crate::redis) fn connection_infos(&self) -> Vec<ConnectionInfo> {
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.user {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        self.nodes
            .iter()
            .map(|node| {
                let addr = match self.tls {
                    true => ConnectionAddr::TcpTls {
                        host: node.host.clone(),
                        port: node.port,
                        insecure: false,
                        tls_params: None,
                    },
                    false => ConnectionAddr::Tcp(node.host.clone(), node.port),
                };
                addr.into_connection_info()
                    .expect("an address is a connection info")
                    .set_redis_settings(redis.clone())
            })
            .collect()
    }

    fn render(&self, password: Option<&str>) -> String {
        let scheme = match (self.tls, self.cluster) {
            (false, false) => "redis",
            (true, false) => "rediss",
            (false, true) => "redis-cluster",
            (true, true) => "rediss-cluster",
        };
        let userinfo = match (&self.user, password) {
            (Some(user), Some(p)) => format!("{}:{p}@", percent_encode(user)),
            (None, Some(p)) => format!(":{p}@"),
            _ => String::new(),
        };
        let mut out = format!("{scheme}://{userinfo}{}", self.nodes[0]);
        if self.db != 0 {
            out.push_str(&format!("/{}", self.db));
        }
        for (i, node) in self.nodes[1..].iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&format!("node={node}"));
        }
        out
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Self::parse(raw)
    }
}

impl fmt::Display for RedisUrl {
    /// The URL with its password as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.password.as_ref().map(|_| "***")))
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `host:port` of a `node=` parameter (`[v6]:port` for an IPv6 address); no credentials, no path.
fn parse_node(value: &str) -> Option<Node> {
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    let valid = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.chars().all(plain),
    };
    valid.then(|| Node {
        host: host.to_owned(),
        port,
    })
}

fn percent_decode(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `text` with every byte but unreserved URL characters percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> RedisUrl {
        RedisUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    fn refused(raw: &str) -> String {
        let e = RedisUrl::parse(raw).expect_err(raw);
        assert!(!e.contains("s3cret"), "the error shows the password: {e}");
        e
    }

    #[test]
    fn single_nodes_with_and_without_credentials() {
        let u = ok("redis://127.0.0.1:6390");
        assert!(!u.is_cluster() && !u.is_tls());
        assert_eq!(u.server_name(), "Redis at 127.0.0.1:6390");
        assert_eq!(u.to_string(), "redis://127.0.0.1:6390");
        let u = ok("rediss://topk:s3cret@cache.internal:6380/2");
        assert!(u.is_tls());
        assert_eq!(u.to_string(), "rediss://topk:***@cache.internal:6380/2");
        assert_eq!(
            format!("{u:?}"),
            "\"rediss://topk:***@cache.internal:6380/2\""
        );
        assert_eq!(u.expose(), "rediss://topk:s3cret@cache.internal:6380/2");
        assert_eq!(u.server_name(), "Redis at cache.internal:6380");
        let info = &u.connection_infos()[0];
        assert_eq!(info.redis_settings().username(), Some("topk"));
        assert_eq!(info.redis_settings().password(), Some("s3cret"));
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(ok("redis://cache").server_name(), "Redis at cache:6379");
        assert_eq!(
            ok("redis://[::1]:7000").server_name(),
            "Redis at [::1]:7000"
        );
    }

    #[test]
    fn passwords_may_be_percent_encoded() {
        let u = ok("redis://:p%40ss%3Aw%2Fd@h:1");
        assert_eq!(
            u.connection_infos()[0].redis_settings().password(),
            Some("p@ss:w/d")
        );
        assert_eq!(u.expose(), "redis://:p%40ss%3Aw%2Fd@h:1");
        assert_eq!(RedisUrl::parse(&u.expose()).unwrap(), u);
    }

    #[test]
    fn cluster_credentials_apply_to_every_seed() {
        let u = ok("redis-cluster://:s3cret@a:7000?node=b:7001&node=c:7002");
        assert!(u.is_cluster());
        assert_eq!(u.server_name(), "Redis Cluster at a:7000,b:7001,c:7002");
        assert_eq!(
            u.to_string(),
            "redis-cluster://:***@a:7000?node=b:7001&node=c:7002"
        );
        let infos = u.connection_infos();
        assert_eq!(infos.len(), 3);
        for info in &infos {
            assert_eq!(info.redis_settings().password(), Some("s3cret"));
            assert_eq!(info.redis_settings().username(), None);
        }
        let u = ok("rediss-cluster://topk:s3cret@a:7000");
        assert!(u.is_tls() && u.is_cluster());
        assert!(matches!(
            u.connection_infos()[0].addr(),
            ConnectionAddr::TcpTls {
                insecure: false,
                ..
            }
        ));
    }

    #[test]
    fn what_cannot_work_is_refused_without_echoing_the_url() {
        assert!(refused("http://:s3cret@a:1").contains("got scheme \"http\""));
        assert!(refused("unix:///run/redis.sock").contains("got scheme \"unix\""));
        assert!(refused("rediss://:s3cret@a:1/#insecure").contains("#fragment"));
        assert!(refused("redis-cluster://:s3cret@a:1?host=b").contains("unknown parameter"));
        assert!(refused("redis-cluster://:s3cret@a:1?node=x:s3cret@b:2").contains("node="));
        assert!(refused("redis-cluster://:s3cret@a:1?node=b").contains("node="));
        assert!(refused("redis-cluster://:s3cret@a:1/1").contains("no database number"));
        assert!(refused("redis://:s3cret@a:1?node=b:2").contains("unknown parameter"));
        assert!(refused("redis://topk@a:1").contains("needs a password"));
        assert!(
            refused("redis://:s3cret@/0").contains("no host")
                || refused("redis://:s3cret@/0").contains("not a URL")
        );
        assert!(refused("redis://:s3cret@a:1/x").contains("database number"));
    }
}
