//! The admin endpoint of `rpcnet-node` and `rpcnet-worker`: `--admin ADDR`,
//! or `$RPCNET_ADMIN_ADDR` when the flag is not given, turns it on (it is
//! off otherwise). Once it listens the program prints `ADMIN <addr>`.
//! Included by both programs with `#[path]`.

use rpcnet::cluster::ClusterMembership;

/// The program's admin endpoint, if one was asked for.
pub struct Admin {
    #[cfg(feature = "admin")]
    handle: Option<rpcnet::admin::AdminHandle>,
}

impl Admin {
    /// Starts the endpoint on the address of `flag` or the environment,
    /// reporting `cluster` (and `registry`'s workers, if given); the phase
    /// is "joining" until [`serving`](Self::serving).
    #[cfg(feature = "admin")]
    pub async fn start(
        flag: Option<&str>,
        cluster: &ClusterMembership,
        registry: Option<std::sync::Arc<rpcnet::cluster::WorkerRegistry>>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        use rpcnet::admin::AdminServer;
        let addr = match flag {
            Some(addr) => Some(addr.parse().map_err(|e| format!("--admin {addr}: {e}"))?),
            None => AdminServer::addr_from_env()?,
        };
        let Some(addr) = addr else {
            return Ok(Self { handle: None });
        };
        let mut admin = AdminServer::new(addr).with_cluster(cluster.clone());
        if let Some(registry) = registry {
            admin = admin.with_registry(registry);
        }
        let handle = admin.start().await?;
        println!("ADMIN {}", handle.local_addr());
        Ok(Self {
            handle: Some(handle),
        })
    }

    /// Without the `admin` feature: an error if an endpoint was asked for.
    #[cfg(not(feature = "admin"))]
    pub async fn start(
        flag: Option<&str>,
        _cluster: &ClusterMembership,
        _registry: Option<std::sync::Arc<rpcnet::cluster::WorkerRegistry>>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        if flag.is_some() || std::env::var_os("RPCNET_ADMIN_ADDR").is_some_and(|v| !v.is_empty()) {
            return Err("this program was built without the `admin` feature".into());
        }
        Ok(Self {})
    }

    /// The node serves: `/ready` answers 200 while it has a live peer, or
    /// always when it started without seeds.
    pub fn serving(&self, seedless: bool) {
        #[cfg(feature = "admin")]
        if let Some(handle) = &self.handle {
            handle.set_phase(rpcnet::admin::Phase::Serving { seedless });
        }
        #[cfg(not(feature = "admin"))]
        let _ = seedless;
    }

    /// The node is shutting down: `/ready` answers 503.
    pub fn draining(&self) {
        #[cfg(feature = "admin")]
        if let Some(handle) = &self.handle {
            handle.set_phase(rpcnet::admin::Phase::Draining);
        }
    }
}
