//! The process's Prometheus recorder: built when the first admin endpoint
//! with metrics starts, installed as the global `metrics` recorder if none
//! is installed yet, and shared by every admin endpoint of the process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;

/// Gauges not set for this long are dropped from `/metrics` (a member
/// forgotten by the membership, a worker gone from the pool).
const IDLE_GAUGES: Duration = Duration::from_secs(300);

/// Histogram buckets for every `*.duration` metric, in seconds:
/// OpenTelemetry's advice for `rpc.server.call.duration`.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

pub(crate) struct Exporter {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// The process's exporter, built (and installed globally if it can be) on
/// first use.
pub(crate) fn exporter() -> &'static Exporter {
    EXPORTER.get_or_init(Exporter::new)
}

impl Exporter {
    fn new() -> Self {
        let builder = PrometheusBuilder::new()
            .with_recommended_naming(true)
            .idle_timeout(MetricKindMask::GAUGE, Some(IDLE_GAUGES))
            .set_buckets_for_metric(Matcher::Suffix("duration".into()), &DURATION_BUCKETS)
            .expect("the bucket list is not empty");
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        // Another recorder may have been installed first; then `/metrics`
        // shows only the admin endpoint's own metrics.
        if metrics::set_global_recorder(recorder.clone()).is_err() {
            tracing::warn!(
                "a metrics recorder was already installed: /metrics shows only the admin endpoint's own metrics"
            );
        }
        // The RPC layer, membership and routing record from now on.
        crate::telemetry::enable();
        let exporter = Self { recorder, handle };
        exporter.record(super::metrics::describe);
        exporter
    }

    /// Runs `f` with this exporter's recorder, whether or not it is global.
    pub(crate) fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The Prometheus text exposition of everything recorded.
    pub(crate) fn render(&self) -> String {
        self.handle.run_upkeep();
        self.handle.render()
    }
}
