//! Medians, the comparison table and the targets.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::systems::System;

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    percentile(values, 0.5)
}

/// One figure for every system, repeated; reported as the median.
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    samples: BTreeMap<&'static str, Vec<f64>>,
}

impl Row {
    pub fn new(name: String, unit: &'static str) -> Row {
        Row {
            name,
            unit,
            samples: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, system: System, value: f64) {
        self.samples.entry(system.name()).or_default().push(value);
    }

    pub fn median(&self, system: System) -> f64 {
        let mut v = self.samples.get(system.name()).cloned().unwrap_or_default();
        median(&mut v)
    }

    pub fn ratio(&self) -> f64 {
        self.median(System::Rpcnet) / self.median(System::TonicTls)
    }

    pub fn summary(&self) -> String {
        let mut s = format!("{:<44}", self.name);
        for system in System::ALL {
            let _ = write!(s, " {}={}", system.name(), fmt(self.median(system)));
        }
        let _ = write!(s, "  ratio={:.2}", self.ratio());
        s
    }
}

fn fmt(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}", v)
    } else {
        format!("{:.1}", v)
    }
}

#[derive(Default)]
pub struct Report {
    /// Every workload, tokio's default runtime in every process.
    pub rows: Vec<Row>,
    /// The targets' workloads again, one worker per process.
    pub one_worker: Vec<Row>,
    pub udp_p50_us: f64,
    /// `ClusterClient` overhead and kill -9 recovery (`routing.rs`).
    pub routing: Option<crate::routing::Figures>,
    /// A generated typed client against a raw `RpcClient` (`typed.rs`).
    pub typed: Option<crate::typed::Figures>,
    /// Idle connections and streams held by one server (`conns.rs`).
    pub connections: Option<crate::conns::Figures>,
}

/// What the names of the second pass's rows carry.
pub const ONE_WORKER: &str = ", 1 worker/process";

/// Connect + first call from a process that already has a client (rpcnet
/// reuses its QUIC endpoint; tonic opens a new channel either way).
pub const CONNECT_SHARED: &str = "connect + first call, endpoint running: p50";
/// Connect + first call on a new endpoint (rpcnet `with_shared_endpoint(false)`).
pub const CONNECT_NEW: &str = "connect + first call, new endpoint: p50";

