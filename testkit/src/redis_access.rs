//! How a test reaches a Redis server it started with credentials or TLS, as managed Redis services run:
//! the server's own settings, `redis-cli`'s options, the parts of topk's URL, and what [`crate::RedisConn`]
//! sends after connecting.

use crate::tls::TlsCerts;
use std::ffi::OsString;
use std::path::PathBuf;

/// The password every test server with credentials is given (its URL carries it percent-encoded where
/// needed; this one needs no encoding).
pub const PASSWORD: &str = "s3cret-pw";

/// The ACL user of [`RedisAccess::acl_user`].
pub const ACL_USER: &str = "topk";

/// Credentials and TLS of a test's Redis server (or of every node of its cluster).
#[derive(Debug, Clone, Default)]
pub struct RedisAccess {
    /// An ACL user of the test's own, with every right; the `default` user is then switched off, as on
    /// managed services. None: the default user.
    pub user: Option<String>,
    /// The password: `requirepass` of the default user, or the ACL user's.
    pub password: Option<String>,
    /// TLS only (no plain port): the server's certificate and key, and the CA a client trusts. A cluster's
    /// bus and replication use TLS too (`tls-cluster`, `tls-replication`).
    pub tls: Option<TlsFiles>,
}

/// The files of a TLS server, from [`TlsCerts`] (which the test keeps alive while the server runs).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl RedisAccess {
    /// The default user with a password (`requirepass`; replicas authenticate with `masterauth`).
    pub fn password() -> Self {
        Self {
            password: Some(PASSWORD.to_owned()),
            ..Self::default()
        }
    }

    /// An ACL user [`ACL_USER`] with a password, and the `default` user off (replicas authenticate as it,
    /// `masteruser`).
    pub fn acl_user() -> Self {
        Self {
            user: Some(ACL_USER.to_owned()),
            password: Some(PASSWORD.to_owned()),
            ..Self::default()
        }
    }

    /// The same access over TLS only, with `certs`.
    pub fn with_tls(mut self, certs: &TlsCerts) -> Self {
        self.tls = Some(TlsFiles {
            ca: certs.ca.clone(),
            cert: certs.cert.clone(),
            key: certs.key.clone(),
        });
        self
    }

    /// Whether the server speaks TLS only.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The redis-server settings that listen on `port` with this access.
    pub fn server_args(&self, port: u16) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        let port = port.to_string();
        match &self.tls {
            Some(tls) => {
                push(&[
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ]);
                push(&["--tls-cluster", "yes", "--tls-replication", "yes"]);
                for (name, path) in [
                    ("--tls-cert-file", &tls.cert),
                    ("--tls-key-file", &tls.key),
                    ("--tls-ca-cert-file", &tls.ca),
                ] {
                    args.push(name.into());
                    args.push(path.into());
                }
            }
            None => push(&["--port", &port]),
        }
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => {
                let secret = format!(">{password}");
                push(&["--user", user, "on", &secret, "~*", "&*", "+@all"]);
                push(&["--user", "default", "off"]);
                push(&["--masteruser", user, "--masterauth", password]);
            }
            (None, Some(password)) => push(&["--requirepass", password, "--masterauth", password]),
            (user, None) => assert!(user.is_none(), "an ACL user needs a password"),
        }
        args
    }

    /// `redis-cli`'s options to reach a server with this access.
    pub fn cli_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(tls) = &self.tls {
            args.extend(["--tls".into(), "--cacert".into(), tls.ca.clone().into()]);
        }
        if let Some(user) = &self.user {
            args.extend(["--user".into(), user.into()]);
        }
        if let Some(password) = &self.password {
            args.extend(["--pass".into(), password.into(), "--no-auth-warning".into()]);
        }
        args
    }

    /// The scheme of topk's URL: `redis`, `rediss`, `redis-cluster` or `rediss-cluster`.
    pub fn scheme(&self, cluster: bool) -> &'static str {
        match (self.is_tls(), cluster) {
            (false, false) => "redis",
            (true, false) => "rediss",
            (false, true) => "redis-cluster",
            (true, true) => "rediss-cluster",
        }
    }

    /// The URL's credentials with their `@` (`user:password@`, `:password@`), or nothing.
    pub fn userinfo(&self) -> String {
        match (&self.user, &self.password) {
            (Some(user), Some(password)) => format!("{user}:{password}@"),
            (None, Some(password)) => format!(":{password}@"),
            _ => String::new(),
        }
    }

    /// topk's URL of a server on loopback `port`.
    pub fn url(&self, port: u16) -> String {
        format!(
            "{}://{}127.0.0.1:{port}",
            self.scheme(false),
            self.userinfo()
        )
    }

    /// The `AUTH` command a client sends first, if any.
    pub(crate) fn auth_command(&self) -> Option<Vec<&str>> {
        let password = self.password.as_deref()?;
        Some(match &self.user {
            Some(user) => vec!["AUTH", user, password],
            None => vec!["AUTH", password],
        })
    }
}
