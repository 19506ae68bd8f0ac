//! [`ClusterConfig`]: gossip, probing, suspicion and health-check tuning.

use std::time::Duration;

use super::detector::PhiConfig;
use super::Tags;

/// Cluster membership settings. Defaults suit a LAN cluster of up to a few
/// hundred nodes; every knob names the mechanism it drives.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// How often piggybacked updates are pushed to random members (SWIM dissemination).
    pub gossip_interval: Duration,
    /// Members gossiped to per interval.
    pub gossip_fanout: usize,
    /// How often a random member is probed (SWIM failure detection).
    pub probe_interval: Duration,
    /// Wait for a direct ack before asking others to probe indirectly.
    pub probe_timeout: Duration,
    /// Members asked to probe a silent member indirectly.
    pub indirect_probes: usize,
    /// Suspicion lasts `suspicion_multiplier × log10(max(10, expected_cluster_size)) × probe_interval`
    /// before a suspect is declared down (unless it refutes).
    pub suspicion_multiplier: f64,
    /// Expected number of members (scales suspicion and retransmissions).
    pub expected_cluster_size: u32,
    /// Each update is piggybacked `retransmit_multiplier × log10(n)` times
    /// per node (at least 4, at most 32). Higher values make it less likely
    /// that some member misses a refutation before its suspicion ends.
    pub retransmit_multiplier: f64,
    /// How often the health checker sends heartbeats and evaluates φ.
    pub health_check_interval: Duration,
    /// Phi Accrual tuning (threshold, window, minimum deviation, acceptable pause).
    pub phi: PhiConfig,
    /// Judge members with φ and spread the verdicts (default true). Each
    /// member heartbeats its [`phi_monitors`](Self::phi_monitors)
    /// successors on the heartbeat ring every `health_check_interval`;
    /// they judge it and gossip their verdicts, so every member learns a
    /// failure within about a second of its monitors (a constant load per
    /// node, whatever the cluster's size). Set it alike on every node: a
    /// node with it off sends no heartbeats, and its monitors would judge
    /// it by its SWIM traffic alone.
    pub phi_monitoring: bool,
    /// How many members watch each member with φ (its successors on a
    /// ring ordered by a hash of the members' addresses; default 9, Akka
    /// Cluster's `monitored-by-nr-of-members`; 1–32). With n ≤
    /// `phi_monitors + 1` members every member watches every other.
    /// Larger values cost `phi_monitors` heartbeats per member per
    /// health-check interval and make a verdict's news start from more
    /// places; a single monitor's false verdict reaches every member
    /// either way. Set it alike on every node: members that disagree on
    /// the ring judge members that do not heartbeat them.
    pub phi_monitors: usize,
    /// Lifeguard local health awareness: a node whose own timers run late,
    /// whose probes fail or that has to refute a suspicion of itself raises
    /// a local health score (0–8; successful probe cycles lower it) and
    /// stretches its probe interval, probe timeout and suspicion timeout
    /// by 1 + that score (at most 9×) before accusing others.
    pub local_health_awareness: bool,
    /// How often a node re-announces itself to members it believes down,
    /// so a partition heals without restarting anyone.
    pub rejoin_interval: Duration,
    /// How often a node sends its own tags directly to `gossip_fanout`
    /// members, in turn (anti-entropy; a constant load per node), and
    /// repeats its φ verdicts that still hold or that it took back lately
    /// (so a member that missed one learns it).
    pub tag_refresh_interval: Duration,
    /// Fraction of members unreachable at once that counts as a partition.
    pub partition_threshold: f64,
    /// How long a *shared* silence is tolerated before φ gives its verdicts
    /// (default 7 s; zero: no such wait). When at least two members went
    /// quiet within `phi.acceptable_pause` of each other, the likelier
    /// cause is the network between here and them (a partition, a switch
    /// reboot) rather than two crashes in the same second, so their φ
    /// verdicts wait until each has been silent this long; a partition
    /// shorter than this produces no verdict. A single member's silence is
    /// judged by φ alone (about 3 s with the defaults), and members already
    /// judged are not paired with. The cost: two members killed within
    /// about a second of each other wait too. The default is the
    /// `stable-after` Akka's split-brain resolver recommends for a
    /// five-node cluster (7 s); SWIM's own verdicts (about 11–14 s after a
    /// kill with the defaults: a 9 s suspicion plus probe periods) are
    /// unaffected.
    pub partition_grace: Duration,
    /// Largest member table kept; further members are ignored. Members that
    /// left or failed are forgotten after [`forget_after`](Self::forget_after),
    /// which frees their places.
    pub max_members: usize,
    /// How long a member that left or failed stays in the table (and in
    /// [`ClusterMembership::members`](super::ClusterMembership::members))
    /// before it is forgotten. Its generation is remembered longer (as long
    /// as the table has room), so an earlier life never wins over a later one.
    pub forget_after: Duration,
    /// Largest gossip packet, in bytes (default 4096; 512 to 61,440).
    /// Gossip travels as RPC calls over QUIC streams, so a packet is not
    /// bound to a datagram's size. Larger packets carry more membership
    /// updates each while a cluster forms (1,000 members converge in
    /// 2.5 s in the simulation at 4096, 6.5 s at 1400), and make each
    /// answer to a periodic announce larger (a full packet of members every
    /// 60 s: steady gossip at 1,000 members is 352 B/node/s at 4096, 307 at
    /// 1400). Earlier releases took at most 1464-byte packets: see
    /// `docs/CLUSTER.md`, "Mixed versions".
    pub max_packet_size: usize,
    /// Events buffered per subscriber before the oldest are dropped (the
    /// subscriber learns how many it missed).
    pub event_capacity: usize,
    /// The generation of this node's identity; `None` picks a fresh one at start.
    pub generation: Option<u64>,
    /// Tags this node starts with.
    pub tags: Tags,
    /// The RPC server whose endpoint carries this node's gossip. Required
    /// by `ClusterMembership::new`.
    pub server: Option<crate::ServerHandle>,
    /// The address peers reach this node at, and know it by: `host:port`
    /// or `host` (the server's bound port), the host an IP address or a
    /// DNS name. `None` (the default): the server's bound address, which
    /// must then be a specific one (not `0.0.0.0` or `[::]`). See
    /// [`with_advertise_addr`](Self::with_advertise_addr).
    pub advertise_addr: Option<String>,
    /// How long `join` waits for a seed to answer.
    pub join_timeout: Duration,
    /// How long sending one gossip packet to a peer (connecting included)
    /// may take before the packet is dropped (default 2 s; SWIM tolerates
    /// loss).
    pub gossip_send_timeout: Duration,
    /// Gossip packets in flight at once; more are dropped, as a congested
    /// network would (default 256).
    pub gossip_max_in_flight: usize,
    /// Most QUIC connections this node keeps open to peers for gossip
    /// (default 128; at least 1). Opening one more closes the least
    /// recently used (a packet in flight on it is still delivered).
    /// Connections to seeds being joined through are pooled apart, under
    /// a bound of the same size, and close once idle. SWIM probes members in turn
    /// and gossips to random ones, so without a bound a node of a large
    /// cluster comes to hold a connection to every member, and every
    /// member one to it. With it, a node dials at most this many and is
    /// dialed by about as many (1.2× for the busiest member of 1,000 in
    /// the simulation). A cluster no larger than the bound never closes a
    /// connection for room, only idle ones. Above it, the price is
    /// handshakes: about two per member per second at 1,000 members
    /// (probes and their answers go to members in turn), each about a
    /// millisecond of CPU on either side. A member's ring monitors get a
    /// heartbeat every health-check interval, so their connections stay
    /// the most recently used: keep this well above `phi_monitors`.
    /// Figures: `docs/CLUSTER.md`, "Gossip connections".
    pub gossip_max_connections: usize,
    /// A gossip connection unused this long is closed by this node
    /// (default 60 s; checked every health-check tick, so it closes
    /// within a quarter of this after), and the next packet to that peer
    /// opens a new one. It is also the QUIC idle timeout of those
    /// connections, which closes them on both ends if the peer stops
    /// answering.
    pub gossip_idle_timeout: Duration,
    /// QUIC keep-alive interval of those connections (default 15 s): an
    /// open one is kept open (through NAT bindings and the peer's own
    /// idle timeout) until this node closes it.
    pub gossip_keep_alive_interval: Duration,
    /// Serve this node's view of the membership, read-only, to any client
    /// its server accepts ([`VIEW_METHOD`](super::VIEW_METHOD): members'
    /// addresses, generations, statuses and tags), so that applications
    /// that are not members can route calls (`RemoteView`). Default true.
    pub serve_view: bool,
}

