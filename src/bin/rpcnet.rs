//! `rpcnet`: operate a running cluster from the command line.
//!
//! ```text
//! rpcnet members ADDR [--json]                 the members a node sees (address, generation, status, φ, tags)
//! rpcnet call ADDR METHOD [PAYLOAD | @FILE | -] [--server-stream | --client-stream | --bidi] [--hex]
//! rpcnet health ADDR                           exit 0: answers and in good standing; 1: answers, not in good standing; 2: no answer
//!                                              (64 for every command: the command line cannot be run as given)
//! rpcnet certs [--out DIR] [--new-ca] [(--member|--node|--client) NAME [--san NAME|NAME:PORT|IP|IP:PORT]... [--tls-san NAME|IP]...]...   (rpcnet-certs)
//!
//! TLS: --ca PATH (default certs/ca.pem), --cert PATH --key PATH (an optional client
//! certificate), --server-name NAME (default localhost); --timeout SECONDS (default 5).
//! ```
//!
//! `members` and `health` call the read-only `rpcnet.cluster/members`
//! method, which needs no member certificate: trusting the cluster's CA is
//! enough. See `docs/OPERATIONS.md`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use futures::{Stream, StreamExt};
use rpcnet::cluster::{MembershipReport, DRAINING_TAG, MEMBERS_METHOD};
use rpcnet::{RpcClient, RpcConfig, RpcError};
use tokio::io::AsyncBufReadExt;

#[derive(Parser)]
#[command(
    name = "rpcnet",
    version,
    about = "Operate an rpcnet cluster: list members, call methods, probe health, issue certificates"
)]
struct Cli {
    #[command(flatten)]
    tls: Tls,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Tls {
    /// The CA the node's certificate must come from.
    #[arg(long, global = true, default_value = "certs/ca.pem")]
    ca: PathBuf,
    /// A client certificate to present (from the same CA); none by default.
    #[arg(long, global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// The name the node's certificate must carry.
    #[arg(long, global = true, default_value = "localhost")]
    server_name: String,
    /// Seconds to wait for a connection and for a unary answer.
    #[arg(long, global = true, default_value_t = 5.0)]
    timeout: f64,
}

#[derive(Subcommand)]
enum Command {
    /// The members a node sees: address, generation, status, φ and tags
    /// (the node itself first, with φ "-").
    Members {
        /// The node's RPC address (host:port).
        addr: String,
        /// The node's membership report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Calls a method: unary unless a streaming mode is given.
    Call(CallArgs),
    /// Exits 0 if the node answers and is a member in good standing, 1 if it
    /// answers but is draining or cut off from every member it knows, 2 if
    /// it does not answer.
    Health {
        /// The node's RPC address (host:port).
        addr: String,
    },
    /// A development CA and one certificate per node (the flags of
    /// rpcnet-certs; `rpcnet certs --help` lists them).
    #[command(disable_help_flag = true)]
    Certs {
        /// [--out DIR] [--new-ca] [(--member|--node|--client) NAME [--san NAME|NAME:PORT|IP|IP:PORT]... [--tls-san NAME|IP]...]...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
struct CallArgs {
    /// The node's RPC address (host:port).
    addr: String,
    /// The method's name.
    method: String,
    /// The request: text, @FILE for a file's contents, or - for stdin
    /// (default: empty; for --client-stream and --bidi, stdin). Streaming
    /// requests send one message per line.
    payload: Option<String>,
    /// One request, a stream of responses.
    #[arg(long, group = "mode")]
    server_stream: bool,
    /// A stream of requests (one per line), one response.
    #[arg(long, group = "mode")]
    client_stream: bool,
    /// Requests (one per line) and responses both streamed.
    #[arg(long, group = "mode")]
    bidi: bool,
    /// Print responses in hex instead of raw bytes.
    #[arg(long)]
    hex: bool,
}

/// Exit codes of `health` (0 is healthy).
const UNHEALTHY: u8 = 1;
const NO_ANSWER: u8 = 2;
/// Exit code for a command line that cannot be run as given (a bad flag,
/// a missing certificate file): `EX_USAGE` of sysexits.h, so that no
/// mistake of the caller reads as a node's state.
const USAGE: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { USAGE } else { 0 });
        }
    };
    if !matches!(cli.command, Command::Certs { .. }) {
        if let Err(e) = cli.tls.check_files() {
            eprintln!("rpcnet: {e}");
            return ExitCode::from(USAGE);
        }
    }
    let result = match cli.command {
        Command::Members { ref addr, json } => members(&cli.tls, addr, json).await,
        Command::Call(ref call) => self::call(&cli.tls, call).await,
        Command::Health { ref addr } => return health(&cli.tls, addr).await,
        Command::Certs { ref args } => certs(args.clone()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rpcnet: {e}{}", cli.tls.hint(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl Tls {
    /// What to try after `error`: a failed handshake without a client
    /// certificate is most often a node that requires one
    /// (`rpcnet-worker` does).
    fn hint(&self, error: &str) -> &'static str {
        if self.cert.is_none() && error.contains("handshake failed") {
            " (a node that requires a client certificate refuses the handshake: pass --cert and --key)"
        } else {
            ""
        }
    }

    /// The certificate files given exist.
    fn check_files(&self) -> Result<(), String> {
        let files = [Some(&self.ca), self.cert.as_ref(), self.key.as_ref()];
        for file in files.into_iter().flatten() {
            if !file.is_file() {
                return Err(format!(
                    "{}: no such file (see --ca, --cert, --key)",
                    file.display()
                ));
            }
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.max(0.001))
    }

    async fn connect(&self, addr: &str) -> Result<RpcClient, Error> {
        let target = resolve(addr).await?;
        let bind = if target.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let mut config = RpcConfig::new(&self.ca, bind)
            .with_server_name(&self.server_name)
            .with_default_timeout(self.timeout());
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            config = config.with_client_identity(cert, key);
        }
        match tokio::time::timeout(self.timeout(), RpcClient::connect(target, config)).await {
            Ok(client) => Ok(client?),
            Err(_) => Err(format!("{addr}: no connection within {:?}", self.timeout()).into()),
        }
    }

