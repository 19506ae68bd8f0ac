//! `rpcnet-certs`: write a development CA and node certificates.
//!
//! ```text
//! cargo run -p rpcnet-certs -- --out certs/cluster --member director --member worker-a --node client
//!     [--san localhost --san 127.0.0.1]   (default SANs: localhost, 127.0.0.1, ::1)
//! ```
//!
//! `--member NAME` issues a cluster member certificate (it may take part in
//! gossip, for the IP addresses among the SANs); `--node NAME` a plain one
//! (server or client identity without the member role).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = PathBuf::from("certs/cluster");
    let mut nodes = Vec::new();
    let mut members = Vec::new();
    let mut sans = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => out = PathBuf::from(value),
            "--node" => nodes.push(value),
            "--member" => members.push(value),
            "--san" => sans.push(value),
            other => return Err(format!("unknown argument {other}; usage: rpcnet-certs --out DIR [--member NAME]... [--node NAME]... [--san NAME]...").into()),
        }
    }
    if nodes.is_empty() && members.is_empty() {
        members.push("node".into());
    }
    if sans.is_empty() {
        sans = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    }
    let ca = rpcnet_certs::DevCa::new("rpcnet development CA")?;
    for path in ca.write_all(&out, &members, &nodes, &sans)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