/// Largest `max_packet_size`: a gossip call's message is at most 64 KiB.
const MAX_PACKET_SIZE: usize = 60 * 1024;
/// Members announced to per `rejoin_interval` among those held down: by
/// foca while this node has an active member, by the core while it has
/// none (`MembershipCore::announce_while_alone`).
pub(crate) const DOWN_ANNOUNCE_FANOUT: usize = 2;

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_multiplier: 6.0,
            expected_cluster_size: 32,
            retransmit_multiplier: 8.0,
            // With a 2 s acceptable pause, φ passes 8 about 3 s after the
            // last heartbeat: a killed node is failed everywhere within 4 s
            // (p99 in the simulation), a 2 s pause stays below the
            // threshold, and 5% loss gives no false verdict in 20
            // simulated hours (1.5 s gave one). The trade-off table is in
            // docs/CLUSTER.md.
            health_check_interval: Duration::from_millis(500),
            phi: PhiConfig {
                acceptable_pause: Duration::from_secs(2),
                // Heartbeats come every health-check interval: a newly
                // seen member's history starts from that, not from 1 s
                // (which delayed verdicts on members seen shortly before).
                first_heartbeat_estimate: Duration::from_millis(500),
                ..PhiConfig::default()
            },
            phi_monitoring: true,
            phi_monitors: 9,
            local_health_awareness: true,
            rejoin_interval: Duration::from_secs(10),
            tag_refresh_interval: Duration::from_secs(30),
            partition_threshold: 0.3,
            partition_grace: Duration::from_secs(7),
            max_members: 4096,
            forget_after: Duration::from_secs(600),
            max_packet_size: 4096,
            event_capacity: 1024,
            generation: None,
            tags: Tags::new(),
            server: None,
            advertise_addr: None,
            join_timeout: Duration::from_secs(10),
            gossip_send_timeout: Duration::from_secs(2),
            gossip_max_in_flight: 256,
            gossip_max_connections: 128,
            gossip_idle_timeout: Duration::from_secs(60),
            gossip_keep_alive_interval: Duration::from_secs(15),
            serve_view: true,
        }
    }
}

