//! Bind and advertise: a node bound to a wildcard or behind a port
//! mapping is known by the address it advertises, and every connection
//! between members verifies the peer against that address.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rpcnet::cluster::{ClusterConfig, ClusterMembership, NodeStatus, GOSSIP_METHOD};
use rpcnet::{RpcConfig, RpcError, RpcServer};
use tokio::net::UdpSocket;

use super::{fast, node, sees_alive, Node, PATIENCE};

/// A node whose RPC server binds `bind` with the certificate `cert`/`key`
/// (trusting `ca`), configured by `config`.
pub(super) async fn node_bound(
    bind: &str,
    cert: &Path,
    key: &Path,
    ca: &Path,
    config: ClusterConfig,
) -> Result<Node, RpcError> {
    let rpc = RpcConfig::new(cert, bind)
        .with_key_path(key)
        .with_optional_client_ca_path(ca);
    let mut server = RpcServer::new(rpc);
    let quic = server.bind()?;
    let handle = server.handle();
    let addr = handle.socket_addr().unwrap();
    let server = tokio::spawn(async move { server.start(quic).await });
    let cluster = ClusterMembership::new(config.with_server(handle)).await?;
    Ok(Node {
        cluster,
        addr,
        server,
    })
}

fn test_cert(name: &str) -> PathBuf {
    super::cert(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bound_to_a_wildcard_is_known_by_the_address_it_advertises() {
    let (cert, key, ca) = (
        test_cert("test_cert.pem"),
        test_cert("test_key.pem"),
        test_cert("ca.pem"),
    );
    // Without an advertised address, a wildcard bind cannot be a member.
    let err = node_bound("0.0.0.0:0", &cert, &key, &ca, fast())
        .await
        .err()
        .expect("a wildcard bind without an advertised address is refused");
    assert!(
        matches!(&err, RpcError::ConfigError(m) if m.contains("with_advertise_addr")),
        "{err:?}"
    );

    let seed = node(fast()).await;
    let wildcard = node_bound(
        "0.0.0.0:0",
        &cert,
        &key,
        &ca,
        fast().with_advertise_addr("127.0.0.1"),
    )
    .await
    .expect("a wildcard bind with an advertised address");
    let advertised = SocketAddr::from(([127, 0, 0, 1], wildcard.addr.port()));
    let local = tokio::time::timeout(
        PATIENCE,
        wildcard.cluster.watch().wait_for(|v| v.local.is_some()),
    )
    .await
    .unwrap()
    .unwrap()
    .local
    .clone()
    .unwrap();
    assert_eq!(
        local.addr(),
        advertised,
        "the node is its advertised address, not its bound one"
    );
    wildcard.cluster.join(vec![seed.addr]).await.unwrap();
    sees_alive(&seed.cluster, &[advertised]).await;
    sees_alive(&wildcard.cluster, &[seed.addr]).await;
}

/// Forwards UDP datagrams arriving at its own port to `backend`, one
/// upstream socket per client (a port mapping: a container's `-p`, a NAT's
/// forwarded port). Stops when dropped.
struct PortMapping {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl PortMapping {
    async fn to(backend: SocketAddr) -> Self {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let port = front.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut upstreams: std::collections::HashMap<SocketAddr, Arc<UdpSocket>> =
                std::collections::HashMap::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, client)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let upstream = match upstreams.get(&client) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        u.connect(backend).await.unwrap();
                        let (back, front) = (u.clone(), front.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok(n) = back.recv(&mut buf).await {
                                let _ = front.send_to(&buf[..n], client).await;
                            }
                        });
                        upstreams.insert(client, u.clone());
                        u
                    }
                };
                let _ = upstream.send(&buf[..n]).await;
            }
        });
        Self { port, task }
    }
}

