//! The generated PKI works end to end: two member nodes, each with a
//! certificate for its own address only, form a cluster with it; a client
//! with a generated client certificate, or none, can call a node but not
//! gossip.

use std::time::Duration;

use rpcnet::cluster::{ClusterConfig, ClusterMembership, NodeStatus};
use rpcnet::{RpcClient, RpcConfig, RpcServer};
use rpcnet_certs::{CaDir, CertSpec};

/// Two distinct UDP ports free on loopback a moment ago.
fn free_ports() -> [u16; 2] {
    let sockets = [(); 2].map(|()| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    sockets.map(|s| s.local_addr().unwrap().port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_ca_and_node_certificates_form_a_cluster() {
    let dir = std::env::temp_dir().join(format!("rpcnet-certs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Both members live on loopback, so each speaks for its own port.
    let ports = free_ports();
    let pki = CaDir::create(&dir, "test CA").unwrap();
    pki.issue(&[
        CertSpec::member("a", ["localhost".into(), format!("127.0.0.1:{}", ports[0])]),
        CertSpec::member("b", ["localhost".into(), format!("127.0.0.1:{}", ports[1])]),
        CertSpec::client("client", Vec::<String>::new()),
    ])
    .unwrap();
    let file = |name: &str| dir.join(name);

    let mut members = Vec::new();
    let mut addrs = Vec::new();
    for (node, port) in ["a", "b"].into_iter().zip(ports) {
        let rpc = RpcConfig::new(file(&format!("{node}.pem")), format!("127.0.0.1:{port}"))
            .with_key_path(file(&format!("{node}-key.pem")))
            .with_optional_client_ca_path(file("ca.pem"));
        let mut server = RpcServer::new(rpc);
        server
            .register("hello", |_| async move { Ok(b"hi".to_vec()) })
            .await;
        let quic = server.bind().unwrap();
        let handle = server.handle();
        addrs.push(handle.socket_addr().unwrap());
        tokio::spawn(async move { server.start(quic).await });
        let config = ClusterConfig::default()
            .with_gossip_interval(Duration::from_millis(50))
            .with_server(handle);
        members.push(ClusterMembership::new(config).await.unwrap());
    }
    members[1].join(vec![addrs[0]]).await.unwrap();
    let mut watch = members[0].watch();
    tokio::time::timeout(
        Duration::from_secs(20),
        watch.wait_for(|v| {
            v.members
                .iter()
                .any(|m| m.addr() == addrs[1] && m.status == NodeStatus::Alive)
        }),
    )
    .await
    .unwrap()
    .unwrap();

    let client = RpcConfig::new(file("ca.pem"), "127.0.0.1:0")
        .with_client_identity(file("client.pem"), file("client-key.pem"));
    let client = RpcClient::connect(addrs[0], client).await.unwrap();
    assert_eq!(client.call("hello", vec![]).await.unwrap(), b"hi");
    // A client certificate is an application client's: it cannot gossip.
    let refused = client
        .call(rpcnet::cluster::GOSSIP_METHOD, vec![0])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, rpcnet::RpcError::RemoteError(m) if m.contains("member certificate")),
        "{refused:?}"
    );
    // Application clients need no certificate at all.
    let anonymous = RpcClient::connect(addrs[1], RpcConfig::new(file("ca.pem"), "127.0.0.1:0"))
        .await
        .unwrap();
    assert_eq!(anonymous.call("hello", vec![]).await.unwrap(), b"hi");
    let _ = std::fs::remove_dir_all(&dir);
}
