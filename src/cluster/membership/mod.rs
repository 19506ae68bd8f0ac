//! Membership: who is in the cluster, with which tags, and who is alive.
//! SWIM gossip (foca) with Phi Accrual health, tags and events, carried by
//! each node's own RPC endpoint and authenticated by member certificates.
//! See `docs/CLUSTER.md` for the design and its figures.
//!
//! | module | concern |
//! |---|---|
//! | `node` | [`NodeId`]: advertised address ([`MemberAddr`]: IP or DNS name) + generation |
//! | `config` | [`ClusterConfig`]: values, validated |
//! | `credential` | member certificates: who may gossip, for which addresses |
//! | `detector` | the Phi Accrual failure detector, pure |
//! | `ring` | the heartbeat ring: which members watch which with φ, pure |
//! | `reachability` | φ verdicts as reversible records every member learns |
//! | `tags` | tag maps as versioned foca custom broadcasts |
//! | `broadcasts` | the one foca broadcast handler over tags and verdicts |
//! | `core` | the sans-IO membership state machine, one file per concern |
//! | `transport` | gossip as unary calls between nodes' RPC endpoints: both halves |
//! | `driver` | the task that feeds the core packets, timers and commands |
//! | `handle` | [`ClusterMembership`]: the public API over the driver |
//! | `view` | [`ClusterView`], [`NodeInfo`]: snapshots for readers |
//! | `query` | [`MEMBERS_METHOD`]: the read-only membership query any client may call |
//! | `view_rpc` | [`VIEW_METHOD`]: a member's view, read-only, over RPC for processes that are not members |
//! | `registry` | [`NodeRegistry`], [`HealthChecker`] |
//! | `sim` | a deterministic, virtual-time simulator of many cores (tests) |

mod broadcasts;
mod config;
pub(crate) mod core;
pub(crate) mod credential;
pub mod detector;
mod driver;
mod handle;
mod node;
mod query;
mod reachability;
mod registry;
mod ring;
mod tags;
mod transport;
mod view;
pub(crate) mod view_rpc;

#[cfg(test)]
mod sim;

pub use config::ClusterConfig;
pub use credential::MEMBER_URI_SCHEME;
pub use detector::{PhiAccrualDetector, PhiConfig};
pub use handle::ClusterMembership;
pub use node::{MemberAddr, NodeId};
pub use query::{MemberReport, MembershipReport, MEMBERSHIP_REPORT_VERSION, MEMBERS_METHOD};
pub use registry::{HealthChecker, NodeRegistry};
pub use tags::{Tags, MAX_TAGS, MAX_TAG_LEN};
pub use transport::GOSSIP_METHOD;
pub use view::{ClusterView, NodeInfo};
pub use view_rpc::VIEW_METHOD;
