//! `rpcnet-faults gossip`: an application client that tries to take part
//! in membership without a member credential.
//!
//! ```text
//! rpcnet-faults gossip --listen ADDR --target HOST:PORT... --cert F --key F --ca F
//!                      --forge-cert F --forge-key F --forge-ca F [--forge-advertise HOST[:PORT]]
//! ```
//!
//! `--cert/--key/--ca` is the client's own identity: a certificate from the
//! cluster CA *without* the member role, so TLS lets it in as an ordinary
//! application client. To have a genuine gossip packet to send, it first
//! records the join announcement that a real `ClusterMembership` on
//! `--listen` (one port up) sends to a recorder on the same host (two
//! ports up); that membership uses `--forge-*`, a member certificate for
//! this host from a CA the cluster does not trust, and never talks to the
//! cluster. Then, on one connection per target with its application
//! identity, it sends every target that announcement (a join: "I am a
//! member at `<this host>`") and a packet of random bytes, both to the
//! gossip method.
//!
//! With `--forge-advertise` the recorded membership advertises that
//! address instead (its certificate must name the host): the announcement
//! then claims to come from that member, and `--cert` may be another
//! member's certificate, to check that one member cannot speak for
//! another. A target given by name is resolved here and verified against
//! that name (TLS server name); one given by IP address against
//! `localhost`, as before.
//!
//! Lines: `READY <addr>`, `CAPTURED <bytes>`, one
//! `SENT <target> <packet> refused|accepted <error>` per packet, then
//! `GOSSIP <sent> <refused> <accepted>`.

use std::net::SocketAddr;
use std::time::Duration;

use rpcnet::cluster::{ClusterConfig, ClusterMembership, GOSSIP_METHOD};
use rpcnet::{RpcClient, RpcConfig, RpcServer};
use tokio::sync::mpsc;

#[derive(Default)]
struct Args {
    listen: String,
    targets: Vec<String>,
    cert: String,
    key: String,
    ca: String,
    forge_cert: String,
    forge_key: String,
    forge_ca: String,
    forge_advertise: Option<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    for (flag, value) in crate::args::pairs(args)? {
        match flag {
            "--listen" => out.listen = value.into(),
            "--target" => out.targets.push(value.into()),
            "--cert" => out.cert = value.into(),
            "--key" => out.key = value.into(),
            "--ca" => out.ca = value.into(),
            "--forge-cert" => out.forge_cert = value.into(),
            "--forge-key" => out.forge_key = value.into(),
            "--forge-ca" => out.forge_ca = value.into(),
            "--forge-advertise" => out.forge_advertise = Some(value.into()),
            other => return Err(crate::args::unknown(other)),
        }
    }
    if out.targets.is_empty() || out.cert.is_empty() || out.forge_cert.is_empty() {
        return Err(
            "--target, --cert/--key/--ca and --forge-cert/--forge-key/--forge-ca are required"
                .into(),
        );
    }
    Ok(out)
}

/// Runs the role; `args` are the arguments after `gossip`.
pub fn main(args: &[String]) -> Result<(), String> {
    let args = parse(args)?;
    crate::args::block_on(run(args))
}

fn shifted(addr: SocketAddr, by: u16) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() + by)
}

/// A genuine join announcement from a real membership at `listen + 1`,
/// recorded by a gossip recorder at `listen + 2`.
async fn capture_join(args: &Args, listen: SocketAddr) -> Result<Vec<u8>, String> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let mut recorder = RpcServer::new(
        RpcConfig::new(&args.forge_cert, shifted(listen, 2).to_string().as_str())
            .with_key_path(&args.forge_key)
            .with_optional_client_ca_path(&args.forge_ca),
    );
    recorder
        .register(GOSSIP_METHOD, move |packet| {
            let tx = tx.clone();
            async move {
                let _ = tx.try_send(packet);
                Ok(Vec::new())
            }
        })
        .await;
    let quic = recorder.bind().map_err(|e| format!("recorder: {e}"))?;
    let recording = tokio::spawn(async move { recorder.start(quic).await });

    let mut forger = RpcServer::new(
        RpcConfig::new(&args.forge_cert, shifted(listen, 1).to_string().as_str())
            .with_key_path(&args.forge_key)
            .with_optional_client_ca_path(&args.forge_ca),
    );
    let quic = forger.bind().map_err(|e| format!("forger: {e}"))?;
    let mut config = ClusterConfig::default().with_server(forger.handle());
    if let Some(advertise) = &args.forge_advertise {
        config = config.with_advertise_addr(advertise.as_str());
    }
    let serving = tokio::spawn(async move { forger.start(quic).await });
    let membership = ClusterMembership::new(config)
        .await
        .map_err(|e| format!("forger membership: {e}"))?;
    let joining = {
        let membership = membership.clone();
        let seed = shifted(listen, 2);
        // The recorder never answers like a member: this join only times out.
        tokio::spawn(async move { membership.join(vec![seed]).await })
    };
    let packet = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    joining.abort();
    let _ = membership.leave().await;
    serving.abort();
    recording.abort();
    match packet {
        Ok(Some(p)) => Ok(p),
        _ => Err("no join announcement recorded within 10 s".into()),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listen: SocketAddr = crate::args::parse("--listen", &args.listen)?;
    println!("READY {listen}");
    let join = capture_join(&args, listen).await?;
    println!("CAPTURED {}", join.len());
    let mut noise = vec![0u8; join.len().max(64)];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let config = RpcConfig::new(
        &args.ca,
        SocketAddr::new(listen.ip(), 0).to_string().as_str(),
    )
    .with_client_identity(&args.cert, &args.key)
    .with_shared_endpoint(false);
    let (mut sent, mut refused, mut accepted) = (0, 0, 0);
    for target in &args.targets {
        let (addr, config) = match target.parse::<SocketAddr>() {
            Ok(addr) => (addr, config.clone()),
            Err(_) => {
                let host = target.rsplit_once(':').map_or(target.as_str(), |(h, _)| h);
                let addr = tokio::net::lookup_host(target.as_str())
                    .await
                    .ok()
                    .and_then(|mut found| found.next())
                    .ok_or_else(|| format!("{target} does not resolve"))?;
                (addr, config.clone().with_server_name(host))
            }
        };
        let client = RpcClient::connect(addr, config)
            .await
            .map_err(|e| format!("connect {target}: {e}"))?;
        for (name, packet) in [("join", &join), ("noise", &noise)] {
            sent += 1;
            match client
                .call_with_timeout(GOSSIP_METHOD, packet.clone(), Duration::from_secs(5))
                .await
            {
                Ok(_) => {
                    accepted += 1;
                    println!("SENT {target} {name} accepted");
                }
                Err(e) => {
                    refused += 1;
                    println!("SENT {target} {name} refused {e}");
                }
            }
        }
    }
    println!("GOSSIP {sent} {refused} {accepted}");
    Ok(())
}
