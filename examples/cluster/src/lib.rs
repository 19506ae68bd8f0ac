//! The user guide's cluster example (`docs/guide/cluster-example.md`): a
//! director that tracks workers through cluster membership and assigns
//! them to clients, workers that join through the director and serve a
//! resumable token stream, and a client that fails over without losing or
//! repeating a token.
//!
//! # Layout
//!
//! | module | concern |
//! |---|---|
//! | [`protocol`] | method names and messages between client, director and worker |
//! | [`certs`] | finding the test certificates from the repository root or `examples/cluster` |
//! | [`settings`] | the guide's environment variables and their defaults, and those for deploying it |
//! | [`admin`] | the director's and workers' admin endpoint (`RPCNET_ADMIN_ADDR`) |
//! | [`ledger`] | the client's account of the stream: order, gaps, failovers (pure) |
//! | [`director`], [`worker`], [`client`] | each binary's program (the binaries are thin `main`s) |
//! | [`supervise`] | running the processes side by side (demo and tests), killing them by pid |
//! | [`demo`] | the README's one command: every process of the guide, a kill, a restart, a summary |
//!
//! What each program prints on stdout is the guide's output (the tests
//! and the demo read it), with a line more for an admin endpoint or an
//! advertised address when one is set; diagnostics go through `tracing`
//! to stderr, filtered by `RUST_LOG`.

pub mod admin;
pub mod certs;
pub mod client;
pub mod demo;
pub mod director;
pub mod ledger;
pub mod protocol;
pub mod settings;
pub mod supervise;
pub mod worker;

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on Ctrl+C (SIGINT) or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn shutdown_signal() -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

/// Runs `program` to completion and turns its outcome into an exit code,
/// printing an error instead of panicking.
pub fn exit_code(
    name: &str,
    outcome: Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("❌ {name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