impl Report {
    fn row(&self, name: &str) -> &Row {
        self.rows
            .iter()
            .chain(&self.one_worker)
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("row {name}"))
    }

    fn table(md: &mut String, rows: &[Row]) {
        let _ = writeln!(
            md,
            "| workload | rpcnet | tonic (TLS) | tonic (plaintext) | rpcnet / tonic-TLS |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        for row in rows {
            let _ = writeln!(
                md,
                "| {} ({}) | {} | {} | {} | {:.2}× |",
                row.name,
                row.unit,
                fmt(row.median(System::Rpcnet)),
                fmt(row.median(System::TonicTls)),
                fmt(row.median(System::TonicPlain)),
                row.ratio()
            );
        }
    }

    /// The targets for one runtime shape: (target, measured, met).
    fn targets(&self, suffix: &str) -> Vec<(String, String, bool)> {
        let mut out = Vec::new();
        // c=64 is held to 4× tonic-TLS, c=256 to 3×.
        for (c, times) in [(64, 4.0), (256, 3.0)] {
            let r = self
                .row(&format!("unary 16 B c={c}{suffix}: calls/s"))
                .ratio();
            out.push((
                format!("unary 16 B, c={c}: ≥ {times}× tonic-TLS calls/s"),
                format!("{r:.2}×"),
                r >= times,
            ));
        }
        let p50 = self
            .row(&format!("unary 16 B c=1{suffix}: p50"))
            .median(System::Rpcnet);
        let r = p50 / self.udp_p50_us;
        out.push((
            "unary c=1: p50 ≤ 1.3× UDP ping-pong p50".into(),
            format!("{p50:.1} µs = {r:.2}× {:.1} µs", self.udp_p50_us),
            r <= 1.3,
        ));
        let pass = if suffix.is_empty() {
            &self.rows
        } else {
            &self.one_worker
        };
        let n = pass
            .iter()
            .find(|r| r.name.starts_with("server streaming") && r.unit == "msg/s")
            .expect("server streaming row");
        let r = n.median(System::Rpcnet) / n.median(System::TonicPlain);
        out.push((
            "server streaming 1 KiB: ≥ tonic plaintext msg/s".into(),
            format!("{r:.2}×"),
            r >= 1.0,
        ));
        let n = pass
            .iter()
            .find(|r| r.name.starts_with("client streaming") && r.unit == "msg/s")
            .expect("client streaming row");
        out.push((
            "client streaming 1 KiB: ≥ tonic-TLS msg/s".into(),
            format!("{:.2}×", n.ratio()),
            n.ratio() >= 1.0,
        ));
        let c = self.row(&format!("{CONNECT_SHARED}{suffix}"));
        out.push((
            "connect + first call (client endpoint already running): ≤ tonic-TLS".into(),
            format!("{:.2}×", c.ratio()),
            c.ratio() <= 1.0,
        ));
        if suffix.is_empty() {
            let c = self.row(CONNECT_NEW);
            out.push((
                "connect + first call (new client endpoint): ≤ tonic-TLS".into(),
                format!("{:.2}×", c.ratio()),
                c.ratio() <= 1.0,
            ));
        }
        out
    }

    pub fn markdown(&self, quick: bool) -> String {
        let mut md = String::new();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
            })
            .unwrap_or_default();
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Produced by `cargo run --release -p rpcnet-bench{}` (this file is rewritten by every run).\n",
            if quick { " -- --quick" } else { "" }
        );
        let _ = writeln!(
            md,
            "Machine: {cores} cores ({cpu}), Linux {}. Mode: {}.",
            kernel.trim(),
            if quick { "quick" } else { "full" }
        );
        let _ = writeln!(
            md,
            "Every figure is the median of 3 runs; servers run in their own processes on loopback; \
             each client uses one connection (rpcnet) or one channel (tonic); payloads are raw bytes for every system. \
             The last column is rpcnet divided by tonic with TLS (for µs rows, lower is better).\n"
        );
        let _ = writeln!(
            md,
            "## Default runtime\n\nEvery process (load generator and servers) runs tokio's default \
             multi-threaded runtime, `Runtime::new()` (what `#[tokio::main]` gives): one worker per core, \
             so client and server processes ask for {cores} workers each on this {cores}-core machine.\n"
        );
        Self::table(&mut md, &self.rows);
        let _ = writeln!(
            md,
            "| UDP ping-pong round trip, blocking, 16 B: p50 (µs) | {} | | | |",
            fmt(self.udp_p50_us)
        );
        let _ = writeln!(
            md,
            "\n## One worker per process\n\nThe targets' workloads again, every process with a \
             one-worker runtime (`Builder::new_multi_thread().worker_threads(1)`): the client and \
             the server process each get one core's worth of threads. Same systems, same load \
             generator, same run.\n"
        );
        Self::table(&mut md, &self.one_worker);
        let _ = writeln!(md, "\n## Targets\n");
        let _ = writeln!(
            md,
            "| target | default runtime | met | one worker per process | met |\n|---|---|---|---|---|"
        );
        let yes = |met: bool| if met { "yes" } else { "**no**" };
        let one_worker = self.targets(ONE_WORKER);
        for (i, (name, measured, met)) in self.targets("").into_iter().enumerate() {
            let (other, other_met) = match one_worker.get(i) {
                Some((_, m, ok)) => (m.clone(), yes(*ok)),
                None => ("—".to_string(), "—"),
            };
            let _ = writeln!(
                md,
                "| {name} | {measured} | {} | {other} | {other_met} |",
                yes(met)
            );
        }
        if let Some(typed) = &self.typed {
            md.push('\n');
            md.push_str(&typed.markdown());
        }
        if let Some(routing) = &self.routing {
            md.push('\n');
            md.push_str(&routing.markdown());
        }
        if let Some(connections) = &self.connections {
            md.push('\n');
            md.push_str(&connections.markdown());
        }
        // The profile notes are maintained by hand in bench/analysis.md.
        match std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/analysis.md")) {
            Ok(analysis) => {
                md.push('\n');
                md.push_str(&analysis);
            }
            Err(e) => eprintln!("bench/analysis.md not read: {e}"),
        }
        md
    }
}
