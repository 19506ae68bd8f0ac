//! TLS verification and mutual TLS.

use rpcnet::{RpcClient, RpcConfig, RpcError, RpcServer};

use crate::support::*;

async fn echo(config: RpcConfig) -> TestServer {
    let server = RpcServer::new(config);
    server.register("echo", |p| async move { Ok(p) }).await;
    spawn(server)
}

/// Connects and makes one call: with TLS 1.3 a server may reject a client
/// certificate after the client considers the handshake done, so the
/// refusal can surface on the first call.
async fn connect_and_call(
    addr: std::net::SocketAddr,
    config: RpcConfig,
) -> Result<Vec<u8>, RpcError> {
    let client = RpcClient::connect(addr, config).await?;
    client.call("echo", b"x".to_vec()).await
}

#[tokio::test]
async fn client_refuses_a_server_signed_by_another_ca() {
    let server = echo(server_config()).await;
    let config = RpcConfig::new(cert("other-ca.pem"), "127.0.0.1:0");
    let err = promptly("refusal", RpcClient::connect(server.addr, config))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::TlsError(_)), "{err:?}");
}

#[tokio::test]
async fn client_refuses_a_certificate_for_another_name() {
    let server = echo(server_config()).await;
    let config = client_config().with_server_name("not-localhost.example");
    let err = promptly("refusal", RpcClient::connect(server.addr, config))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::TlsError(_)), "{err:?}");
}

#[tokio::test]
async fn client_trusting_the_server_ca_and_name_connects() {
    let server = echo(server_config()).await;
    assert_eq!(
        connect_and_call(server.addr, client_config())
            .await
            .unwrap(),
        b"x"
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let server = echo(server_config().with_client_ca_path(cert("ca.pem"))).await;

    let anonymous = promptly("refusal", connect_and_call(server.addr, client_config()))
        .await
        .unwrap_err();
    assert!(matches!(anonymous, RpcError::TlsError(_)), "{anonymous:?}");

    let stranger =
        client_config().with_client_identity(cert("other_cert.pem"), cert("other_key.pem"));
    let stranger = promptly("refusal", connect_and_call(server.addr, stranger))
        .await
        .unwrap_err();
    assert!(matches!(stranger, RpcError::TlsError(_)), "{stranger:?}");

    let member = client_config().with_client_identity(cert("client.pem"), cert("client-key.pem"));
    assert_eq!(connect_and_call(server.addr, member).await.unwrap(), b"x");
}

#[tokio::test]
async fn missing_or_unreadable_tls_material_is_a_config_error() {
    let mut no_key = RpcServer::new(RpcConfig::new(cert("test_cert.pem"), "127.0.0.1:0"));
    assert!(matches!(no_key.bind(), Err(RpcError::ConfigError(_))));
    let mut missing = RpcServer::new(
        RpcConfig::new("/nonexistent.pem", "127.0.0.1:0").with_key_path(cert("test_key.pem")),
    );
    assert!(matches!(missing.bind(), Err(RpcError::ConfigError(_))));
    let mut bad_addr = RpcServer::new(server_config().with_server_name("x"));
    let _ = bad_addr.bind().unwrap();
    let mut bad_addr = RpcServer::new(
        RpcConfig::new(cert("test_cert.pem"), "not an address").with_key_path(cert("test_key.pem")),
    );
    assert!(matches!(bad_addr.bind(), Err(RpcError::ConfigError(_))));
    let err = RpcClient::connect(
        "127.0.0.1:9".parse().unwrap(),
        RpcConfig::new("/nonexistent.pem", "127.0.0.1:0"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RpcError::ConfigError(_)), "{err:?}");
}

/// Two CAs as in a rotation, each with a server and an application client
/// certificate, and a bundle file holding both CA certificates; the
/// directory is removed on drop.
struct Rotation {
    dir: std::path::PathBuf,
}

impl Rotation {
    fn new(test: &str) -> Self {
        use rpcnet_certs::{CaDir, CertSpec};
        let dir =
            std::env::temp_dir().join(format!("rpcnet-rotation-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut bundle = String::new();
        for generation in ["old", "new"] {
            let pki = CaDir::create(dir.join(generation), &format!("{generation} CA")).unwrap();
            pki.issue(&[
                CertSpec::node("server", ["localhost"]),
                CertSpec::client("app", Vec::<String>::new()),
            ])
            .unwrap();
            bundle.push_str(pki.ca().cert_pem());
        }
        std::fs::write(dir.join("ca-bundle.pem"), bundle).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    /// A server with `generation`'s certificate that trusts the bundle for
    /// client certificates (and requires one).
    async fn server(&self, generation: &str) -> TestServer {
        echo(
            RpcConfig::new(
                self.file(&format!("{generation}/server.pem")),
                "127.0.0.1:0",
            )
            .with_key_path(self.file(&format!("{generation}/server-key.pem")))
            .with_client_ca_path(self.file("ca-bundle.pem")),
        )
        .await
    }

    /// A client trusting `trusted` with `generation`'s client certificate.
    fn client(&self, trusted: &str, generation: &str) -> RpcConfig {
        RpcConfig::new(self.file(trusted), "127.0.0.1:0").with_client_identity(
            self.file(&format!("{generation}/app.pem")),
            self.file(&format!("{generation}/app-key.pem")),
        )
    }
}

impl Drop for Rotation {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn during_a_ca_rotation_a_bundle_trusts_servers_and_clients_of_both_cas() {
    let pki = Rotation::new("bundle");
    let old_server = pki.server("old").await;
    let new_server = pki.server("new").await;
    for server in [&old_server, &new_server] {
        for identity in ["old", "new"] {
            let config = pki.client("ca-bundle.pem", identity);
            assert_eq!(
                promptly("call", connect_and_call(server.addr, config))
                    .await
                    .unwrap(),
                b"x"
            );
        }
    }
}

#[tokio::test]
async fn a_client_trusting_only_the_old_ca_refuses_a_new_ca_server() {
    let pki = Rotation::new("old-only");
    let new_server = pki.server("new").await;
    let err = promptly(
        "refusal",
        RpcClient::connect(new_server.addr, pki.client("old/ca.pem", "old")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RpcError::TlsError(_)), "{err:?}");
    // After the rotation, the new CA alone is enough.
    let config = pki.client("new/ca.pem", "new");
    assert_eq!(
        promptly("call", connect_and_call(new_server.addr, config))
            .await
            .unwrap(),
        b"x"
    );
}
