//! TLS to Redis: the CA (`TOPK_REDIS_CA_FILE`) a server's certificate is checked against. redis-rs (rustls) verifies the chain and that the certificate names the URL's host; without a
//! CA file it trusts the system's roots.

use crate::redis::{RedisUrl, Result, StoreError};
use ::redis::TlsCertificates;
use std::path::Path;

/// The certificates to verify the server with: `None` to use the system's roots (or for a URL without
/// TLS). Refuses, naming the setting and the path, a CA file that cannot be read or holds no usable
/// certificate, and a CA file given with a URL without TLS.
pub(in crate::redis) fn certificates(
    url: &RedisUrl,
    ca_file: Option<&Path>,
) -> Result<Option<TlsCertificates>> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    if !url.is_tls() {
        // Refused rather than ignored: whoever set a CA file meant the connection to be encrypted.
        return Err(StoreError::Config(
            "TOPK_REDIS_CA_FILE is set but TOPK_REDIS_URL is not rediss:// (or rediss-cluster://): use a TLS \
             URL, or unset the CA file"
                .into(),
        ));
    }
    let bad =
        |why: String| StoreError::Config(format!("TOPK_REDIS_CA_FILE {}: {why}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    // A file without a certificate would make an empty trust store: every server refused, with a cause far
    // from the mistake.
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    let certs = TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    };
    // Parsed now, by the code the connections use, so a broken file stops the start instead of every
    // connection. Building a client does no I/O.
    ::redis::Client::build_with_tls("rediss://localhost", certs.clone())
        .map_err(|e| bad(format!("not a usable PEM CA certificate: {e}")))?;
    Ok(Some(certs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    fn url(raw: &str) -> RedisUrl {
        RedisUrl::parse(raw).unwrap()
    }

    fn message(r: Result<Option<TlsCertificates>>) -> String {
        r.expect_err("refused").to_string()
    }

    #[test]
    fn no_ca_file_means_the_system_roots_or_no_tls() {
        assert!(certificates(&url("rediss://a:1"), None).unwrap().is_none());
        assert!(certificates(&url("redis://a:1"), None).unwrap().is_none());
    }

    #[test]
    fn a_ca_file_with_a_plain_url_is_refused() {
        let m = message(certificates(
            &url("redis://a:1"),
            Some(Path::new("/nowhere/ca.pem")),
        ));
        assert!(
            m.contains("TOPK_REDIS_CA_FILE is set but TOPK_REDIS_URL is not rediss://"),
            "{m}"
        );
        let m = message(certificates(
            &url("redis-cluster://a:1"),
            Some(Path::new("/nowhere/ca.pem")),
        ));
        assert!(m.contains("not rediss://"), "{m}");
    }

    #[test]
    fn an_unreadable_or_broken_ca_file_is_refused_by_name_and_path() {
        let m = message(certificates(
            &url("rediss://a:1"),
            Some(Path::new("/nowhere/ca.pem")),
        ));
        assert!(
            m.contains("TOPK_REDIS_CA_FILE /nowhere/ca.pem: cannot be read"),
            "{m}"
        );
        let empty = file("not a certificate\n");
        let m = message(certificates(
            &url("rediss-cluster://a:1"),
            Some(empty.path()),
        ));
        assert!(
            m.contains("TOPK_REDIS_CA_FILE") && m.contains("no PEM certificate"),
            "{m}"
        );
        let garbage = file("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let m = message(certificates(&url("rediss://a:1"), Some(garbage.path())));
        assert!(
            m.contains("TOPK_REDIS_CA_FILE") && m.contains("not a usable"),
            "{m}"
        );
    }
}
