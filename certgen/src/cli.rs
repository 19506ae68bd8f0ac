//! The command line of `rpcnet-certs`, shared by the `rpcnet-certs` binary
//! and `rpcnet certs`: both parse the same flags and write the same files.
//!
//! ```text
//! --out DIR        where to write (default certs/cluster)
//! --member NAME    a member certificate (may gossip, for the IP addresses among the SANs)
//! --node NAME      a plain certificate (server or client identity, no member role)
//! --san NAME       a subject alternative name (default: localhost, 127.0.0.1, ::1)
//! ```
//!
//! With neither `--member` nor `--node`, one member certificate named
//! `node` is issued.

use std::path::PathBuf;

/// The usage line of the flags [`run`] takes.
pub const USAGE: &str =
    "rpcnet-certs --out DIR [--member NAME]... [--node NAME]... [--san NAME]...";

/// What the flags ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The directory to write into.
    pub out: PathBuf,
    /// Member certificates to issue.
    pub members: Vec<String>,
    /// Plain certificates to issue.
    pub nodes: Vec<String>,
    /// Subject alternative names of every certificate.
    pub sans: Vec<String>,
}

/// Reads the flags (without the program name).
///
/// # Errors
/// A message naming the flag that lacks a value or is unknown, with the
/// usage line.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
    let mut request = Request {
        out: PathBuf::from("certs/cluster"),
        members: Vec::new(),
        nodes: Vec::new(),
        sans: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value; usage: {USAGE}"))?;
        match flag.as_str() {
            "--out" => request.out = PathBuf::from(value),
            "--node" => request.nodes.push(value),
            "--member" => request.members.push(value),
            "--san" => request.sans.push(value),
            other => return Err(format!("unknown argument {other}; usage: {USAGE}")),
        }
    }
    if request.nodes.is_empty() && request.members.is_empty() {
        request.members.push("node".into());
    }
    if request.sans.is_empty() {
        request.sans = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    }
    Ok(request)
}

/// Parses `args` (without the program name), issues a new CA and the
/// certificates asked for, writes them, and returns the files written.
///
/// # Errors
/// Bad flags (the message has the usage line), certificate generation or
/// writing failed.
pub fn run(
    args: impl IntoIterator<Item = String>,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error + Send + Sync>> {
    let request = parse(args)?;
    let ca = crate::DevCa::new("rpcnet development CA")?;
    Ok(ca.write_all(
        &request.out,
        &request.members,
        &request.nodes,
        &request.sans,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_issue_one_member_for_loopback() {
        let request = parse(Vec::new()).unwrap();
        assert_eq!(request.out, PathBuf::from("certs/cluster"));
        assert_eq!(request.members, ["node"]);
        assert_eq!(request.sans, ["localhost", "127.0.0.1", "::1"]);
    }

    #[test]
    fn flags_are_read_and_mistakes_named() {
        let request = parse(args(&["--out", "x", "--member", "a", "--node", "c"])).unwrap();
        assert_eq!(
            (request.members, request.nodes),
            (args(&["a"]), args(&["c"]))
        );
        assert!(parse(args(&["--out"]))
            .unwrap_err()
            .contains("--out needs a value"));
        assert!(parse(args(&["--bogus", "1"]))
            .unwrap_err()
            .contains("unknown argument --bogus"));
    }
}
