//! `topk` over https: the API behind a TLS-terminating proxy (as in production) with a certificate from a CA
//! the test makes; the client trusts it with `--ca-file` and refuses it without.

use crate::run::{cli_stack, topk, Cli};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use topk_testkit::tls::TlsCerts;

/// Accepts TLS on a free port (certificate for localhost and 127.0.0.1) and forwards each connection's bytes
/// to `upstream` in plain text.
async fn tls_proxy(certs: &TlsCerts, upstream: SocketAddr) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_over_https_trusts_the_ca_file_and_nothing_else() {
    let s = cli_stack("tls").await;
    s.topk(&["send", "alpha", "alpha", "beta"], None).await.ok();
    s.wait_for_ranking("all", &[("alpha", 2), ("beta", 1)], Duration::from_secs(15))
        .await;
    let certs = TlsCerts::new();
    let proxy = tls_proxy(&certs, s.api).await;
    let url = format!("https://localhost:{}", proxy.port());

    let ca = certs.ca.display().to_string();
    let run = topk(
        &[("TOPK_API_URL", url.clone())],
        &["top", "--window", "all", "--ca-file", &ca],
        None,
    )
    .await
    .ok();
    assert!(
        run.stdout.contains("alpha") && run.stdout.contains("beta"),
        "{run:?}"
    );
    // TOPK_CA_FILE does the same.
    let run = topk(
        &[("TOPK_API_URL", url.clone()), ("TOPK_CA_FILE", ca.clone())],
        &["video", "alpha", "--json"],
        None,
    )
    .await
    .ok();
    assert_eq!(run.json()["all"], 2);

    // Without the CA the server is not trusted: the error names the URL and the certificate.
    let refused = topk(
        &[("TOPK_API_URL", url.clone())],
        &["top", "--window", "all"],
        None,
    )
    .await;
    assert!(refused.failed_with(1).contains(&url), "{refused:?}");
    assert!(
        refused.stderr.to_lowercase().contains("certificate"),
        "{refused:?}"
    );
    // A CA file that is not one is refused before any request.
    let bad = topk(
        &[("TOPK_API_URL", url)],
        &["top", "--ca-file", "/nonexistent/ca.pem"],
        None,
    )
    .await;
    assert!(
        bad.failed_with(1)
            .contains("--ca-file /nonexistent/ca.pem: cannot be read"),
        "{bad:?}"
    );
}
