//! Where a call goes: the routing half of the cluster.
//!
//! | module | concern |
//! |---|---|
//! | `filter` | worker filters (`"role=worker,zone=eu"`, `"gpu"`), pure; also [`NodeInfo::has_tag`](super::NodeInfo::has_tag)'s language |
//! | `balance` | [`LoadBalancingStrategy`]: pure pickers over a snapshot of loads, seeded RNG |
//! | `load` | per-worker calls in flight, counted by RAII guards |
//! | `eject` | passive outlier ejection (Envoy): [`EjectionPolicy`], what an outcome means, one worker's record, sans-IO |
//! | `rate` | success-rate outlier detection: a sliding window per worker, the comparison with the others, sans-IO |
//! | `memory` | strikes by address (recent ejections and crashes) and slow start, sans-IO |
//! | `discover` | [`WorkerRegistry`]: workers from the membership's view, the ejection policy; `discover/select`: selection, panic routing, the ejection limit |
//! | `status` | [`WorkerStatus`], [`WorkerState`]: what a registry reports about its workers |
//! | `failover` | what follows a failed attempt: one classification of errors, one decision (gRFC A6), [`StopReason`], pure |
//! | `budget` | the retry budget (Finagle), sans-IO |
//! | `attempt` | [`AttemptTimeout`]: how long one attempt may take (Envoy's per-try timeout), answer times per method, sans-IO |
//! | `config` | [`ClusterClientConfig`] |
//! | `client` | [`ClusterClient`]: the one call path, pooled worker connections |
//! | `drain` | [`drain_and_leave`]: a worker's graceful departure |
//! | `remote` | [`RemoteView`]: a member's view followed over RPC, for applications that are not members |
//!
//! After tower's split of load balancing into discovery, load and
//! balance, and Finagle's and Envoy's view that failure handling belongs to
//! routing (see `docs/CLUSTER.md`, "Routing calls").

mod attempt;
mod balance;
mod budget;
mod client;
mod config;
mod discover;
mod drain;
mod eject;
mod failover;
mod filter;
mod load;
mod memory;
mod rate;
mod remote;
mod status;

pub use attempt::{AdaptiveTimeout, AttemptTimeout};
pub use balance::LoadBalancingStrategy;
pub use budget::RetryBudgetConfig;
pub use client::{ClusterClient, WorkerStream};
pub use config::{ClusterClientConfig, DEFAULT_REPLAY_LIMIT};
pub use discover::{Worker, WorkerRegistry, DRAINING_TAG, LABEL_TAG};
pub use drain::drain_and_leave;
pub use eject::EjectionPolicy;
pub(crate) use failover::format_attempts;
pub use failover::{FailedAttempt, StopReason};
pub(crate) use filter::WorkerFilter;
pub use remote::{RemoteView, VIEW_IDLE_TIMEOUT};
pub use status::{WorkerState, WorkerStatus};
