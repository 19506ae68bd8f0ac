//! The guide's director: `cargo run --manifest-path examples/cluster/Cargo.toml --bin director`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rpcnet_cluster_example::init_tracing();
    rpcnet_cluster_example::exit_code("director", rpcnet_cluster_example::director::run().await)
}
