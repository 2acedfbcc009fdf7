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

    /// What the start says when `url` comes with the CA file at `ca`: it must refuse.
    fn refusal(url: &str, ca: &Path) -> String {
        let url = RedisUrl::parse(url).unwrap();
        certificates(&url, Some(ca))
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn no_ca_file_means_the_system_roots_or_no_tls() {
        for url in ["rediss://a:1", "redis://a:1"] {
            let url = RedisUrl::parse(url).unwrap();
            assert!(certificates(&url, None).unwrap().is_none());
        }
    }

    #[test]
    fn a_ca_file_with_a_plain_url_or_unreadable_or_broken_is_refused_by_name_and_path() {
        let nowhere = Path::new("/nowhere/ca.pem");
        let empty = file("not a certificate\n");
        let garbage = file("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        for (url, ca, says) in [
            (
                "redis://a:1",
                nowhere,
                &["TOPK_REDIS_CA_FILE is set but TOPK_REDIS_URL is not rediss://"][..],
            ),
            ("redis-cluster://a:1", nowhere, &["not rediss://"]),
            (
                "rediss://a:1",
                nowhere,
                &["TOPK_REDIS_CA_FILE /nowhere/ca.pem: cannot be read"],
            ),
            (
                "rediss-cluster://a:1",
                empty.path(),
                &["TOPK_REDIS_CA_FILE", "no PEM certificate"],
            ),
            (
                "rediss://a:1",
                garbage.path(),
                &["TOPK_REDIS_CA_FILE", "not a usable"],
            ),
        ] {
            let m = refusal(url, ca);
            assert!(says.iter().all(|part| m.contains(part)), "{url}: {m}");
        }
    }
}