    async fn report(&self, addr: &str) -> Result<MembershipReport, Error> {
        let client = self.connect(addr).await?;
        let answer = client
            .call_with_timeout(MEMBERS_METHOD, Vec::new(), self.timeout())
            .await?;
        Ok(MembershipReport::decode(&answer)?)
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    if let Ok(addr) = addr.parse() {
        return Ok(addr);
    }
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("{addr}: {e} (expected host:port)"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address").into())
}

fn format_phi(phi: f64) -> String {
    if phi >= 1e300 {
        "inf".into()
    } else if phi < 1e6 {
        format!("{phi:.2}")
    } else {
        format!("{phi:.1e}")
    }
}

fn format_tags(tags: &rpcnet::cluster::Tags) -> String {
    if tags.is_empty() {
        return "-".into();
    }
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The members table: one row per member, the node asked first.
fn table(report: &MembershipReport) -> String {
    let mut rows = vec![[
        "ADDRESS".to_string(),
        "GENERATION".into(),
        "STATUS".into(),
        "PHI".into(),
        "TAGS".into(),
    ]];
    if let Some(local) = &report.local {
        rows.push([
            local.addr.to_string(),
            local.generation.to_string(),
            local.status.clone(),
            "-".into(),
            format_tags(&local.tags),
        ]);
    }
    for m in &report.members {
        rows.push([
            m.addr.to_string(),
            m.generation.to_string(),
            m.status.clone(),
            format_phi(m.phi),
            format_tags(&m.tags),
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

async fn members(tls: &Tls, addr: &str, json: bool) -> Result<(), Error> {
    let report = tls.report(addr).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

async fn health(tls: &Tls, addr: &str) -> ExitCode {
    let report = match tls.report(addr).await {
        Ok(report) => report,
        Err(e) => {
            println!(
                "unhealthy: no answer from {addr}: {e}{}",
                tls.hint(&e.to_string())
            );
            return ExitCode::from(NO_ANSWER);
        }
    };
    let Some(local) = &report.local else {
        println!("unhealthy: {addr} has not started its membership");
        return ExitCode::from(UNHEALTHY);
    };
    let alive = report
        .members
        .iter()
        .filter(|m| m.status == "alive")
        .count();
    let lost = report
        .members
        .iter()
        .filter(|m| m.status == "failed" || m.status == "suspect")
        .count();
    let me = format!("{}#{}", local.addr, local.generation);
    if local.tags.contains_key(DRAINING_TAG) {
        println!("unhealthy: {me} is draining");
        return ExitCode::from(UNHEALTHY);
    }
    if alive == 0 && lost > 0 {
        println!(
            "unhealthy: {me} reaches none of the {lost} members it knows as failed or suspect"
        );
        return ExitCode::from(UNHEALTHY);
    }
    println!(
        "healthy: {me}, {alive} other members alive, local health {}",
        report.local_health
    );
    ExitCode::SUCCESS
}

/// The request bytes of `payload`: text, `@file`, `-` (stdin) or nothing.
fn read_payload(payload: Option<&str>) -> Result<Vec<u8>, Error> {
    match payload {
        None => Ok(Vec::new()),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            Ok(buf)
        }
        Some(p) if p.starts_with('@') => {
            std::fs::read(&p[1..]).map_err(|e| format!("{}: {e}", &p[1..]).into())
        }
        Some(text) => Ok(text.as_bytes().to_vec()),
    }
}

/// A stream of request messages, one per line: of the payload when one is
/// given (text or @file), else of stdin as it is typed.
fn request_lines(
    payload: Option<&str>,
) -> Result<futures::stream::BoxStream<'static, Vec<u8>>, Error> {
    match payload {
        None | Some("-") => {
            let lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            Ok(futures::stream::unfold(lines, |mut lines| async move {
                match lines.next_line().await {
                    Ok(Some(line)) => Some((line.into_bytes(), lines)),
                    _ => None,
                }
            })
            .boxed())
        }
        Some(_) => {
            let bytes = read_payload(payload)?;
            let messages: Vec<Vec<u8>> = bytes
                .split(|b| *b == b'\n')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>();
            // A final newline ends the last line rather than starting an empty one.
            let n = if bytes.ends_with(b"\n") {
                messages.len() - 1
            } else {
                messages.len()
            };
            Ok(futures::stream::iter(messages.into_iter().take(n)).boxed())
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes one response: raw (unary: exactly its bytes; streams: each
/// followed by a newline) or hex (one line each).
fn emit(out: &mut impl Write, message: &[u8], hex_out: bool, newline: bool) -> std::io::Result<()> {
    if hex_out {
        writeln!(out, "{}", hex(message))?;
    } else {
        out.write_all(message)?;
        if newline {
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

async fn print_stream(
    mut responses: impl Stream<Item = Result<Vec<u8>, RpcError>> + Unpin,
    hex_out: bool,
) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    while let Some(message) = responses.next().await {
        emit(&mut out, &message?, hex_out, true)?;
    }
    Ok(())
}

async fn call(tls: &Tls, args: &CallArgs) -> Result<(), Error> {
    let client = tls.connect(&args.addr).await?;
    let payload = args.payload.as_deref();
    if args.server_stream {
        let responses = client
            .call_server_streaming(&args.method, read_payload(payload)?)
            .await?;
        print_stream(responses, args.hex).await
    } else if args.client_stream {
        let answer = client
            .call_client_streaming(&args.method, request_lines(payload)?)
            .await?;
        emit(&mut std::io::stdout().lock(), &answer, args.hex, true)?;
        Ok(())
    } else if args.bidi {
        let responses = client
            .call_streaming(&args.method, request_lines(payload)?)
            .await?;
        print_stream(responses, args.hex).await
    } else {
        let answer = client
            .call_with_timeout(&args.method, read_payload(payload)?, tls.timeout())
            .await?;
        emit(&mut std::io::stdout().lock(), &answer, args.hex, false)?;
        Ok(())
    }
}

fn certs(args: Vec<String>) -> Result<(), Error> {
    print!("{}", rpcnet_certs::cli::run(args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_members_table_lists_the_node_first_and_aligns_columns() {
        let report = MembershipReport::decode(
            br#"{"version":1,"local":{"addr":"127.0.0.1:7000","generation":5,"status":"alive","tags":{"role":"seed"},"phi":0.0},
                "members":[{"addr":"127.0.0.1:7001","generation":6,"status":"failed","tags":{},"phi":1.7976931348623157e308}],
                "local_health":0,"phi_threshold":8.0}"#,
        )
        .unwrap();
        let table = table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "ADDRESS         GENERATION  STATUS  PHI  TAGS");
        assert_eq!(
            lines[1],
            "127.0.0.1:7000  5           alive   -    role=seed"
        );
        assert_eq!(lines[2], "127.0.0.1:7001  6           failed  inf  -");
    }
}
