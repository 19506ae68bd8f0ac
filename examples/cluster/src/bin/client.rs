//! The guide's client: `cargo run --manifest-path examples/cluster/Cargo.toml --bin client`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rpcnet_cluster_example::init_tracing();
    rpcnet_cluster_example::exit_code("client", rpcnet_cluster_example::client::run().await)
}