impl ClusterConfig {
    /// Sets [`partition_grace`](Self::partition_grace) (zero: a shared
    /// silence is judged like any other).
    pub fn with_partition_grace(mut self, grace: Duration) -> Self {
        self.partition_grace = grace;
        self
    }

    /// Sets [`gossip_max_connections`](Self::gossip_max_connections) and
    /// [`gossip_idle_timeout`](Self::gossip_idle_timeout); the keep-alive
    /// interval becomes a quarter of the idle timeout (the default: 128,
    /// 60 s, 15 s).
    pub fn with_gossip_connections(mut self, max: usize, idle_timeout: Duration) -> Self {
        self.gossip_max_connections = max;
        self.gossip_idle_timeout = idle_timeout;
        self.gossip_keep_alive_interval = idle_timeout / 4;
        self
    }

    /// Sets [`gossip_interval`](Self::gossip_interval).
    pub fn with_gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// Sets [`health_check_interval`](Self::health_check_interval); the φ
    /// acceptable pause becomes four intervals, at least 1 s (the
    /// default: 500 ms and 2 s), and a new member's heartbeat history
    /// starts from one interval.
    pub fn with_health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self.phi.acceptable_pause = (interval * 4).max(Duration::from_secs(1));
        self.phi.first_heartbeat_estimate = interval;
        self
    }

    /// Sets [`probe_interval`](Self::probe_interval) and [`probe_timeout`](Self::probe_timeout).
    pub fn with_probe(mut self, interval: Duration, timeout: Duration) -> Self {
        self.probe_interval = interval;
        self.probe_timeout = timeout.min(interval / 2);
        self
    }

    /// Sets [`indirect_probes`](Self::indirect_probes).
    pub fn with_indirect_probes(mut self, members: usize) -> Self {
        self.indirect_probes = members.max(1);
        self
    }

    /// Sets [`suspicion_multiplier`](Self::suspicion_multiplier).
    pub fn with_suspicion_multiplier(mut self, multiplier: f64) -> Self {
        self.suspicion_multiplier = multiplier.max(1.0);
        self
    }

    /// Sets [`expected_cluster_size`](Self::expected_cluster_size).
    pub fn with_expected_cluster_size(mut self, members: u32) -> Self {
        self.expected_cluster_size = members.max(1);
        self
    }

    /// Sets [`retransmit_multiplier`](Self::retransmit_multiplier).
    pub fn with_retransmit_multiplier(mut self, multiplier: f64) -> Self {
        self.retransmit_multiplier = multiplier.max(1.0);
        self
    }

    /// Sets the φ threshold.
    pub fn with_phi_threshold(mut self, threshold: f64) -> Self {
        self.phi.threshold = threshold;
        self
    }

    /// Sets [`local_health_awareness`](Self::local_health_awareness).
    pub fn with_local_health_awareness(mut self, enabled: bool) -> Self {
        self.local_health_awareness = enabled;
        self
    }

    /// Sets [`phi_monitors`](Self::phi_monitors).
    pub fn with_phi_monitors(mut self, monitors: usize) -> Self {
        self.phi_monitors = monitors;
        self
    }

    /// Sets [`phi_monitoring`](Self::phi_monitoring).
    pub fn with_phi_monitoring(mut self, enabled: bool) -> Self {
        self.phi_monitoring = enabled;
        self
    }

    /// Sets [`rejoin_interval`](Self::rejoin_interval).
    pub fn with_rejoin_interval(mut self, interval: Duration) -> Self {
        self.rejoin_interval = interval;
        self
    }

    /// Fixes the identity generation (normally chosen at start).
    pub fn with_generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// The RPC server this node's gossip rides on. The server must verify
    /// client certificates against the cluster CA
    /// (`RpcConfig::with_optional_client_ca_path`, so application clients
    /// need none) and its own certificate must be a member certificate
    /// (`rpcnet-member://` URI name): peers accept gossip only from member
    /// certificates, which keeps application clients and outsiders out of
    /// the membership.
    pub fn with_server(mut self, server: crate::ServerHandle) -> Self {
        self.server = Some(server);
        self
    }

    /// Advertises `addr` (`host:port`, or `host` for the server's bound
    /// port) as this node's address: peers dial it there and know the node
    /// by it, and the node's member certificate must name that host
    /// (`rpcnet-member://<host>`). The server may then bind any local
    /// address, a wildcard included; the advertised port may differ from
    /// the bound one (a container's mapped port, a NAT's forwarded port).
    /// A DNS name is resolved by each peer where it runs, at every
    /// connect, and peers verify the node's certificate against it: a
    /// node named `worker-0.workers.default.svc` that comes back with
    /// another IP is the same member's new life (`docs/DEPLOY.md`).
    ///
    /// `ClusterMembership::new` returns `RpcError::ConfigError` for text
    /// that is not a host with an optional port.
    pub fn with_advertise_addr(mut self, addr: impl Into<String>) -> Self {
        self.advertise_addr = Some(addr.into());
        self
    }

    /// Sets [`join_timeout`](Self::join_timeout).
    pub fn with_join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Sets [`serve_view`](Self::serve_view).
    pub fn with_serve_view(mut self, serve: bool) -> Self {
        self.serve_view = serve;
        self
    }

    /// Adds a starting tag.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Checks every value, as `ClusterMembership::new` does before starting.
    ///
    /// # Errors
    /// `RpcError::ConfigError` naming the first unusable field: a zero
    /// interval or timeout, a zero count, a threshold or multiplier that is
    /// NaN, infinite, zero or negative, `probe_timeout` not below
    /// `probe_interval`, `partition_threshold` outside (0, 1],
    /// `max_packet_size` below 512 bytes, a tag over the limits.
    pub fn validate(&self) -> Result<(), crate::RpcError> {
        fn bad(field: &str, why: &str) -> Result<(), crate::RpcError> {
            Err(crate::RpcError::ConfigError(format!(
                "ClusterConfig::{field} {why}"
            )))
        }
        let intervals = [
            ("gossip_interval", self.gossip_interval),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("health_check_interval", self.health_check_interval),
            ("rejoin_interval", self.rejoin_interval),
            ("tag_refresh_interval", self.tag_refresh_interval),
            ("join_timeout", self.join_timeout),
            ("forget_after", self.forget_after),
            ("gossip_send_timeout", self.gossip_send_timeout),
            ("gossip_idle_timeout", self.gossip_idle_timeout),
            (
                "gossip_keep_alive_interval",
                self.gossip_keep_alive_interval,
            ),
            ("phi.min_std_deviation", self.phi.min_std_deviation),
            (
                "phi.first_heartbeat_estimate",
                self.phi.first_heartbeat_estimate,
            ),
        ];
        for (field, value) in intervals {
            if value.is_zero() {
                return bad(field, "must be greater than zero");
            }
        }
        let counts = [
            ("gossip_fanout", self.gossip_fanout),
            ("indirect_probes", self.indirect_probes),
            ("expected_cluster_size", self.expected_cluster_size as usize),
            ("max_members", self.max_members),
            ("event_capacity", self.event_capacity),
            ("gossip_max_in_flight", self.gossip_max_in_flight),
            ("gossip_max_connections", self.gossip_max_connections),
            ("phi.max_samples", self.phi.max_samples),
        ];
        for (field, value) in counts {
            if value == 0 {
                return bad(field, "must be at least 1");
            }
        }
        let positive = [
            ("suspicion_multiplier", self.suspicion_multiplier),
            ("retransmit_multiplier", self.retransmit_multiplier),
            ("phi.threshold", self.phi.threshold),
            ("partition_threshold", self.partition_threshold),
        ];
        for (field, value) in positive {
            if !value.is_finite() || value <= 0.0 {
                return bad(field, "must be a finite number greater than zero");
            }
        }
        if self.partition_threshold > 1.0 {
            return bad("partition_threshold", "is a fraction of members: at most 1");
        }
        if self.probe_timeout >= self.probe_interval {
            return bad("probe_timeout", "must be shorter than probe_interval");
        }
        if self.gossip_keep_alive_interval >= self.gossip_idle_timeout {
            return bad(
                "gossip_keep_alive_interval",
                "must be shorter than gossip_idle_timeout",
            );
        }
        if !(1..=32).contains(&self.phi_monitors) {
            return bad("phi_monitors", "must be between 1 and 32");
        }
        if !(512..=MAX_PACKET_SIZE).contains(&self.max_packet_size) {
            return bad("max_packet_size", "must be between 512 and 61440 bytes");
        }
        if self.tags.len() > super::MAX_TAGS
            || self
                .tags
                .iter()
                .any(|(k, v)| k.len() > super::MAX_TAG_LEN || v.len() > super::MAX_TAG_LEN)
        {
            return bad("tags", "exceed MAX_TAGS tags of MAX_TAG_LEN bytes");
        }
        Ok(())
    }

    /// How long suspicion lasts before a member is declared down.
    pub fn suspicion_timeout(&self) -> Duration {
        let n = f64::from(self.expected_cluster_size.max(10));
        self.probe_interval
            .mul_f64(self.suspicion_multiplier * n.log10())
    }

    /// The foca configuration these settings imply. foca cannot change its
    /// probe timers once it runs: Lifeguard's local health stretches them
    /// as they leave the membership core instead (`core/awareness.rs`).
    pub(crate) fn foca_config(&self) -> foca::Config {
        use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
        let mut c =
            foca::Config::new_lan(NonZeroU32::new(self.expected_cluster_size.max(1)).unwrap());
        c.probe_period = self.probe_interval;
        c.probe_rtt = self.probe_timeout.min(c.probe_period / 2);
        c.num_indirect_probes = NonZeroUsize::new(self.indirect_probes.max(1)).unwrap();
        c.suspect_to_down_after = self.suspicion_timeout();
        c.max_packet_size = NonZeroUsize::new(self.max_packet_size.max(512)).unwrap();
        let retransmit = (f64::from(self.expected_cluster_size.max(2)).log10()
            * self.retransmit_multiplier)
            .ceil();
        c.max_transmissions = NonZeroU8::new(retransmit.clamp(4.0, 32.0) as u8).unwrap();
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_interval,
            num_members: NonZeroUsize::new(self.gossip_fanout.max(1)).unwrap(),
        });
        // Each announce is answered with a feed of up to a full packet of
        // members: at 60 s it costs a node about 23 B/s in a large cluster.
        c.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.rejoin_interval * 6,
            num_members: NonZeroUsize::new(1).unwrap(),
        });
        c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.rejoin_interval,
            num_members: NonZeroUsize::new(DOWN_ANNOUNCE_FANOUT).unwrap(),
        });
        c.remove_down_after = Some(self.forget_after);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RpcError;

    fn field_of(config: ClusterConfig) -> String {
        match config.validate() {
            Err(RpcError::ConfigError(m)) => m,
            other => panic!("expected a ConfigError, got {other:?}"),
        }
    }

    #[test]
    fn the_default_configuration_is_valid() {
        ClusterConfig::default().validate().unwrap();
    }

    #[test]
    fn every_unusable_value_is_a_config_error_naming_its_field() {
        type Breaks = fn(&mut ClusterConfig);
        let cases: Vec<(&str, Breaks)> = vec![
            ("gossip_interval", |c| c.gossip_interval = Duration::ZERO),
            ("probe_interval", |c| c.probe_interval = Duration::ZERO),
            ("probe_timeout", |c| c.probe_timeout = Duration::ZERO),
            ("probe_timeout", |c| c.probe_timeout = c.probe_interval),
            ("health_check_interval", |c| {
                c.health_check_interval = Duration::ZERO
            }),
            ("rejoin_interval", |c| c.rejoin_interval = Duration::ZERO),
            ("tag_refresh_interval", |c| {
                c.tag_refresh_interval = Duration::ZERO
            }),
            ("join_timeout", |c| c.join_timeout = Duration::ZERO),
            ("forget_after", |c| c.forget_after = Duration::ZERO),
            ("phi.min_std_deviation", |c| {
                c.phi.min_std_deviation = Duration::ZERO
            }),
            ("phi.first_heartbeat_estimate", |c| {
                c.phi.first_heartbeat_estimate = Duration::ZERO
            }),
            ("gossip_fanout", |c| c.gossip_fanout = 0),
            ("indirect_probes", |c| c.indirect_probes = 0),
            ("expected_cluster_size", |c| c.expected_cluster_size = 0),
            ("max_members", |c| c.max_members = 0),
            ("event_capacity", |c| c.event_capacity = 0),
            ("phi.max_samples", |c| c.phi.max_samples = 0),
            ("suspicion_multiplier", |c| {
                c.suspicion_multiplier = f64::NAN
            }),
            ("suspicion_multiplier", |c| c.suspicion_multiplier = -1.0),
            ("retransmit_multiplier", |c| {
                c.retransmit_multiplier = f64::INFINITY
            }),
            ("phi.threshold", |c| c.phi.threshold = f64::NAN),
            ("phi.threshold", |c| c.phi.threshold = -8.0),
            ("phi.threshold", |c| c.phi.threshold = 0.0),
            ("partition_threshold", |c| c.partition_threshold = f64::NAN),
            ("partition_threshold", |c| c.partition_threshold = 1.5),
            ("max_packet_size", |c| c.max_packet_size = 100),
            ("max_packet_size", |c| c.max_packet_size = 100_000),
            ("phi_monitors", |c| c.phi_monitors = 0),
            ("phi_monitors", |c| c.phi_monitors = 33),
            ("gossip_send_timeout", |c| {
                c.gossip_send_timeout = Duration::ZERO
            }),
            ("gossip_idle_timeout", |c| {
                c.gossip_idle_timeout = Duration::ZERO
            }),
            ("gossip_keep_alive_interval", |c| {
                c.gossip_keep_alive_interval = c.gossip_idle_timeout
            }),
            ("gossip_max_in_flight", |c| c.gossip_max_in_flight = 0),
            ("gossip_max_connections", |c| c.gossip_max_connections = 0),
            ("tags", |c| {
                c.tags
                    .insert("k".repeat(super::super::MAX_TAG_LEN + 1), "v".into());
            }),
        ];
        for (field, breaks) in cases {
            let mut config = ClusterConfig::default();
            breaks(&mut config);
            let message = field_of(config);
            assert!(
                message.contains(&format!("ClusterConfig::{field} ")),
                "{field}: {message}"
            );
        }
    }

    #[tokio::test]
    async fn membership_refuses_an_unusable_value_before_starting_anything() {
        // A zero health-check interval used to panic inside the driver task.
        let config = ClusterConfig::default().with_health_check_interval(Duration::ZERO);
        let err = crate::cluster::ClusterMembership::new(config)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::ConfigError(m) if m.contains("health_check_interval")),
            "{err:?}"
        );
    }
}
