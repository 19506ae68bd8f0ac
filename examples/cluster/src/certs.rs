//! Finding the test certificates. The guide runs every command from the
//! repository root (`certs/`), and its director output shows a run from
//! `examples/cluster` (`../../certs/`); both work, and so does any other
//! directory (the path this package was built from is the last resort).
//! `CLUSTER_CERTS_DIR` names another directory explicitly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rpcnet::RpcConfig;

/// Environment variable naming the certificate directory explicitly.
pub const CERTS_DIR_VAR: &str = "CLUSTER_CERTS_DIR";

/// How long the client's connections may stay silent before they count as
/// dead: a worker that stops answering is noticed within about this long.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// QUIC PINGs on the client's connections, so a healthy idle connection
/// never reaches [`CLIENT_IDLE_TIMEOUT`].
pub const CLIENT_KEEP_ALIVE: Duration = Duration::from_millis(250);

/// The files a cluster node (director or worker) loads.
pub const NODE_FILES: [&str; 3] = ["test_cert.pem", "test_key.pem", "ca.pem"];
/// The files the client loads: the cluster CA, nothing else. The client
/// holds no certificate and no key, so it cannot take part in membership
/// (gossip requires a member certificate, `docs/CLUSTER.md`).
pub const CLIENT_FILES: [&str; 1] = ["ca.pem"];

/// A directory holding the needed certificate files.
#[derive(Debug, Clone)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// The first candidate directory holding all of `files`: `$CLUSTER_CERTS_DIR`
    /// alone if set, else `certs`, `../../certs` and this package's
    /// `../../certs`.
    ///
    /// # Errors
    /// A message naming every directory tried and the files missing in each.
    pub fn find(files: &[&str]) -> Result<Self, String> {
        let candidates: Vec<PathBuf> = match std::env::var_os(CERTS_DIR_VAR) {
            Some(dir) => vec![PathBuf::from(dir)],
            None => vec![
                PathBuf::from("certs"),
                PathBuf::from("../../certs"),
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs"),
            ],
        };
        let mut report = Vec::new();
        for dir in &candidates {
            let missing: Vec<&str> = files
                .iter()
                .copied()
                .filter(|f| !dir.join(f).is_file())
                .collect();
            if missing.is_empty() {
                return Ok(Self { dir: dir.clone() });
            }
            report.push(format!("{}: missing {}", dir.display(), missing.join(", ")));
        }
        Err(format!(
            "certificates not found (run from the repository root, or set {CERTS_DIR_VAR}; \
             certs/generate.sh remakes them): {}",
            report.join("; ")
        ))
    }

    /// `dir/name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A cluster node's server: its member certificate (`test_cert.pem`
    /// names `rpcnet-member://127.0.0.1`) and key, and client certificates
    /// verified against the cluster CA but not required: members present
    /// theirs to gossip, application clients (the example's client) need
    /// none.
    pub fn node_config(&self, bind: &str) -> RpcConfig {
        RpcConfig::new(self.file("test_cert.pem"), bind)
            .with_key_path(self.file("test_key.pem"))
            .with_optional_client_ca_path(self.file("ca.pem"))
            .with_drain_timeout(Duration::from_secs(2))
    }

    /// The client's connections to the director and workers: trusts the
    /// cluster CA, presents no certificate (it is an application client,
    /// not a member), and notices a silent peer within
    /// [`CLIENT_IDLE_TIMEOUT`]. Bound to loopback, as the guide runs it
    /// ([`client_config_at`](Self::client_config_at) for another address).
    pub fn client_config(&self) -> RpcConfig {
        self.client_config_at("127.0.0.1:0")
    }

    /// [`client_config`](Self::client_config) bound to `bind` (the
    /// unspecified address, to reach other machines).
    pub fn client_config_at(&self, bind: &str) -> RpcConfig {
        RpcConfig::new(self.file("ca.pem"), bind)
            .with_idle_timeout(CLIENT_IDLE_TIMEOUT)
            .with_keep_alive_interval(CLIENT_KEEP_ALIVE)
            .with_handshake_timeout(Duration::from_secs(2))
    }

    /// Prints the guide's line and the files loaded.
    pub fn announce(&self, files: &[&str]) {
        println!(
            "📁 Loading certificates from {:?}",
            self.file(files[0]).display().to_string()
        );
        println!(
            "   files: {}",
            files
                .iter()
                .map(|f| self.file(f).display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
