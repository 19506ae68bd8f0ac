//! Where a call goes: the routing half of the cluster.
//!
//! | module | concern |
//! |---|---|
//! | `filter` | worker filters (`"role=worker,zone=eu"`, `"gpu"`), pure; also [`NodeInfo::has_tag`](super::NodeInfo::has_tag)'s language |
//! | `balance` | [`LoadBalancingStrategy`]: pure pickers over a snapshot of loads, seeded RNG |
//! | `load` | per-worker calls in flight, counted by RAII guards |
//! | `eject` | passive outlier ejection: the client's own fast view of worker health, sans-IO |
//! | `discover` | [`WorkerRegistry`]: workers from the membership's view, selection |
//! | `retry` | what is safe to retry (gRFC A6), the retry budget (Finagle), sans-IO |
//! | `client` | [`ClusterClient`]: the one call path, pooled worker connections |
//! | `drain` | [`drain_and_leave`]: a worker's graceful departure |
//!
//! After tower's split of load balancing into discovery, load and
//! balance, and Finagle's and Envoy's view that failure handling belongs to
//! routing (see `docs/CLUSTER.md`, "Routing calls").

mod balance;
mod client;
mod discover;
mod drain;
mod eject;
mod filter;
mod load;
mod retry;

pub use balance::LoadBalancingStrategy;
pub(crate) use client::format_attempts;
pub use client::{ClusterClient, ClusterClientConfig, FailedAttempt, WorkerStream};
pub use discover::{Worker, WorkerRegistry, WorkerState, WorkerStatus, DRAINING_TAG, LABEL_TAG};
pub use drain::drain_and_leave;
pub use eject::EjectionPolicy;
pub(crate) use filter::WorkerFilter;
pub use retry::RetryBudgetConfig;
