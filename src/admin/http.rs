//! The admin endpoint's HTTP/1 server (hyper) and its routes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::metrics::worker_state_name;
use super::state::{now_ms, AdminState, EventRecord, PhiSeries, Readiness};
use crate::cluster::{MemberReport, MembershipReport, WorkerStatus};

/// The status page, with its script and style inline (no other assets).
const STATUS_PAGE: &str = include_str!("page.html");

/// Connections served at once; more wait for a slot.
const MAX_CONNECTIONS: usize = 64;
/// The longest `/events` long poll.
const MAX_WAIT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

/// Accepts connections on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("admin endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!("admin endpoint: connection ended: {e}");
            }
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn json(value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        ),
    }
}

/// The value of `key` in a query string (`a=1&b=2`), parsed.
fn query_value<T: std::str::FromStr>(query: Option<&str>, key: &str) -> Option<T> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

async fn route(state: &AdminState, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        response
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let query = request.uri().query();
    match request.uri().path() {
        "/" => respond(StatusCode::OK, "text/html; charset=utf-8", STATUS_PAGE),
        "/alive" => alive().await,
        "/ready" => ready(state),
        "/metrics" => metrics(state),
        "/members" => members(state),
        "/events" => {
            let after = query_value(query, "after").unwrap_or(0);
            let wait = query_value(query, "wait_ms").map_or(Duration::ZERO, Duration::from_millis);
            events(state, after, wait.min(MAX_WAIT)).await
        }
        "/history" => history(state),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: / /alive /ready /metrics /members /events /history\n",
        ),
    }
}

/// 200 while the runtime runs a freshly spawned task within a second.
async fn alive() -> Response<Body> {
    let answered = tokio::time::timeout(Duration::from_secs(1), tokio::spawn(async {})).await;
    match answered {
        Ok(Ok(())) => text(StatusCode::OK, "alive\n"),
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "runtime not answering\n"),
    }
}

fn ready(state: &AdminState) -> Response<Body> {
    let Readiness { ready, reason } = state.readiness();
    if ready {
        text(StatusCode::OK, "ready\n")
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    }
}

fn metrics(state: &AdminState) -> Response<Body> {
    let Some(exporter) = state.exporter else {
        return text(
            StatusCode::NOT_FOUND,
            "metrics are off on this admin endpoint\n",
        );
    };
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        exporter.render(),
    )
}

/// A worker's load in `/members`, where a `WorkerRegistry` is attached.
#[derive(Serialize)]
struct WorkerLoad {
    state: &'static str,
    in_flight: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
}

#[derive(Serialize)]
struct AdminMember {
    #[serde(flatten)]
    member: MemberReport,
    /// Its load, when an attached registry has it in its pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<WorkerLoad>,
}

/// `/members`: the membership report, with each member's load when a
/// registry is attached, readiness and the time of the snapshot.
#[derive(Serialize)]
struct MembersDocument {
    version: u32,
    now_ms: u64,
    ready: Readiness,
    local: Option<MemberReport>,
    members: Vec<AdminMember>,
    local_health: u32,
    phi_threshold: f64,
    /// Whether a `WorkerRegistry` is attached (so `worker` is known).
    routing: bool,
    sample_interval_ms: u64,
}

fn members(state: &AdminState) -> Response<Body> {
    let (report, threshold) = match &state.cluster {
        Some(cluster) => {
            let threshold = cluster.config().phi.threshold;
            (
                MembershipReport::from_view(&cluster.view(), threshold),
                threshold,
            )
        }
        None => (MembershipReport::from_view(&Default::default(), 0.0), 0.0),
    };
    let workers: Vec<WorkerStatus> = state
        .registry
        .as_ref()
        .map(|r| r.workers())
        .unwrap_or_default();
    let members = report
        .members
        .into_iter()
        .map(|member| {
            let worker = workers
                .iter()
                .find(|w| w.id.addr == member.addr && w.id.generation == member.generation)
                .map(|w| WorkerLoad {
                    state: worker_state_name(w.state),
                    in_flight: w.in_flight,
                    label: w.label.clone(),
                });
            AdminMember { member, worker }
        })
        .collect();
    json(&MembersDocument {
        version: report.version,
        now_ms: now_ms(),
        ready: state.readiness(),
        local: report.local,
        members,
        local_health: report.local_health,
        phi_threshold: threshold,
        routing: state.registry.is_some(),
        sample_interval_ms: state.sample_interval.as_millis() as u64,
    })
}

#[derive(Serialize)]
struct EventsDocument {
    now_ms: u64,
    /// The newest sequence number: ask for `after=<next>` next time.
    next: u64,
    events: Vec<EventRecord>,
}

async fn events(state: &AdminState, after: u64, wait: Duration) -> Response<Body> {
    if !wait.is_zero() && state.events.latest() <= after {
        state.events.wait_after(after, wait).await;
    }
    json(&EventsDocument {
        now_ms: now_ms(),
        next: state.events.latest(),
        events: state.events.after(after),
    })
}

#[derive(Serialize)]
struct HistoryDocument {
    now_ms: u64,
    interval_ms: u64,
    phi_threshold: f64,
    series: Vec<PhiSeries>,
}

fn history(state: &AdminState) -> Response<Body> {
    json(&HistoryDocument {
        now_ms: now_ms(),
        interval_ms: state.sample_interval.as_millis() as u64,
        phi_threshold: state
            .cluster
            .as_ref()
            .map_or(0.0, |c| c.config().phi.threshold),
        series: state.history.series(),
    })
}

/// The address an admin endpoint is bound to, for logs.
pub(crate) fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/")
}
