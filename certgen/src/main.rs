//! `rpcnet-certs`: write a development CA and node certificates.
//!
//! ```text
//! cargo run -p rpcnet-certs -- --out certs/cluster --member director --member worker-a --node client
//!     [--san localhost --san 127.0.0.1]   (default SANs: localhost, 127.0.0.1, ::1)
//! ```
//!
//! `--member NAME` issues a cluster member certificate (it may take part in
//! gossip, for the IP addresses among the SANs); `--node NAME` a plain one
//! (server or client identity without the member role). The flags are
//! `rpcnet_certs::cli`'s, which `rpcnet certs` runs too.

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for path in rpcnet_certs::cli::run(std::env::args().skip(1))? {
        println!("wrote {}", path.display());
    }
    Ok(())
}
