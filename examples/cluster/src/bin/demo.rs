//! The README's first command: director, two workers and a client, a
//! `kill -9`, a restart and a summary, in about 45 seconds.
//! `cargo run --manifest-path examples/cluster/Cargo.toml --bin demo`
//! (it starts copies of itself with `--role director|worker|client`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    rpcnet_cluster_example::init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, outcome) = match args.as_slice() {
        [flag, role] if flag == "--role" => (
            role.clone(),
            rpcnet_cluster_example::demo::run_role(role).await,
        ),
        [] => ("demo".to_owned(), rpcnet_cluster_example::demo::run().await),
        _ => (
            "demo".to_owned(),
            Err("usage: demo [--role director|worker|client]".into()),
        ),
    };
    rpcnet_cluster_example::exit_code(&name, outcome)
}
