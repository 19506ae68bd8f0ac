//! `rpcnet-certs`: a development CA and one certificate per node.
//!
//! ```text
#![doc = include_str!("help.txt")]
//! ```
//!
//! The flags are `rpcnet_certs::cli`'s, which `rpcnet certs` runs too.

use std::process::ExitCode;

fn main() -> ExitCode {
    match rpcnet_certs::cli::run(std::env::args().skip(1)) {
        Ok(outcome) => {
            print!("{outcome}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rpcnet-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
