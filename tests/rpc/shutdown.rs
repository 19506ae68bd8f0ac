//! Graceful shutdown never costs a second execution: what the server ran
//! is answered or reported as may-have-run, never as `Unavailable` (which
//! tells routers the call never ran), and a draining server refuses new
//! connections at once instead of completing handshakes it will not serve.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpcnet::{RpcClient, RpcError, RpcServer};
use tokio::sync::Notify;

use crate::support::*;

/// What the server did with each call, by the id in its payload.
#[derive(Default)]
struct Ledger {
    /// Calls whose handler ran.
    ran: Mutex<HashSet<u64>>,
    /// Calls whose handler returned before the shutdown began.
    finished_before_shutdown: Mutex<HashSet<u64>>,
    shutting_down: AtomicBool,
}

async fn ledger_server(ledger: Arc<Ledger>) -> TestServer {
    let server = RpcServer::new(server_config().with_drain_timeout(Duration::from_secs(10)));
    server
        .register("work", move |payload| {
            let ledger = ledger.clone();
            async move {
                let id = u64::from_le_bytes(payload[..8].try_into().unwrap());
                ledger.ran.lock().unwrap().insert(id);
                // Answered at once: the drain then ends at once too, and
                // the close follows answers still on their way.
                if !ledger.shutting_down.load(Ordering::SeqCst) {
                    ledger.finished_before_shutdown.lock().unwrap().insert(id);
                }
                Ok(payload)
            }
        })
        .await;
    spawn(server)
}

/// Twenty rounds: clients keep 64 calls in flight against a server, which is
/// shut down under that load. Every call the server finished before the
/// shutdown began gets its answer, and no call the server ran is reported
/// as `Unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_under_load_loses_no_answer_and_reports_no_call_that_ran_as_unavailable() {
    let next_id = Arc::new(AtomicU64::new(0));
    let mut lost_answers = Vec::new();
    let mut ran_but_unavailable = Vec::new();
    for _round in 0..20 {
        let ledger = Arc::new(Ledger::default());
        let server = ledger_server(ledger.clone()).await;
        let client = server.client().await;
        let stop = Arc::new(AtomicBool::new(false));
        let load_started = Arc::new(Notify::new());
        let mut callers = Vec::new();
        for _ in 0..64 {
            let (client, stop, next_id, load_started) = (
                client.clone(),
                stop.clone(),
                next_id.clone(),
                load_started.clone(),
            );
            callers.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                // Bounded: the server refuses new calls once it drains.
                for n in 0..10_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if n == 20 {
                        load_started.notify_one();
                    }
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let mut payload = id.to_le_bytes().to_vec();
                    payload.resize(64, 0);
                    // A call that starts after the server is gone waits for
                    // a handshake nobody answers: 2 s bounds that.
                    let result = client
                        .call_with_timeout("work", payload, Duration::from_secs(2))
                        .await;
                    let failed = result.is_err();
                    outcomes.push((id, result));
                    if failed {
                        break;
                    }
                }
                outcomes
            }));
        }
        promptly("load", load_started.notified()).await;
        ledger.shutting_down.store(true, Ordering::SeqCst);
        server.shutdown.shutdown();
        // Calls in flight now are what the shutdown must handle; later
        // ones would wait for a server that has gone.
        stop.store(true, Ordering::SeqCst);
        let mut outcomes = Vec::new();
        for caller in callers {
            outcomes.extend(promptly("callers", caller).await.unwrap());
        }
        let ran = ledger.ran.lock().unwrap().clone();
        let finished = ledger.finished_before_shutdown.lock().unwrap().clone();
        for (id, result) in outcomes {
            match result {
                Ok(echo) => assert_eq!(echo[..8], id.to_le_bytes()),
                Err(e) => {
                    if finished.contains(&id) {
                        lost_answers.push((id, e.to_string()));
                    } else if ran.contains(&id) && matches!(e, RpcError::Unavailable(_)) {
                        ran_but_unavailable.push((id, e.to_string()));
                    }
                }
            }
        }
    }
    assert!(
        lost_answers.is_empty(),
        "{} answers finished before the shutdown were lost: {:?}",
        lost_answers.len(),
        &lost_answers[..lost_answers.len().min(5)]
    );
    assert!(
        ran_but_unavailable.is_empty(),
        "{} calls the server ran were reported as Unavailable: {:?}",
        ran_but_unavailable.len(),
        &ran_but_unavailable[..ran_but_unavailable.len().min(5)]
    );
}

/// While a server drains (a call keeps it from stopping), a client that
/// connects is told `Unavailable` at once, not after its deadline.
#[tokio::test]
async fn a_draining_servers_new_clients_are_told_unavailable_within_300_ms() {
    let Gated {
        server,
        started,
        release,
    } = gated_server().await;
    let client = server.client().await;
    let in_flight = slow_call(&client);
    promptly("handler start", started.notified()).await;
    server.shutdown.shutdown();

    for _ in 0..3 {
        let began = Instant::now();
        let outcome = async {
            let late = RpcClient::connect(server.addr, client_config()).await?;
            late.call_with_timeout("slow", vec![], Duration::from_secs(3))
                .await
        }
        .await;
        let took = began.elapsed();
        assert!(
            matches!(outcome, Err(RpcError::Unavailable(_))),
            "{outcome:?}"
        );
        assert!(took < Duration::from_millis(300), "told after {took:?}");
    }
    release.notify_one();
    assert_eq!(
        promptly("in-flight call", in_flight)
            .await
            .unwrap()
            .unwrap(),
        b"done"
    );
}
