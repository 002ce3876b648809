//! wss:// to Kandan: a server certificate from a private CA is trusted only when that CA
//! is given (KANDAN_TLS_CA_FILE), and refused otherwise. A rustls proxy terminates TLS
//! in front of the Kandan test server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use kandan_test_server::{KandanTestServer, ServerConfig};
use linzumi_engine::kandan_url::KandanUrl;
use linzumi_engine::phoenix::{ClientConfig, ConnectError, PhoenixClient};
use linzumi_engine::tls;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server_cert: server.der().clone(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
    }
}

/// Accepts TLS on a loopback port and pipes each connection to `backend`.
async fn tls_proxy(pki: &Pki, backend: std::net::SocketAddr) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake is the point of one of the tests.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut plain = TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn write_ca(pki: &Pki, name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("linzumi-{name}-{}.pem", std::process::id()));
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let server = KandanTestServer::start(ServerConfig::default())
        .await
        .unwrap();
    let token = server.issue_token("tester", None);
    let pki = pki();
    let port = tls_proxy(&pki, server.addr()).await;
    let kandan = KandanUrl::parse(&format!("wss://localhost:{port}")).unwrap();

    let ca_file = write_ca(&pki, "ca");
    let mut trusted = ClientConfig::new(&kandan, &token);
    trusted.tls = Some(tls::client_config(Some(&ca_file)).unwrap());
    let client = PhoenixClient::connect(trusted).await.unwrap();
    client
        .join(
            "local_runner:tls",
            || json!({"clientName": "t", "version": "0", "capabilities": {}}),
        )
        .await
        .unwrap();
    client.close().await;

    let mut system_roots_only = ClientConfig::new(&kandan, &token);
    system_roots_only.tls = Some(tls::client_config(None).unwrap());
    let error = PhoenixClient::connect(system_roots_only)
        .await
        .err()
        .unwrap();
    let ConnectError::Tls { reason, .. } = &error else {
        panic!("expected a certificate error, got {error:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");
    std::fs::remove_file(ca_file).unwrap();
}
