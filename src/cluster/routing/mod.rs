//! Where a call goes: the routing half of the cluster.
//!
//! | module | concern |
//! |---|---|
//! | `filter` | worker filters (`"role=worker,zone=eu"`, `"gpu"`), pure |
//! | `balance` | [`LoadBalancingStrategy`]: pure pickers over a snapshot of loads, seeded RNG |
//! | `load` | per-worker calls in flight, counted by RAII guards |
//! | `eject` | passive outlier ejection: the client's own fast view of worker health, sans-IO |
//! | `discover` | [`WorkerRegistry`]: workers from the membership's view, selection |
//!
//! After tower's split of load balancing into discovery, load and
//! balance, and Finagle's and Envoy's view that failure handling belongs to
//! routing (see `docs/CLUSTER.md`, "Routing calls").

mod balance;
mod discover;
mod eject;
mod filter;
mod load;

pub use balance::LoadBalancingStrategy;
pub use discover::{Worker, WorkerRegistry, WorkerState, WorkerStatus, DRAINING_TAG, LABEL_TAG};
pub use eject::EjectionPolicy;
