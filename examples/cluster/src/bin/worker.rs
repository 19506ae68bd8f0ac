//! The guide's worker: `cargo run --manifest-path examples/cluster/Cargo.toml --bin worker`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rpcnet_cluster_example::init_tracing();
    rpcnet_cluster_example::exit_code("worker", rpcnet_cluster_example::worker::run().await)
}
