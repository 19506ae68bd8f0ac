//! The command line of `rpcnet-certs`, shared by the `rpcnet-certs` binary
//! and `rpcnet certs`: both parse the same flags and write the same files.
//!
//! ```text
#![doc = include_str!("help.txt")]
//! ```

use std::fmt;
use std::path::PathBuf;

use crate::{CaDir, CertSpec, Error, Role};

/// The usage line of the flags [`run`] takes.
pub const USAGE: &str = "rpcnet-certs [--out DIR] [--new-ca [--ca-name NAME]] \
     [(--member|--node|--client) NAME [--san NAME|NAME:PORT|IP|IP:PORT]... [--tls-san NAME|IP]...]...";

/// `--help`: the flags and examples.
pub const HELP: &str = include_str!("help.txt");

/// The names a member or node certificate carries when given no `--san`:
/// this host's loopback names. A member so made speaks for `127.0.0.1`
/// and `::1` (`localhost` names every host, so it names no member).
pub const DEFAULT_SANS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The name of a CA made without `--ca-name`.
pub const DEFAULT_CA_NAME: &str = "rpcnet development CA";

/// What the flags ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The directory of the CA and the certificates.
    pub out: PathBuf,
    /// Create the CA (named so) instead of using the one in `out`.
    pub new_ca: Option<String>,
    /// The certificates to issue, each with its own names.
    pub certs: Vec<CertSpec>,
}

/// What the command line came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `--help`.
    Help,
    /// Issue certificates.
    Issue(Request),
}

fn usage(message: impl fmt::Display) -> Error {
    Error::Usage(format!("{message}; usage: {USAGE}"))
}

/// Reads the flags (without the program name).
///
/// # Errors
/// [`Error::Usage`] naming the flag that lacks a value, is unknown or
/// out of place, with the usage line.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, Error> {
    let mut out = PathBuf::from("certs/cluster");
    let mut new_ca = false;
    let mut ca_name = None;
    let mut certs: Vec<CertSpec> = Vec::new();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--new-ca" => {
                new_ca = true;
                continue;
            }
            _ => {}
        }
        let value = args
            .next()
            .ok_or_else(|| usage(format_args!("{flag} needs a value")))?;
        let role = match flag.as_str() {
            "--out" => {
                out = PathBuf::from(value);
                continue;
            }
            "--ca-name" => {
                ca_name = Some(value);
                continue;
            }
            "--san" => {
                let cert = certs.last_mut().ok_or_else(|| {
                    usage(format_args!(
                        "--san {value} comes before any certificate: each --san belongs to \
                         the --member, --node or --client before it"
                    ))
                })?;
                cert.sans.push(value);
                continue;
            }
            "--tls-san" => {
                let cert = certs.last_mut().ok_or_else(|| {
                    usage(format_args!(
                        "--tls-san {value} comes before any certificate: each --tls-san \
                         belongs to the --member, --node or --client before it"
                    ))
                })?;
                cert.tls_sans.push(value);
                continue;
            }
            "--member" => Role::Member,
            "--node" => Role::Node,
            "--client" => Role::Client,
            other => return Err(usage(format_args!("unknown argument {other}"))),
        };
        certs.push(CertSpec::new(role, value, Vec::<String>::new()));
    }
    if ca_name.is_some() && !new_ca {
        return Err(usage("--ca-name names a new CA: it needs --new-ca"));
    }
    if certs.is_empty() && !new_ca {
        return Err(usage("nothing to do: ask for --new-ca or a certificate"));
    }
    let members = certs.iter().filter(|c| c.role == Role::Member).count();
    if let Some(bare) = certs
        .iter()
        .find(|c| members > 1 && c.role == Role::Member && c.sans.is_empty())
    {
        return Err(usage(format_args!(
            "member {} has no --san of its own: with several members, each needs its own \
             addresses or host names (each --san belongs to the certificate before it: \
             --member a --san IP|NAME --member b --san IP|NAME)",
            bare.name
        )));
    }
    for cert in &mut certs {
        if cert.sans.is_empty() && cert.role != Role::Client {
            cert.sans = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
        }
    }
    Ok(Command::Issue(Request {
        out,
        new_ca: new_ca.then(|| ca_name.unwrap_or_else(|| DEFAULT_CA_NAME.to_string())),
        certs,
    }))
}

