//! The admin endpoint of the director and the workers (`rpcnet::admin`):
//! on when `RPCNET_ADMIN_ADDR` is set, off otherwise, as for `rpcnet-node`
//! and `rpcnet-worker`. `/ready` answers 503 while the program joins,
//! 200 once it serves (the director at once, a worker once it joined and
//! while it has a live peer), and 503 again from the moment it starts
//! shutting down; a worker in its simulated failure carries the
//! `rpcnet.draining` tag and is not ready either. `/alive`, `/metrics`,
//! `/members` and the status page are the library's; the director's
//! shows each worker's connections.

use std::net::SocketAddr;
use std::sync::Arc;

use rpcnet::admin::{AdminHandle, AdminServer, Phase};
use rpcnet::cluster::{ClusterMembership, WorkerRegistry};

/// The start of the line a program prints once its admin endpoint
/// listens; the address and the routes follow ([`admin_addr_in`] reads
/// it back).
pub const ADMIN_LINE: &str = "🩺 Admin endpoint at http://";

/// A program's admin endpoint, if `RPCNET_ADMIN_ADDR` asked for one.
#[derive(Debug)]
pub struct Admin {
    handle: Option<AdminHandle>,
}

impl Admin {
    /// Starts the endpoint on `$RPCNET_ADMIN_ADDR` (nothing when unset),
    /// reporting `cluster` and, for the director, its `registry`'s
    /// workers; prints [`ADMIN_LINE`] with the address it listens on.
    /// Not ready until [`serving`](Self::serving).
    ///
    /// # Errors
    /// `RPCNET_ADMIN_ADDR` set to something that is not an address, or an
    /// address that cannot be bound.
    pub async fn start(
        cluster: &ClusterMembership,
        registry: Option<Arc<WorkerRegistry>>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let Some(addr) = AdminServer::addr_from_env()? else {
            return Ok(Self { handle: None });
        };
        let mut admin = AdminServer::new(addr).with_cluster(cluster.clone());
        if let Some(registry) = registry {
            admin = admin.with_registry(registry);
        }
        let handle = admin
            .start()
            .await
            .map_err(|e| format!("admin endpoint on {addr} (RPCNET_ADMIN_ADDR): {e}"))?;
        println!(
            "{ADMIN_LINE}{}/ (/ready, /alive, /metrics, /members)",
            handle.local_addr()
        );
        Ok(Self {
            handle: Some(handle),
        })
    }

    /// The program serves: `/ready` answers 200, always for the node that
    /// started the cluster (`seedless`, the director), while it has a live
    /// peer for one that joined through a seed (a worker).
    pub fn serving(&self, seedless: bool) {
        if let Some(handle) = &self.handle {
            handle.set_phase(Phase::Serving { seedless });
        }
    }

    /// The program is shutting down: `/ready` answers 503 from now on.
    pub fn draining(&self) {
        if let Some(handle) = &self.handle {
            handle.set_phase(Phase::Draining);
        }
    }

    /// The address it listens on, if it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.handle.as_ref().map(AdminHandle::local_addr)
    }
}

/// The admin endpoint's address in a line a program printed, if it is the
/// [`ADMIN_LINE`].
pub fn admin_addr_in(line: &str) -> Option<SocketAddr> {
    line.strip_prefix(ADMIN_LINE)?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_line_reads_back() {
        let line = format!("{ADMIN_LINE}127.0.0.1:9090/ (/ready, /alive, /metrics, /members)");
        assert_eq!(
            admin_addr_in(&line),
            Some("127.0.0.1:9090".parse().unwrap())
        );
        let v6 = format!("{ADMIN_LINE}[::1]:9090/ (/ready)");
        assert_eq!(admin_addr_in(&v6), Some("[::1]:9090".parse().unwrap()));
        assert_eq!(
            admin_addr_in("🚀 Director ready - listening on 127.0.0.1:1"),
            None
        );
    }
}