impl Drop for PortMapping {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_port_mapping_is_reached_at_its_advertised_port() {
    let seed = node(fast()).await;
    // The mapped node's port is known once bound: bind first, then map,
    // then start membership advertising the mapped port.
    let rpc = RpcConfig::new(test_cert("test_cert.pem"), "127.0.0.1:0")
        .with_key_path(test_cert("test_key.pem"))
        .with_optional_client_ca_path(test_cert("ca.pem"));
    let mut server = RpcServer::new(rpc);
    let quic = server.bind().unwrap();
    let handle = server.handle();
    let bound = handle.socket_addr().unwrap();
    let serving = tokio::spawn(async move { server.start(quic).await });
    let mapping = PortMapping::to(bound).await;
    assert_ne!(mapping.port, bound.port());
    let mapped = ClusterMembership::new(
        fast()
            .with_advertise_addr(format!("127.0.0.1:{}", mapping.port))
            .with_server(handle),
    )
    .await
    .unwrap();
    // The seed joins through the mapped node's advertised address.
    let advertised = SocketAddr::from(([127, 0, 0, 1], mapping.port));
    seed.cluster.join(vec![advertised]).await.unwrap();
    sees_alive(&seed.cluster, &[advertised]).await;
    sees_alive(&mapped, &[seed.addr]).await;
    assert!(
        seed.cluster.members().iter().all(|m| m.addr() != bound),
        "the bound port never appears: {:?}",
        seed.cluster.members()
    );
    serving.abort();
}

/// A cluster CA and the certificates `specs` in a fresh directory
/// (removed on drop).
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(test: &str, specs: &[rpcnet_certs::CertSpec]) -> Self {
        let dir = std::env::temp_dir().join(format!("rpcnet-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let pki = rpcnet_certs::CaDir::create(&dir, "test cluster CA").unwrap();
        pki.issue(specs).unwrap();
        Self { dir }
    }

    fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An RPC server at `at` with the certificate `name` of `pki` that counts
/// the gossip packets it is sent (a node that took over an address).
async fn gossip_listener(
    pki: &Pki,
    name: &str,
    at: SocketAddr,
) -> (
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<Result<(), RpcError>>,
) {
    let rpc = RpcConfig::new(pki.cert(name), at.to_string())
        .with_key_path(pki.key(name))
        .with_optional_client_ca_path(pki.ca());
    let mut server = RpcServer::new(rpc);
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    server
        .register(GOSSIP_METHOD, move |_packet| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(Vec::new())
            }
        })
        .await;
    let quic = server.bind().expect("the killed member's address is free");
    (count, tokio::spawn(async move { server.start(quic).await }))
}

/// Members a, b and d, each with a certificate for its own loopback
/// address; b and d die. Then the impostor (certificate `impostor` of the
/// same CA) listens at b's address and, as the control, a node with d's
/// own certificate at d's: a, alone now, keeps announcing itself to both
/// dead members (every `rejoin_interval`, 300 ms here), each packet over
/// a new connection once the one to the dead member has timed out
/// (`gossip_send_timeout`, 2 s). Returns how many packets the impostor
/// got while the control got ten: the control's first packet comes after
/// the same time-out, and each turn that reached d went to b as well.
async fn packets_an_impostor_receives(test: &str, impostor: rpcnet_certs::CertSpec) -> usize {
    use rpcnet_certs::CertSpec;
    let pki = Pki::new(
        test,
        &[
            CertSpec::member("a", ["127.0.0.2"]),
            CertSpec::member("b", ["127.0.0.3"]),
            CertSpec::member("d", ["127.0.0.5"]),
            impostor,
        ],
    );
    let a = node_bound(
        "127.0.0.2:0",
        &pki.cert("a"),
        &pki.key("a"),
        &pki.ca(),
        fast().with_rejoin_interval(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    // b and d are processes, so that their kill frees their ports at once.
    let path = |p: PathBuf| p.display().to_string();
    let seed = a.addr.to_string();
    let mut gone = Vec::new();
    for (name, listen) in [("b", "127.0.0.3:0"), ("d", "127.0.0.5:0")] {
        let (cert, key, ca) = (path(pki.cert(name)), path(pki.key(name)), path(pki.ca()));
        let mut member = super::processes::node(&[
            "--listen", listen, "--seed", &seed, "--cert", &cert, "--key", &key, "--ca", &ca,
        ])
        .await;
        sees_alive(&a.cluster, &[member.addr]).await;
        member.kill().await;
        gone.push(member.addr);
    }
    let mut watch = a.cluster.watch();
    tokio::time::timeout(
        PATIENCE,
        watch.wait_for(|v| {
            gone.iter().all(|addr| {
                v.members
                    .iter()
                    .any(|m| m.addr() == *addr && m.status == NodeStatus::Failed)
            })
        }),
    )
    .await
    .expect("both deaths are seen")
    .unwrap();
    let (stolen, impostor) = gossip_listener(&pki, "impostor", gone[0]).await;
    let (received, control) = gossip_listener(&pki, "d", gone[1]).await;
    tokio::time::timeout(PATIENCE, async {
        while received.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        // What arrived tells a slow path (some packets) from a stopped
        // one (none) when this fails.
        panic!(
            "a keeps sending to d's address: {} of 10 packets in {PATIENCE:?} ({} to the impostor)",
            received.load(Ordering::SeqCst),
            stolen.load(Ordering::SeqCst),
        )
    });
    impostor.abort();
    control.abort();
    stolen.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_member_at_a_members_address_receives_nothing_meant_for_that_member() {
    // Another member, whose certificate also carries `localhost`, the one
    // name every member was once verified against.
    let impostor =
        rpcnet_certs::CertSpec::member("impostor", ["127.0.0.4"]).with_tls_sans(["localhost"]);
    let stolen = packets_an_impostor_receives("reused-by-member", impostor).await;
    assert_eq!(
        stolen, 0,
        "a node at another member's address got its gossip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_naming_a_members_address_without_the_member_role_receives_nothing() {
    // From the same CA, naming b's address for TLS, but no member role.
    let impostor = rpcnet_certs::CertSpec::node("impostor", ["127.0.0.3"]);
    let stolen = packets_an_impostor_receives("reused-by-node", impostor).await;
    assert_eq!(
        stolen, 0,
        "a certificate with a member's TLS name but no member role got its gossip"
    );
}