/// What [`run`] did; its `Display` is what the commands print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Printed the help.
    Help,
    /// Issued certificates.
    Issued {
        /// The CA certificate's path.
        ca: PathBuf,
        /// Whether the CA was created by this run (else reused).
        new_ca: bool,
        /// The files written (the CA's first, when it is new).
        written: Vec<PathBuf>,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Help => f.write_str(HELP),
            Outcome::Issued {
                ca,
                new_ca,
                written,
            } => {
                if *new_ca {
                    writeln!(f, "created a new CA")?;
                } else {
                    writeln!(f, "using the CA {}", ca.display())?;
                }
                for path in written {
                    writeln!(f, "wrote {}", path.display())?;
                }
                Ok(())
            }
        }
    }
}

/// Parses `args` (without the program name), creates the CA if asked or
/// opens the one in the output directory, and issues the certificates
/// asked for.
///
/// # Errors
/// Bad flags ([`Error::Usage`], with the usage line), no CA without
/// `--new-ca` ([`Error::NoCa`]), a CA already there with `--new-ca`
/// ([`Error::CaExists`]), members sharing an address
/// ([`Error::SharedAddress`]), or what [`CaDir::issue`] refuses.
pub fn run(args: impl IntoIterator<Item = String>) -> Result<Outcome, Error> {
    let request = match parse(args)? {
        Command::Help => return Ok(Outcome::Help),
        Command::Issue(request) => request,
    };
    let pki = match &request.new_ca {
        Some(name) => {
            // Refuse a bad request before the CA is created, so that it
            // leaves no CA behind.
            crate::dir::check(&request.certs, Vec::new())?;
            CaDir::create(&request.out, name)?
        }
        None => CaDir::open(&request.out)?,
    };
    let mut written = Vec::new();
    if request.new_ca.is_some() {
        written.extend([pki.ca_cert_path(), pki.ca_key_path()]);
    }
    written.extend(pki.issue(&request.certs)?);
    Ok(Outcome::Issued {
        ca: pki.ca_cert_path(),
        new_ca: request.new_ca.is_some(),
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn request(list: &[&str]) -> Request {
        match parse(args(list)).unwrap() {
            Command::Issue(request) => request,
            Command::Help => panic!("help"),
        }
    }

    fn error(list: &[&str]) -> String {
        parse(args(list)).unwrap_err().to_string()
    }

    #[test]
    fn each_san_belongs_to_the_certificate_before_it() {
        let request = request(&[
            "--out",
            "x",
            "--member",
            "a",
            "--san",
            "10.0.0.2",
            "--member",
            "b",
            "--san",
            "10.0.0.3",
            "--san",
            "b.example",
            "--node",
            "n",
            "--client",
            "c",
        ]);
        assert_eq!(request.out, PathBuf::from("x"));
        assert_eq!(request.new_ca, None);
        assert_eq!(
            request.certs,
            [
                CertSpec::member("a", ["10.0.0.2"]),
                CertSpec::member("b", ["10.0.0.3", "b.example"]),
                CertSpec::node("n", DEFAULT_SANS),
                CertSpec::client("c", Vec::<String>::new()),
            ]
        );
    }

    #[test]
    fn a_new_ca_is_asked_for_by_name_or_by_default() {
        assert_eq!(
            request(&["--new-ca"]).new_ca.as_deref(),
            Some(DEFAULT_CA_NAME)
        );
        assert_eq!(
            request(&["--new-ca", "--ca-name", "lab"]).new_ca.as_deref(),
            Some("lab")
        );
        assert!(error(&["--ca-name", "lab", "--node", "n"]).contains("needs --new-ca"));
    }

    #[test]
    fn mistakes_are_named_with_the_usage() {
        assert!(error(&["--out"]).contains("--out needs a value"));
        assert!(error(&["--bogus", "1"]).contains("unknown argument --bogus"));
        assert!(error(&["--san", "10.0.0.2", "--member", "a"]).contains("before any certificate"));
        assert!(error(&["--out", "x"]).contains("nothing to do"));
        // The old form, with every --san at the end, would give one member
        // every address.
        assert!(
            error(&["--member", "a", "--member", "b", "--san", "10.0.0.2"])
                .contains("member a has no --san of its own")
        );
        assert!(error(&[]).contains("usage: rpcnet-certs"));
        assert_eq!(parse(args(&["--help"])).unwrap(), Command::Help);
    }
}
